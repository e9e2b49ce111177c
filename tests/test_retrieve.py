from __future__ import annotations

import pytest

from rag.index.build import build_index
from rag.retrieve.fusion import dedupe, rrf
from rag.retrieve.retriever import Retriever
from rag.settings import Settings
from rag.text.lexical import lexical_tokens
from rag.types import Chunk, Passage

MEMOS = {
    "m-24-10.md": ("OMB Memorandum M-24-10", "Agencies must designate a Chief AI Officer and manage risks from rights-impacting AI."),
    "m-25-21.md": ("OMB Memorandum M-25-21", "Agencies must designate a Chief AI Officer and remove barriers to AI adoption."),
    "m-23-22.md": ("OMB Memorandum M-23-22", "Agencies must designate a Chief AI Officer and deliver digital-first public experience."),
    "eo-sec.md": ("Executive Order on Models", "Sec. 4.6 Soliciting input on dual-use foundation models with widely available weights."),
    "eo-other.md": ("Executive Order on Safety", "Sec. 4.2 Ensuring safe and reliable AI through reporting on dual-use foundation models."),
}
QUERIES = [
    ("What does M-24-10 say about Chief AI Officers?", "m-24-10.md"),
    ("What does M-25-21 say about Chief AI Officers?", "m-25-21.md"),
    ("What does M-23-22 say about Chief AI Officers?", "m-23-22.md"),
    ("What does Sec. 4.6 say about foundation models?", "eo-sec.md"),
]


@pytest.fixture(scope="module")
def exact_term_index(tmp_path_factory, embedder):
    root = tmp_path_factory.mktemp("exact")
    corpus = root / "corpus"
    corpus.mkdir()
    for name, (title, body) in MEMOS.items():
        (corpus / name).write_text(f"---\ntitle: Memorandum\n---\n\n{title}. {body}\n")
    s = Settings(corpus=corpus, index=root / "index", retrieval={"reranker": None})  # the fusion itself is tested
    build_index(s, embedder=embedder)
    return s


def _recall_at_1(r: Retriever, mode: str) -> float:
    hits = r.search([q for q, _ in QUERIES], 3, mode=mode)
    return sum(h[0].chunk.source == gold for h, (_, gold) in zip(hits, QUERIES, strict=True)) / len(QUERIES)


def test_hybrid_beats_dense_on_exact_terms(exact_term_index, embedder):
    r = Retriever.open(exact_term_index, embedder)
    dense, bm25, hybrid = (_recall_at_1(r, m) for m in ("dense", "bm25", "hybrid"))
    assert bm25 == 1.0
    assert hybrid >= dense and hybrid == 1.0, (dense, bm25, hybrid)


def test_every_hit_has_dense_similarity_and_ranks(exact_term_index, embedder):
    r = Retriever.open(exact_term_index, embedder)
    hits = r.search(["Chief AI Officer"], 5, mode="hybrid")[0]
    assert [h.rank for h in hits] == list(range(1, len(hits) + 1))
    assert all("dense" in h.scores and -1 <= h.scores["dense"] <= 1 for h in hits)
    assert all("fused" in h.scores for h in hits)
    only = r.search(["Chief AI Officer"], 5, {"source": ["m-25-21"]}, mode="bm25")[0]
    assert [h.chunk.source for h in only] == ["m-25-21.md"]
    assert r.search(["zzzqqq unknownword"], 5, mode="bm25") == [[]]


def test_lexical_tokens_keep_identifiers():
    toks = lexical_tokens("Under Sec. 4.6 of EO 14110 and M-24-10, the U.S. shall act.")
    for t in ("4.6", "14110", "m-24-10", "u.s", "24", "10"):
        assert t in toks
    assert "the" not in toks and "shall" not in toks


def test_convex_fusion_pure():
    from rag.retrieve.fusion import convex_fusion

    fused = convex_fusion({1: 0.9, 2: 0.8, 3: 0.1}, {3: 12.0, 4: 2.0}, alpha=0.8)
    assert [i for i, _ in fused][:2] == [1, 2] and fused[0][1] == pytest.approx(0.8)
    assert dict(fused)[3] == pytest.approx(0.2) and dict(fused)[4] == pytest.approx(0.0)
    assert [i for i, _ in convex_fusion({1: 0.5, 2: 0.4}, {2: 3.0}, alpha=0.3)] == [2, 1]


def test_rrf_and_dedupe_pure():
    assert rrf([[1, 2, 3], [3, 1]], k=60)[0][0] == 1
    assert [i for i, _ in rrf([[1, 2], [2, 1]], k=60)] == [1, 2]  # tie keeps first-seen order

    def mk(src, a, b):
        c = Chunk(chunk_id=f"{src}{a}", doc_id="d", source=src, title="T", ordinal=0, text="x" * (b - a), char_start=a, char_end=b,
                  page=1, page_end=1, section="", n_tokens=1, embed_text="x")
        return Passage(chunk=c, score=1.0, rank=1)

    kept = dedupe([mk("a", 0, 100), mk("a", 20, 110), mk("a", 90, 200), mk("b", 0, 100)])
    assert [(p.chunk.source, p.chunk.char_start) for p in kept] == [("a", 0), ("a", 90), ("b", 0)]


def test_neighbour_expansion(built_fixture_index, embedder):
    _, index = built_fixture_index
    r = Retriever.open(Settings(index=index, chunking={"tokens": 200}), embedder)
    hits = r.search(["faster interconnection studies"], 1, expand=1)[0]
    assert hits[0].chunk.source == "reports/grid-report.pdf"
    assert all(n.source == hits[0].chunk.source and n.chunk_id != hits[0].chunk.chunk_id for n in hits[0].neighbours)


def test_bad_mode_is_config_error(built_fixture_index, embedder):
    from rag.errors import ConfigError

    r = Retriever.open(Settings(index=built_fixture_index[1]), embedder)
    with pytest.raises(ConfigError, match="retrieval mode"):
        r.search(["x"], 3, mode="magic")


def test_evidence_scorer_reranks_and_focuses(built_fixture_index, embedder):
    """The shipped evidence scorer reranks the candidates, scores are calibrated, and long hits get a focus span."""
    s = Settings(index=built_fixture_index[1], retrieval={"reranker": "evidence-scorer", "rerank_top": 8, "focus_words": 12})
    r = Retriever.open(s, embedder)
    hits = r.search(["What certificate must drone operators hold?"], 3)[0]
    assert len(hits) == 3 and all("rerank" in h.scores and 0 < h.scores["rerank_p"] < 1 for h in hits)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    assert "remote pilot certificate" in hits[0].chunk.text
    long = [h for h in hits if len(h.chunk.text.split()) > 12]
    assert long and all(h.span and h.text in h.chunk.text and len(h.text) < len(h.chunk.text) for h in long)
    assert "remote pilot certificate" in hits[0].text


def test_a_model_that_is_no_cross_encoder_is_refused(built_fixture_index, embedder):
    from rag.errors import ModelLoadError
    from rag.index.embed import resolve_embedding_model

    s = Settings(index=built_fixture_index[1], retrieval={"reranker": resolve_embedding_model("default")})
    with pytest.raises(ModelLoadError, match="outputs"):
        Retriever.open(s, embedder).search(["remote pilot certificate"], 3)
    assert Settings(retrieval={"reranker": "none"}).retrieval.reranker is None
