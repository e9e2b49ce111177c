"""Shared helpers for the benchmark scripts: data locations, ObliQA corpus export, machine info."""

from __future__ import annotations

import os
import platform
import re
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


def export_obliqa_corpus(out_dir: Path, zip_path: Path = OBLIQA / "StructuredRegulatoryDocuments.zip") -> tuple[Path, int]:
    from rag.jobs.datasets import export_obliqa

    return export_obliqa(zip_path, out_dir)
