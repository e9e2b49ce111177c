"""Training the evidence scorer: groups of (question, positive, hard negatives), the recipe, the loop, saving.

What was learned the hard way: a fresh one-logit head on a bi-encoder, trained pointwise (BCE) for a
few thousand pairs at a small learning rate, makes the ranking worse than hybrid retrieval. The recipe
(`Config`'s defaults, the run that produced the shipped model) therefore uses
  * a listwise loss: softmax cross-entropy over 1 positive + 7 hard negatives of the same question
    (the ranking is what matters; a pointwise loss spends its capacity on absolute levels),
  * a small BCE term on the same logits, only so the raw score stays on a stable scale for the
    answerability threshold (the listwise loss alone is shift-invariant),
  * a higher learning rate for the new head than for the encoder, warm-up and linear decay,
  * hard negatives from the retrievers the scorer reranks, re-sampled every epoch,
  * ~270k pairs: on a GPU minutes, on 2 CPU cores 8-9 hours (a CPU run needs --max-minutes or --limit).
"""

from __future__ import annotations

import copy
import json
import math
import random
import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.jobs.scorer.candidates import Progress, _quiet
from rag.jobs.scorer.data import Dataset, Question, _norm, is_hit, sentence_texts

SEED = 13


@dataclass
class Group:
    """One softmax group: a query, its positive, and the pool its negatives are drawn from each epoch."""

    query: str
    positive: str
    negatives: list[str]
    source: str  # obliqa / policyqa-para / policyqa-sent / pseudo / swap / reader-para / reader-sent
    answerable: bool = True  # False: no text of the group answers the query (the target is the "no answer" option)


def build_groups(payload: dict[str, Any], part: str, max_pos: int = 3, sentences: bool = True, pseudo: int = 0,
                 swap: int = 0, seed: int = SEED) -> list[Group]:
    """Training groups for the questions of one part ("train" or "val").

    ObliQA: each gold passage (up to `max_pos`) against the question's BM25 + dense + hybrid
    candidates that are not hits. PolicyQA: questions with the same text in one policy are merged
    (their answers are all positives, so none becomes another's negative); paragraph groups use the
    policy's other paragraphs, sentence groups the other sentences of the gold and top paragraphs.
    """
    groups: list[Group] = []
    if part == "train" and pseudo:
        units = payload["sets"]["obliqa"]["dataset"].units
        for r in payload.get("pseudo", [])[:pseudo]:
            groups.append(Group(r["query"], r["positive"], [units[i].text for i in r["negatives"]], "pseudo"))
    for name, s in payload["sets"].items():
        ds: Dataset = s["dataset"]
        qs = [(q, c) for q, c, p in zip(ds.questions, s["candidates"], s["parts"], strict=True) if p == part]
        if name == "obliqa":
            for q, c in qs:
                pool = list(dict.fromkeys(c["hybrid"] + c["bm25"] + c["dense"]))
                negs = [ds.units[i].text for i in pool if i not in q.gold and not is_hit(q, ds.units[i])]
                for g in q.gold[:max_pos]:
                    if negs:
                        groups.append(Group(q.text, ds.units[g].text, negs, "obliqa"))
            continue
        if name == "reader":
            groups += _reader_groups(ds, qs, max_pos)
            continue
        merged: dict[str, tuple[Question, dict[str, Any], list[Question]]] = {}
        for q, c in qs:
            merged.setdefault(q.group, (q, c, []))[2].append(q)
        for q, c, members in merged.values():
            answers = [a for m in members for a in m.answers]
            gold = sorted({g for m in members for g in m.gold})
            probe = Question(q.id, q.text, q.docs, gold, [t for m in members for t in m.gold_texts], answers, q.scope)
            pool = list(dict.fromkeys(c["hybrid"] + c["bm25"] + c["dense"]))
            negs = [ds.units[i].text for i in pool if i not in gold and not is_hit(probe, ds.units[i])]
            for g in gold[:max_pos]:
                if negs:
                    groups.append(Group(q.text, ds.units[g].text, negs, "policyqa-para"))
            if not sentences:
                continue
            spans = [sp for m in members for sp in m.answer_spans]
            pos_s, neg_s = [], []
            for uid in list(dict.fromkeys(gold + c["hybrid"][:3])):
                for a, b, t in sentence_texts(ds.units[uid]):
                    if len(t.split()) < 3:
                        continue
                    overlaps = any(su == uid and sa < b and se > a for su, sa, se in spans)
                    has_answer = any(_norm(x) in _norm(t) for x in answers if len(x) > 3)
                    if overlaps:
                        pos_s.append(t)
                    elif not has_answer:
                        neg_s.append(t)
            for t in list(dict.fromkeys(pos_s))[:max_pos]:
                if neg_s:
                    groups.append(Group(q.text, t, neg_s, "policyqa-sent"))
    if swap:
        groups += swapped_groups(groups, swap, seed)
    return groups


