"""Issue 12: the answerability gates, measured without re-running the answer step per setting.

    .venv/bin/python benchmarks/answer_gates.py splits                       # NTIA reader set -> test / val / train files
    .venv/bin/python benchmarks/answer_gates.py run QUESTIONS.jsonl --index DIR -o run.jsonl [--split calibrate]
    .venv/bin/python benchmarks/answer_gates.py sweep run1.jsonl run2.jsonl ...   # simulate the gates, choose them

`run` answers every question with the two refusal gates and the best-sentence threshold switched off
(`answer.refusal_threshold` -1, `answer.answerable_probability` 0, `answer.extractive_threshold` -1) and
records, per question, the three signals the gates read (best dense cosine of a passage, the evidence
scorer's calibrated probability, the best sentence's score), the answer and whether it holds a gold key fact
and cites a gold document. A refusal for any other reason (a missing number of the kind asked, ...) is kept.
`sweep` then simulates any gate setting from those records (refused = refused anyway, or a signal below its
gate): simulating the defaults reproduces `rag eval --answers` on the same index. The rule used since session
7 to choose the gates: maximise the mean over the question sets of balanced accuracy (answerable answered,
unanswerable refused), ties to the setting nearest the current one; thresholds are chosen on the tuning sets
(calibrate half, eval/shipped.jsonl, NTIA validation and training letters), never on the report half or the
NTIA test letters they are reported with.

The index is opened as it is: no build (the corpus folder of the settings may hold other documents).
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import ROOT  # noqa: E402

DEFAULTS = {"floor": 0.45, "probability": 0.03, "sentence": 0.30}  # rag.settings.AnswerSettings
# The NTIA reader set split by letter (scorer seeded shuffle, session 7): test Meta, a16z, Hugging Face;
# validation Anthropic, Microsoft; training the other seven.
NTIA_TEST = ("NTIA-2023-0009-0158.pdf", "NTIA-2023-0009-0252.pdf", "NTIA-2023-0009-0262.pdf")
NTIA_VAL = ("NTIA-2023-0009-0233.pdf", "NTIA-2023-0009-0277.pdf")


def split_reader_set(path: Path, out_dir: Path) -> dict[str, int]:
    """eval/ntia-reader.jsonl -> test.jsonl, val.jsonl, train.jsonl by the letter each question is about."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows: dict[str, list[str]] = {"test": [], "val": [], "train": []}
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip():
            doc = json.loads(line)["topic_doc"]
            rows["test" if doc in NTIA_TEST else "val" if doc in NTIA_VAL else "train"].append(line)
    for name, lines in rows.items():
        (out_dir / f"{name}.jsonl").write_text("".join(x + "\n" for x in lines), encoding="utf-8")
    return {k: len(v) for k, v in rows.items()}


def refused(r: dict[str, Any], floor: float, probability: float, sentence: float) -> bool:
    """Would the answer be refused with these gates? (Signals absent from a record gate nothing.)"""
    def below(key: str, gate: float) -> bool:
        return r.get(key) is not None and r[key] < gate

    return bool(r["refused"]) or below("sim", floor) or below("p", probability) or below("best", sentence)


def set_stats(rows: Sequence[dict[str, Any]], floor: float, probability: float, sentence: float) -> dict[str, Any]:
    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]
    ar = sum(refused(r, floor, probability, sentence) for r in ans)
    ur = sum(refused(r, floor, probability, sentence) for r in una)
    cited = [r for r in ans if r.get("gold_doc") is not None and not refused(r, floor, probability, sentence)]
    return {
        "answerable": len(ans), "answerable_refused": ar, "unanswerable": len(una), "unanswerable_refused": ur,
        "key_fact": sum(bool(r.get("key")) and not refused(r, floor, probability, sentence) for r in ans),
        "gold_doc": sum(bool(r["gold_doc"]) for r in cited), "gold_doc_of": len(cited),
        "balanced_accuracy": 0.5 * ((1 - ar / len(ans) if ans else 1.0) + (ur / len(una) if una else 1.0)),
    }


def sweep(sets: dict[str, list[dict[str, Any]]], floors: Iterable[float], probabilities: Iterable[float],
          sentences: Iterable[float]) -> list[tuple[float, float, float, float]]:
    """(mean balanced accuracy, floor, probability, sentence) for every grid point, best first; ties go to the
    point nearest the defaults."""
    out = []
    for f, p, s in itertools.product(floors, probabilities, sentences):
        mean = sum(set_stats(rows, f, p, s)["balanced_accuracy"] for rows in sets.values()) / len(sets)
        out.append((round(mean, 4), f, p, s))
    d = DEFAULTS
    out.sort(key=lambda x: (-x[0], abs(x[1] - d["floor"]) + abs(x[2] - d["probability"]) + abs(x[3] - d["sentence"])))
    return out


