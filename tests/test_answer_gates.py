"""benchmarks/answer_gates.py: simulating the gates from a gates-off run, the choice rule, the NTIA letter split
(hand-made records; no index, no model)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

_spec = importlib.util.spec_from_file_location("answer_gates", Path(__file__).resolve().parent.parent / "benchmarks" / "answer_gates.py")
g = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(g)


def rec(answerable: bool, sim: float, p: float | None = 0.5, best: float | None = 0.6, refused: bool = False, key: bool = True) -> dict:
    return {"answerable": answerable, "sim": sim, "p": p, "best": best, "refused": refused, "key": key, "gold_doc": True if answerable else None}


def test_a_signal_below_its_gate_refuses_and_an_earlier_refusal_stays() -> None:
    assert not g.refused(rec(True, 0.50), 0.45, 0.03, 0.30)
    assert g.refused(rec(True, 0.44), 0.45, 0.03, 0.30)  # dense floor
    assert g.refused(rec(True, 0.50, p=0.02), 0.45, 0.03, 0.30)  # scorer probability
    assert g.refused(rec(True, 0.50, best=0.2), 0.45, 0.03, 0.30)  # best sentence
    assert g.refused(rec(True, 0.90, refused=True), -1, 0, -1)  # refused for another reason ("no number of ..."): whatever the gates
    assert not g.refused(rec(True, 0.50, p=None, best=None), 0.45, 0.03, 0.30)  # no scorer: its gate gates nothing


def test_set_stats_counts_key_facts_and_gold_documents_only_for_answers_given() -> None:
    rows = [rec(True, 0.6), rec(True, 0.4), rec(True, 0.6, key=False), rec(False, 0.6), rec(False, 0.3)]
    st = g.set_stats(rows, 0.45, 0.03, 0.30)
    assert (st["answerable_refused"], st["unanswerable_refused"], st["key_fact"], st["gold_doc_of"]) == (1, 1, 1, 2)
    assert abs(st["balanced_accuracy"] - 0.5 * (2 / 3 + 1 / 2)) < 1e-9


def test_sweep_finds_the_floor_that_separates_and_breaks_ties_towards_the_defaults() -> None:
    sets = {"a": [rec(True, 0.60), rec(True, 0.55), rec(False, 0.50), rec(False, 0.40)],
            "b": [rec(True, 0.58), rec(False, 0.52)]}
    ranked = g.sweep(sets, [0.40, 0.45, 0.50, 0.53, 0.54, 0.60], [0.03], [0.30])
    assert ranked[0][0] == 1.0 and ranked[0][1] == 0.53  # 0.53 and 0.54 both separate; 0.53 is nearer 0.45
    assert ranked[-1][0] < 1.0


def test_the_reader_set_splits_by_letter(tmp_path: Path) -> None:
    lines = [{"question": f"q{i}", "topic_doc": doc} for i, doc in enumerate(
        ["NTIA-2023-0009-0158.pdf", "NTIA-2023-0009-0233.pdf", "NTIA-2023-0009-0211.pdf", "NTIA-2023-0009-0211.pdf"])]
    src = tmp_path / "r.jsonl"
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    assert g.split_reader_set(src, tmp_path / "out") == {"test": 1, "val": 1, "train": 2}
    assert json.loads((tmp_path / "out" / "val.jsonl").read_text().splitlines()[0])["topic_doc"] == "NTIA-2023-0009-0233.pdf"


def test_the_real_reader_set_gives_the_documented_split_sizes(tmp_path: Path) -> None:
    sizes = g.split_reader_set(Path(__file__).resolve().parent.parent / "eval" / "ntia-reader.jsonl", tmp_path)
    assert sizes == {"test": 113, "val": 41, "train": 205}  # benchmarks/RESULTS.md, session 7
