"""Hostile and broken files: each costs one clear per-file error in bounded time, never the build.

Files are loaded through the isolated loader (a child process under a per-file timeout and an
address-space cap), exactly as `rag index build` and the UI's upload do.
"""

from __future__ import annotations

import io
import os
import random
import signal
import threading
import time
from pathlib import Path

import pytest
from helpers import (
    docx_lying_sizes,
    docx_many_entries,
    docx_zip_bomb,
    make_docx,
    make_encrypted_pdf,
    make_pdf,
    pdf_deep_nesting,
    pdf_flate_bomb,
    pdf_kids_loop,
    pdf_page_tree_bomb,
    pdf_reference_chain,
)

from rag.errors import IngestError
from rag.ingest.files import Limits
from rag.ingest.sandbox import IsolatedLoader, load_safely

LIMITS = Limits(timeout_s=60, max_memory_mb=1536)
GOOD_PDF = make_pdf([["A real page about wetland permits and river crossings."], ["Second page on culverts."]])


def _encrypted_pdf(user: str, owner: str, algorithm: str) -> bytes:
    from pypdf import PdfReader, PdfWriter

    w = PdfWriter()
    for p in PdfReader(io.BytesIO(GOOD_PDF)).pages:
        w.add_page(p)
    w.encrypt(user_password=user, owner_password=owner, algorithm=algorithm)
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def _ole() -> bytes:
    return b"\xd0\xcf\x11\xe0\xa1\xb1\x1a\xe1" + os.urandom(4096)


