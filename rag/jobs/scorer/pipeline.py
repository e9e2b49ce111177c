"""`rag train scorer` end to end: prepare (cached) -> train -> choose on validation -> test -> save.

Why one function: the shipped model is only trustworthy if the numbers in its card come from the same
run that wrote its weights; this runs every step in order and writes weights, scorer.json (config,
metrics, calibration, thresholds) and MODEL_CARD.md together.
"""

from __future__ import annotations

import dataclasses
import random
import time
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ConfigError
from rag.jobs.scorer.candidates import PSEUDO_MAX, Progress, _quiet, prepared_data
from rag.jobs.scorer.card import model_card, reproduce_command
from rag.jobs.scorer.evaluate import (
    answerability,
    calibration,
    evaluate_part,
    pair_labels,
    platt,
    score_candidates,
    sentence_eval,
    thresholds,
    tune_fusion,
)
from rag.jobs.scorer.train import Config, Group, build_groups, load_model, resolve_device, save, set_seed, train

USAGE = "score = model logit; rank candidates by w*minmax(score) + (1-w)*minmax(hybrid RRF score), w = fusion.all"


def default_base() -> str:
    """The shipped all-MiniLM-L6-v2 folder: the scorer's starting weights and the dense retriever."""
    from rag.index.embed import resolve_embedding_model
    from rag.settings import DEFAULT_EMBEDDING_MODEL

    return resolve_embedding_model(DEFAULT_EMBEDDING_MODEL)


def make_config(*, seed: int = 13, epochs: int | None = None, max_minutes: float | None = None, pseudo: int = PSEUDO_MAX,
                base: str | None = None, **overrides: Any) -> Config:
    """The recipe's Config with the given changes; unknown names are a ConfigError, not a silent no-op."""
    known = {f.name for f in dataclasses.fields(Config)}
    if bad := sorted(set(overrides) - known):
        raise ConfigError(f"unknown scorer setting(s): {', '.join(bad)} (known: {', '.join(sorted(known))})")
    if base and not Path(base).is_dir():
        raise ConfigError(f"--base {base}: no such model folder (a bi-encoder or a trained scorer's folder)")
    if not 0 <= overrides.get("null_frac", 0.0) < 1:
        raise ConfigError(f"null_frac {overrides['null_frac']} must be in [0, 1)")
    cfg = Config(base=base or default_base(), seed=seed, pseudo=pseudo, **overrides)
    if epochs is not None:
        cfg.epochs = epochs
    if max_minutes:
        cfg.max_train_s = float(max_minutes) * 60
    if cfg.epochs < 1 or cfg.max_length < 16 or cfg.batch_groups < 1 or cfg.n_neg < 1 or cfg.reader_repeat < 1:
        raise ConfigError("epochs, batch_groups, n_neg and reader_repeat must be >= 1 and max_length >= 16")
    return cfg


def train_scorer(policyqa: Path, obliqa: Path, out: Path, *, seed: int = 13, epochs: int | None = None, device: str = "auto",
                 max_minutes: float | None = None, limit: int | None = None, pseudo: int = PSEUDO_MAX,
                 base: str | None = None, threads: int | None = None, reader: Path | None = None, reader_index: Path | None = None,
                 progress: Progress = _quiet, **overrides: Any) -> dict[str, Any]:
    """Train, evaluate and save an evidence scorer into `out` (prepared data cached in `out/data`).

    `limit`: questions per set (taken in turn from train, validation and test documents) for quick
    runs; the split is the same as without it. `pseudo`: inverse-cloze pseudo-query groups (0: none).
    `reader` + `reader_index`: a reader-written question set and the index of its documents, a third set
    split by document (rag.jobs.scorer.reader). `overrides`: other `Config` fields (max_length,
    batch_groups, max_groups, ...). Returns what scorer.json holds.
    """
    import torch

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise ConfigError(f"unknown device '{device}' (use auto, cpu or cuda)")
    device = resolve_device(device)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError("--device cuda: no CUDA device is available (use --device cpu or auto)")
    if not Path(policyqa).is_file():
        raise ConfigError(f"PolicyQA: {policyqa} not found (pass --policyqa, the SQuAD-format dev.json)")
    if not (Path(obliqa) / "ObliQA_dev.json").is_file() or not (Path(obliqa) / "StructuredRegulatoryDocuments.zip").is_file():
        raise ConfigError(f"ObliQA: {obliqa} must hold ObliQA_dev.json and StructuredRegulatoryDocuments.zip (pass --obliqa)")
    if limit is not None and limit < 3:
        raise ConfigError("--limit must be at least 3 (one question each for training, validation and test)")
    if (reader is None) != (reader_index is None):
        raise ConfigError("--reader and --reader-index go together: the questions and the index of their documents")
    if threads:
        torch.set_num_threads(threads)
    out = Path(out)
    cfg = make_config(seed=seed, epochs=epochs, max_minutes=max_minutes, pseudo=pseudo, base=base, **overrides)
    t_all = time.time()
    payload, data_file = prepared_data(Path(policyqa), Path(obliqa), default_base(), out / "data", seed=seed, limit=limit,
                                       pseudo=pseudo, progress=progress)
    extra: dict[str, Any] = {"data": {"prepared": data_file.name, "limit": limit, "pseudo_mined": len(payload.get("pseudo", []))}}
    if reader is not None and reader_index is not None:
        from rag.jobs.scorer.reader import NAME, prepare_reader

        payload["sets"][NAME] = prepare_reader(Path(reader), Path(reader_index), default_base(), seed=seed, progress=progress)
        extra["data"]["reader"] = {"questions": str(reader), "index": str(reader_index),
                                   "documents": sorted({u.doc for u in payload["sets"][NAME]["dataset"].units})}  # all split
    extra["command"] = reproduce_command(policyqa, obliqa, out, cfg, device, limit, max_minutes, default_base(), reader, reader_index)
    return run_recipe(payload, cfg, device, out, extra, progress=progress, t_start=t_all)


