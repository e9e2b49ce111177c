"""Evaluation: metric functions (pure), dataset loaders (SQuAD/PolicyQA, ObliQA, our JSONL), and a
retrieval evaluation loop shared by `benchmarks/` and, later, `rag eval`.

A retrieved chunk is a hit for a question when it overlaps a gold passage or contains a gold answer
span (whitespace- and case-insensitive).
"""

from __future__ import annotations

import json
import math
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError

# ---------------------------------------------------------------------------------------------
# Metrics (pure). `hits` is the relevance of each retrieved item in rank order (True/False);
# `n_relevant` the number of gold items for the question.


def recall_at_k(hits: Sequence[bool], k: int) -> float:
    """1 if any of the top k is relevant (success@k, the usual RAG 'recall@k' for one gold answer)."""
    return 1.0 if any(hits[:k]) else 0.0


def mrr(hits: Sequence[bool], k: int | None = None) -> float:
    for i, h in enumerate(hits[:k] if k else hits):
        if h:
            return 1.0 / (i + 1)
    return 0.0


def ndcg_at_k(hits: Sequence[bool], k: int, n_relevant: int = 1) -> float:
    """Binary nDCG@k. Several retrieved chunks may cover one gold passage, so the ideal ranking has
    at least as many relevant items as were retrieved (keeps the score within 0..1)."""
    dcg = sum(1.0 / math.log2(i + 2) for i, h in enumerate(hits[:k]) if h)
    n_rel = max(n_relevant, sum(bool(h) for h in hits[:k]), 1)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(n_rel, k)))
    return dcg / ideal if ideal else 0.0


def average_precision_at_k(hits: Sequence[bool], k: int, n_relevant: int = 1) -> float:
    score, found = 0.0, 0
    for i, h in enumerate(hits[:k]):
        if h:
            found += 1
            score += found / (i + 1)
    denom = min(max(n_relevant, found, 1), k)
    return score / denom if denom else 0.0


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = re.sub(r"[^\w\s]", " ", s)
    s = re.sub(r"\b(a|an|the)\b", " ", s)
    return " ".join(s.split())


def exact_match(prediction: str, golds: Sequence[str]) -> float:
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds)) if golds else 0.0


def token_f1(prediction: str, golds: Sequence[str]) -> float:
    """Best SQuAD token F1 of the prediction against any gold answer."""
    from collections import Counter

    pt = normalize_answer(prediction).split()
    best = 0.0
    for g in golds:
        gt = normalize_answer(g).split()
        common = Counter(pt) & Counter(gt)
        same = sum(common.values())
        if same == 0 or not pt or not gt:
            continue
        prec, rec = same / len(pt), same / len(gt)
        best = max(best, 2 * prec * rec / (prec + rec))
    return best


def _norm(s: str) -> str:
    return " ".join(s.lower().split())


def chunk_matches(chunk_text: str, gold_passages: Sequence[str] = (), gold_answers: Sequence[str] = (), min_overlap: int = 60) -> bool:
    """Does a retrieved chunk overlap a gold passage or contain a gold answer span?"""
    c = _norm(chunk_text)
    for a in gold_answers:
        a = _norm(a)
        if a and a in c:
            return True
    for g in gold_passages:
        g = _norm(g)
        if not g:
            continue
        if len(g) <= min_overlap:
            if g in c:
                return True
            continue
        # a window from the gold passage inside the chunk, or the chunk's start inside the passage
        mid = len(g) // 2
        probes = [g[:min_overlap], g[mid : mid + min_overlap], g[-min_overlap:]]
        if any(p in c for p in probes) or (len(c) >= min_overlap and (c[:min_overlap] in g or c[-min_overlap:] in g)):
            return True
    return False


# ---------------------------------------------------------------------------------------------
# Datasets


@dataclass
class EvalQuestion:
    id: str
    question: str
    answers: list[str] = field(default_factory=list)
    gold_passages: list[str] = field(default_factory=list)
    gold_sources: list[str] = field(default_factory=list)
    filter: dict[str, list[str]] | None = None
    answerable: bool = True


