"""Builders for fixture files of every supported format (written at test time, no binaries in git), and for passages."""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

from rag.types import Chunk, Passage


def _pdf_escape(s: str) -> str:
    return s.replace("\\", "\\\\").replace("(", "\\(").replace(")", "\\)")


def make_pdf(pages: list[list[str]], title: str | None = None, compress: bool = True) -> bytes:
    """A real, minimal PDF: one Helvetica text line per list item, one page per list."""
    objs: list[bytes] = []
    n_pages = len(pages)
    # 1 catalog, 2 pages, 3 font, then per page: page obj, content obj; then info
    kids = " ".join(f"{4 + 2 * i} 0 R" for i in range(n_pages))
    objs.append(b"<< /Type /Catalog /Pages 2 0 R >>")
    objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {n_pages} >>".encode())
    objs.append(b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>")
    for i, lines in enumerate(pages):
        content = "BT /F1 11 Tf 14 TL 56 770 Td " + " ".join(f"({_pdf_escape(line)}) '" for line in lines) + " ET"
        data = content.encode("cp1252", errors="replace")
        if compress:
            data = zlib.compress(data)
            stream = f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"
        else:
            stream = f"<< /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"
        objs.append(
            f"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 3 0 R >> >> /Contents {5 + 2 * i} 0 R >>".encode()
        )
        objs.append(stream)
    info = None
    if title:
        objs.append(f"<< /Title ({_pdf_escape(title)}) /CreationDate (D:20240102030405Z) >>".encode())
        info = len(objs)
    return pdf_from_objects(objs, info=info, version=b"1.4")


def make_encrypted_pdf(pages: list[list[str]], password: str = "secret") -> bytes:
    import io

    from pypdf import PdfReader, PdfWriter

    reader = PdfReader(io.BytesIO(make_pdf(pages)))
    w = PdfWriter()
    for p in reader.pages:
        w.add_page(p)
    w.encrypt(user_password=password, owner_password=password + "-owner", algorithm="RC4-128")
    buf = io.BytesIO()
    w.write(buf)
    return buf.getvalue()


def make_docx(path: Path, title: str, sections: list[tuple[str, list[str]]]) -> None:
    import docx

    d = docx.Document()
    d.core_properties.title = title
    for heading, paras in sections:
        d.add_heading(heading, level=1)
        for p in paras:
            d.add_paragraph(p)
    t = d.add_table(rows=2, cols=2)
    t.cell(0, 0).text = "Agency"
    t.cell(0, 1).text = "Deadline"
    t.cell(1, 0).text = "Department of Energy"
    t.cell(1, 1).text = "90 days"
    d.save(str(path))


FIXTURE_FILES = {
    "plans/quantum-plan.md": """---
title: National Quantum Readiness Plan
date: 2024-05-01
source_url: https://example.gov/quantum
---

# Overview

The National Quantum Readiness Plan sets out how agencies migrate to post-quantum cryptography.
Agencies shall inventory cryptographic systems within 180 days.

## Migration Timeline

Each agency must complete migration of high-value assets by 2030. The Office of the National
Cyber Director coordinates the migration and reports progress annually.

## Funding

Congress appropriated funds for quantum-safe upgrades in fiscal year 2025.
""",
    "notes/water-memo.txt": "WATER INFRASTRUCTURE MEMO\n\nSection 1. Purpose. This memo describes drought resilience grants for rural water utilities.\n\nUtilities may apply for grants of up to five million dollars.\f2. Eligibility\n\nOnly utilities serving fewer than 10,000 people are eligible. Applications close on 30 June.\n",
    "web/bridges.html": """<html><head><title>Bridge Safety Program</title>
<meta property="article:published_time" content="2023-09-14T10:00:00Z"></head>
<body><nav><a href="/">Home</a> | <a href="/about">About us</a> | Cookie settings</nav>
<header>Site banner text</header>
<main><h1>Bridge Safety Program</h1>
<p>The Bridge Safety Program funds inspections of structurally deficient bridges every two years.</p>
<h2>Inspection Rules</h2>
<p>Inspectors must certify load ratings and file reports with the state transportation department.</p>
<ul><li>Underwater inspections every five years.</li><li>Fracture-critical members every year.</li></ul>
</main><footer>Copyright footer text</footer><script>var tracking = 1;</script></body></html>
""",
}


def write_fixture_corpus(root: Path) -> Path:
    """A tiny corpus with one file of each format (PDF and DOCX built here)."""
    for rel, text in FIXTURE_FILES.items():
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text(text, encoding="utf-8")
    (root / "reports").mkdir(parents=True, exist_ok=True)
    (root / "reports/grid-report.pdf").write_bytes(
        make_pdf(
            [
                ["Grid Modernization Report", "", "Introduction", "The grid modernization report reviews transmission capacity.",
                 "Utilities reported 40 gigawatts of queued interconnection requests."],
                ["Recommendations", "The report recommends faster interconnection studies for solar and storage.",
                 "Regional operators should publish queue data monthly."],
            ],
            title="Grid Modernization Report 2024",
        )
    )
    make_docx(
        root / "reports/farm-guidance.docx",
        "Farm Drone Guidance",
        [("Scope", ["This guidance covers agricultural drones used for crop spraying."]),
         ("Operator Rules", ["Operators must hold a remote pilot certificate and keep spray logs for three years."])],
    )
    return root


# ---------------------------------------------------------------------------------------------
# Hostile files: bombs, loops and lies, built at test time


def pdf_from_objects(objs: list[bytes], info: int | None = None, version: bytes = b"1.7") -> bytes:
    """A PDF from raw object bodies (object 1 is the catalog), with a correct xref table."""
    out = bytearray(b"%PDF-" + version + b"\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    info_ref = f" /Info {info} 0 R" if info else ""
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R{info_ref} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


_FONT = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"


def _page(parent: int, content: int, font: int, extra: bytes = b"") -> bytes:
    return (f"<< /Type /Page /Parent {parent} 0 R /MediaBox [0 0 612 792] /Resources << /Font << /F1 {font} 0 R >> >>"
            f" /Contents {content} 0 R ".encode() + extra + b">>")


def _stream(data: bytes, flate: bool = False) -> bytes:
    if flate:
        return f"<< /Length {len(data)} /Filter /FlateDecode >>\nstream\n".encode() + data + b"\nendstream"
    return f"<< /Length {len(data)} >>\nstream\n".encode() + data + b"\nendstream"


_TEXT = b"BT /F1 11 Tf 56 770 Td (Hostile file with some real text on its page.) Tj ET"


def pdf_page_tree_bomb(depth: int = 9, fanout: int = 10) -> bytes:
    """Every Pages node lists the next one `fanout` times: 10^9 pages claimed from a few hundred bytes."""
    # 1 catalog, 2..depth+1 Pages nodes, depth+2 page, depth+3 content, depth+4 font
    page, content, font = depth + 2, depth + 3, depth + 4
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>"]
    for level in range(depth):
        me, kid = 2 + level, (3 + level if level + 1 < depth else page)
        kids = " ".join([f"{kid} 0 R"] * fanout)
        parent = f" /Parent {me - 1} 0 R" if level else ""
        objs.append(f"<< /Type /Pages /Kids [{kids}] /Count {fanout ** (depth - level)}{parent} >>".encode())
    objs += [_page(depth + 1, content, font), _stream(_TEXT), _FONT]
    return pdf_from_objects(objs)


def pdf_kids_loop() -> bytes:
    """A page tree whose node lists itself as its own kid."""
    return pdf_from_objects([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [2 0 R 3 0 R] /Count 2 >>",
                             _page(2, 4, 5), _stream(_TEXT), _FONT])


def pdf_deep_nesting(depth: int = 200_000) -> bytes:
    """A page dictionary holding arrays nested `depth` deep (a C-stack overflow for naive parsers)."""
    nest = b"/Deep " + b"[" * depth + b"]" * depth + b" "
    return pdf_from_objects([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                             _page(2, 4, 5, nest), _stream(_TEXT), _FONT])


def pdf_reference_chain(n: int = 50_000) -> bytes:
    """/Contents reached through a chain of n indirect references."""
    objs = [b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
            _page(2, 5, 4), _FONT]
    for i in range(n):
        objs.append(f"{6 + i} 0 R".encode())
    objs.append(_stream(_TEXT))
    return pdf_from_objects(objs)


def pdf_flate_bomb(megabytes: int = 400) -> bytes:
    """A content stream of a few hundred KB that inflates to `megabytes` MB of text operators."""
    comp = zlib.compressobj(9)
    block = b"BT /F1 11 Tf 56 770 Td (bomb) Tj ET\n" * (1 << 15)
    parts = [comp.compress(_TEXT + b"\n")]
    for _ in range(max(1, (megabytes << 20) // len(block))):
        parts.append(comp.compress(block))
    parts.append(comp.flush())
    return pdf_from_objects([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
                             _page(2, 4, 5), _stream(b"".join(parts), flate=True), _FONT])


def docx_zip_bomb(megabytes: int = 400) -> bytes:
    """A DOCX-shaped zip whose document.xml inflates to `megabytes` MB (honest headers)."""
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as z:
        z.writestr("[Content_Types].xml", '<?xml version="1.0"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types"/>')
        with z.open("word/document.xml", "w", force_zip64=True) as f:
            block = b"<w:p><w:r><w:t>bomb</w:t></w:r></w:p>" * (1 << 15)
            for _ in range((megabytes << 20) // len(block)):
                f.write(block)
    return buf.getvalue()


def docx_lying_sizes(real_megabytes: int = 50) -> bytes:
    """A zip bomb whose headers claim each member is tiny (only the CRC check can catch the lie)."""
    import io
    import struct
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", "<Types/>")
        z.writestr("word/document.xml", b"<w:p/>" * ((real_megabytes << 20) // 6))
    data = bytearray(buf.getvalue())
    # patch the uncompressed size in every local header (PK\3\4, offset 22) and central entry (PK\1\2, offset 24)
    for sig, off in ((b"PK\x03\x04", 22), (b"PK\x01\x02", 24)):
        i = data.find(sig)
        while i != -1:
            struct.pack_into("<I", data, i + off, 1000)
            i = data.find(sig, i + 4)
    return bytes(data)


def docx_many_entries(n: int = 20_000) -> bytes:
    import io
    import zipfile

    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as z:
        for i in range(n):
            z.writestr(f"junk/{i}.xml", "<x/>")
    return buf.getvalue()


def passage(text: str, *, chunk_id: str, source: str, doc_id: str | None = None, title: str = "Doc", ordinal: int = 0,
            page: int = 1, section: str = "", n_tokens: int = 10, rank: int = 1, score: float = 0.9,
            scores: dict[str, Any] | None = None) -> Passage:
    """A retrieved passage over a one-chunk text, for answer-stage tests that need no index."""
    chunk = Chunk(chunk_id=chunk_id, doc_id=doc_id or source, source=source, title=title, ordinal=ordinal, text=text,
                  char_start=0, char_end=len(text), page=page, page_end=page, section=section, n_tokens=n_tokens,
                  embed_text=text)
    return Passage(chunk=chunk, score=score, rank=rank, scores=dict(scores or {"dense": 0.8}))
