"""MODEL_CARD.md for a trained evidence scorer, written from its scorer.json.

Why generated: a card typed by hand drifts from the weights; this one is written by the run that
wrote them, with the command that reproduces it. (The shipped model's card was written by hand from
the same numbers, with more context; see rag/retrieve/models/evidence-scorer/MODEL_CARD.md.)
"""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Any

from rag.jobs.scorer.train import Config

DEFAULTS = Config()


def reproduce_command(policyqa: Path, obliqa: Path, out: Path, cfg: Config, device: str, limit: int | None,
                      max_minutes: float | None, base_default: str = "", reader: Path | None = None,
                      reader_index: Path | None = None) -> str:
    """The `rag train scorer` line that repeats a run (options left at the recipe's value omitted)."""
    parts = ["rag", "train", "scorer", "--policyqa", str(policyqa), "--obliqa", str(obliqa), "-o", str(out),
             "--device", device, "--seed", str(cfg.seed), "--epochs", str(cfg.epochs)]
    if limit is not None:
        parts += ["--limit", str(limit)]
    if cfg.pseudo != DEFAULTS.pseudo:
        parts += ["--pseudo", str(cfg.pseudo)]
    if cfg.max_length != DEFAULTS.max_length:
        parts += ["--max-length", str(cfg.max_length)]
    if max_minutes:
        parts += ["--max-minutes", f"{max_minutes:g}"]
    if cfg.null_frac != DEFAULTS.null_frac:
        parts += ["--null-frac", f"{cfg.null_frac:g}"]
    if cfg.swap != DEFAULTS.swap:
        parts += ["--swap", str(cfg.swap)]
    if cfg.lr != DEFAULTS.lr:
        parts += ["--lr", f"{cfg.lr:g}"]
    if cfg.batch_groups != DEFAULTS.batch_groups:
        parts += ["--batch-groups", str(cfg.batch_groups)]
    if cfg.max_groups != DEFAULTS.max_groups:
        parts += ["--max-groups", str(cfg.max_groups)]
    if reader is not None and reader_index is not None:
        parts += ["--reader", str(reader), "--reader-index", str(reader_index)]
        if cfg.reader_repeat != DEFAULTS.reader_repeat:
            parts += ["--reader-repeat", str(cfg.reader_repeat)]
    if cfg.base and cfg.base != base_default:
        parts += ["--base", cfg.base]
    return shlex.join(parts)


def _f(v: Any) -> str:
    return f"{v:.3f}" if isinstance(v, float) else "-" if v is None else str(v)


def _table(test: dict[str, Any], name: str) -> list[str]:
    r = test[name]
    cols = [c for c in r["hybrid"] if c != "questions"]
    lines = [f"| ranking | {' | '.join(cols)} |", "|---" * (len(cols) + 1) + "|"]
    for mode in ("bm25", "dense", "hybrid", "reranked", "fused"):
        lines.append(f"| {mode} | " + " | ".join(_f(r[mode].get(c)) for c in cols) + " |")
    return lines


def _origin(info: dict[str, Any]) -> list[str]:
    """Where the weights started: the bi-encoder (a fresh head) or, with --base, a trained scorer."""
    base = str(info["config"].get("base", ""))
    use = ("Use: rank the hybrid top 20-30 by w * minmax(logit) + (1 - w) * minmax(RRF score), w = fusion.all "
           f"({info.get('fusion', {}).get('all', 1.0)}); the calibrated probability is the answerability signal.")
    if (Path(base) / "scorer.json").is_file():  # `save` writes it beside every trained scorer
        head = (f"A cross-encoder (question, text) -> relevance logit, a trained scorer ({base}) trained further with "
                "`rag train scorer --base`")
        null = info["config"].get("null_frac", 0.0)
        head += f" and a fixed 'no answer' option (null_frac {null:g})." if null else "."
        return [head, use]
    return ["A cross-encoder (question, text) -> relevance logit, initialised from all-MiniLM-L6-v2 (Apache-2.0) with a",
            "new one-logit head, trained with `rag train scorer`. " + use]