@dataclass
class EvalSet:
    name: str
    questions: list[EvalQuestion]
    corpus: Path | None = None  # a folder to index, when the set brings its own documents


def _slug(title: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:80] or "doc"


def load_squad(path: Path, out_corpus: Path | None = None) -> EvalSet:
    """SQuAD v1.1 (e.g. PolicyQA): each title becomes a Markdown document (paragraphs joined);
    questions are scoped to their document by a source filter."""
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    except (OSError, KeyError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path}: not a SQuAD file ({e})") from None
    questions: list[EvalQuestion] = []
    if out_corpus is not None:
        out_corpus.mkdir(parents=True, exist_ok=True)
    seen: dict[str, int] = {}
    for art in data:
        title = str(art.get("title") or "untitled")
        slug = _slug(title)
        seen[slug] = seen.get(slug, 0) + 1
        if seen[slug] > 1:
            slug = f"{slug}-{seen[slug]}"
        source = f"{slug}.md"
        paras = [p["context"] for p in art.get("paragraphs", [])]
        if out_corpus is not None:
            body = "\n\n".join(" ".join(p.split()) for p in paras)
            (out_corpus / source).write_text(f"---\ntitle: {json.dumps(title)}\n---\n\n{body}\n", encoding="utf-8")
        for p in art.get("paragraphs", []):
            for qa in p.get("qas", []):
                answers = [a["text"] for a in qa.get("answers", []) if a.get("text")]
                questions.append(EvalQuestion(
                    id=str(qa.get("id")), question=qa["question"], answers=answers, gold_passages=[p["context"]],
                    gold_sources=[source], filter={"source": [source]}, answerable=bool(answers) and not qa.get("is_impossible"),
                ))
    return EvalSet(Path(path).stem, questions, out_corpus)


def export_obliqa(zip_path: Path, out_dir: Path) -> tuple[Path, int]:
    """The ObliQA documents (JSON passages in a zip) as Markdown files; short passages become headings."""
    out_dir.mkdir(parents=True, exist_ok=True)
    n = 0
    with zipfile.ZipFile(zip_path) as z:
        for name in sorted(z.namelist()):
            if "__MACOSX" in name or not name.endswith(".json"):
                continue
            rows = json.loads(z.read(name))
            doc_id = Path(name).stem
            lines = [f"# ObliQA document {doc_id}", ""]
            for r in rows:
                text = (r.get("Passage") or "").strip()
                if not text:
                    continue
                n += 1
                pid = str(r.get("PassageID") or "").strip()
                heading = len(text) < 90 and "\n" not in text and not text.endswith(".") and (text.isupper() or len(text.split()) <= 8)
                lines += [f"## {pid} {text}".strip() if heading else f"{pid} {text}".strip(), ""]
            (out_dir / f"obliqa-{int(doc_id):02d}.md").write_text("\n".join(lines), encoding="utf-8")
    return out_dir, n


