"""Check an evaluation question set (JSONL) against the corpus text as the project's loader extracts it.

    python eval/check_questions.py [eval/paraphrased.jsonl] [corpus]
    python eval/check_questions.py --by-document eval/ntia-reader.jsonl ../shared/extra/ntia-open-weights-comments

Checks: required keys and value types; unique ids; every gold quote found (whitespace-normalised,
case-insensitive) in the extracted text of one of its gold sources; `page` equal to the 1-based page of
the first gold quote in the first gold source when that source is a PDF (else null); every answer found
in a gold source's text or in a gold quote; unanswerables with empty gold data; no question sharing a
phrase of 4 or more consecutive words with any corpus document; calibrate/report splits balanced
(answerable, unanswerable and each type within 1 of each other) over the hand-split rows p01-p77;
rows p78 and later (the held-out batch of session 4) are split by `hash_split(id)` (sha1 parity) so no
one chose their half, and the check is that each follows that rule (a hash split cannot be balanced
to within 1, so those rows are kept out of the balance check).

`check_question_set(path, corpus_dir) -> list[str]` returns the problems; exit status 1 if any.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import re
import sys
import unicodedata
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

REQUIRED_KEYS = ("id", "question", "answers", "gold_sources", "gold_quotes", "page", "answerable", "type", "split")
TYPES = {"lookup", "date", "who", "number", "summary", "why", "two-doc", "named-doc"}
SPLITS = ("calibrate", "report")
NGRAM = 4
QUOTE_WORDS = (6, 25)
ANSWER_WORDS = (1, 6)
TEXT_SUFFIXES = {".pdf", ".md", ".txt", ".html", ".htm", ".docx"}
SKIP_NAMES = {"SOURCES.md"}  # provenance notes, not a corpus document
# a set split by document (--by-document) is training and evaluation data written for the scorer: its quotes are the
# whole answering sentence, its answers may be a list or a reason, and it asks which / how / yes-no / list questions
BY_DOCUMENT = {"quote_words": (6, 45), "answer_words": (1, 20), "types": TYPES | {"which", "how", "yesno", "list"}}
# by document, a shared run needs two content words: "is the amount of" is grammar, not the document's phrase
_FUNCTION = "a an the of to in on for and or is are was were be by with as at from that this it its what which who how does do did"
FUNCTION_WORDS = frozenset(_FUNCTION.split())
HASH_SPLIT_FROM = 78  # ids p78 onwards are split by sha1 parity, not by hand


@dataclass(frozen=True)
class CorpusText:
    text: str
    page_starts: tuple[int, ...]
    is_pdf: bool
    title: str = ""


def load_corpus_text(path: Path, corpus_dir: Path) -> CorpusText:
    """The text exactly as the project's loader extracts it (the one place that imports the loader)."""
    from rag.ingest.load import load_document

    doc = load_document(path, corpus_dir)
    return CorpusText(
        text=doc.text,
        page_starts=tuple(doc.page_starts),
        is_pdf=(doc.file_type == "pdf"),
        title=doc.title or "",
    )


@lru_cache(maxsize=4)
def _corpus(corpus_dir: str) -> dict[str, CorpusText]:
    root = Path(corpus_dir)
    out: dict[str, CorpusText] = {}
    for p in sorted(root.rglob("*")):
        if p.is_file() and p.suffix.lower() in TEXT_SUFFIXES and p.name not in SKIP_NAMES:
            out[p.relative_to(root).as_posix()] = load_corpus_text(p, root)
    return out


def norm(s: str) -> str:
    """Whitespace-normalised, case-folded."""
    return re.sub(r"\s+", " ", s).strip().casefold()


def _norm_with_map(s: str) -> tuple[str, list[int]]:
    """norm(s) plus, for each output char, its offset in s (to map a match back to a page)."""
    out: list[str] = []
    idx: list[int] = []
    prev_space = True
    for i, ch in enumerate(s):
        if ch.isspace():
            if not prev_space:
                out.append(" ")
                idx.append(i)
            prev_space = True
            continue
        for c in ch.casefold():
            out.append(c)
            idx.append(i)
        prev_space = False
    if out and out[-1] == " ":
        out.pop()
        idx.pop()
    return "".join(out), idx


def words(s: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", unicodedata.normalize("NFKC", s).casefold())


def _ngrams(toks: list[str], n: int = NGRAM) -> set[tuple[str, ...]]:
    return {tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)}


