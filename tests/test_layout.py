"""The package's shape: stage packages read as the data flow and imports only point down it.

ingest -> index -> retrieve -> answer -> jobs -> service -> faces (CLI, web UI), over a base of types,
settings, errors, faults and shared text utilities. Every import is checked, also those inside
functions (lazy imports are still dependencies).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
STAGES = ["base", "ingest", "index", "retrieve", "answer", "jobs", "service", "cli"]
BASE = {"rag", "rag.types", "rag.settings", "rag.errors", "rag.faults", "rag.text"}
FACE_MAY_IMPORT = {"rag.service", "rag.types", "rag.settings", "rag.errors"}
MAX_LINES = 450


def stage_of(module: str) -> str:
    parts = module.split(".")
    if parts[0] != "rag":
        return "outside"
    if module in BASE or (len(parts) > 1 and ".".join(parts[:2]) in BASE):
        return "base"
    return parts[1]


def modules(folder: str) -> dict[str, Path]:
    out = {}
    for f in sorted((ROOT / folder).rglob("*.py")):
        parts = list(f.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        out[".".join(parts)] = f
    return out


def imports_of(path: Path, module: str) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name) for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative: resolve against this module's package
                pkg = module.split(".")
                if path.name != "__init__.py":
                    pkg = pkg[:-1]
                base = pkg[: len(pkg) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            found.append((node.lineno, target))
            found += [(node.lineno, f"{target}.{a.name}") for a in node.names if f"{target}.{a.name}" in ALL]
    return found


ALL = {**modules("rag"), **modules("ui")}


def test_every_module_belongs_to_a_stage():
    for mod in modules("rag"):
        assert stage_of(mod) in STAGES, f"{mod} is in no stage package ({', '.join(STAGES)})"


@pytest.mark.parametrize("module", sorted(modules("rag")))
def test_imports_point_down_the_flow(module):
    path = ALL[module]
    own = STAGES.index(stage_of(module))
    for line, target in imports_of(path, module):
        top = target.split(".")[0]
        assert top != "ui", f"{module}:{line} imports the web UI ({target}); faces are looked up, never imported"
        if top != "rag":
            continue
        st = stage_of(target)
        assert STAGES.index(st) <= own, f"{module}:{line} ({stage_of(module)}) imports {target} ({st}), a later stage"
        if st == "cli":
            assert stage_of(module) == "cli", f"{module}:{line} imports the CLI"


@pytest.mark.parametrize("module", sorted(m for m in ALL if m.startswith(("rag.cli", "ui"))))
def test_faces_use_only_the_service_door(module):
    for line, target in imports_of(ALL[module], module):
        if not target.startswith("rag") or target.startswith("rag.cli") or target == "rag":
            continue
        assert any(target == m or target.startswith(m + ".") for m in FACE_MAY_IMPORT), \
            f"{module}:{line} imports {target}; faces may import only {sorted(FACE_MAY_IMPORT)}"


def test_no_module_is_a_room_doing_several_jobs():
    big = {m: n for m, p in ALL.items() if (n := len(p.read_text().splitlines())) > MAX_LINES}
    assert not big, f"modules over {MAX_LINES} lines: {big}"


def test_the_check_catches_an_upward_import(tmp_path):
    """The rule can fail: an answer-stage import inside the index stage is reported."""
    fake = tmp_path / "bad.py"
    fake.write_text("def f():\n    from rag.answer.answerer import Answerer\n")
    (line, target), *_ = imports_of(fake, "rag.index.bad")
    assert STAGES.index(stage_of(target)) > STAGES.index(stage_of("rag.index.bad"))
