"""The deeper sentence pool (issue 12): an extractive answer may quote a candidate below the top k.

The answer still shows k passages: a quoted deeper passage takes the place of the lowest-ranked passage
the answer does not quote (the second look's rule), and the answer's [n] follow the new numbering.
"""

from __future__ import annotations

from helpers import passage

from rag.answer.answerer import _quoted_into, make_room
from rag.types import AnswerSentence, Passage


def P(name: str, rank: int) -> Passage:
    return passage(f"Passage {name} says something.", chunk_id=name, source=f"{name}.md", doc_id=name, title=name,
                   n_tokens=5, rank=rank, score=1.0 / rank)


def ids(passages: list[Passage]) -> list[str]:
    return [p.chunk.chunk_id for p in passages]


def test_make_room_drops_the_lowest_unquoted_passages():
    top = [P(x, i) for i, x in enumerate("abcde", 1)]
    deep = [P("x", 9), P("y", 14)]
    # without quoted passages: the second look's rule, the last ones give way
    assert ids(make_room(top, deep)) == ["a", "b", "c", "x", "y"]
    # a quoted passage is never dropped: the next lowest gives way
    out = make_room(top, deep, frozenset({5}))
    assert ids(out) == ["a", "b", "e", "x", "y"]
    assert [p.rank for p in out] == [1, 2, 3, 4, 5]
    # at least one passage of the top stays, and none is dropped when all are quoted
    assert ids(make_room(top[:1], deep)) == ["a", "x", "y"]
    assert ids(make_room(top[:2], deep[:1], frozenset({1, 2}))) == ["a", "b", "x"]


def test_an_answer_from_the_pool_is_renumbered_to_the_passages_shown():
    top = [P(x, i) for i, x in enumerate("abc", 1)]
    pool = [*top, P("d", 4), P("e", 5), P("f", 6)]
    sents = [
        AnswerSentence(text="“From f.”", citations=(6,), support=0.7, supported=True),
        AnswerSentence(text="“From a.”", citations=(1,), support=0.6, supported=True),
    ]
    quotes = {6: ("From f.", 0.7), 1: ("From a.", 0.6)}
    record: dict = {"evidence": {}}
    shown, new_sents, new_quotes = _quoted_into(top, pool, sents, quotes, record)
    assert ids(shown) == ["a", "b", "f"]  # k = 3 passages still; c, unquoted and lowest, gave way
    assert [s.citations for s in new_sents] == [(3,), (1,)]
    assert new_quotes == {3: ("From f.", 0.7), 1: ("From a.", 0.6)}
    assert record["evidence"]["sentence_pool"] == {"size": 6, "quoted_ranks": [6]}


def test_an_answer_from_the_top_k_is_left_alone():
    top = [P(x, i) for i, x in enumerate("abc", 1)]
    pool = [*top, P("d", 4)]
    sents = [AnswerSentence(text="“From b.”", citations=(2,), support=0.7, supported=True)]
    record: dict = {"evidence": {}}
    shown, new_sents, quotes = _quoted_into(top, pool, sents, {2: ("From b.", 0.7)}, record)
    assert ids(shown) == ["a", "b", "c"] and new_sents == sents and quotes == {2: ("From b.", 0.7)}
    assert "sentence_pool" not in record["evidence"]


def test_the_answer_quotes_a_passage_below_the_top_k(built_fixture_index, embedder, fake_generator):
    """k = 1: the top passage (the plan's overview) names no one who coordinates; a deeper passage of the
    plan does. With the pool the answer quotes it, and the passages shown are the ones it cites."""
    from rag.answer.answerer import Answerer
    from rag.retrieve.retriever import Retriever
    from rag.settings import Settings

    q = "Who coordinates the migration to post-quantum cryptography?"
    answers = {}
    for pool, units in ((0, 0), (9, 0), (9, 4)):  # 4 pre-selected units of the deeper passages are enough here
        s = Settings(index=built_fixture_index[1], answer={"mode": "extractive", "sentence_pool": pool, "pool_units": units})
        answers[pool, units] = Answerer(Retriever.open(s, embedder), s, generator=fake_generator("unused [1].")).ask(q, k=1)
    assert "National Cyber Director" not in answers[0, 0].text and len(answers[0, 0].passages) == 1
    assert answers[9, 4].text == answers[9, 0].text
    assert answers[9, 4].record["evidence"]["pool_cost"]["units_kept"] <= 4
    a = answers[9, 4]
    assert a.text.startswith("Office of the National Cyber Director [1]")
    assert a.record["evidence"]["sentence_pool"]["size"] == 9
    cited = {c.passage.chunk.chunk_id for c in a.citations}
    assert cited <= {p.chunk.chunk_id for p in a.passages} and [c.n for c in a.citations] == list(
        range(1, len(cited) + 1)
    )
    assert all(c.quote in c.passage.chunk.text for c in a.citations)
    assert "Office of the National Cyber Director" in a.citations[0].passage.chunk.text


# -- the pool kept cheap (issue 16): deeper passages pre-selected without a model pass ------------