def quote_pages(doc: CorpusText, quote: str) -> list[int]:
    """1-based pages where `quote` occurs in the document (empty if absent)."""
    ntext, idx = _norm_with_map(doc.text)
    q = norm(quote)
    pages = []
    start = ntext.find(q)
    while start >= 0 and q:
        pages.append(max(1, bisect.bisect_right(doc.page_starts, idx[start])))
        start = ntext.find(q, start + 1)
    return pages


def check_question_set(path: str | Path, corpus_dir: str | Path, halves: bool = True) -> list[str]:
    """`halves=False`: a set split by document by its user (eval/ntia-reader.jsonl), so rows carry no `split`
    and an unanswerable row names the document it sits next to in `topic_doc` instead."""
    problems: list[str] = []
    required = REQUIRED_KEYS if halves else tuple(k for k in REQUIRED_KEYS if k != "split") + ("topic_doc",)
    path = Path(path)
    corpus = _corpus(str(Path(corpus_dir).resolve()))
    ntexts = {rel: norm(d.text) for rel, d in corpus.items()}
    corpus_grams: dict[tuple[str, ...], str] = {}
    doc_grams: dict[str, set[tuple[str, ...]]] = {}
    for rel, d in corpus.items():
        doc_grams[rel] = set(_ngrams(words(d.text + "\n" + d.title)))
        for g in doc_grams[rel]:
            corpus_grams.setdefault(g, rel)
    types = TYPES if halves else BY_DOCUMENT["types"]
    limits = {} if halves else {"quote_words": BY_DOCUMENT["quote_words"], "answer_words": BY_DOCUMENT["answer_words"]}

    items = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            items.append(json.loads(line))
        except json.JSONDecodeError as e:
            problems.append(f"line {n}: not JSON ({e})")
    ids = Counter(q.get("id") for q in items)
    problems += [f"id {i!r} used {c} times" for i, c in ids.items() if c > 1]

    for q in items:
        qid = q.get("id", "?")
        missing = [k for k in required if k not in q]
        if missing:
            problems.append(f"{qid}: missing keys {missing}")
            continue
        if not isinstance(q["question"], str) or not q["question"].strip():
            problems.append(f"{qid}: empty question")
            continue
        if q["type"] not in types:
            problems.append(f"{qid}: unknown type {q['type']!r}")
        if halves and q["split"] not in SPLITS:
            problems.append(f"{qid}: unknown split {q['split']!r}")
        if not halves and q["topic_doc"] not in corpus:
            problems.append(f"{qid}: topic_doc {q['topic_doc']!r} is not a corpus document")
        elif not halves and q["answerable"] and q["gold_sources"] and q["topic_doc"] != q["gold_sources"][0]:
            problems.append(f"{qid}: topic_doc must be the first gold source")
        if not isinstance(q["answerable"], bool):
            problems.append(f"{qid}: answerable must be true/false")
        for k in ("answers", "gold_sources", "gold_quotes"):
            if not isinstance(q[k], list) or not all(isinstance(x, str) for x in q[k]):
                problems.append(f"{qid}: {k} must be a list of strings")
                break
        else:
            problems += _check_gold(q, corpus, ntexts, **limits)

        # by document: the phrase rule is about the question's own document (the other letters' stock phrases
        # such as "the national science foundation" are no copying)
        own = corpus_grams if halves else doc_grams.get(q["topic_doc"], set())
        shared = sorted({" ".join(g) for g in _ngrams(words(q["question"])) if g in own
                         and (halves or sum(w not in FUNCTION_WORDS for w in g) >= 2)})
        if shared:
            problems.append(f"{qid}: question shares phrase(s) with the corpus: {shared}")

    if halves:
        problems += _check_splits(items)
    return problems


