"""The evidence scorer: the shipped weights load and rank, the split by document is deterministic, and
`rag train scorer` trains, evaluates and saves a loadable model on a tiny slice of the dev sets."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EVAL = Path(__file__).resolve().parents[2] / "shared" / "eval"
SHIPPED = ROOT / "rag" / "retrieve" / "models" / "evidence-scorer"
POLICYQA, OBLIQA = EVAL / "policyqa" / "dev.json", EVAL / "obliqa"

needs_eval = pytest.mark.skipif(not (POLICYQA.is_file() and (OBLIQA / "ObliQA_dev.json").is_file()),
                                reason="PolicyQA/ObliQA dev sets not found in ../shared/eval")


def _shipped_split() -> dict[str, dict[str, list[str]]]:
    return json.loads((SHIPPED / "scorer.json").read_text(encoding="utf-8"))["split"]


def test_shipped_model_loads_and_ranks_evidence_first():
    from sentence_transformers import CrossEncoder

    for name in ("config.json", "model.safetensors", "tokenizer.json", "tokenizer_config.json", "scorer.json", "MODEL_CARD.md"):
        assert (SHIPPED / name).is_file(), name
    info = json.loads((SHIPPED / "scorer.json").read_text(encoding="utf-8"))
    assert {"a", "b"} <= set(info["calibration"]) and set(info["answerability_threshold"]) == {"policyqa", "obliqa"}
    model = CrossEncoder(str(SHIPPED), max_length=256, device="cpu")
    question = "How long do you keep my personal information?"
    relevant = ("We retain your personal information for as long as your account is active and for up to two years "
                "after it is closed, after which it is deleted.")
    irrelevant = "Our stores are open from 9 am to 9 pm on weekdays and offer free parking for customers."
    s_rel, s_irr = model.predict([(question, relevant), (question, irrelevant)])
    assert s_rel > s_irr


def test_shipped_card_names_the_held_out_documents_and_the_command():
    card = (SHIPPED / "MODEL_CARD.md").read_text(encoding="utf-8")
    for name, split in _shipped_split().items():
        for doc in split["test"]:
            assert doc in card, (name, doc)
    assert "rag train scorer" in card and "--device cuda" in card and "Apache-2.0" in card


@needs_eval
def test_split_by_document_is_deterministic_and_matches_the_shipped_model():
    from rag.jobs.scorer.data import (
        SPLIT_SIZES,
        load_obliqa,
        load_policyqa,
        question_split,
        select_questions,
        split_docs,
    )

    for ds in (load_policyqa(POLICYQA), load_obliqa(OBLIQA)):
        docs = {u.doc for u in ds.units}
        a = split_docs(docs, *SPLIT_SIZES[ds.name], seed=13)
        b = split_docs(sorted(docs, reverse=True), *SPLIT_SIZES[ds.name], seed=13)
        assert a == b == _shipped_split()[ds.name]
        assert not set(a["train"]) & set(a["test"]) and not set(a["val"]) & (set(a["train"]) | set(a["test"]))
        assert set(a["train"]) | set(a["val"]) | set(a["test"]) == docs
        assert split_docs(docs, *SPLIT_SIZES[ds.name], seed=14) != a
        parts = [question_split(q, a) for q in ds.questions]
        keep = select_questions(parts, 12)
        assert keep == select_questions(parts, 12) and len(keep) == 12
        assert {parts[i] for i in keep} == {"train", "val", "test"}


@pytest.mark.slow
@needs_eval
def test_train_scorer_command_on_a_tiny_slice(cli, capsys, tmp_path):
    out = tmp_path / "scorer"
    code, stdout, err = cli(capsys, "train", "scorer", "--policyqa", str(POLICYQA), "--obliqa", str(OBLIQA), "-o", str(out),
                            "--limit", "12", "--epochs", "1", "--max-length", "64", "--device", "cpu", "--pseudo", "8")
    assert code == 0, err
    summary = stdout.strip().splitlines()[-1]
    assert summary.startswith("scorer: 1 epochs") and "policyqa recall@5" in summary and "obliqa recall@10" in summary

    info = json.loads((out / "scorer.json").read_text(encoding="utf-8"))
    assert info["config"]["max_length"] == 64 and info["config"]["epochs"] == 1 and info["device"] == "cpu"
    assert info["split"] == _shipped_split()  # the same held-out documents as the full run
    for split in info["split"].values():
        assert not set(split["train"]) & set(split["test"])
    assert all(sum(n.values()) == 12 and min(n.values()) >= 1 for n in info["questions"].values())
    assert {"a", "b", "val", "test"} <= set(info["calibration"]) and info["groups"]["pseudo"] == 8
    for name in ("policyqa", "obliqa"):
        assert {"bm25", "dense", "hybrid", "reranked", "fused"} <= set(info["test"][name])
    assert "rag train scorer" in (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    cached = sorted((out / "data").glob("prepared-*.json.gz"))
    assert len(cached) == 1

    from sentence_transformers import CrossEncoder

    scores = CrossEncoder(str(out), max_length=64, device="cpu").predict([("what is kept?", "Data is kept for a year.")])
    assert len(scores) == 1

    # the same seed again: the cached data are reused, and on CPU the run repeats exactly
    from rag.service import RagService
    from rag.settings import load_settings

    again = RagService(load_settings()).train_scorer(POLICYQA, OBLIQA, out, limit=12, epochs=1, max_length=64, device="cpu", pseudo=8)
    assert sorted((out / "data").glob("prepared-*.json.gz")) == cached
    assert again["split"] == info["split"] and again["groups"] == info["groups"] and again["questions"] == info["questions"]
    assert again["test"] == info["test"] and again["calibration"] == info["calibration"]
