"""Question sets for evaluation: SQuAD (PolicyQA), ObliQA and our JSONL, exported into a corpus folder
the normal build indexes, plus deterministic sampling and cross-policy unanswerables.
"""

from __future__ import annotations

import json
import re
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.jobs.metrics import chunk_matches

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
    split: str | None = None  # e.g. calibrate | report: thresholds are chosen on one and reported on the other


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
            split=r.get("split"),
        ))
    return EvalSet(Path(path).stem, qs)


def is_hit(q: EvalQuestion, source: str, text: str) -> bool:
    if q.gold_passages or q.answers:
        if q.gold_sources and source not in q.gold_sources:
            return False
        return chunk_matches(text, q.gold_passages, q.answers)
    return source in q.gold_sources


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
