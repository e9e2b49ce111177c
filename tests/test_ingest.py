from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import make_encrypted_pdf, make_pdf

from rag.errors import IngestError
from rag.ingest.files import discover, load_corpus_metadata
from rag.ingest.load import load_document


def test_each_format_loads_with_metadata(fixture_corpus: Path):
    docs = {}
    files, skipped = discover(fixture_corpus)
    assert not skipped
    for f in files:
        d = load_document(f, fixture_corpus)
        docs[d.source] = d
    assert set(docs) == {
        "notes/water-memo.txt", "plans/quantum-plan.md", "reports/farm-guidance.docx",
        "reports/grid-report.pdf", "web/bridges.html",
    }
    md = docs["plans/quantum-plan.md"]
    assert md.title == "National Quantum Readiness Plan"
    assert md.date == "2024-05-01" and md.source_url == "https://example.gov/quantum"
    assert [h.title for h in md.headings] == ["Overview", "Migration Timeline", "Funding"]
    assert "---" not in md.text and "title:" not in md.text

    pdf = docs["reports/grid-report.pdf"]
    assert pdf.title == "Grid Modernization Report 2024"
    assert pdf.page_count == 2
    assert pdf.page_at(pdf.text.index("faster interconnection")) == 2
    assert pdf.page_at(pdf.text.index("40 gigawatts")) == 1

    txt = docs["notes/water-memo.txt"]
    assert txt.page_count == 2  # form feed = page break
    assert txt.page_at(txt.text.index("fewer than 10,000")) == 2
    assert "Section 1. Purpose" in [h.title for h in txt.headings]

    html = docs["web/bridges.html"]
    assert html.title == "Bridge Safety Program" and html.date == "2023-09-14"
    for junk in ("Cookie settings", "Site banner", "Copyright footer", "tracking"):
        assert junk not in html.text
    assert "Fracture-critical members every year." in html.text
    assert "Inspection Rules" in [h.title for h in html.headings]

    dx = docs["reports/farm-guidance.docx"]
    assert dx.title == "Farm Drone Guidance"
    assert [h.title for h in dx.headings] == ["Scope", "Operator Rules"]
    assert "Department of Energy | 90 days" in dx.text

    # ids are content hashes: same bytes -> same id, different bytes -> different id
    assert len({d.doc_id for d in docs.values()}) == 5
    again = load_document(fixture_corpus / "plans/quantum-plan.md", fixture_corpus)
    assert again.doc_id == md.doc_id


@pytest.mark.parametrize(
    "name,data,kind,words",
    [
        ("empty.txt", b"", "empty", "empty"),
        ("blank.md", b"   \n\n  ", "empty", "empty"),
        ("latin1.txt", "caf\xe9 na\xefve".encode("latin-1"), "encoding", "UTF-8"),
        ("binary.txt", b"\x00\x01\x02PK\x03\x04" * 50, "encoding", "binary"),
        ("fake.pdf", b"this is not a pdf at all", "corrupt", "PDF"),
        ("truncated.pdf", make_pdf([["Some text here on the page."]])[:200], "corrupt", "PDF"),
        ("scanned.pdf", make_pdf([[], []]), "no_text", "scanned"),
        ("fake.docx", b"not a zip", "corrupt", "DOCX"),
        ("locked.pdf", make_encrypted_pdf([["Top secret budget figures."]]), "encrypted", "password"),
        ("bad-front.md", b"---\ntitle: [unclosed\n---\n\nBody text.\n", "corrupt", "YAML"),
    ],
)
def test_broken_files_give_clear_errors(tmp_path: Path, name, data, kind, words):
    p = tmp_path / name
    p.write_bytes(data)
    with pytest.raises(IngestError) as ei:
        load_document(p, tmp_path)
    assert ei.value.kind == kind
    assert name in str(ei.value) and words.lower() in str(ei.value).lower()


def test_size_and_page_limits(tmp_path: Path):
    from rag.ingest.files import Limits

    big = tmp_path / "big.txt"
    big.write_text("word " * 50000)
    with pytest.raises(IngestError, match="over the limit"):
        load_document(big, tmp_path, Limits(max_bytes=10_000))
    many = tmp_path / "many.pdf"
    many.write_bytes(make_pdf([[f"Page {i} text."] for i in range(12)]))
    with pytest.raises(IngestError, match="12 pages"):
        load_document(many, tmp_path, Limits(max_pages=10))


def test_discover_skips_unsupported_hidden_and_outside_symlinks(tmp_path: Path):
    root = tmp_path / "corpus"
    root.mkdir()
    (root / "a.md").write_text("# A\n\nText.")
    (root / "image.png").write_bytes(b"\x89PNG")
    (root / ".hidden.md").write_text("secret")
    (root / "SOURCES.md").write_text("provenance")
    outside = tmp_path / "outside.txt"
    outside.write_text("outside the corpus")
    os.symlink(outside, root / "link.txt")
    files, skipped = discover(root)
    assert [f.name for f in files] == ["a.md"]
    reasons = {e.path: e.reason for e in skipped}
    assert "unsupported" in reasons["image.png"]
    assert "outside the corpus" in reasons["link.txt"]


def test_metadata_yaml_overrides_title_and_date(fixture_corpus: Path):
    (fixture_corpus / "metadata.yaml").write_text(
        "reports/grid-report.pdf:\n  title: Grid Report (official)\n  date: '2024-03-03'\n"
    )
    meta = load_corpus_metadata(fixture_corpus)
    d = load_document(fixture_corpus / "reports/grid-report.pdf", fixture_corpus, meta=meta["reports/grid-report.pdf"])
    assert d.title == "Grid Report (official)" and d.date == "2024-03-03"
    (fixture_corpus / "metadata.yaml").write_text("reports/grid-report.pdf:\n  colour: blue\n")
    from rag.errors import ConfigError

    with pytest.raises(ConfigError, match="metadata.yaml"):
        load_corpus_metadata(fixture_corpus)


def test_shipped_action_plan_pages_and_sections():
    root = Path(__file__).resolve().parent.parent / "corpus"
    d = load_document(root / "whitehouse/2025-07-23-americas-ai-action-plan.pdf", root)
    assert d.page_count == 28
    pos = d.text.index("Open-source and open-weight AI models are made freely available")
    assert d.page_at(pos) == 7  # PDF page 7 (printed page 4)
    titles = [h.title for h in d.headings]
    assert "Pillar I: Accelerate AI Innovation" in titles
    assert "Encourage Open-Source and Open-Weight AI" in titles
    assert "AMERICA’S AI ACTION PLAN" not in d.text[100:]  # running header removed