def _shares_run(text: str, quote: str, n: int = 6) -> bool:
    """Whether `text` shares a run of `n` words with `quote` (or lies inside it when shorter): the sentence
    is (part of) the quoted answer, so it is neither a clean positive's rival nor a negative."""
    w = _norm(text).split()
    if len(w) < n:
        return " ".join(w) in _norm(quote)
    q = _norm(quote).split()
    runs = {tuple(q[i : i + n]) for i in range(len(q) - n + 1)}
    return any(tuple(w[i : i + n]) in runs for i in range(len(w) - n + 1))


def _reader_groups(ds: Dataset, qs: list[tuple[Question, dict[str, Any]]], max_pos: int) -> list[Group]:
    """Groups of the reader-written set (rag.jobs.scorer.reader), passages and sentences.

    Answerable: each gold chunk against the candidates that are not hits; each sentence holding (most of) a
    gold quote against the other sentences of the gold and top-3 chunks that neither overlap a quote nor hold
    an answer, so the sentence that answers must beat the ones that only share its topic. Unanswerable: the
    question's own candidates, passages and then sentences of its top 3, all below the "no answer" option.
    """
    out: list[Group] = []
    for q, c in qs:
        pool = list(dict.fromkeys(c["hybrid"] + c["bm25"] + c["dense"]))
        if not q.answerable:
            top_sents = [t for i in c["hybrid"][:3] for _, _, t in sentence_texts(ds.units[i]) if len(t.split()) >= 3]
            texts = [ds.units[i].text for i in pool]
            if len(texts) >= 2:
                out.append(Group(q.text, texts[0], texts[1:], "reader-para", answerable=False))
            if len(top_sents) >= 2:
                out.append(Group(q.text, top_sents[0], top_sents[1:], "reader-sent", answerable=False))
            continue
        negs = [ds.units[i].text for i in pool if i not in q.gold and not is_hit(q, ds.units[i])]
        for g in q.gold[:max_pos]:
            if negs:
                out.append(Group(q.text, ds.units[g].text, negs, "reader-para"))
        answers = [_norm(a) for a in q.answers if len(a) > 3]
        pos_s, neg_s = [], []
        for uid in dict.fromkeys(q.gold + c["hybrid"][:3]):
            for _, _, t in sentence_texts(ds.units[uid]):
                if len(t.split()) < 3:
                    continue
                if any(_shares_run(t, x) for x in q.gold_texts):
                    if uid in q.gold:
                        pos_s.append(t)
                elif not any(a in _norm(t) for a in answers):
                    neg_s.append(t)
        for t in list(dict.fromkeys(pos_s))[:max_pos]:
            if neg_s:
                out.append(Group(q.text, t, neg_s, "reader-sent"))
    return out


_WORD = re.compile(r"[A-Za-z][A-Za-z-]{3,}")
_SCAFFOLD = ("what which when where whom whose does must shall should would could have with from that this these those they them "
             "their there about under into over upon than then also other such each more most been being were will your how many much")
_COMMON = frozenset(_SCAFFOLD.split())


def _specific_words(text: str) -> list[str]:
    """Lower-cased words of 4+ letters that are not question scaffolding: the candidates for a swap."""
    return [w for w in (m.group(0).lower() for m in _WORD.finditer(text)) if w not in _COMMON]


