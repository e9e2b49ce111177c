"""Retrieval on the shipped corpus with the real MiniLM (builds the whole index once: ~1-2 min)."""

from __future__ import annotations

import pytest

from rag.index.reader import IndexStore
from rag.retrieve.retriever import Retriever

pytestmark = pytest.mark.slow


def test_open_weight_query_finds_action_plan_section(shipped_index, embedder):
    hits = Retriever.open(shipped_index, embedder).dense(["open-weight AI models"], 3)[0]
    top3 = [(h.chunk.source, h.chunk.section) for h in hits]
    assert any(
        src == "whitehouse/2025-07-23-americas-ai-action-plan.pdf" and "Encourage Open-Source and Open-Weight AI" in sec
        for src, sec in top3
    ), top3
    plan = next(h for h in hits if "Open-Weight" in h.chunk.section)
    assert plan.chunk.page in (7, 8) and plan.chunk.title == "Winning the Race: America's AI Action Plan"


def test_shipped_index_is_consistent_and_complete(shipped_index):
    store = IndexStore(shipped_index.index)
    assert store.check() == []
    docs = {d.source: d for d in store.documents()}
    assert len(docs) == 20
    assert docs["nist/NIST.AI.100-1-ai-risk-management-framework-1.0.txt"].pages == 48
    assert docs["omb/M-24-10-advancing-governance-innovation-risk-management-agency-use-of-ai.pdf"].pages == 34
    assert all(d.n_chunks > 0 for d in docs.values())


def test_section_filtered_exact_reference(shipped_index, embedder):
    r = Retriever.open(shipped_index, embedder)
    hits = r.dense(["Chief AI Officer designation and responsibilities"], 5, {"source": ["M-24-10"]})[0]
    assert hits and all(h.chunk.source.startswith("omb/M-24-10") for h in hits)


def _ask(cli, capsys, shipped_index, *args):
    import json

    code, out, err = cli(capsys, "ask", *args, "--index", str(shipped_index.index), "--json")
    assert code == 0, err
    return json.loads(out)


def test_rag_ask_cites_action_plan_with_real_smollm2(cli, capsys, shipped_index):
    """End to end with the shipped SmolLM2-135M (first run converts the GGUF: ~40 s)."""
    ans = _ask(cli, capsys, shipped_index, "What does the AI Action Plan say about open-weight models?", "--answer-mode", "generative")
    assert ans["record"]["model_output"] and ans["timings"]["tokens"] > 0
    if ans["refused"]:  # the 135M model often writes what no passage says (e.g. an invented quotation): never shown
        assert "supported" in ans["record"]["refusal_reason"] or "no answer" in ans["record"]["refusal_reason"]
    else:
        assert ans["model"] == "smollm2" and "[" in ans["answer"] and ans["citations"]
        assert all(s["supported"] for s in ans["sentences"] if s["citations"])
        for c in ans["citations"]:  # every citation points to a retrieved passage
            assert any(p["chunk_id"] == c["chunk_id"] for p in ans["passages"])
    assert any(p["source"] == "whitehouse/2025-07-23-americas-ai-action-plan.pdf" and "Open-Weight" in p["section"]
               for p in ans["passages"])
    auto = _ask(cli, capsys, shipped_index, "What does the AI Action Plan say about open-weight models?")
    assert not auto["refused"] and any(c["source"].endswith("americas-ai-action-plan.pdf") for c in auto["citations"])


def test_rag_ask_refuses_off_topic(cli, capsys, shipped_index):
    # (a near-topic question such as "... regulating cryptocurrency exchanges?" is no longer refused since the
    # unknown-word rule is gone; near-topic refusal is the open part of the answerability work, see RESULTS.md)
    for q in ("What is the recipe for sourdough bread?",):
        ans = _ask(cli, capsys, shipped_index, q, "--answer-mode", "auto")
        assert ans["refused"] and ans["citations"] == [] and ans["answer"].startswith("The documents don't say")
        assert ans["passages"]
