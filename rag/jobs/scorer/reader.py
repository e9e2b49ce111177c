"""A reader-written question set as a third training and evaluation set for the evidence scorer.

Why: the two development sets are privacy policies (PolicyQA) and financial regulations (ObliQA), and
neither has a question that the documents do not answer. The failures left on policy questions are
near-topic questions answered from a sentence on the same topic, and the wrong sentence quoted from the
right passage. A set of questions written in a reader's words over other policy documents, with the
answering sentence quoted and near-topic questions that no document answers, teaches exactly that.

The format is the project's question-set format (`eval/paraphrased.jsonl`): question, answers,
gold_sources, gold_quotes, answerable, plus `topic_doc` for an unanswerable question (the document it sits
next to, which decides its part of the split). Units are the chunks of an index built from the set's
documents with `rag index build`, so the scorer sees the texts the product retrieves. The split is by
document with the same seeded shuffle as the other sets.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.jobs.scorer.candidates import Progress, _quiet, build_candidates
from rag.jobs.scorer.data import Dataset, Question, Unit, _norm, question_split, set_payload, split_docs

NAME = "reader"
TEST_SHARE, VAL_SHARE = 0.25, 0.15  # of the documents: 12 documents -> 3 test, 2 validation, 7 train


def split_sizes(n_docs: int) -> tuple[int, int]:
    """(test, validation) documents: a quarter and about a sixth, at least one each, at least one left to train."""
    if n_docs < 3:
        raise ConfigError(f"reader set: its questions cover {n_docs} document(s); a split by document needs at least 3")
    n_test = max(1, round(TEST_SHARE * n_docs))
    n_val = max(1, round(VAL_SHARE * n_docs))
    return n_test, min(n_val, n_docs - n_test - 1)


def load_reader(questions: Path, index: Path) -> Dataset:
    """The set's chunks (from `index`) as units and its questions with their gold chunks.

    A gold chunk is a chunk of a gold source holding a gold quote (case and whitespace aside). A question
    whose quote is in none of its source's chunks is an error naming the file and line, as is a source or
    topic_doc the index does not hold: a silently dropped question would bias the set.
    """
    from rag.index.reader import IndexStore

    questions, index = Path(questions), Path(index)
    if not questions.is_file():
        raise ConfigError(f"reader set: {questions} not found")
    store = IndexStore(index)
    try:
        units = [Unit(c.source, c.text, len(c.text.split())) for c in store.iter_chunks()]
    finally:
        store.close()
    by_doc: dict[str, list[int]] = {}
    for i, u in enumerate(units):
        by_doc.setdefault(u.doc, []).append(i)
    norm_units = [_norm(u.text) for u in units]
    out: list[Question] = []
    for n, line in enumerate(questions.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        where = f"{questions}:{n}"
        try:
            r = json.loads(line)
            text, answerable = str(r["question"]).strip(), bool(r.get("answerable", True))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{where}: not a question row ({e})") from None
        if not text:
            raise ConfigError(f"{where}: empty question")
        if not answerable:
            topic = r.get("topic_doc")
            if topic not in by_doc:
                raise ConfigError(f"{where}: an unanswerable question needs a topic_doc the index holds (got {topic!r})")
            out.append(Question(str(r.get("id", n)), text, [topic], [], [], [], answerable=False))
            continue
        sources, quotes = list(r.get("gold_sources") or []), [q for q in r.get("gold_quotes") or [] if q.strip()]
        if not sources or not quotes:
            raise ConfigError(f"{where}: an answerable question needs gold_sources and gold_quotes")
        if missing := [s for s in sources if s not in by_doc]:
            raise ConfigError(f"{where}: gold source(s) not in the index {index}: {', '.join(missing)}")
        gold = [i for s in sources for i in by_doc[s] if any(_norm(q) in norm_units[i] for q in quotes)]
        if not gold:
            raise ConfigError(f"{where}: no chunk of {', '.join(sources)} holds a gold quote verbatim")
        answers = [a for a in r.get("answers") or [] if isinstance(a, str) and a.strip()]
        out.append(Question(str(r.get("id", n)), text, sorted(set(sources)), gold, quotes, answers))
    if not out:
        raise ConfigError(f"reader set: {questions} holds no questions")
    return Dataset(NAME, units, out, budget=400, k=5)


def prepare_reader(questions: Path, index: Path, encoder_path: str, *, seed: int = 13,
                   progress: Progress = _quiet) -> dict[str, Any]:
    """The reader set's entry for the prepared payload: split by the documents its questions cover, candidates
    from BM25 + dense + RRF over the set's chunks, held-out documents excluded from training questions' lists
    exactly as for the other sets. Small (hundreds of questions, about a thousand chunks): built on every run."""
    from sentence_transformers import SentenceTransformer

    ds = load_reader(questions, index)
    # every indexed document takes part in the split, questions or not: the split depends on the index alone
    docs = {u.doc for u in ds.units}
    n_test, n_val = split_sizes(len(docs))
    ds.split = split_docs(docs, n_test, n_val, seed)
    parts = [question_split(q, ds.split) for q in ds.questions]

    def exclude(q: Question) -> set[str]:
        part = question_split(q, ds.split)
        if part == "test":
            return set()
        return set(ds.split["test"]) | (set(ds.split["val"]) if part == "train" else set(ds.split["train"]))

    progress(f"{NAME}: candidates", 0, len(ds.questions))
    encoder = SentenceTransformer(encoder_path, device="cpu")
    cands = build_candidates(ds, encoder, exclude_docs=exclude, progress=progress)
    return {**set_payload(ds, parts, cands), "dataset": ds}
