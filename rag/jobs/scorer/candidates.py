"""Candidate lists and pseudo-queries for the evidence scorer, computed once and cached.

Why candidates from the project's own retrievers: the scorer reranks what hybrid retrieval returns,
so its hard negatives must be what BM25 (the project's `lexical_tokens`), dense MiniLM and their RRF
fusion (BM25 doubled for known identifiers) put near the top. Training questions never see test or
validation documents, so no held-out text reaches training, not even as a negative.

Heavy imports (bm25s, faiss, sentence-transformers) are local to the functions that need them.
"""

from __future__ import annotations

import hashlib
import json
import random
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from rag.jobs.scorer.data import (
    SPLIT_SIZES,
    Dataset,
    Question,
    _norm,
    load_obliqa,
    load_policyqa,
    load_prepared,
    question_split,
    select_questions,
    set_payload,
    split_docs,
    split_sentences,
    write_prepared,
)
from rag.retrieve.fusion import rrf
from rag.text.lexical import LEXICAL_VERSION, identifiers, lexical_tokens

N_CAND = 30  # per retriever, as the project's retriever; also the rerank depth evaluated
RRF_K = 60
PSEUDO_MAX = 6000  # the recipe asks for this many; the ObliQA training documents yield 3,303
PREPARE_VERSION = 1  # bump when the prepared data would change: old caches are then rebuilt

Progress = Callable[[str, int, int | None], None]  # (stage, done, total)


def _quiet(stage: str, done: int, total: int | None) -> None:
    return None


def _bm25(texts: Sequence[str]) -> Any:
    import bm25s

    bm = bm25s.BM25()
    bm.index([lexical_tokens(t) or ["∅"] for t in texts], show_progress=False)
    return bm


def _top(scores: np.ndarray, k: int) -> list[int]:
    """Ids of the k best scores, best first (stable on ties)."""
    top = np.argpartition(-scores, k - 1)[:k]
    return [int(i) for i in top[np.argsort(-scores[top], kind="stable")]]


def build_candidates(ds: Dataset, encoder: Any, n_cand: int = N_CAND, batch_size: int = 64,
                     exclude_docs: Callable[[Question], set[str]] | None = None, dense_pool: bool = False,
                     progress: Progress = _quiet) -> list[dict[str, Any]]:
    """Per question: BM25, dense and hybrid-RRF rankings of unit ids (top `n_cand` each), the RRF
    scores and the dense cosines of the hybrid list.

    PolicyQA questions are scoped to their own policy; ObliQA searches the whole collection.
    `exclude_docs(q)` removes documents from a question's candidates. `dense_pool` (quick runs with
    few questions): embed only the gold units and BM25 candidates instead of the whole collection,
    so a 12-question run does not embed 13,000 passages on a CPU; the full recipe embeds everything.
    """
    texts = [u.text for u in ds.units]
    bm = _bm25(texts)
    vocab = bm.vocab_dict
    doc_of = np.array([u.doc for u in ds.units])
    allowed_of: list[np.ndarray] = []
    lex_of: list[list[int]] = []
    for q in ds.questions:
        allowed = np.ones(len(texts), dtype=bool)
        if q.scope is not None:
            allowed &= doc_of == q.scope
        if exclude_docs is not None and (ex := exclude_docs(q)):
            allowed &= ~np.isin(doc_of, list(ex))
        toks = [t for t in lexical_tokens(q.text) if t in vocab]
        lex: list[int] = []
        if toks:
            sc = np.where(allowed, np.asarray(bm.get_scores(toks)), 0.0)
            k = min(n_cand, int((sc > 0).sum()))
            if k > 0:
                lex = _top(sc, k)
        allowed_of.append(allowed)
        lex_of.append(lex)
    progress(f"{ds.name}: embedding", 0, None)
    t0 = time.time()
    if dense_pool:
        pool = sorted({i for q, lex in zip(ds.questions, lex_of, strict=True) for i in [*q.gold, *lex]})
        in_pool = np.zeros(len(texts), dtype=bool)
        in_pool[pool] = True
        dim = getattr(encoder, "get_embedding_dimension", None) or encoder.get_sentence_embedding_dimension  # renamed in ST 5
        emb = np.zeros((len(texts), dim()), dtype=np.float32)
        if pool:
            emb[pool] = _encode(encoder, [texts[i] for i in pool], batch_size)
    else:
        in_pool = None
        emb = _encode(encoder, texts, batch_size)
    qemb = _encode(encoder, [q.text for q in ds.questions], batch_size)
    progress(f"{ds.name}: embedded {int(in_pool.sum()) if in_pool is not None else len(texts)} texts in {time.time() - t0:.0f}s", 0, None)
    import faiss

    index = faiss.IndexFlatIP(emb.shape[1])
    index.add(emb)
    out = []
    for qi, q in enumerate(ds.questions):
        allowed = allowed_of[qi] if in_pool is None else allowed_of[qi] & in_pool
        if allowed.all():  # exact inner product over the whole collection
            _, ids = index.search(qemb[qi : qi + 1], n_cand)
            dense = [int(i) for i in ids[0] if i >= 0]
        else:
            sims = emb @ qemb[qi]
            sims[~allowed] = -np.inf
            k = min(n_cand, int(allowed.sum()))
            dense = _top(sims, k) if k > 0 else []
        ident = any(t in vocab for t in identifiers(q.text))
        fused = rrf([dense, lex_of[qi]], RRF_K, [1.0, 2.0 if ident else 1.0])
        out.append({"bm25": lex_of[qi], "dense": dense, "hybrid": [i for i, _ in fused], "hybrid_score": [s for _, s in fused],
                    "cos": [float(emb[i] @ qemb[qi]) for i, _ in fused]})
        if qi % 200 == 0 or qi == len(ds.questions) - 1:
            progress(f"{ds.name}: candidates", qi + 1, len(ds.questions))
    return out


