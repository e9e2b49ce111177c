"""Where the wall time of a cold `rag search` / `rag ask --answer-mode extractive` goes: imports, model
loads, work, for each inference backend (torch vs onnx), measured in one run.

    .venv/bin/python benchmarks/bench_cli.py --index /tmp/me/index [--runs 3]

Two views per backend:
- the real command (`rag search ...` in a fresh process): wall time and the child's CPU time (user+sys; on
  a shared machine CPU time is what the command itself cost, wall time includes waiting for a core);
- a phase breakdown in a fresh process (same code path as the command, through RagService): imports of the
  CLI and library, index open, embedder load, scorer load, the work; and the heaviest imported packages
  (`python -X importtime`).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

ROOT = Path(__file__).resolve().parent.parent
Q = "When must agencies designate a Chief AI Officer?"
HEAVY = (
    "torch",
    "transformers",
    "sentence_transformers",
    "onnxruntime",
    "tokenizers",
    "faiss",
    "bm25s",
    "llama_cpp",
    "gradio",
    "ray",
    "matplotlib",
    "scipy",
    "sklearn",
    "pandas",
    "typer",
    "rich",
    "pydantic",
    "pydantic_settings",
    "numpy",
    "rag",
)


def phases(command: str, index: str) -> dict:
    """Run in a child: time each phase of the command's path (wall and CPU)."""
    out: dict = {}
    t, c = time.perf_counter(), time.process_time()

    def mark(name: str) -> None:
        nonlocal t, c
        out[name] = {"wall_s": round(time.perf_counter() - t, 3), "cpu_s": round(time.process_time() - c, 3)}
        t, c = time.perf_counter(), time.process_time()

    import rag.cli  # noqa: F401
    from rag.cli.app import service, settings

    mark("import rag.cli")
    s = settings(index=Path(index))
    svc = service(s)
    store = svc.retriever.store
    mark("index open (FAISS, SQLite, BM25)")
    svc.retriever.embedder.encode(["warm"])
    mark(f"embedder load ({getattr(svc.retriever.embedder, 'backend', '?')})")
    if svc.retriever.scorer is not None:
        svc.retriever.scorer.scores("warm", ["up"])
        mark(f"scorer load ({svc.retriever.scorer.backend})")
    if command == "search":
        svc.search([Q], 3)
        mark("search (embed, hybrid, rerank 20)")
    else:
        svc.ask(Q, mode="extractive")
        mark("ask extractive (retrieve, rerank, answer)")
    del store
    out["modules"] = sorted(
        m
        for m in (
            "torch",
            "transformers",
            "sentence_transformers",
            "onnxruntime",
            "gradio",
            "ray",
            "matplotlib",
            "llama_cpp",
        )
        if m in sys.modules
    )
    return out


def run_cli(args: list[str], env: dict) -> tuple[float, float]:
    t = time.perf_counter()
    p = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, cwd=ROOT)
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status != 0:
        raise SystemExit(f"{' '.join(args)} failed: {p.stderr.read().decode()[-500:] if p.stderr else status}")
    return wall, ru.ru_utime + ru.ru_stime


def import_top(env: dict, command: str, index: str) -> dict:
    """Cumulative import time (s) of the heaviest packages on this path."""
    p = subprocess.run(
        [sys.executable, "-X", "importtime", __file__, "--phase", command, "--index", index],
        env=env,
        cwd=ROOT,
        capture_output=True,
        text=True,
    )
    top: dict[str, float] = {}
    for line in p.stderr.splitlines():
        m = re.match(r"import time:\s+\d+ \|\s+(\d+) \| (\s*)(\S+)", line)
        if m and m.group(3).split(".")[0] in HEAVY and "." not in m.group(3):
            top[m.group(3)] = max(top.get(m.group(3), 0.0), int(m.group(1)) / 1e6)
    return {k: round(v, 2) for k, v in sorted(top.items(), key=lambda kv: -kv[1]) if v >= 0.05}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--index", required=True)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--backends", nargs="+", default=["torch", "onnx"])
    ap.add_argument("--phase", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.phase:
        print(json.dumps(phases(a.phase, a.index)))
        return
    from benchmarks._common import machine

    print(f"# bench_cli on {machine()}; load average {os.getloadavg()[0]:.1f} at start")
    rag = str(ROOT / ".venv" / "bin" / "rag")
    cmds = {
        "search": [rag, "search", Q, "--index", a.index, "-k", "3"],
        "ask": [rag, "ask", Q, "--answer-mode", "extractive", "--index", a.index],
    }
    result: dict = {}
    for command, args in cmds.items():
        for b in a.backends:
            env = {**os.environ, "HF_HUB_OFFLINE": "1", "RAG_EMBEDDING__BACKEND": b, "RAG_RETRIEVAL__RERANK_BACKEND": b}
            runs = [run_cli(args, env) for _ in range(a.runs)]
            p = subprocess.run(
                [sys.executable, __file__, "--phase", command, "--index", a.index],
                env=env,
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            ph = json.loads(p.stdout.strip().splitlines()[-1]) if p.returncode == 0 else {"error": p.stderr[-300:]}
            r = {
                "wall_s_median": round(statistics.median(w for w, _ in runs), 2),
                "wall_s_min": round(min(w for w, _ in runs), 2),
                "cpu_s_median": round(statistics.median(c for _, c in runs), 2),
                "phases": ph,
                "imports_s": import_top(env, command, a.index),
            }
            result[f"{command}/{b}"] = r
            print(json.dumps({f"rag {command} [{b}]": r}), flush=True)
    for command in cmds:
        if all(f"{command}/{b}" in result for b in ("torch", "onnx")):
            t, o = result[f"{command}/torch"], result[f"{command}/onnx"]
            print(
                f"rag {command}: onnx/torch wall {o['wall_s_median'] / t['wall_s_median']:.2f}, cpu {o['cpu_s_median'] / t['cpu_s_median']:.2f}"
            )
    print(f"# load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