def _check_gold(q: dict, corpus: dict[str, CorpusText], ntexts: dict[str, str], quote_words: tuple[int, int] = QUOTE_WORDS,
                answer_words: tuple[int, int] = ANSWER_WORDS) -> list[str]:
    qid = q["id"]
    out: list[str] = []
    if not q["answerable"]:
        if q["answers"] or q["gold_sources"] or q["gold_quotes"] or q["page"] is not None:
            out.append(f"{qid}: unanswerable must have empty answers/gold_sources/gold_quotes and page null")
        return out
    if not (q["answers"] and q["gold_sources"] and q["gold_quotes"]):
        return [f"{qid}: answerable needs answers, gold_sources and gold_quotes"]
    unknown = [s for s in q["gold_sources"] if s not in corpus]
    if unknown:
        return [f"{qid}: gold source(s) not in corpus: {unknown}"]
    for quote in q["gold_quotes"]:
        n = len(quote.split())
        if not quote_words[0] <= n <= quote_words[1]:
            out.append(f"{qid}: quote has {n} words (want {quote_words[0]}-{quote_words[1]}): {quote!r}")
        if not any(norm(quote) in ntexts[s] for s in q["gold_sources"]):
            out.append(f"{qid}: quote not found in its gold sources: {quote!r}")
    nquotes = [norm(x) for x in q["gold_quotes"]]
    for ans in q["answers"]:
        n = len(ans.split())
        if not answer_words[0] <= n <= answer_words[1]:
            out.append(f"{qid}: answer has {n} words (want {answer_words[0]}-{answer_words[1]}): {ans!r}")
        a = norm(ans)
        if not (any(a in ntexts[s] for s in q["gold_sources"]) or any(a in nq for nq in nquotes)):
            out.append(f"{qid}: answer not found in gold sources or quotes: {ans!r}")
    first = corpus[q["gold_sources"][0]]
    page = q["page"]
    if first.is_pdf:
        pages = next((pp for pp in (quote_pages(first, x) for x in q["gold_quotes"]) if pp), [])
        if not isinstance(page, int) or isinstance(page, bool):
            out.append(f"{qid}: page must be an int for PDF source {q['gold_sources'][0]}")
        elif not pages:
            out.append(f"{qid}: no gold quote is in the first gold source {q['gold_sources'][0]}, so page can't be checked")
        elif page not in pages:
            out.append(f"{qid}: page {page} does not hold the first gold quote found in "
                       f"{q['gold_sources'][0]} (found on {sorted(set(pages))})")
    elif page is not None:
        out.append(f"{qid}: page must be null for non-PDF source {q['gold_sources'][0]}")
    return out


def hash_split(qid: str) -> str:
    """The half a hash-split row belongs to: calibrate when sha1(id) is even, else report."""
    return SPLITS[0] if int(hashlib.sha1(qid.encode()).hexdigest(), 16) % 2 == 0 else SPLITS[1]


def is_hash_split(qid: object) -> bool:
    m = re.fullmatch(r"p(\d+)", qid) if isinstance(qid, str) else None
    return bool(m) and int(m.group(1)) >= HASH_SPLIT_FROM


def _check_splits(items: list[dict]) -> list[str]:
    out: list[str] = []
    items = [q for q in items if q.get("split") in SPLITS]
    for q in items:
        if is_hash_split(q.get("id")) and q["split"] != hash_split(q["id"]):
            out.append(f"{q['id']}: split must be {hash_split(q['id'])!r} (sha1 parity of the id), not {q['split']!r}")
    items = [q for q in items if not is_hash_split(q.get("id"))]

    def counts(pred) -> Counter:
        return Counter(q["split"] for q in items if pred(q))

    for label, pred in (("answerable", lambda q: q.get("answerable") is True),
                        ("unanswerable", lambda q: q.get("answerable") is False)):
        c = counts(pred)
        if abs(c[SPLITS[0]] - c[SPLITS[1]]) > 1:
            out.append(f"splits unbalanced for {label}: {dict(c)}")
    for t in sorted({q.get("type") for q in items if q.get("answerable") is True}, key=str):
        c = counts(lambda q, t=t: q.get("answerable") is True and q.get("type") == t)
        if abs(c[SPLITS[0]] - c[SPLITS[1]]) > 1:
            out.append(f"splits unbalanced for answerable type {t}: {dict(c)}")
    return out


def main(argv: list[str]) -> int:
    here = Path(__file__).resolve().parent
    halves = "--by-document" not in argv
    argv = [a for a in argv if a != "--by-document"]
    path = Path(argv[1]) if len(argv) > 1 else here / "paraphrased.jsonl"
    corpus_dir = Path(argv[2]) if len(argv) > 2 else here.parent / "corpus"
    problems = check_question_set(path, corpus_dir, halves)
    for p in problems:
        print(p)
    n = sum(1 for line in path.read_text(encoding="utf-8").splitlines() if line.strip())
    print(f"{path.name}: {n} questions, {len(problems)} problem(s)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