# (file name, bytes builder, error kinds accepted; None = must load)
CASES = [
    ("empty.pdf", lambda: b"", {"empty"}),
    ("empty.docx", lambda: b"", {"empty"}),
    ("empty.html", lambda: b"", {"empty"}),
    ("empty.md", lambda: b"\n\n \t\n", {"empty"}),
    ("empty.txt", lambda: b"", {"empty"}),
    ("truncated-header.pdf", lambda: GOOD_PDF[:20], {"corrupt"}),
    ("truncated-half.pdf", lambda: GOOD_PDF[: len(GOOD_PDF) // 2], {"corrupt", "no_text"}),
    ("truncated-no-xref.pdf", lambda: GOOD_PDF[: GOOD_PDF.rfind(b"xref")], None),  # pdfium rebuilds the xref
    ("encrypted-rc4.pdf", lambda: make_encrypted_pdf([["Secret budget."]]), {"encrypted"}),
    ("encrypted-aes256.pdf", lambda: _encrypted_pdf("pw", "owner", "AES-256"), {"encrypted"}),
    ("owner-password-only.pdf", lambda: _encrypted_pdf("", "owner-secret", "AES-128"), None),  # anyone may open it
    ("page-tree-bomb.pdf", pdf_page_tree_bomb, {"corrupt", "too_large"}),
    ("kids-loop.pdf", pdf_kids_loop, {"corrupt", "no_text"}),
    ("deep-nesting.pdf", pdf_deep_nesting, None),
    ("reference-chain.pdf", pdf_reference_chain, {"corrupt", "no_text"}),
    ("flate-bomb.pdf", lambda: pdf_flate_bomb(400), {"corrupt", "too_large", "timeout"}),
    ("6000-pages.pdf", lambda: make_pdf([[f"p{i}"] for i in range(6000)], compress=False), {"too_large"}),
    ("pdf-named.pdf", lambda: b"<html><body>not a pdf</body></html>", {"corrupt"}),
    ("zip-bomb.docx", lambda: docx_zip_bomb(400), {"too_large"}),
    ("lying-sizes.docx", docx_lying_sizes, {"corrupt"}),
    ("20000-entries.docx", docx_many_entries, {"corrupt"}),
    ("encrypted.docx", _ole, {"encrypted"}),
    ("random.docx", lambda: b"PK\x03\x04" + random.Random(1).randbytes(50_000), {"corrupt"}),
    ("binary.txt", lambda: random.Random(2).randbytes(200_000), {"encoding"}),
    ("elf-binary.txt", lambda: b"\x7fELF\x02\x01\x01" + bytes(5000), {"encoding"}),
    ("latin1.txt", lambda: ("Résumé of the café policy. " * 50).encode("latin-1"), {"encoding"}),
    ("bad-utf8-late.md", lambda: b"# Title\n\n" + b"Fine text. " * 2000 + b"\xc3\x28 broken", {"encoding"}),
    ("utf16.txt", lambda: "Grid policy in UTF-16 from Notepad.\nSecond line.".encode("utf-16"), None),
    ("nul-bytes.html", lambda: b"<html><body>" + b"\x00" * 100 + b"</body></html>", {"encoding"}),
    ("deep-divs.html", lambda: b"<html><body>" + b"<div>" * 100_000 + b"deep text here" + b"</div>" * 100_000 + b"</body></html>", None),
    ("script-only.html", lambda: b"<html><head><script>alert(1)</script></head><body><script>x()</script></body></html>", {"empty"}),
    ("entity-bomb.html", lambda: b'<!DOCTYPE x [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">'
     b'<!ENTITY c "&b;&b;&b;&b;&b;&b;&b;&b;&b;&b;"><!ENTITY d "&c;&c;&c;&c;&c;&c;&c;&c;&c;&c;">]><html><body><p>&d;&d;&d; text</p></body></html>', None),
    ("stars.md", lambda: b"*" * 200_000 + b" text", None),
    ("brackets.md", lambda: b"[" * 100_000 + b"x" + b"](" * 50_000, None),
    ("backticks.md", lambda: (b"`" * 30_000 + b" a ") * 3, {"empty"}),  # all code fence, no prose
    ("front-matter-bomb.md", lambda: b"---\na: &a [x, x, x, x, x, x, x, x, x]\nb: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]\n"
     b"c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]\nd: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]\n"
     b"e: [*d, *d, *d, *d, *d, *d, *d, *d, *d]\n---\n\nBody text of a note.\n", None),
]


@pytest.mark.parametrize("name,build,kinds", CASES, ids=[c[0] for c in CASES])
def test_hostile_file_gives_clear_error_in_bounded_time(tmp_path: Path, name, build, kinds):
    p = tmp_path / name
    p.write_bytes(build())
    t0 = time.perf_counter()
    try:
        doc = load_safely(p, tmp_path, LIMITS)
    except IngestError as e:
        assert kinds is not None, f"{name} should load but failed: {e}"
        assert e.kind in kinds, f"{name}: {e.kind}: {e.reason}"
        assert str(e).startswith(f"{name}: ") and len(e.reason) > 8
    else:
        assert kinds is None, f"{name} loaded but should fail ({kinds})"
        assert doc.text.strip() and doc.source == name
        assert len(doc.text) < 2_000_000  # no entity or alias expansion blew the text up
    assert time.perf_counter() - t0 < LIMITS.timeout_s


def test_ten_megabyte_single_line_text_is_bounded(tmp_path: Path, tokenize):
    """10 MB on one line: loads, chunks within the model's limit, and a giant 'word' cannot make a giant chunk."""
    from rag.index.chunk import ChunkConfig, chunk_document

    rnd = random.Random(3)
    words = ["policy", "model", "risk", "open", "weights", "agency", "federal", "review", "data", "grid"]
    cases = {"words.txt": " ".join(rnd.choice(words) for _ in range(1_500_000))[:10_000_000],
             "one-word.txt": "a" * 10_000_000}
    cfg = ChunkConfig()
    for name, text in cases.items():
        p = tmp_path / name
        p.write_text(text)
        t0 = time.perf_counter()
        doc = load_safely(p, tmp_path, LIMITS)
        chunks = chunk_document(doc, tokenize, cfg)
        took = time.perf_counter() - t0
        assert took < 120, f"{name}: {took:.0f} s"
        assert max(c.n_tokens for c in chunks) <= cfg.max_seq_length - cfg.special_tokens
        assert max(len(c.text) for c in chunks) < 20_000
        covered = sum(len(c.text) for c in chunks)
        assert covered >= 0.9 * len(doc.text)  # nothing dropped


def test_timeout_and_crash_cost_one_file_and_the_loader_recovers(tmp_path: Path):
    big = tmp_path / "big.txt"
    big.write_text(("wetland permit text " * 50 + "\n") * 10_000)  # ~10 MB: loads in well over 10 ms
    small = tmp_path / "small.md"
    small.write_text("# Small\n\nA small note about river crossings.\n")
    with IsolatedLoader(Limits(timeout_s=0.01)) as loader:
        with pytest.raises(IngestError) as ei:
            loader.load(big, tmp_path)
        assert ei.value.kind == "timeout" and "load_timeout_s" in str(ei.value) and "big.txt" in str(ei.value)
        assert loader.proc is None  # the hung child was killed
    with IsolatedLoader(Limits(timeout_s=60)) as loader:
        assert loader.load(small, tmp_path).title == "Small"
        pid = loader.proc.pid  # type: ignore[union-attr]
        errors: list[IngestError] = []

        def load_big() -> None:
            try:
                loader.load(big, tmp_path)
            except IngestError as e:
                errors.append(e)

        t = threading.Thread(target=load_big)
        t.start()
        time.sleep(0.2)  # the 10 MB load takes longer than this
        os.kill(pid, signal.SIGSEGV)  # what a parser bug in C does
        t.join(30)
        assert len(errors) == 1
        assert errors[0].kind == "corrupt" and "crashed" in errors[0].reason and "SIGSEGV" in errors[0].reason
        doc = loader.load(small, tmp_path)  # a fresh child takes over
        assert doc.title == "Small" and loader.proc.pid != pid  # type: ignore[union-attr]


def test_memory_cap_turns_a_bomb_into_an_error(tmp_path: Path):
    p = tmp_path / "bomb.pdf"
    p.write_bytes(pdf_flate_bomb(400))
    t0 = time.perf_counter()
    with pytest.raises(IngestError) as ei:
        load_safely(p, tmp_path, Limits(timeout_s=60, max_memory_mb=512))
    assert "bomb.pdf" in str(ei.value) and ei.value.kind in ("corrupt", "too_large", "timeout")
    assert time.perf_counter() - t0 < 60


def test_build_goes_on_past_every_hostile_file(index_copy, embedder, tmp_path):
    """All the hostile files dropped into an indexed corpus at once: each skipped with its reason,
    the good new file indexed, nothing indexed before lost, and the index consistent."""
    from rag.index.build import build_index
    from rag.index.reader import IndexStore
    from rag.settings import Settings

    corpus, index = index_copy
    before = {d.source for d in IndexStore(index).documents()}
    bad = corpus / "hostile"
    bad.mkdir()
    must_fail = {}
    for name, build, kinds in CASES:
        if kinds is not None:
            (bad / name).write_bytes(build())
            must_fail[f"hostile/{name}"] = kinds
    secret = tmp_path / "outside-secret.txt"
    secret.write_text("The launch code is 0000. This file is outside the corpus.")
    os.symlink(secret, bad / "link-outside.txt")
    os.symlink(tmp_path, bad / "dir-outside")
    (bad / "loop.md").symlink_to(bad / "loop.md")
    make_docx(corpus / "new-good.docx", "Culvert Guidance", [("Scope", ["Culverts under forest roads need permits."])])

    s = Settings(corpus=corpus, index=index, ingest={"load_timeout_s": 60, "max_load_memory_mb": 1536})
    t0 = time.perf_counter()
    res = build_index(s, embedder=embedder)
    took = time.perf_counter() - t0
    skipped = {e.path: e for e in res.skipped}
    for src, kinds in must_fail.items():
        assert src in skipped, f"{src} not reported"
        assert skipped[src].kind in kinds, f"{src}: {skipped[src].kind} {skipped[src].reason}"
    assert "outside the corpus" in skipped["hostile/link-outside.txt"].reason
    assert res.added == ["new-good.docx"]
    store = IndexStore(index)
    assert store.check() == []
    after = {d.source for d in store.documents()}
    assert after == before | {"new-good.docx"}
    texts = " ".join(c.text for c in store.iter_chunks())
    assert "launch code" not in texts  # the symlinked secret was not followed
    assert took < 300, f"build took {took:.0f} s"


def test_extracted_text_is_capped(tmp_path: Path):
    p = tmp_path / "long.md"
    p.write_text("# Long\n\n" + "Words of a long report. " * 100)
    with pytest.raises(IngestError) as ei:
        load_safely(p, tmp_path, Limits(max_text_chars=1000))
    assert ei.value.kind == "too_large" and "long.md" in str(ei.value)
