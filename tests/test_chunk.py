from __future__ import annotations

import re
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from rag.index.chunk import ChunkConfig, chunk_document, section_paths
from rag.ingest.structure import detect_headings
from rag.text.sentences import split_sentences
from rag.types import Document, Heading

WORDS = ["policy", "agency", "shall", "AI", "model", "weights", "Sec.", "4.6", "M-24-10", "U.S.", "risk",
         "open-weight", "the", "of", "and", "Federal", "(a)", "report", "within", "90", "days", "—", "e.g.",
         "supercalifragilisticexpialidocious", "https://example.gov/a/b?c=d", "Ünïcödé", "数据", "•"]


@st.composite
def documents(draw):
    paras = []
    for _ in range(draw(st.integers(1, 12))):
        kind = draw(st.sampled_from(["heading", "para", "para", "para", "long"]))
        if kind == "heading":
            paras.append(" ".join(w.capitalize() for w in draw(st.lists(st.sampled_from(WORDS[:12]), min_size=1, max_size=5))))
        else:
            n = draw(st.integers(1, 400 if kind == "long" else 60))
            words = draw(st.lists(st.sampled_from(WORDS), min_size=n, max_size=n))
            seps = draw(st.lists(st.sampled_from([" ", " ", " ", ". ", "\n", "  "]), min_size=n, max_size=n))
            paras.append("".join(w + s for w, s in zip(words, seps, strict=True)).strip())
    paras = [p for p in paras if p.strip()] or ["x"]
    text = "\n\n".join(paras)
    page_breaks = sorted(set(draw(st.lists(st.integers(1, max(1, len(text) - 1)), max_size=3))))
    headings = tuple(detect_headings(text))
    return Document(doc_id="d1", source="t.txt", title="Test Doc", text=text, page_starts=(0, *page_breaks), headings=headings)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(doc=documents(), size=st.sampled_from([16, 40, 120, 200, 254]), overlap=st.sampled_from([0, 8, 32]))
def test_chunk_properties(embedder, tokenize, doc, size, overlap):
    cfg = ChunkConfig(chunk_tokens=size, overlap=min(overlap, size - 1), max_header_tokens=40,
                      max_seq_length=embedder.max_seq_length, special_tokens=embedder.special_tokens)
    chunks = chunk_document(doc, tokenize, cfg)
    assert chunks
    covered = [False] * len(doc.text)
    for c in chunks:
        # offsets recover the exact chunk text
        assert doc.text[c.char_start : c.char_end] == c.text
        assert c.text.strip() == c.text and c.text
        # never above the embedder's limit: what is embedded fits max_seq_length (special tokens included)
        n = embedder.count_tokens(c.embed_text)
        assert n + embedder.special_tokens <= embedder.max_seq_length
        assert n == c.n_tokens
        assert 1 <= c.page <= c.page_end <= doc.page_count
        for i in range(c.char_start, c.char_end):
            covered[i] = True
    # no text dropped: every non-space character is inside some chunk
    missing = [i for i, ch in enumerate(doc.text) if not ch.isspace() and not covered[i]]
    assert not missing, repr(doc.text[missing[0] - 20 : missing[0] + 20])
    # chunks are in document order and ids are unique content hashes
    assert [c.char_start for c in chunks] == sorted(c.char_start for c in chunks)
    assert len({c.chunk_id for c in chunks}) == len(chunks)


def test_overlap_and_determinism(tokenize):
    sentences = [f"Sentence number {i} talks about agency risk management duties." for i in range(60)]
    doc = Document(doc_id="d", source="s.txt", title="T", text=" ".join(sentences))
    cfg = ChunkConfig(chunk_tokens=60, overlap=20)
    a = chunk_document(doc, tokenize, cfg)
    b = chunk_document(doc, tokenize, cfg)
    assert [c.chunk_id for c in a] == [c.chunk_id for c in b]
    assert len(a) > 3
    for prev, nxt in zip(a, a[1:], strict=False):
        assert nxt.char_start < prev.char_end  # consecutive chunks share trailing sentences
    assert all(c.n_tokens <= 60 + 10 for c in a)  # body within budget (+ the short header)


def test_section_paths_and_labels(tokenize):
    text = "Pillar I: Innovation\n\nIntro text about innovation policy goals.\n\nOpen Models\n\nOpen-weight models matter for startups and researchers across the country.\n\nPillar II: Infrastructure\n\nBuild data centers and transmission lines quickly."
    heads = (
        Heading(0, 1, "Pillar I: Innovation"),
        Heading(text.index("Open Models"), 2, "Open Models"),
        Heading(text.index("Pillar II"), 1, "Pillar II: Infrastructure"),
    )
    assert [p for _, p in section_paths(heads)] == ["Pillar I: Innovation", "Pillar I: Innovation > Open Models", "Pillar II: Infrastructure"]
    doc = Document(doc_id="d", source="plan.pdf", title="Plan", text=text, headings=heads, page_starts=(0, text.index("Pillar II")))
    chunks = chunk_document(doc, tokenize, ChunkConfig(chunk_tokens=200, min_section_tokens=4))
    by_section = {c.section: c for c in chunks}
    assert "Open-weight models" in by_section["Pillar I: Innovation > Open Models"].text
    c = by_section["Pillar II: Infrastructure"]
    assert c.page == 2 and c.label == "Plan, p. 2 § Pillar II: Infrastructure"
    assert c.embed_text.startswith("Plan > Pillar II: Infrastructure\n")


def test_sentence_splitter_keeps_abbreviations():
    t = "See Sec. 4.6 of the order. The U.S. Government shall act, e.g. by rule. Next sentence here."
    spans = [t[a:b] for a, b in split_sentences(t, 0, len(t))]
    assert spans == ["See Sec. 4.6 of the order.", "The U.S. Government shall act, e.g. by rule.", "Next sentence here."]


def test_shipped_corpus_chunks_fit(embedder, tokenize):
    from rag.ingest.load import load_document

    root = Path(__file__).resolve().parent.parent / "corpus"
    doc = load_document(root / "federal-register/2023-24283-eo-14110-safe-secure-trustworthy-ai.pdf", root)
    chunks = chunk_document(doc, tokenize, ChunkConfig(max_seq_length=embedder.max_seq_length))
    assert max(embedder.count_tokens(c.embed_text) for c in chunks) + 2 <= 256
    assert any(re.match(r"Sec\. 4\. Ensuring the Safety", c.section) for c in chunks)