def epoch_groups(groups: list[Group], cfg: Config) -> list[Group]:
    """The groups one epoch shows: the development sets' capped at `max_groups` (seeded sample), the reader
    set's all kept and repeated `reader_repeat` times: a few hundred in-domain groups would otherwise be ~5 %
    of an epoch. The training loop shuffles, and masks each repeat ("no answer") independently."""
    own = [g for g in groups if g.source.startswith("reader")]
    dev = [g for g in groups if not g.source.startswith("reader")]
    if cfg.max_groups and len(dev) > cfg.max_groups:
        dev = random.Random(cfg.seed).sample(dev, cfg.max_groups)
    return dev + own * cfg.reader_repeat


def run_recipe(payload: dict[str, Any], cfg: Config, device: str, out: Path, extra: dict[str, Any] | None = None,
               progress: Progress = _quiet, t_start: float | None = None) -> dict[str, Any]:
    """Train on the train part of prepared data, pick the epoch and fusion weight on validation, report
    test, save model + scorer.json (with `extra`) + MODEL_CARD.md into `out`; returns scorer.json."""
    t_all = t_start or time.time()
    groups = build_groups(payload, "train", sentences=cfg.sentences, pseudo=cfg.pseudo, swap=cfg.swap, seed=cfg.seed)
    groups = epoch_groups(groups, cfg)
    if not groups:
        raise ConfigError("no training groups: the training documents gave no question with a negative (raise --limit)")
    by_src = {k: sum(g.source == k for g in groups) for k in sorted({g.source for g in groups})}
    progress(f"{len(groups)} training groups on {device}", 0, None)
    set_seed(cfg.seed)  # the fresh head's initialisation comes from torch's generator
    model, tok = load_model(cfg.base, device, cfg.base_fp16)

    best: dict[str, Any] = {"score": -1.0}

    def on_epoch(epoch: int) -> dict[str, Any]:
        """Validation after each epoch; the best epoch by mean MRR@10 over the sets is kept."""
        sc = score_candidates(model, tok, payload, "val", device, cfg.max_length)
        r = evaluate_part(payload, "val", sc, {"all": 1.0})
        val = {n: {f"recall@{payload['sets'][n]['k']}": r[n]["reranked"][f"recall@{payload['sets'][n]['k']}"],
                   "mrr@10": r[n]["reranked"]["mrr@10"]} for n in r}
        score = float(np.mean([v["mrr@10"] for v in val.values()]))
        if score > best["score"]:
            best.update(score=score, epoch=epoch, state={k: v.detach().to("cpu", copy=True) for k, v in model.state_dict().items()})
        return {"val_reranked": val}

    stats = train(model, tok, groups, cfg, device, on_epoch if cfg.eval_every_epoch else None, progress=progress)
    if "state" in best:
        model.load_state_dict(best.pop("state"))
    progress("evaluating on validation and test documents", 0, None)
    val_scores = score_candidates(model, tok, payload, "val", device, cfg.max_length)
    fusion = tune_fusion(payload, val_scores)
    t0 = time.time()
    test_scores = score_candidates(model, tok, payload, "test", device, cfg.max_length)
    n_test_pairs = sum(len(x) for v in test_scores.values() for x in v)
    t_inf = time.time() - t0
    test = evaluate_part(payload, "test", test_scores, {"all": fusion["all"]})
    per = evaluate_part(payload, "test", test_scores, fusion["per_set"])
    for n in test:
        test[n]["fused_per_set_weight"] = per[n]["fused"]
    a, b = platt(*pair_labels(payload, "val", val_scores))
    calib = {"a": a, "b": b, "val": calibration(*pair_labels(payload, "val", val_scores), a, b),
             "test": calibration(*pair_labels(payload, "test", test_scores), a, b)}
    ans_val = answerability(payload, "val", val_scores)
    ans_test = answerability(payload, "test", test_scores)
    info: dict[str, Any] = {
        "config": dataclasses.asdict(cfg), "calibration": calib, "answerability_threshold": thresholds(ans_val, ans_test, a, b),
        "device": device, "train": stats, "best_epoch": best.get("epoch"), "fusion": fusion, "groups": by_src,
        "split": {n: s["split"] for n, s in payload["sets"].items()},
        "questions": {n: {p: sum(x == p for x in s["parts"]) for p in ("train", "val", "test")} for n, s in payload["sets"].items()},
        "headline": {n: [f"recall@{s['k']}", f"recall@{s['budget']}w"] for n, s in payload["sets"].items()},
        "test": test, "answerability_val": {n: {k: v for k, v in r.items() if k not in ("pos", "neg")} for n, r in ans_val.items()},
        "answerability_test": {n: {k: v for k, v in r.items() if k not in ("pos", "neg")} for n, r in ans_test.items()},
        "sentences_test": sentence_eval(model, tok, payload, "test", device, cfg.max_length),
        "inference": {"pairs": n_test_pairs, "s": round(t_inf, 1), "pairs_per_s": round(n_test_pairs / max(t_inf, 1e-9), 1)},
        "usage": USAGE,
    }
    info.update(extra or {})
    info["total_s"] = round(time.time() - t_all, 1)
    progress("saving", 0, None)
    save(model, tok, out, info)
    (out / "data").mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out / "data" / "scores.npz", **{f"{p}_{n}_{i}": v for p, d in (("val", val_scores), ("test", test_scores))
                                                        for n, lst in d.items() for i, v in enumerate(lst)})
    (out / "MODEL_CARD.md").write_text(model_card(info), encoding="utf-8")
    return info
