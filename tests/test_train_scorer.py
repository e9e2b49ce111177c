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
    assert {"a", "b"} <= set(info["calibration"]) and set(info["answerability_threshold"]) >= {"policyqa", "obliqa"}
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
    shipped = _shipped_split()
    assert info["split"] == {k: shipped[k] for k in ("policyqa", "obliqa")}  # the same held-out documents as the full run
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


def test_swapped_groups_make_near_miss_questions_without_an_answer():
    from rag.jobs.scorer.train import Group, swapped_groups

    groups = [
        Group("How much prize money goes to the Growth Accelerator Fund?", "Up to $2 million of Growth Accelerator Fund prize funds.",
              ["Agencies shall report annually."], "obliqa"),
        Group("Which agency runs the Presidential Challenge for students?", "The Presidential Challenge for students is run by OSTP.",
              ["Funding is subject to appropriations."], "policyqa-para"),
        Group("pseudo query", "pseudo positive", ["pseudo negative"], "pseudo"),
    ]
    out = swapped_groups(groups, 10, seed=13)
    assert out and all(g.source == "swap" and not g.answerable for g in out)
    for g in out:
        orig = next(o for o in groups if o.positive == g.positive)
        assert g.query != orig.query and g.negatives == orig.negatives and orig.source != "pseudo"
        new_words = set(g.query.lower().split()) - set(orig.query.lower().split())
        assert new_words and not any(w.strip("?")[:5] in g.positive.lower() for w in new_words)  # the swapped-in word is not in the answer
    assert swapped_groups(groups, 10, seed=13) == out  # fixed seed, same groups
    assert swapped_groups([groups[2]], 10) == []  # pseudo-queries are never swapped


def test_group_loss_with_the_no_answer_option_is_not_shift_invariant():
    import torch

    from rag.jobs.scorer.train import Config, group_loss

    cfg, w = Config(null_frac=0.3), torch.tensor(7.0)
    logits = torch.tensor([[2.0, -1.0, -3.0], [1.5, 0.5, -2.0]])
    answers = torch.tensor([True, False])
    shifted = logits + 5.0
    plain = Config(bce_weight=0.0)
    # the ranking-only loss ignores a shift of a group's scores; with the "no answer" option a group without an
    # answer pays for scoring above the fixed level, one with an answer for scoring below it
    assert torch.isclose(group_loss(logits, torch.tensor([True, True]), plain, False, w),
                         group_loss(shifted, torch.tensor([True, True]), plain, False, w))
    nb = Config(null_frac=0.3, bce_weight=0.0)
    assert group_loss(shifted[1:], answers[1:], nb, True, w) > group_loss(logits[1:], answers[1:], nb, True, w)
    assert group_loss(logits[:1] - 5.0, answers[:1], nb, True, w) > group_loss(logits[:1], answers[:1], nb, True, w)
    assert group_loss(logits, answers, cfg, True, w).requires_grad is False and group_loss(logits, answers, cfg, True, w) > 0


@needs_eval
def test_train_scorer_further_with_no_answer_groups(cli, capsys, tmp_path):
    out = tmp_path / "scorer"
    code, stdout, err = cli(capsys, "train", "scorer", "--policyqa", str(POLICYQA), "--obliqa", str(OBLIQA), "-o", str(out),
                            "--limit", "12", "--epochs", "1", "--max-length", "64", "--device", "cpu", "--pseudo", "0",
                            "--base", str(SHIPPED), "--null-frac", "0.5", "--swap", "4", "--lr", "2e-5")
    assert code == 0, err
    info = json.loads((out / "scorer.json").read_text(encoding="utf-8"))
    assert info["config"]["null_frac"] == 0.5 and info["config"]["base"] == str(SHIPPED) and info["groups"].get("swap", 0) >= 1
    assert {"policyqa", "obliqa"} <= set(info["answerability_val"])
    card = (out / "MODEL_CARD.md").read_text(encoding="utf-8")
    assert "trained further" in card and "null_frac 0.5" in card and "initialised from all-MiniLM" not in card
    command = info["command"]
    assert "--null-frac 0.5" in command and "--swap 4" in command and f"--base {SHIPPED}" in command and "--lr 2e-05" in command
    code, _, err = cli(capsys, "train", "scorer", "--policyqa", str(POLICYQA), "--obliqa", str(OBLIQA), "-o", str(tmp_path / "x"),
                       "--limit", "12", "--base", str(tmp_path / "missing"))
    assert code != 0 and "missing" in err


def test_reranker_orders_by_the_fusion_weight_tuned_on_validation():
    import numpy as np

    from rag.retrieve.rerank import Reranker, fuse
    from rag.types import Chunk, Passage

    logits, retrieval = np.array([3.0, 2.9, -1.0]), [0.01, 0.03, 0.02]
    assert list(np.argsort(-fuse(logits, retrieval, 1.0))) == [0, 1, 2]  # w = 1: the cross-encoder alone
    assert list(np.argsort(-fuse(logits, retrieval, 0.7))) == [1, 0, 2]  # a near tie goes to the retrievers' favourite
    assert list(np.argsort(-fuse(logits, [0.02, 0.02, 0.02], 0.5))) == [0, 1, 2]  # flat retrieval scores change nothing

    weight = json.loads((SHIPPED / "scorer.json").read_text(encoding="utf-8"))["fusion"]["all"]
    r = Reranker(str(SHIPPED), device="cpu", backend="torch")

    def hit(text: str, fused: float) -> Passage:
        c = Chunk(chunk_id=text[:8], doc_id="d", source="s.md", title="T", ordinal=0, text=text, char_start=0, char_end=len(text),
                  page=1, page_end=1, section="", n_tokens=len(text.split()), embed_text=text)
        return Passage(chunk=c, score=fused, rank=1, scores={"fused": fused})

    hits = [hit("Congress appropriated funds for quantum-safe upgrades in fiscal year 2025.", 0.015),
            hit("The report recommends faster interconnection studies for solar and storage.", 0.033),
            hit("Only utilities serving fewer than 10,000 people are eligible.", 0.014)]
    out = r.rerank("faster interconnection studies", hits)
    assert r.fusion_weight == weight and 0 < weight <= 1
    expected = np.argsort(-fuse(np.array([p.scores["rerank"] for p in out]), [p.scores["fused"] for p in out], weight), kind="stable")
    assert list(expected) == [0, 1, 2]  # the returned order is the fused order
    r.fusion_weight = 1.0
    alone = [p.scores["rerank"] for p in r.rerank("faster interconnection studies", hits)]
    assert alone == sorted(alone, reverse=True)  # w = 1: the cross-encoder's order
