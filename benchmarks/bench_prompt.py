"""Evidence-first prompt vs five whole passages: prompt tokens and time to the first token, same model,
same questions, same retrieved passages, measured in one run (issue: first token >= 3x faster).

    .venv/bin/python benchmarks/bench_prompt.py [--index index/] [--n 12]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT, machine  # noqa: E402

from rag.answer.answerer import select_evidence  # noqa: E402
from rag.answer.evidence import Evidence  # noqa: E402
from rag.answer.prompts import build_messages  # noqa: E402
from rag.errors import RagError  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.settings import Settings  # noqa: E402


def first_token(gen, messages, reps: int) -> tuple[float, int]:
    times, n_prompt = [], 0
    for _ in range(reps):
        stats: list[float] = []
        for _piece in gen.stream(messages, 2, _stats=stats):
            pass
        times.append(stats[0])
        n_prompt = int(stats[1])
    return statistics.median(times), n_prompt


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, default=ROOT / "index")
    ap.add_argument("--n", type=int, default=12, help="questions (answerable ones of eval/shipped.jsonl)")
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    print(f"machine: {machine()}")
    s = Settings(index=args.index, corpus=ROOT / "corpus")
    svc = RagService(s)
    try:
        svc.docs()
    except RagError:
        s = Settings(corpus=ROOT / "corpus", index=Path(tempfile.mkdtemp(prefix="rag-prompt-")) / "index")
        svc = RagService.start(s)
    import json

    qs = [json.loads(line)["question"] for line in (ROOT / "eval" / "shipped.jsonl").read_text().splitlines() if '"answerable": true' in line]
    gen = svc.answerer.generator()
    first_token(gen, build_messages("warm up", []), 1)
    rows = []
    for q in qs[: args.n]:
        passages = svc.search([q], 5)[0]
        ev = Evidence(passages, svc.retriever.embedder)
        chosen = select_evidence(svc.retriever.embedder.encode([q])[0], ev, len(passages), s.answer.evidence_sentences)
        t_full, n_full = first_token(gen, build_messages(q, passages, s.answer.max_chars_per_passage), args.reps)
        t_ev, n_ev = first_token(gen, build_messages(q, passages, evidence=chosen), args.reps)
        rows.append((t_full, n_full, t_ev, n_ev))
    t_full = statistics.median(r[0] for r in rows)
    t_ev = statistics.median(r[2] for r in rows)
    print(f"\n{len(rows)} questions, {gen.name} on {gen.device} ({gen.dtype}), median of {args.reps} per prompt:")
    print("| prompt | prompt tokens (median) | first token (median) |")
    print("|---|---|---|")
    print(f"| five passages (up to {s.answer.max_chars_per_passage} chars each) | {statistics.median(r[1] for r in rows):.0f} | {t_full:.2f} s |")
    print(f"| evidence-first ({s.answer.evidence_sentences} sentences) | {statistics.median(r[3] for r in rows):.0f} | {t_ev:.2f} s |")
    print(f"ratio first token passages/evidence = {t_full / t_ev:.2f} (goal >= 3)")


if __name__ == "__main__":
    main()