def _encode(encoder: Any, texts: Sequence[str], batch_size: int) -> np.ndarray:
    return encoder.encode(list(texts), batch_size=batch_size, normalize_embeddings=True, show_progress_bar=False,
                          convert_to_numpy=True).astype(np.float32)


def mine_pseudo_queries(ds: Dataset, docs: Sequence[str], n: int = PSEUDO_MAX, n_neg: int = 20, seed: int = 13) -> list[dict[str, Any]]:
    """Inverse-cloze pseudo-queries from the training documents' passages (no generator needed).

    A sentence of 8-40 words is the query; the passage without that sentence is the positive (so the
    scorer must match meaning, not copy the sentence); the negatives are BM25's top hits for the
    sentence among the other training-document passages. This multiplies the supervised ObliQA
    groups cheaply and stays inside the training documents. The first m of n are the same for any
    n >= m (one seeded pass), so a smaller --pseudo is a prefix of the recipe's list.
    """
    rng = random.Random(seed)
    train_ids = [i for i, u in enumerate(ds.units) if u.doc in set(docs)]
    texts = [ds.units[i].text for i in train_ids]
    bm = _bm25(texts)
    vocab = bm.vocab_dict
    norm_text = [_norm(t) for t in texts]
    order = list(range(len(train_ids)))
    rng.shuffle(order)
    out: list[dict[str, Any]] = []
    for j in order:
        if len(out) >= n:
            break
        u = ds.units[train_ids[j]]
        spans = split_sentences(u.text)
        sents = [(a, b) for a, b in spans if 8 <= len(u.text[a:b].split()) <= 40]
        if len(spans) < 2 or not sents:
            continue
        a, b = rng.choice(sents)
        query = u.text[a:b].strip()
        positive = (u.text[:a] + " " + u.text[b:]).strip()
        if len(positive.split()) < 8:
            continue
        toks = [t for t in lexical_tokens(query) if t in vocab]
        if not toks:
            continue
        sc = np.asarray(bm.get_scores(toks))
        sc[j] = 0.0
        top = np.argsort(-sc)[: n_neg * 2]
        nq = _norm(query)
        negs = [train_ids[t] for t in top if sc[t] > 0 and norm_text[t] != norm_text[j] and nq not in norm_text[t]][:n_neg]
        if len(negs) >= 4:
            out.append({"query": query, "positive": positive, "negatives": negs, "unit": train_ids[j]})
    return out