def swapped_groups(groups: list[Group], n: int, seed: int = SEED) -> list[Group]:
    """Near-miss questions with no answer: a question's most specific word that its positive also says is
    replaced by another question's specific word that the positive does not say ("the prize money of the
    *Presidential* AI Challenge" asked of a passage on the *Growth* Accelerator Fund's prize money).

    Why: the near-topic questions readers ask that the documents do not answer are answered from a
    sentence that matches every word but one; retrieval negatives rarely look like that, so the scorer
    never learnt that one missing key term makes a passage no answer. These groups keep the positive
    among the texts and put the target on the "no answer" option.
    """
    rng = random.Random(seed + 1)
    real = [g for g in groups if g.answerable and g.source in ("obliqa", "policyqa-para", "policyqa-sent")]
    if not real:
        return []
    df: dict[str, int] = {}
    for g in real:
        for w in set(_specific_words(g.positive)):
            df[w] = df.get(w, 0) + 1
    donors = sorted({w for g in real for w in _specific_words(g.query)})
    out: list[Group] = []
    for g in rng.sample(real, min(n, len(real))):
        pos = g.positive.lower()
        asked = list(dict.fromkeys(_specific_words(g.query)))
        mine = [w for w in asked if w in pos]
        if not mine or not donors:
            continue
        old = min(mine, key=lambda w: (df.get(w, 0), w))
        for _ in range(20):  # a donor word the positive does not say in any form (its first five letters)
            new = rng.choice(donors)
            if new not in asked and new[:5] not in pos:
                break
        else:
            continue
        query = re.sub(rf"\b{re.escape(old)}\b", lambda m, w=new: w.capitalize() if m.group(0)[0].isupper() else w, g.query,
                       count=1, flags=re.IGNORECASE)
        if query != g.query:
            out.append(Group(query, g.positive, g.negatives, "swap", answerable=False))
    return out