def load_obliqa(folder: Path, out_corpus: Path | None = None, split: str = "dev") -> EvalSet:
    folder = Path(folder)
    qpath = folder / f"ObliQA_{split}.json"
    try:
        rows = json.loads(qpath.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{qpath}: cannot read ObliQA questions ({e})") from None
    if out_corpus is not None:
        export_obliqa(folder / "StructuredRegulatoryDocuments.zip", out_corpus)
    qs = [
        EvalQuestion(id=r["QuestionID"], question=r["Question"], gold_passages=[p["Passage"] for p in r.get("Passages", [])],
                     gold_sources=sorted({f"obliqa-{int(p['DocumentID']):02d}.md" for p in r.get("Passages", [])}))
        for r in rows
    ]
    return EvalSet(f"obliqa-{split}", qs, out_corpus)


def load_jsonl(path: Path) -> EvalSet:
    """Our format: {question, answers?, gold_sources?, gold_quotes?, answerable?, filter?, id?} per line."""
    qs = []
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            r = json.loads(line)
            q = r["question"]
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise ConfigError(f"{path}:{n}: needs a JSON object with a \"question\" ({e})") from None
        qs.append(EvalQuestion(
            id=str(r.get("id", n)), question=q, answers=list(r.get("answers") or []), gold_passages=list(r.get("gold_quotes") or []),
            gold_sources=list(r.get("gold_sources") or []), filter=r.get("filter"), answerable=bool(r.get("answerable", True)),
        ))
    return EvalSet(Path(path).stem, qs)


def is_hit(q: EvalQuestion, source: str, text: str) -> bool:
    if q.gold_passages or q.answers:
        if q.gold_sources and source not in q.gold_sources:
            return False
        return chunk_matches(text, q.gold_passages, q.answers)
    return source in q.gold_sources


# ---------------------------------------------------------------------------------------------
# Retrieval evaluation


def retrieval_metrics(per_question_hits: Iterable[tuple[list[bool], int]], ks: Sequence[int] = (1, 5, 10)) -> dict[str, float]:
    rows = list(per_question_hits)
    n = len(rows) or 1
    out = {f"recall@{k}": sum(recall_at_k(h, k) for h, _ in rows) / n for k in ks}
    out["mrr"] = sum(mrr(h, max(ks)) for h, _ in rows) / n
    out["ndcg@10"] = sum(ndcg_at_k(h, 10, r) for h, r in rows) / n
    out["map@10"] = sum(average_precision_at_k(h, 10, r) for h, r in rows) / n
    out["questions"] = float(len(rows))
    return out


def evaluate_retrieval(retriever: Any, questions: Sequence[EvalQuestion], mode: str, k: int = 10, batch: int = 256) -> tuple[dict[str, float], list[dict[str, Any]]]:
    """Metrics and per-question rows for one retrieval mode (answerable questions only)."""
    qs = [q for q in questions if q.answerable]
    rows: list[tuple[list[bool], int]] = []
    per_q: list[dict[str, Any]] = []
    for i in range(0, len(qs), batch):
        part = qs[i : i + batch]
        results = retriever.search([q.question for q in part], k, [q.filter for q in part], mode=mode, expand=0)
        for q, hits in zip(part, results, strict=True):
            flags = [is_hit(q, h.chunk.source, h.chunk.text) for h in hits]
            n_rel = max(1, len(q.gold_passages) or len(q.gold_sources) or 1)
            rows.append((flags, n_rel))
            per_q.append({"id": q.id, "question": q.question, "hits": flags, "rank": (flags.index(True) + 1) if any(flags) else None,
                          "retrieved": [{"source": h.chunk.source, "label": h.chunk.label, "score": round(h.score, 4)} for h in hits[:5]]})
    return retrieval_metrics(rows), per_q


# ---------------------------------------------------------------------------------------------
# `rag eval`: prepare a dataset's index, run retrieval (and answer) metrics, write a report


def sample_questions(questions: Sequence[EvalQuestion], limit: int | None, seed: int = 0) -> list[EvalQuestion]:
    """Deterministic sample keeping the answerable/unanswerable proportions."""
    import random

    qs = list(questions)
    if not limit or limit >= len(qs):
        return qs
    rng = random.Random(seed)
    ans = [q for q in qs if q.answerable]
    una = [q for q in qs if not q.answerable]
    n_una = round(limit * len(una) / len(qs))
    return rng.sample(ans, min(len(ans), limit - n_una)) + rng.sample(una, min(len(una), n_una))


def cross_scope_unanswerables(questions: Sequence[EvalQuestion], n: int, seed: int = 0) -> list[EvalQuestion]:
    """Questions asked of another document than their own: the scoped documents cannot answer them."""
    import random

    rng = random.Random(seed + 1)
    scoped = [q for q in questions if q.filter and q.answerable]
    sources = sorted({s for q in scoped for s in q.filter.get("source", [])})  # type: ignore[union-attr]
    out = []
    for q in rng.sample(scoped, min(n, len(scoped))) if len(sources) > 1 else []:
        own = q.filter["source"][0]  # type: ignore[index]
        other = rng.choice([s for s in sources if s != own])
        out.append(EvalQuestion(id=f"{q.id}@other", question=q.question, filter={"source": [other]}, answerable=False))
    return out


def _dataset_key(path: Path) -> str:
    import hashlib

    h = hashlib.sha256()
    for p in sorted([path] if path.is_file() else path.rglob("*")):
        if p.is_file():
            h.update(p.name.encode())
            h.update(str(p.stat().st_size).encode())
            h.update(str(p.stat().st_mtime_ns).encode())
    return h.hexdigest()[:12]


def prepare_dataset(path: Path, fmt: str, settings: Any, cache: Path) -> tuple[EvalSet, Any]:
    """Load the set and make sure an index exists for it; returns (set, settings for that index)."""
    path = Path(path)
    if fmt == "jsonl":
        return load_jsonl(path), settings
    key = f"{fmt}-{path.stem}-{_dataset_key(path)}"
    work = cache / "eval" / key
    if fmt == "squad":
        es = load_squad(path, work / "corpus")
    elif fmt == "obliqa":
        folder = path if path.is_dir() else path.parent
        split = "dev" if path.is_dir() else path.stem.split("_")[-1]
        es = load_obliqa(folder, None if (work / "corpus").is_dir() else work / "corpus", split)
        es.corpus = work / "corpus"
    else:
        raise ConfigError(f"unknown --format '{fmt}' (use squad, obliqa or jsonl)")
    return es, settings.model_copy(update={"corpus": work / "corpus", "index": work / "index"})


def guess_format(path: Path) -> str:
    p = Path(path)
    if p.is_dir() or p.name.startswith("ObliQA"):
        return "obliqa"
    if p.suffix == ".jsonl":
        return "jsonl"
    return "squad"


def _strip(text: str) -> str:
    return re.sub(r"\[\d+\]|[“”]|^Quoted from the documents:", "", text).strip()


def evaluate_answers(answerer: Any, questions: Sequence[EvalQuestion], answer_mode: str, k: int, on_step: Any = None) -> tuple[dict[str, float], list[dict[str, Any]]]:
    rows = []
    for q in questions:
        a = answerer.ask(q.question, mode=answer_mode, k=k, filters=q.filter)
        pred = "" if a.refused else _strip(a.text)
        sents = a.sentences
        cited = [c for c in a.citations]
        gold_cited = [c for c in cited if q.gold_sources and c.passage.chunk.source in q.gold_sources]
        rows.append({
            "id": q.id, "question": q.question, "answerable": q.answerable, "answer": a.text, "refused": a.refused,
            "produced_by": a.produced_by, "em": exact_match(pred, q.answers) if q.answers else None,
            "f1": token_f1(pred, q.answers) if q.answers else None,
            "citations": len(cited),
            "citation_precision": (sum(c.support >= answerer.settings.support_threshold for c in cited) / len(cited)) if cited else None,
            "citation_gold_precision": (len(gold_cited) / len(cited)) if (cited and q.gold_sources) else None,
            "citation_recall": (sum(bool(s.citations) for s in sents) / len(sents)) if sents else None,
            "best_similarity": a.record.get("evidence", {}).get("best_similarity"),
            "latency_s": a.timings.get("total_s"),
        })
        if on_step:
            on_step()

    def mean(key: str, pred: Any = None) -> float | None:
        vals = [r[key] for r in rows if r[key] is not None and (pred is None or pred(r))]
        return sum(vals) / len(vals) if vals else None

    ans = [r for r in rows if r["answerable"]]
    una = [r for r in rows if not r["answerable"]]
    metrics = {
        "exact_match": mean("em", lambda r: r["answerable"]), "f1": mean("f1", lambda r: r["answerable"]),
        "citation_precision": mean("citation_precision"), "citation_gold_precision": mean("citation_gold_precision"),
        "citation_recall": mean("citation_recall"),
        "refusal_accuracy": (sum(r["refused"] for r in una) / len(una)) if una else None,
        "false_refusal_rate": (sum(r["refused"] for r in ans) / len(ans)) if ans else None,
        "answered": float(sum(not r["refused"] for r in rows)), "questions": float(len(rows)),
    }
    return metrics, rows


def write_report(out: Path, name: str, settings: Any, store: Any, retrieval: dict[str, dict[str, float]],
                 answers: dict[str, dict[str, Any]], per_question: list[dict[str, Any]], sims: dict[str, list[float]],
                 ks: Sequence[int] = (1, 2, 3, 5, 10)) -> list[Path]:
    """report.md, metrics.json, per_question.jsonl and PNG plots in `out`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    metrics = {"dataset": name, "retrieval": retrieval, "answers": answers,
               "index": {"index_id": store.index_id, "generation": store.generation.name, "embedding_model": store.manifest["embedding"]["model"],
                         "documents": store.manifest["counts"]["documents"], "chunks": store.manifest["counts"]["chunks"]},
               "settings": {k: (str(v) if isinstance(v, Path) else v) for k, v in settings.model_dump().items() if k not in ("ui_password",)}}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=1))
    with open(out / "per_question.jsonl", "w", encoding="utf-8") as f:
        for r in per_question:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    written += [out / "metrics.json", out / "per_question.jsonl"]

    # recall@k curves
    fig, ax = plt.subplots(figsize=(6, 4))
    curves = {m: v.get("curve", {}) for m, v in retrieval.items()}
    for mode, curve in curves.items():
        xs = sorted(int(k) for k in curve)
        ax.plot(xs, [curve[str(x)] if str(x) in curve else curve[x] for x in xs], marker="o", label=mode)
    ax.set_xlabel("k")
    ax.set_ylabel("recall@k")
    ax.set_ylim(0, 1)
    ax.set_title(f"{name}: recall@k by retrieval mode")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "recall_at_k.png", dpi=110)
    plt.close(fig)
    written.append(out / "recall_at_k.png")

    # score distributions with the refusal threshold
    fig, ax = plt.subplots(figsize=(6, 4))
    bins = [i / 40 for i in range(-4, 41)]
    for label, vals in sims.items():
        if vals:
            ax.hist(vals, bins=bins, alpha=0.6, label=f"{label} ({len(vals)})")
    ax.axvline(settings.refusal_threshold, color="red", linestyle="--", label=f"refusal threshold {settings.refusal_threshold:.2f}")
    ax.set_xlabel("best passage similarity to the question")
    ax.set_ylabel("questions")
    ax.set_title(f"{name}: answerable vs unanswerable")
    ax.legend()
    fig.tight_layout()
    fig.savefig(out / "score_distribution.png", dpi=110)
    plt.close(fig)
    written.append(out / "score_distribution.png")

    lines = [f"# Evaluation: {name}", "",
             f"Index `{store.index_id}` ({store.generation.name}): {metrics['index']['documents']} documents, "
             f"{metrics['index']['chunks']} chunks, embedding model `{metrics['index']['embedding_model']}`; "
             f"LLM `{settings.llm_model}`; refusal threshold {settings.refusal_threshold}, support threshold {settings.support_threshold}.", "",
             "## Retrieval", "", "| mode | questions | recall@1 | recall@5 | recall@10 | MRR | nDCG@10 | MAP@10 |", "|---|---|---|---|---|---|---|---|"]
    for mode, m in retrieval.items():
        lines.append(f"| {mode} | {int(m['questions'])} | {m['recall@1']:.3f} | {m['recall@5']:.3f} | {m['recall@10']:.3f} | {m['mrr']:.3f} | {m['ndcg@10']:.3f} | {m['map@10']:.3f} |")
    lines += ["", "![recall@k](recall_at_k.png)", ""]
    if answers:
        def f(v: Any) -> str:
            return "–" if v is None else f"{v:.3f}"

        lines += ["## Answers", "", "| answer mode | questions | EM | F1 | citation precision | cites gold doc | citation recall | refusal accuracy | false refusals |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for mode, m in answers.items():
            lines.append(f"| {mode} | {int(m['questions'])} | {f(m['exact_match'])} | {f(m['f1'])} | {f(m['citation_precision'])} | "
                         f"{f(m['citation_gold_precision'])} | {f(m['citation_recall'])} | {f(m['refusal_accuracy'])} | {f(m['false_refusal_rate'])} |")
        lines.append("")
    lines += ["![scores](score_distribution.png)", "", "## Worst 10 questions (first mode)", ""]
    first = next(iter(retrieval), None)
    worst = sorted((r for r in per_question if r.get("mode") == first and r.get("answerable", True)), key=lambda r: (r.get("rank") or 99))[::-1][:10]
    for r in worst:
        lines.append(f"- **{r['question']}** — gold rank: {r.get('rank') or 'not in top 10'}")
        for h in r.get("retrieved", [])[:3]:
            lines.append(f"  - {h['label']} ({h['source']}, score {h['score']})")
    (out / "report.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    written.insert(0, out / "report.md")
    return written


def run_eval(dataset: Path, fmt: str | None, settings: Any, *, modes: Sequence[str] = ("hybrid",), answer_modes: Sequence[str] = (),
             limit: int | None = None, seed: int = 0, out: Path, reporter: Any = None, progress: Any = None, embedder: Any = None) -> list[Path]:
    from .generate import cache_dir
    from .indexer import build_index
    from .retrieve import Retriever

    fmt = fmt or guess_format(dataset)
    evalset, s = prepare_dataset(Path(dataset), fmt, settings, cache_dir())
    if evalset.corpus is not None:
        build_index(s, reporter=reporter, embedder=embedder)
    questions = sample_questions(evalset.questions, limit, seed)
    if fmt == "squad":  # unanswerable: the same questions scoped to another policy
        questions += cross_scope_unanswerables(questions, max(1, len(questions) // 5), seed)
    retriever = Retriever.open(s, embedder)
    retrieval: dict[str, dict[str, Any]] = {}
    per_q: list[dict[str, Any]] = []
    answerable = [q for q in questions if q.answerable]
    for mode in modes:
        m, rows = evaluate_retrieval(retriever, answerable, mode, k=10)
        curve = {}
        for kk in (1, 2, 3, 5, 10):
            curve[str(kk)] = sum(1 for r in rows if r["rank"] and r["rank"] <= kk) / max(1, len(rows))
        m["curve"] = curve  # type: ignore[assignment]
        retrieval[mode] = m
        per_q += [{**r, "mode": mode, "answerable": True} for r in rows]
        if progress:
            progress(len(answerable), f"retrieval {mode}")
    # best similarity for answerable vs unanswerable questions (the refusal signal)
    hits = retriever.search([q.question for q in questions], 5, [q.filter for q in questions])
    sims: dict[str, list[float]] = {"answerable": [], "unanswerable": []}
    for q, h in zip(questions, hits, strict=True):
        sims["answerable" if q.answerable else "unanswerable"].append(max((p.scores.get("dense", 0.0) for p in h), default=0.0))
    answers: dict[str, dict[str, Any]] = {}
    if answer_modes:
        from .answer import Answerer

        answerer = Answerer(retriever, s)
        for am in answer_modes:
            m, rows = evaluate_answers(answerer, questions, am, s.top_k, on_step=(lambda am=am: progress(1, f"answers {am}")) if progress else None)
            answers[am] = m
            per_q += [{**r, "answer_mode": am} for r in rows]
    return write_report(out, evalset.name, s, retriever.store, retrieval, answers, per_q, sims)