def prepare(policyqa: Path, obliqa: Path, encoder_path: str, *, seed: int = 13, limit: int | None = None,
            pseudo: int = PSEUDO_MAX, progress: Progress = _quiet) -> dict[str, Any]:
    """Load both sets, split by document, build candidate lists and mine pseudo-queries.

    PolicyQA: 20 policies -> 11 train / 3 validation / 6 test. ObliQA: 40 documents -> 26 train /
    4 validation / 10 test. Validation documents choose the epoch, fusion weight and thresholds only.
    The split is always made over all documents, so `limit` (questions per set, for quick runs)
    never changes which documents are held out.
    """
    from sentence_transformers import SentenceTransformer

    encoder = SentenceTransformer(encoder_path, device="cpu")
    payload: dict[str, Any] = {"seed": seed, "sets": {}}
    for ds in (load_policyqa(policyqa), load_obliqa(obliqa)):
        n_test, n_val = SPLIT_SIZES[ds.name]
        ds.split = split_docs({u.doc for u in ds.units}, n_test, n_val, seed)
        parts = [question_split(q, ds.split) for q in ds.questions]
        keep = select_questions(parts, limit)
        if limit is not None:
            ds.questions = [ds.questions[i] for i in keep]
            parts = [parts[i] for i in keep]

        def exclude(q: Question, _ds: Dataset = ds) -> set[str]:
            part = question_split(q, _ds.split)
            if part == "test":
                return set()
            return set(_ds.split["test"]) | (set(_ds.split["val"]) if part == "train" else set(_ds.split["train"]))

        progress(f"{ds.name}: BM25", 0, None)
        cands = build_candidates(ds, encoder, exclude_docs=exclude, dense_pool=limit is not None, progress=progress)
        payload["sets"][ds.name] = set_payload(ds, parts, cands)
        if ds.name == "obliqa" and pseudo > 0:
            progress("obliqa: pseudo-queries", 0, None)
            payload["pseudo"] = mine_pseudo_queries(ds, ds.split["train"], n=pseudo, seed=seed)
    return payload


def _fingerprint(path: Path) -> list[Any]:
    """Name, size and modification time of a data file (or of a folder's files): a changed input
    invalidates the cache without hashing hundreds of megabytes."""
    files = sorted(p for p in Path(path).rglob("*") if p.is_file()) if Path(path).is_dir() else [Path(path)]
    return [[p.name, p.stat().st_size, int(p.stat().st_mtime)] for p in files]


def prepared_data(policyqa: Path, obliqa: Path, encoder_path: str, cache_dir: Path, *, seed: int = 13,
                  limit: int | None = None, pseudo: int = PSEUDO_MAX, progress: Progress = _quiet) -> tuple[dict[str, Any], Path]:
    """The prepared data from `cache_dir` when it was made from the same inputs and options, else
    prepared now (~7 minutes on 2 CPU cores for the full sets) and cached there."""
    # the project's tokens shape BM25's candidates: the shipped model's data were built at LEXICAL_VERSION 1
    key = {"version": PREPARE_VERSION, "lexical": LEXICAL_VERSION, "seed": seed, "limit": limit, "pseudo": pseudo, "n_cand": N_CAND,
           "encoder": str(encoder_path), "policyqa": _fingerprint(policyqa), "obliqa": _fingerprint(obliqa)}
    digest = hashlib.sha1(json.dumps(key, sort_keys=True).encode()).hexdigest()[:10]
    path = Path(cache_dir) / f"prepared-seed{seed}-{'all' if limit is None else f'limit{limit}'}-{digest}.json.gz"
    if path.is_file():
        progress(f"using cached data {path.name}", 0, None)
        return load_prepared(path), path
    payload = prepare(policyqa, obliqa, encoder_path, seed=seed, limit=limit, pseudo=pseudo, progress=progress)
    payload["key"] = key
    write_prepared(path, payload)
    return load_prepared(path), path