@dataclass
class Config:
    """Hyper-parameters; the defaults are the recipe of the shipped model, and all are saved beside it."""

    base: str = ""  # bi-encoder folder to start from (default: the shipped all-MiniLM-L6-v2)
    base_fp16: bool = True  # round the base weights to fp16 first: the shipped model was trained from an fp16 copy
    max_length: int = 256
    n_neg: int = 7  # negatives per group (listwise: 1 + n_neg texts per softmax)
    epochs: int = 4  # validation kept improving up to 4 (2 epochs: PolicyQA recall@5 -3.4 points)
    batch_groups: int = 32  # groups per step -> 256 pairs
    lr: float = 7e-5  # encoder
    head_lr: float = 1e-3  # the fresh classifier (and pooler)
    weight_decay: float = 0.01
    warmup: float = 0.125  # of all steps (half an epoch at 4 epochs)
    bce_weight: float = 0.2  # pointwise term that keeps the raw score calibratable
    loss: str = "listwise"  # listwise | pointwise
    seed: int = SEED
    max_groups: int | None = None  # subsample the development-set groups (a reader set's groups are all kept)
    reader_repeat: int = 1  # each reader-set group this many times per epoch: a few hundred in-domain groups beside ~8.5k others
    sentences: bool = True  # PolicyQA answer-sentence groups
    pseudo: int = 6000  # inverse-cloze pseudo-query groups from ObliQA training documents (3,303 mined)
    eval_every_epoch: bool = True  # validation after each epoch; the best epoch (mean MRR@10) is kept
    bf16: bool = True  # CUDA autocast
    max_train_s: float = 0.0  # stop training after this many seconds (0: no limit), then evaluate and save
    null_frac: float = 0.0  # share of groups shown without their positive, the target being the "no answer" option
    swap: int = 0  # near-miss no-answer groups (swapped_groups); with null_frac they make the raw score an answerability score
    null_logit: float = 0.0  # the fixed logit of the "no answer" option: an answering text must score above it


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch: the head's initialisation and dropout come from torch's generator."""
    import torch

    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if torch.cuda.is_available():
        torch.cuda.manual_seed_all(seed)


def resolve_device(device: str) -> str:
    """auto -> cuda when available, else cpu (the recipe knows no other accelerator)."""
    if device == "auto":
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"
    return device


def load_model(path: str, device: str, round_fp16: bool = False) -> tuple[Any, Any]:
    """AutoModelForSequenceClassification(num_labels=1) + tokenizer, fp32 on `device`.

    From the bi-encoder folder this adds a fresh one-logit head on the [CLS] pooler; from a saved
    scorer it loads the trained head. `round_fp16` rounds the loaded weights (not the fresh head) to
    fp16 and back: the same start as loading an fp16 copy of the base, as the recipe's run did.
    """
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(path)
    try:
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, dtype=torch.float32)
    except TypeError:  # transformers < 4.56 names it torch_dtype
        model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=1, torch_dtype=torch.float32)
    if round_fp16:
        with torch.no_grad():
            for name, p in model.named_parameters():
                if not name.startswith("classifier"):
                    p.copy_(p.half().float())
    return model.to(device), tok


def score_pairs(model: Any, tok: Any, pairs: list[tuple[str, str]], device: str, max_length: int = 256,
                batch_size: int = 64) -> np.ndarray:
    """Raw logits for (question, text) pairs, batched by length so padding stays small."""
    import torch

    model.eval()
    order = sorted(range(len(pairs)), key=lambda i: len(pairs[i][1]))
    out = np.zeros(len(pairs), dtype=np.float32)
    use_amp = device.startswith("cuda")
    with torch.inference_mode():
        for i in range(0, len(order), batch_size):
            idx = order[i : i + batch_size]
            enc = tok([pairs[j][0] for j in idx], [pairs[j][1] for j in idx], truncation="only_second", max_length=max_length,
                      padding=True, return_tensors="pt").to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                logits = model(**enc).logits.float().view(-1)
            out[idx] = logits.cpu().numpy()
    return out


def group_loss(logits: Any, answers: Any, cfg: Config, use_null: bool, pos_weight: Any) -> Any:
    """The recipe's loss for a batch of groups: `logits` (groups x texts), the first text the positive where
    `answers` says the group has one.

    With `use_null` the softmax also holds a fixed "no answer" logit (`cfg.null_logit`): a group with an
    answer must score it above that level, a group without one must score every text below it. The
    listwise loss alone is shift-invariant, so its raw scores say "better than the others" but not "answers";
    this option is what makes the best score an answerability signal (SQuAD 2.0 readers use the same device).
    """
    import torch
    from torch.nn import functional as F

    labels = torch.zeros_like(logits)
    labels[:, 0] = answers.float()
    bce = F.binary_cross_entropy_with_logits(logits, labels, pos_weight=pos_weight)
    if cfg.loss != "listwise":
        return bce
    if use_null:
        full = F.pad(logits, (1, 0), value=cfg.null_logit)
        return F.cross_entropy(full, answers.long()) + cfg.bce_weight * bce
    return F.cross_entropy(logits, torch.zeros(len(logits), dtype=torch.long, device=logits.device)) + cfg.bce_weight * bce


def train(model: Any, tok: Any, groups: list[Group], cfg: Config, device: str,
          on_epoch: Callable[[int], dict[str, Any]] | None = None, progress: Progress = _quiet) -> dict[str, Any]:
    """Fine-tune on the groups; returns pairs, timings and per-epoch validation results.

    Listwise: logits of 1 + n_neg texts per group, cross-entropy with the positive at index 0, plus
    `bce_weight` x BCE on the same logits. Pointwise (for comparison): BCE only. The head and pooler
    get `head_lr`, the encoder `lr`; linear warm-up then linear decay. With `max_train_s`, the first
    epoch's time (validation included) decides how many epochs fit, the schedule is shortened to
    them, and training stops outright when the time is up.
    """
    import torch

    set_seed(cfg.seed)
    rng = random.Random(cfg.seed)
    head = [p for n, p in model.named_parameters() if n.startswith(("classifier", "bert.pooler"))]
    head_ids = {id(p) for p in head}
    body = [p for p in model.parameters() if id(p) not in head_ids]
    opt = torch.optim.AdamW([{"params": body, "lr": cfg.lr}, {"params": head, "lr": cfg.head_lr}], weight_decay=cfg.weight_decay)
    steps_per_epoch = math.ceil(len(groups) / cfg.batch_groups)
    total = steps_per_epoch * cfg.epochs
    warm = max(1, int(cfg.warmup * total))
    horizon = [total]  # shortened after epoch 1 if the time budget cannot fit all epochs
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min((s + 1) / warm, max(0.0, (horizon[0] - s) / max(1, horizon[0] - warm))))
    n_epochs = cfg.epochs
    use_amp = device.startswith("cuda") and cfg.bf16
    pos_weight = torch.tensor(float(cfg.n_neg), device=device)  # positives are 1 in 8: balance the pointwise term
    use_null = cfg.null_frac > 0 or any(not g.answerable for g in groups)
    history: list[dict[str, Any]] = []
    pairs_done, t_train = 0, 0.0
    t_start = time.time()
    out_of_time = False
    for epoch in range(cfg.epochs):
        if epoch >= n_epochs:
            break
        model.train()
        order = list(range(len(groups)))
        rng.shuffle(order)
        desc = f"training epoch {epoch + 1}/{n_epochs}"
        progress(desc, 0, steps_per_epoch)
        t0 = time.time()
        for s in range(steps_per_epoch):
            batch = [groups[i] for i in order[s * cfg.batch_groups : (s + 1) * cfg.batch_groups]]
            qs, ts, answers = [], [], []
            for g in batch:
                dropped = cfg.null_frac > 0 and g.answerable and rng.random() < cfg.null_frac
                k = cfg.n_neg + (1 if dropped else 0)
                negs = rng.sample(g.negatives, min(k, len(g.negatives)))
                negs += [rng.choice(g.negatives) for _ in range(k - len(negs))]  # short pools: repeat
                answers.append(g.answerable and not dropped)
                for t in negs if dropped else [g.positive, *negs]:
                    qs.append(g.query)
                    ts.append(t)
            enc = tok(qs, ts, truncation="only_second", max_length=cfg.max_length, padding=True, return_tensors="pt").to(device)
            with torch.autocast("cuda", dtype=torch.bfloat16, enabled=use_amp):
                logits = model(**enc).logits.float().view(len(batch), 1 + cfg.n_neg)
            loss = group_loss(logits, torch.tensor(answers, device=device), cfg, use_null, pos_weight)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
            opt.step()
            sched.step()
            opt.zero_grad(set_to_none=True)
            pairs_done += len(ts)
            if s % 20 == 0:
                desc = f"training epoch {epoch + 1}/{n_epochs} loss {loss.item():.3f}"
            progress(desc, s + 1, steps_per_epoch)
            if cfg.max_train_s and time.time() - t_start > cfg.max_train_s:
                out_of_time = True
                break
        if device.startswith("cuda"):
            torch.cuda.synchronize()
        t_train += time.time() - t0
        rec: dict[str, Any] = {"epoch": epoch + 1, "train_s": round(time.time() - t0, 1)}
        if on_epoch is not None:
            progress(f"validating epoch {epoch + 1}", 0, None)
            rec.update(on_epoch(epoch + 1))
        if epoch == 0 and cfg.max_train_s:
            per_epoch = time.time() - t_start
            n_epochs = max(1, min(cfg.epochs, int(cfg.max_train_s // max(per_epoch, 1e-9))))
            horizon[0] = steps_per_epoch * n_epochs
            rec["epochs_planned"] = n_epochs
        rec["stopped_early"] = out_of_time
        history.append(rec)
        if out_of_time:
            break
    return {"pairs": pairs_done, "train_s": round(t_train, 1), "pairs_per_s": round(pairs_done / max(t_train, 1e-9), 1), "history": history}


def save(model: Any, tok: Any, out: Path, info: dict[str, Any]) -> None:
    """fp16 safetensors + tokenizer + scorer.json (hyper-parameters, metrics, fusion weight, calibration).

    The folder loads with AutoModelForSequenceClassification or sentence_transformers.CrossEncoder.
    """
    out.mkdir(parents=True, exist_ok=True)
    m16 = copy.deepcopy(model).to("cpu").half()
    m16.save_pretrained(out, safe_serialization=True)
    # weights stay fp16 on disk (45 MB), but loaders default to fp32: fp16 matmuls on CPU are slow
    cfg_path = out / "config.json"
    conf = json.loads(cfg_path.read_text(encoding="utf-8"))
    for key in ("dtype", "torch_dtype"):
        if key in conf:
            conf[key] = "float32"
    cfg_path.write_text(json.dumps(conf, indent=2), encoding="utf-8")
    tok.save_pretrained(out)
    (out / "scorer.json").write_text(json.dumps(info, indent=2, default=str), encoding="utf-8")
