"""Shared helpers for the benchmark scripts: data locations, ObliQA corpus export, machine info."""

from __future__ import annotations

import json
import os
import platform
import re
import zipfile
from datetime import date
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
OBLIQA = SHARED / "eval" / "obliqa"
OUT = ROOT / "benchmarks" / "out"


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = ""
    try:
        kb = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1))  # type: ignore[union-attr]
        mem = f", {kb / 1024 / 1024:.0f} GiB"
    except (OSError, AttributeError):
        pass
    return f"{os.cpu_count()} cores {cpu}{mem}, Python {platform.python_version()}, {date.today().isoformat()}"


def _heading_like(text: str) -> bool:
    t = text.strip()
    return len(t) < 90 and "\n" not in t and not t.endswith(".") and (t.isupper() or len(t.split()) <= 8)


def export_obliqa_corpus(out_dir: Path, zip_path: Path = OBLIQA / "StructuredRegulatoryDocuments.zip") -> tuple[Path, int]:
    """Write the 40 ObliQA JSON documents as Markdown files (short all-caps passages become headings).

    Returns (folder, number of passages). Each passage keeps its PassageID at the start of its paragraph.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    with zipfile.ZipFile(zip_path) as z:
        for name in sorted(z.namelist()):
            if "__MACOSX" in name or not name.endswith(".json"):
                continue
            rows = json.loads(z.read(name))
            doc_id = Path(name).stem
            lines = [f"# ObliQA document {doc_id}", ""]
            for r in rows:
                text = (r.get("Passage") or "").strip()
                if not text:
                    continue
                n += 1
                pid = str(r.get("PassageID") or "").strip()
                if _heading_like(text):
                    lines += [f"## {pid} {text}".strip(), ""]
                else:
                    lines += [f"{pid} {text}".strip(), ""]
            (out_dir / f"obliqa-{int(doc_id):02d}.md").write_text("\n".join(lines), encoding="utf-8")
    return out_dir, n
