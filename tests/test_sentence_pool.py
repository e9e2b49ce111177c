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
    for pool in (0, 9):
        s = Settings(index=built_fixture_index[1], answer={"mode": "extractive", "sentence_pool": pool})
        answers[pool] = Answerer(Retriever.open(s, embedder), s, generator=fake_generator("unused [1].")).ask(q, k=1)
    assert "National Cyber Director" not in answers[0].text and len(answers[0].passages) == 1
    a = answers[9]
    assert a.text.startswith("Office of the National Cyber Director [1]")
    assert a.record["evidence"]["sentence_pool"]["size"] == 9
    cited = {c.passage.chunk.chunk_id for c in a.citations}
    assert cited <= {p.chunk.chunk_id for p in a.passages} and [c.n for c in a.citations] == list(
        range(1, len(cited) + 1)
    )
    assert all(c.quote in c.passage.chunk.text for c in a.citations)
    assert "Office of the National Cyber Director" in a.citations[0].passage.chunk.text