def _reader_line(info: dict[str, Any]) -> list[str]:
    r = info.get("data", {}).get("reader")
    if not r:
        return []
    return [f"- Reader-written set: {r['questions']} over the {len(r['documents'])} documents indexed in {r['index']}",
            "  (questions in a reader's words with the answering sentence quoted, and near-topic questions no document answers)."]


def model_card(info: dict[str, Any]) -> str:
    """The card: what the model is, its data and split, recipe, held-out results, calibration, use."""
    cfg, q = info["config"], info.get("questions", {})
    limit = info.get("data", {}).get("limit")
    out = [
        "# Evidence scorer (cross-encoder)",
        "",
        *_origin(info),
        "",
        *([f"**Run with --limit {limit}: at most {limit} PolicyQA and ObliQA questions each, taken in turn from training, validation "
            "and test documents; the held-out numbers below come from those few (a quick run's mean little).**", ""] if limit else []),
        "## Data",
        "",
        "- PolicyQA dev (wasiahmad/PolicyQA, MIT repository; policy texts from OPP-115, research use) and ObliQA dev",
        "  (RegNLP/ObliQADataset, ADGM regulations, no licence stated): check both before redistributing the weights.",
        *_reader_line(info),
        f"- Training groups: {info.get('groups')}.",
        f"- Questions per part: {q}.",
        "",
        "## Split (by document, seed {})".format(cfg["seed"]),
        "",
    ]
    for name, split in info["split"].items():
        out.append(f"- {name}: test {', '.join(split['test'])}; validation {', '.join(split['val'])}; "
                   f"train {len(split['train'])} documents.")
    out += ["", "## Recipe", "", "| setting | value |", "|---|---|"]
    out += [f"| {k} | {v} |" for k, v in cfg.items()]
    out += ["", f"Epochs run: {len(info['train']['history'])}, best (validation MRR@10): {info.get('best_epoch')}; "
            f"{info['train']['pairs']:,} pairs in {info['train']['train_s']} s on {info['device']} "
            f"({info['train']['pairs_per_s']} pairs/s); whole run {info.get('total_s')} s.", ""]
    out += ["## Held-out results (test documents)", ""]
    for name in info["test"]:
        n_q = int(info["test"][name]["hybrid"].get("questions", 0))
        out += [f"### {name} ({n_q} questions)", "", *_table(info["test"], name), ""]
    fusion = info["fusion"]
    out += [f"Fusion `w*minmax(logit) + (1-w)*minmax(RRF)` tuned on validation: w = {fusion['all']} "
            f"(per set: {fusion['per_set']}).", ""]
    c = info["calibration"]
    out += ["## Calibration and answerability", "",
            f"- p = sigmoid(a*logit + b), a = {c['a']:.4f}, b = {c['b']:.4f} (Platt, validation pairs); "
            f"ECE / Brier: validation {_f(c['val']['ece'])} / {_f(c['val']['brier'])}, test {_f(c['test']['ece'])} / {_f(c['test']['brier'])}."]
    for name, t in info["answerability_threshold"].items():
        auc = info["answerability_test"].get(name, {})
        out.append(f"- {name}: answerable when the max logit over the top 20 >= {t['threshold_logit']} (p {t['threshold_prob']}); "
                   f"balanced accuracy {_f(t['val_balanced_acc'])} validation, {_f(t['test_balanced_acc'])} test; "
                   f"test AUC {_f(auc.get('auc_scorer'))} (dense cosine {_f(auc.get('auc_dense_cosine'))}).")
    sent = info.get("sentences_test", {})
    if sent:
        out.append(f"- Answer sentences (PolicyQA test, {sent['scorer']['questions']} questions): success@1 "
                   f"{_f(sent['scorer']['success@1'])}, success@3 {_f(sent['scorer']['success@3'])} (word overlap "
                   f"{_f(sent['overlap']['success@1'])} / {_f(sent['overlap']['success@3'])}).")
    out += ["",
            "## Reproduce", "", "```bash", info.get("command", ""), "```", ""]
    return "\n".join(out)
