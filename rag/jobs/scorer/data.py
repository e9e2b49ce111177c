"""The evidence scorer's data: PolicyQA and ObliQA as units and questions, and the split by document.

Why by document: a question's neighbours in the same policy or regulation share its wording, so a
split by question would leak the test documents' text into training. The split is a seeded shuffle
of the sorted document ids, so a fixed seed gives the same train / validation / test documents on any
machine (the shipped model's held-out ids are listed in its MODEL_CARD.md).

Paths are always arguments: the library never assumes where the development sets live.
"""

from __future__ import annotations

import gzip
import json
import random
import re
import zipfile
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.jobs.metrics import chunk_matches

SEED = 13
# documents held out per set: (test, validation); the rest train. PolicyQA has 20 policies, ObliQA 40 documents.
SPLIT_SIZES = {"policyqa": (6, 3), "obliqa": (10, 4)}
PARTS = ("train", "val", "test")


def _norm(s: str) -> str:
    """Case- and whitespace-insensitive form, the one `chunk_matches` compares in."""
    return " ".join(s.lower().split())


@dataclass
class Unit:
    """A retrievable text: an ObliQA passage or a PolicyQA paragraph."""

    doc: str
    text: str
    words: int


@dataclass
class Question:
    """One evaluation question, with what counts as a hit for it.

    `gold` are the unit ids labelled relevant (strict positives for training); a hit is judged with
    the project's rule (`chunk_matches`) on the candidates, so duplicates of a gold passage count as
    hits in evaluation and are never used as negatives in training.
    """

    id: str
    text: str
    docs: list[str]
    gold: list[int]
    gold_texts: list[str]
    answers: list[str] = field(default_factory=list)
    scope: str | None = None  # PolicyQA: retrieval restricted to this document
    group: str = ""  # PolicyQA: questions with the same text in the same policy share positives
    answer_spans: list[list[int]] = field(default_factory=list)  # [unit, start, end] (PolicyQA)
    answerable: bool = True  # False: a reader-set question no document answers (`docs` holds its topic's document)


@dataclass
class Dataset:
    """One development set: its units, questions and headline metric settings."""

    name: str
    units: list[Unit]
    questions: list[Question]
    budget: int  # words for recall-within-budget
    k: int  # the headline recall@k
    split: dict[str, list[str]] = field(default_factory=dict)  # train / val / test document ids


def load_obliqa(folder: Path) -> Dataset:
    """ObliQA dev: every passage of the 40 documents is a unit; gold passages found by (doc, text).

    The question file repeats the gold passage's text; matching on text first (then on the passage
    id when the text differs in whitespace only) ties each gold passage to exactly one unit.
    """
    folder = Path(folder)
    zpath, qpath = folder / "StructuredRegulatoryDocuments.zip", folder / "ObliQA_dev.json"
    for p in (zpath, qpath):
        if not p.is_file():
            raise ConfigError(f"ObliQA: {p} not found (pass the folder holding ObliQA_dev.json and the documents zip)")
    units: list[Unit] = []
    index: dict[tuple[str, str], list[int]] = {}
    by_text: dict[tuple[str, str], int] = {}
    with zipfile.ZipFile(zpath) as z:
        for name in sorted(z.namelist()):
            if "__MACOSX" in name or not name.endswith(".json"):
                continue
            for r in json.loads(z.read(name)):
                text = (r.get("Passage") or "").strip()
                if not text:
                    continue
                doc = str(int(r["DocumentID"]))
                uid = len(units)
                units.append(Unit(doc, text, len(text.split())))
                index.setdefault((doc, str(r.get("PassageID"))), []).append(uid)
                by_text.setdefault((doc, _norm(text)), uid)
    questions = []
    for r in json.loads(qpath.read_text(encoding="utf-8")):
        gold: list[int] = []
        texts, docs = [], []
        for p in r.get("Passages", []):
            doc = str(int(p["DocumentID"]))
            uid = by_text.get((doc, _norm(p["Passage"])))
            if uid is None:
                cands = index.get((doc, str(p.get("PassageID"))), [])
                uid = cands[0] if len(cands) == 1 else None
            if uid is not None and uid not in gold:
                gold.append(uid)
            texts.append(p["Passage"])
            docs.append(doc)
        questions.append(Question(str(r["QuestionID"]), r["Question"], sorted(set(docs)), gold, texts))
    return Dataset("obliqa", units, questions, budget=600, k=10)