def run(questions: Path, index: Path, out: Path, split: str | None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from rag.jobs.datasets import load_jsonl
    from rag.jobs.metrics import contains_answer
    from rag.service import RagService
    from rag.settings import load_settings

    s = load_settings(index=index, **{"answer.refusal_threshold": -1.0, "answer.answerable_probability": 0.0,
                                      "answer.extractive_threshold": -1.0})
    svc = RagService(s)  # no build: the index is given as it is
    qs = [q for q in load_jsonl(questions).questions if split is None or q.split == split]
    t0 = time.perf_counter()
    with out.open("w", encoding="utf-8") as f:
        for i, q in enumerate(qs, 1):
            a = svc.ask(q.question, filters=q.filter)
            ev = a.record.get("evidence", {})
            cited = {c.passage.chunk.source for c in a.citations}
            f.write(json.dumps({
                "id": q.id, "question": q.question, "answerable": q.answerable, "answers": q.answers, "answer": a.text,
                "refused": a.refused, "reason": a.record.get("refusal_reason"), "sim": ev.get("best_similarity"),
                "p": ev.get("answer_probability"), "best": ev.get("best_sentence"),
                "key": bool(contains_answer("" if a.refused else a.text, q.answers)) if q.answers else None,
                "gold_doc": (bool(cited & set(q.gold_sources)) if not a.refused else None) if q.gold_sources else None,
            }) + "\n")
            print(f"\r{questions.name}: {i}/{len(qs)} questions, {time.perf_counter() - t0:.0f} s", end="", file=sys.stderr, flush=True)
    print(f"\n{questions.name}{' (' + split + ')' if split else ''}: {len(qs)} questions answered with the gates off "
          f"in {time.perf_counter() - t0:.0f} s -> {out}", file=sys.stderr)


def _grid(lo: float, hi: float, step: float) -> list[float]:
    n = int(round((hi - lo) / step))
    return [round(lo + i * step, 4) for i in range(n + 1)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = ap.add_subparsers(dest="what", required=True)
    sp = sub.add_parser("splits", help="write the NTIA reader set's test / val / train files")
    sp.add_argument("--reader", type=Path, default=ROOT / "eval" / "ntia-reader.jsonl")
    sp.add_argument("-o", "--out", type=Path, default=ROOT / "benchmarks" / "out" / "ntia-splits")
    rp = sub.add_parser("run", help="answer a question set with the gates off, recording their signals")
    rp.add_argument("questions", type=Path)
    rp.add_argument("--index", type=Path, required=True)
    rp.add_argument("-o", "--out", type=Path, required=True)
    rp.add_argument("--split", help="only this split (calibrate / report in eval/paraphrased.jsonl)")
    wp = sub.add_parser("sweep", help="simulate the gates on gates-off runs and choose them")
    wp.add_argument("runs", type=Path, nargs="+")
    wp.add_argument("--floors", type=float, nargs=3, default=(0.20, 0.55, 0.025), metavar=("LO", "HI", "STEP"))
    wp.add_argument("--probabilities", type=float, nargs=3, default=(0.0, 0.30, 0.01), metavar=("LO", "HI", "STEP"))
    wp.add_argument("--sentences", type=float, nargs=3, default=(0.30, 0.30, 0.05), metavar=("LO", "HI", "STEP"))
    wp.add_argument("--top", type=int, default=10)
    a = ap.parse_args()
    if a.what == "splits":
        sizes = split_reader_set(a.reader, a.out)
        print(f"NTIA reader set: {sizes['test']} test, {sizes['val']} validation, {sizes['train']} training questions -> {a.out}")
    elif a.what == "run":
        run(a.questions, a.index, a.out, a.split)
    else:
        sets = {p.name: [json.loads(x) for x in p.read_text(encoding="utf-8").splitlines() if x.strip()] for p in a.runs}
        d = DEFAULTS
        for name, rows in sets.items():
            st = set_stats(rows, d["floor"], d["probability"], d["sentence"])
            print(f"{name} at the defaults: answerable refused {st['answerable_refused']}/{st['answerable']}, unanswerable refused "
                  f"{st['unanswerable_refused']}/{st['unanswerable']}, key fact {st['key_fact']}/{st['answerable']}, gold document "
                  f"{st['gold_doc']}/{st['gold_doc_of']}, balanced accuracy {st['balanced_accuracy']:.3f}")
        ranked = sweep(sets, _grid(*a.floors), _grid(*a.probabilities), _grid(*a.sentences))
        base = next((x for x in ranked if (x[1], x[2], x[3]) == (d["floor"], d["probability"], d["sentence"])), None)
        for mean, f, p, s in ranked[: a.top]:
            print(f"floor {f:.3f}  probability {p:.3f}  sentence {s:.2f}: mean balanced accuracy {mean:.4f}")
        print(f"{len(ranked)} settings over {len(sets)} sets; best {ranked[0][0]:.4f}"
              + (f", defaults {base[0]:.4f}" if base else " (defaults outside the grid)"))


if __name__ == "__main__":
    main()
