"""A passage longer than the reranker's window is read as its best-matching run of sentences, not its start."""

from __future__ import annotations

import pytest

from rag.retrieve.rerank import Reranker
from rag.settings import default_cache_dir

FILLER = (
    "The order describes the general policy of the United States on artificial intelligence in some detail. "
    "It recalls earlier initiatives and the work of many offices across the executive branch over several years. "
)
ANSWER = "Within 60 days, the head of each agency must designate a Chief AI Officer who reports to the agency head."
QUESTION = "Who must each agency designate within 60 days?"


@pytest.fixture(scope="module")
def scorer() -> Reranker:
    return Reranker("evidence-scorer", "cpu", max_length=64, backend="onnx", cache_dir=default_cache_dir(), window=True)


def test_a_long_passage_is_cut_to_the_sentences_that_match(scorer):
    long = FILLER * 3 + ANSWER
    short = "Agencies publish inventories."
    fitted = scorer.fit(QUESTION, [long, short])
    assert fitted[1] == short  # fits: unchanged
    assert ANSWER in fitted[0] and fitted[0] != long and long.endswith(fitted[0])
    budget = 64 - scorer._count([QUESTION])[0] - 3
    assert scorer._count([fitted[0]])[0] <= budget


def test_without_a_question_word_it_reads_the_start(scorer):
    long = FILLER * 4
    out = scorer.fit("Which zebra crossings are painted?", [long])[0]
    assert long.startswith(out) and len(out) < len(long)


def test_the_window_scores_the_answer_a_truncating_reader_never_sees(scorer):
    long = FILLER * 3 + ANSWER
    truncating = Reranker("evidence-scorer", "cpu", max_length=64, backend="onnx", cache_dir=default_cache_dir())
    assert not truncating.window  # the default reads the start, as measured
    assert scorer.scores(QUESTION, [long])[0] > truncating.scores(QUESTION, [long])[0] + 1.0


def test_each_pair_is_scored_once_per_question():
    """The second look and the sentence pool rerank the same candidates again: the model reads each pair once."""
    import numpy as np

    r = Reranker("evidence-scorer", "cpu", max_length=64, backend="onnx", cache_dir=default_cache_dir())
    calls: list[list[str]] = []
    real = r._score
    r._score = lambda q, texts: calls.append(list(texts)) or real(q, texts)  # type: ignore[method-assign]
    first = r.scores(QUESTION, [ANSWER, FILLER, ANSWER])
    assert calls == [[ANSWER, FILLER]]  # a text given twice is read once
    again = r.scores(QUESTION, [FILLER, "Agencies publish inventories.", ANSWER])
    assert calls[1:] == [["Agencies publish inventories."]]  # only the new pair
    assert np.allclose([again[0], again[2]], [first[1], first[0]]) and first[0] == first[2]
    r.scores("Another question?", [ANSWER])
    assert calls[-1] == [ANSWER]  # another question reads it again
    fresh = Reranker("evidence-scorer", "cpu", max_length=64, backend="onnx", cache_dir=default_cache_dir())
    assert np.allclose(fresh.scores(QUESTION, [ANSWER, FILLER]), [first[0], first[1]], atol=1e-4)
