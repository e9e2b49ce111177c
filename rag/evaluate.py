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
    dcg = sum(1.0 / math.log2(i + 2) for i, h in enumerate(hits[:k]) if h)
    ideal = sum(1.0 / math.log2(i + 2) for i in range(min(max(n_relevant, 1), k)))
    return dcg / ideal if ideal else 0.0


def average_precision_at_k(hits: Sequence[bool], k: int, n_relevant: int = 1) -> float:
    score, found = 0.0, 0
    for i, h in enumerate(hits[:k]):
        if h:
            found += 1
            score += found / (i + 1)
    denom = min(max(n_relevant, 1), k)
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