TOP = [
    "The Department of Commerce will publish guidance on model evaluation. The guidance covers testing practices.",
    "Agencies should consult stakeholders before adopting new AI tools. Consultation helps build public trust.",
]
FILLER = [
    "The committee met several times during the year to discuss its agenda. Members shared their views on many topics. "
    "Minutes of each meeting were kept by the secretary. Several working groups were formed.",
    "Training programs for staff were expanded across regional offices. New courses were offered online. "
    "Attendance grew steadily over the period. Feedback from participants was positive.",
]
ANSWER = ("Background material on procurement appears in the appendix. Other offices reviewed the draft in detail. "
          "Written comments on the evaluation guidance must be received on or before March 27, 2024. "
          "Late submissions may not be considered.")


def _pool(n_filler: int) -> list[Passage]:
    texts = [*TOP, *(FILLER[i % 2] for i in range(n_filler)), ANSWER]
    return [passage(t, chunk_id=f"c{i}", source=f"d{i}.md", rank=i, scores={"dense": 0.5, "rerank_p": 0.5 if i <= 2 else 0.1})
            for i, t in enumerate(texts, 1)]


def test_the_pool_embeds_only_the_best_units_of_the_deeper_passages(embedder, counting_embedder):
    """A budget of 3 units: the deeper passages' sentences embedded are at most those 3 units (and their
    headings), the one that answers the question among them; the top k are read whole, and only whole
    passages go into the shared cache."""
    from rag.answer.evidence import passage_sentences
    from rag.answer.pool import pool_evidence

    q = "By when must comments on the evaluation guidance be received?"
    pool = _pool(8)
    emb = counting_embedder(embedder)
    cache: dict = {}
    ev, cost = pool_evidence(q, pool, 2, emb, 3, cache, 0.5)
    top_sents = sum(len(passage_sentences(t)) for t in TOP)
    assert cost["units_kept"] == 3 and cost["units_scored"] > 20
    assert cost["sentences_embedded"] <= 2 * 3 and len(emb.texts) == top_sents + cost["sentences_embedded"]
    assert ev.sentences[:2] == [passage_sentences(t) for t in TOP]
    assert any("March 27, 2024" in s for s in ev.sentences[-1])
    assert sum(len(s) for s in ev.sentences[2:]) == cost["sentences_embedded"] and all(
        len(v) == len(s) for s, v in zip(ev.sentences, ev.vectors, strict=True))
    assert set(cache) == {"c1", "c2"}
    # budget 0: every sentence of the pool, as without pre-selection
    emb.texts.clear()
    ev_all, cost_all = pool_evidence(q, pool, 2, emb, 0, {}, 0.5)
    assert ev_all.sentences == [passage_sentences(p.chunk.text) for p in pool] and cost_all["sentences_embedded"] == 0
    assert len(emb.texts) == sum(len(s) for s in ev_all.sentences)


def test_the_embedding_cost_of_the_pool_does_not_grow_with_its_depth(embedder, counting_embedder):
    """Twice as many deeper passages cost no more embedded sentences: the budget bounds them, not the pool."""
    from rag.answer.evidence import passage_sentences
    from rag.answer.pool import pool_evidence

    q = "By when must comments on the evaluation guidance be received?"
    sizes = []
    for n in (6, 14):
        emb = counting_embedder(embedder)
        pool_evidence(q, _pool(n), 2, emb, 4, {}, 0.5)
        sizes.append(len(emb.texts))
    assert sizes[0] == sizes[1] <= sum(len(passage_sentences(t)) for t in TOP) + 2 * 4


def test_the_extractive_answer_from_a_preselected_pool_quotes_the_deeper_answer(embedder):
    """The pre-selected pool gives the same answer as the whole pool here: the date sentence of the last passage."""
    from rag.answer.extractive import extractive
    from rag.answer.pool import pool_evidence
    from rag.settings import AnswerSettings

    q = "By when must comments on the evaluation guidance be received?"
    pool = _pool(8)
    texts = []
    for budget in (0, 3):
        ev, _ = pool_evidence(q, pool, 2, embedder, budget, {}, 0.5)
        sents, quotes, _ = extractive(q, pool, embedder, evidence=ev, opts=AnswerSettings())
        texts.append([s.text for s in sents])
        assert sents[0].citations == (len(pool),) and "March 27, 2024" in sents[0].text
        assert quotes[len(pool)][0] in pool[-1].chunk.text
    assert texts[0] == texts[1]


def test_pre_selection_gives_the_shape_bonus_the_ranking_gives():
    """A "why" question's reason, deep in the pool, must survive the pre-selection as it would the extractive ranking."""
    from rag.answer.evidence import passage_sentences
    from rag.answer.pool import prescore

    text = ("The plan encourages open-weight models for businesses. "
            "Open-weight models matter because many businesses hold sensitive data they cannot send to closed vendors.")
    p = passage(text, chunk_id="c1", source="plan.md", scores={"dense": 0.5, "rerank_p": 0.2})
    sents = passage_sentences(text)
    why = {u.text: s for s, u, _ in prescore("Why does the plan encourage open-weight models?", p, sents, "what")}
    what = {u.text: s for s, u, _ in prescore("What does the plan encourage about open-weight models?", p, sents, "what")}
    reason, restated = (next(t for t in why if "because" in t), next(t for t in why if "because" not in t))
    assert why[reason] - what[reason] > 0.2  # the cause bonus (0.25) on top of the same word overlap
    assert abs(why[restated] - what[restated]) < 0.1  # the restating sentence earns none
