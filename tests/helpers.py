"""Builders for fixture files of every supported format (written at test time, no binaries in git)."""

from __future__ import annotations

import zlib
from pathlib import Path


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
    info_ref = ""
    if title:
        objs.append(f"<< /Title ({_pdf_escape(title)}) /CreationDate (D:20240102030405Z) >>".encode())
        info_ref = f" /Info {len(objs)} 0 R"
    out = bytearray(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for i, body in enumerate(objs, 1):
        offsets.append(len(out))
        out += f"{i} 0 obj\n".encode() + body + b"\nendobj\n"
    xref = len(out)
    out += f"xref\n0 {len(objs) + 1}\n0000000000 65535 f \n".encode()
    for off in offsets:
        out += f"{off:010d} 00000 n \n".encode()
    out += f"trailer\n<< /Size {len(objs) + 1} /Root 1 0 R{info_ref} >>\nstartxref\n{xref}\n%%EOF\n".encode()
    return bytes(out)


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