def load_policyqa(path: Path) -> Dataset:
    """PolicyQA dev (SQuAD format): each paragraph is a unit; one question per QA, scoped to its policy.

    The questions are generic ("How are users told about changes?"), so retrieval is restricted to the
    question's own policy, as a metadata filter does in the project.
    """
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"PolicyQA: {path} not found (pass the SQuAD-format dev.json)")
    data = json.loads(path.read_text(encoding="utf-8"))["data"]
    units: list[Unit] = []
    questions: list[Question] = []
    for art in data:
        doc = str(art["title"])
        for p in art["paragraphs"]:
            uid = len(units)
            units.append(Unit(doc, p["context"], len(p["context"].split())))
            for qa in p["qas"]:
                ans = [a for a in qa.get("answers", []) if a.get("text")]
                spans = [[uid, a["answer_start"], a["answer_start"] + len(a["text"])] for a in ans]
                questions.append(Question(str(qa["id"]), qa["question"], [doc], [uid], [p["context"]], [a["text"] for a in ans],
                                          scope=doc, group=f"{doc}\x00{_norm(qa['question'])}", answer_spans=spans))
    return Dataset("policyqa", units, questions, budget=400, k=5)


# Deliberately not rag.text.sentences.split_sentences: that one protects abbreviations ("Sec.", "U.S.")
# and list items for chunking policy PDFs, and splits differently (no split after ';' or ':', none on a
# lone newline). The scorer's answer-sentence groups, pseudo-queries and sentence evaluation were built
# with this simpler rule; changing it would change the training data and the reported numbers.
_SENT = re.compile(r"(?<=[.!?;:])\s+(?=[\"'(\[A-Z0-9•\-])|\n+")


def split_sentences(text: str) -> list[tuple[int, int]]:
    """(start, end) character spans of sentences: enough for picking evidence, no NLP dependency."""
    spans, start = [], 0
    for m in _SENT.finditer(text):
        if text[start : m.start()].strip():
            spans.append((start, m.start()))
        start = m.end()
    if text[start:].strip():
        spans.append((start, len(text)))
    return spans


def sentence_texts(u: Unit) -> list[tuple[int, int, str]]:
    """(start, end, stripped text) of each sentence of a unit."""
    return [(a, b, u.text[a:b].strip()) for a, b in split_sentences(u.text)]


def split_docs(docs: Iterable[str], n_test: int, n_val: int, seed: int = SEED) -> dict[str, list[str]]:
    """Shuffle the sorted document ids with a fixed seed: test first, then validation, the rest train.

    Sorting first (by length, then text) makes the result independent of the order the files list them in.
    """
    ds = sorted(set(docs), key=lambda d: (len(d), d))
    random.Random(seed).shuffle(ds)
    return {"test": sorted(ds[:n_test]), "val": sorted(ds[n_test : n_test + n_val]), "train": sorted(ds[n_test + n_val :])}


def question_split(q: Question, split: dict[str, list[str]]) -> str | None:
    """The part a question belongs to, or None when its gold documents span two parts (dropped)."""
    parts = {name for name, docs in split.items() for d in q.docs if d in docs}
    return parts.pop() if len(parts) == 1 else None


def is_hit(q: Question, u: Unit) -> bool:
    """The project's hit rule (rag.jobs.datasets): in a gold document, and overlapping a gold passage
    or holding a gold answer span."""
    return u.doc in q.docs and chunk_matches(u.text, q.gold_texts, q.answers)


def select_questions(parts: Sequence[str | None], limit: int | None) -> list[int]:
    """Indices of the questions to keep: all with a part, or `limit` of them taken in turn from train,
    validation and test (file order within each part), so a quick run still trains, validates and tests."""
    by_part = {p: [i for i, x in enumerate(parts) if x == p] for p in PARTS}
    if limit is None:
        return [i for i, x in enumerate(parts) if x is not None]
    keep: list[int] = []
    for j in range(max(len(v) for v in by_part.values())):
        for p in PARTS:
            if len(keep) < limit and j < len(by_part[p]):
                keep.append(by_part[p][j])
    return sorted(keep)


# ---------------------------------------------------------------------------------------------
# The prepared file: splits, candidates and pseudo-queries in one gzip JSON, so training and
# evaluation need neither an index nor the retrieval models.


def write_prepared(path: Path, payload: dict[str, Any]) -> None:
    """Write atomically (a half-written cache would be reused by the next run)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with gzip.open(tmp, "wt", encoding="utf-8") as f:
        json.dump({k: v for k, v in payload.items() if not k.startswith("_")}, f)
    tmp.replace(path)


def load_prepared(path: Path) -> dict[str, Any]:
    """The prepared file back, each set with its `Dataset` under "dataset"."""
    with gzip.open(path, "rt", encoding="utf-8") as f:
        payload = json.load(f)
    for name, s in payload["sets"].items():
        s["dataset"] = Dataset(name, [Unit(**u) for u in s["units"]], [Question(**q) for q in s["questions"]],
                               s["budget"], s["k"], s["split"])
    return payload


def set_payload(ds: Dataset, parts: list[str | None], candidates: list[dict[str, Any]]) -> dict[str, Any]:
    """One set's entry in the prepared file (the scratch recipe's format, so its files still load)."""
    return {"units": [asdict(u) for u in ds.units], "questions": [asdict(q) for q in ds.questions], "parts": parts,
            "candidates": candidates, "split": ds.split, "budget": ds.budget, "k": ds.k}
