"""Issue 13, item 6: comparison questions on the shipped corpus, answered side by side.

    .venv/bin/python benchmarks/compare_eval.py --index /tmp/x/index [--json out.json]

For each question: whether both sides were found (the expected documents, or two periods); per side
block, whether it has points and every point cites a passage of that side's own documents; and whether
the expected relation is stated with a citation of the passage of the document that states it (for pairs
that no document relates: that no relation between the two is claimed). The questions were written
before this run; the first two are the issue's examples, the next two the brief's.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
from pathlib import Path

EO14110 = "federal-register/2023-24283-eo-14110-safe-secure-trustworthy-ai.pdf"
M2410 = "omb/M-24-10-advancing-governance-innovation-risk-management-agency-use-of-ai.pdf"
FACT = (
    "whitehouse/2025-04-07-fact-sheet-eliminating-barriers-for-federal-artificial-intelligence-use-and-procurement.md"
)
EO14179 = "whitehouse/2025-01-23-removing-barriers-to-american-leadership-in-artificial-intelligence.md"
EO14148 = "whitehouse/2025-01-20-initial-rescissions-of-harmful-executive-orders-and-actions.md"
NSM25 = (
    "whitehouse/2024-10-24-memorandum-on-advancing-the-united-states-leadership-in-artificial-intelligence-harnessing-"
    "artificial-intelligence-to-fulfill-national-security-objectives-and-fostering-the-safety-security.md"
)
GUIDE = "omb/2024-instructions-agency-ai-reporting-eo-14110.pdf"
EO14141 = "whitehouse/2025-01-14-executive-order-on-advancing-united-states-leadership-in-artificial-intelligence-infrastructure.md"
EO14318 = "whitehouse/2025-07-23-accelerating-federal-permitting-of-data-center-infrastructure.md"
NTIA = "ntia/2024-02-26-ntia-rfc-dual-use-foundation-models-widely-available-weights-89FR14059.pdf"
PLAN = "whitehouse/2025-07-23-americas-ai-action-plan.pdf"
GENESIS = "whitehouse/2025-11-24-launching-the-genesis-mission.md"
EDU = "whitehouse/2025-04-23-advancing-artificial-intelligence-education-for-american-youth.md"

# (question, expected sides (sources, or "period"), acceptable relations (by_source, type, target label) or None)
QUESTIONS = [
    (
        "How did OMB's rules for agency AI use change from M-24-10 to the April 2025 policies?",
        [[M2410], [FACT]],
        [(FACT, "supersedes", "M-24-10")],
    ),
    ("What did EO 14179 change about EO 14110?", [[EO14110], [EO14179]], [(EO14179, "directs_review", "EO 14110")]),
    (
        "What is the difference between EO 14110 and EO 14179 on AI safety?",
        [[EO14110], [EO14179]],
        [(EO14179, "directs_review", "EO 14110")],
    ),
    (
        "How did federal AI policy for agencies change between 2024 and 2025?",
        ["period", "period"],
        [(EO14148, "revokes", "EO 14110"), (FACT, "supersedes", "M-24-10")],
    ),
    (
        "Compare the initial rescissions order with the Safe, Secure, and Trustworthy AI order.",
        [[EO14110], [EO14148]],
        [(EO14148, "revokes", "EO 14110")],
    ),
    (
        "How does the October 2024 national security memorandum on AI differ from EO 14110?",
        [[EO14110], [NSM25]],
        [(NSM25, "implements", "EO 14110")],
    ),
    (
        "What changed between M-24-10 and OMB's August 2024 AI reporting guidance?",
        [[M2410], [GUIDE]],
        [(GUIDE, "implements", "M-24-10")],
    ),
    (
        "How did AI infrastructure policy change from the January 2025 infrastructure order to the July 2025 data center "
        "permitting order?",
        [[EO14141], [EO14318]],
        [(EO14318, "revokes", "EO 14141")],
    ),
    (
        "What is the difference between the NTIA request for comment on open model weights and America's AI Action Plan?",
        [[NTIA], [PLAN]],
        None,
    ),
    ("How do the Genesis Mission order and the AI education order differ?", [[EDU], [GENESIS]], None),
]


def main() -> None:
    from rag.service import RagService
    from rag.settings import Settings

    ap = argparse.ArgumentParser()
    ap.add_argument("--index", type=Path, required=True)
    ap.add_argument("--json", type=Path)
    ap.add_argument(
        "--before", action="store_true", help="the ordinary answer (side-by-side off): which documents it cites"
    )
    args = ap.parse_args()
    if args.before:
        from rag.answer import side_by_side

        side_by_side.compare_answer = lambda *a, **k: None  # type: ignore[assignment]
    svc = RagService(Settings(index=args.index))
    svc.ask("warm up: what is AI?")
    rows, tally = [], {"questions": 0, "sides_found": 0, "blocks": 0, "blocks_right": 0, "relations_right": 0}
    for q, want, rel in QUESTIONS:
        c0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
        ans = svc.ask(q)
        c1 = resource.getrusage(resource.RUSAGE_SELF)
        cmp = ans.comparison or {"sides": [], "relations": []}
        if args.before:  # does the ordinary answer cite both sides' documents at all?
            cited = {c.passage.chunk.source for c in ans.citations}
            both = all(w == "period" or set(w) & cited for w in want)
            tally["questions"] += 1
            tally["both_cited"] = tally.get("both_cited", 0) + both
            cpu = resource.getrusage(resource.RUSAGE_SELF)
            print(
                f"cites both sides={both} refused={ans.refused} cpu={cpu.ru_utime + cpu.ru_stime - c0.ru_utime - c0.ru_stime:.1f}s  {q}"
            )
            continue
        sides = cmp["sides"]
        found = len(sides) == 2 and all(
            (w == "period" and s["kind"] == "period") or (w != "period" and s["sources"] == w)
            for s, w in zip(sides, want, strict=True)
        )
        blocks = []
        for s in sides:
            cited = {ans.citations[n - 1].passage.chunk.source for n in s["citations"]}
            blocks.append(bool(cited) and cited <= set(s["sources"]))
        rels = cmp["relations"]
        if rel is None:
            names = [set(s["sources"]) | set(s["identifiers"]) for s in sides]
            rel_ok = found and not any(
                r["by_source"] in names[i]
                and any(r["target"] == n or n.endswith(str(r["target"])) for n in names[1 - i])
                for r in rels
                for i in (0, 1)
            )
        else:
            rel_ok = any(
                r["by_source"] == src
                and r["type"] == typ
                and r["target"] == tgt
                and r["n"]
                and ans.citations[r["n"] - 1].passage.chunk.source == src
                for r in rels
                for src, typ, tgt in rel
            )
        tally["questions"] += 1
        tally["sides_found"] += found
        tally["blocks"] += 2
        tally["blocks_right"] += sum(blocks) if found else 0
        tally["relations_right"] += rel_ok
        cpu = c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime
        rows.append(
            {
                "question": q,
                "sides_found": found,
                "blocks_right": blocks,
                "relation_right": rel_ok,
                "points": [s["points"] for s in sides],
                "relations": [r["text"] for r in rels],
                "cpu_s": round(cpu, 2),
                "wall_s": round(time.perf_counter() - t0, 2),
                "answer": ans.text,
            }
        )
        print(
            f"{'ok' if found and all(blocks) and rel_ok else '--'} sides={found} blocks={blocks} relation={rel_ok} "
            f"cpu={cpu:.1f}s  {q}"
        )
    print(json.dumps(tally))
    if args.json:
        args.json.write_text(json.dumps({"tally": tally, "rows": rows}, indent=1, ensure_ascii=False))


if __name__ == "__main__":
    main()
