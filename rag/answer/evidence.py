"""Sentence-level view of the retrieved passages, embedded once per answer (or once per batch).

Every support score and extractive choice is made over these sentences, so headings are split off
and whitespace normalised here, once.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from rag.text.headings import looks_like_heading
from rag.text.lexical import lexical_tokens
from rag.text.sentences import split_sentences
from rag.types import Passage


def lexical_support(sentence: str, passage_text: str) -> float:
    """Share of the sentence's content words that occur in the passage (0..1)."""
    s = set(lexical_tokens(sentence))
    if not s:
        return 0.0
    p = set(lexical_tokens(passage_text))
    return len(s & p) / len(s)


def evidence_sentences(text: str) -> list[str]:
    """Sentences of a passage, with heading lines split off and whitespace normalised."""
    out: list[str] = []
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in [*re.finditer(r"\n[ \t]*\n", text), None]:  # paragraphs first: a heading paragraph stands alone
        end = m.start() if m else len(text)
        spans += split_sentences(text, pos, end)
        pos = m.end() if m else len(text)
    for a, b in spans or [(0, len(text))]:
        lines = text[a:b].split("\n")
        buf: list[str] = []
        for i, line in enumerate(lines):
            nxt = lines[i + 1] if i + 1 < len(lines) else ""
            if not buf and nxt and looks_like_heading(line, "", nxt, True) is not None:
                out.append(" ".join(line.split()))  # a heading: its own unit
                continue
            buf.append(line)
        if buf:
            out.append(" ".join(" ".join(buf).split()))
    return [s for s in out if s]


def passage_sentences(text: str) -> list[str]:
    """The sentences of a passage that evidence is made of (evidence_sentences, one-character leftovers dropped)."""
    return [s for s in evidence_sentences(text) if len(s) > 1]


# ---------------------------------------------------------------------------------------------
# Attribution


def embed_sentences(embedder: Any, texts: Sequence[str]) -> np.ndarray:
    """Sentence vectors. On CPU, in batches of 8 (sorted by length by the embedder): -45 % CPU against 64, where one
    long sentence pads the whole batch (benchmarks/RESULTS.md, issue 16); a GPU keeps the embedder's own batch size."""
    if not texts:
        return np.zeros((0, 1), np.float32)
    cpu = str(getattr(embedder, "device", "cpu")) == "cpu"
    return embedder.encode(list(texts), **({"batch_size": 8} if cpu else {}))


def prefetch_evidence(passage_lists: Sequence[Sequence[Passage]], embedder: Any, cache: dict[str, tuple[list[str], np.ndarray]]) -> None:
    """Split and embed the sentences of every passage not yet in `cache`, in one encode call.

    Batch runs answer many questions whose passages overlap; embedding each passage once, together,
    is what makes them faster than a loop of single questions.
    """
    todo: dict[str, list[str]] = {}
    for passages in passage_lists:
        for p in passages:
            cid = p.chunk.chunk_id
            if cid not in cache and cid not in todo:
                todo[cid] = passage_sentences(p.chunk.text)
    flat = [s for sents in todo.values() for s in sents]
    if not todo:
        return
    vecs = embed_sentences(embedder, flat)
    i = 0
    for cid, sents in todo.items():
        cache[cid] = (sents, vecs[i : i + len(sents)])
        i += len(sents)


@dataclass
class Evidence:
    """Sentence-level view of the passages, embedded once per answer."""

    passages: Sequence[Passage]
    embedder: Any
    sentences: list[list[str]] = field(default_factory=list)
    vectors: list[np.ndarray] = field(default_factory=list)
    cache: dict[str, tuple[list[str], np.ndarray]] | None = None  # chunk_id -> sentences, vectors
    dense_weight: float = 0.5  # support = w * similarity + (1 - w) * share of content words found

    def __post_init__(self) -> None:
        cache = self.cache if self.cache is not None else {}
        prefetch_evidence([self.passages], self.embedder, cache)
        for p in self.passages:
            sents, vecs = cache[p.chunk.chunk_id]
            self.sentences.append(sents)
            self.vectors.append(vecs)

    def support(self, sentence: str, vec: np.ndarray, n: int) -> tuple[float, str]:
        """(support of the sentence by passage n (1-based), the passage sentence that supports it best)."""
        sents, vecs = self.sentences[n - 1], self.vectors[n - 1]
        if not sents:
            return 0.0, ""
        sims = vecs @ vec
        j = int(np.argmax(sims))
        lex = lexical_support(sentence, self.passages[n - 1].chunk.text)
        return self.dense_weight * float(sims[j]) + (1 - self.dense_weight) * lex, sents[j]


# ---------------------------------------------------------------------------------------------
# What may be quoted: an answer is a sentence, never a heading, caption, fragment or bare lead-in

_FOOTNOTE_LEAD = re.compile(r"^\d{1,3}(?:\s+(?=[A-Z“\"(])|(?=[A-Z][a-z]))")  # "9 In applicable ..." / "10See, e.g."
_BULLET = re.compile(r"^(?:[•·▪◦‣∙*]|[-–—](?=\s))\s*")
_ENUM = re.compile(r"^\(?(?:[a-z]|[ivxlc]{1,5}|[A-Z]|\d{1,2})[.)]\s+(?=\S)")
_TRAILING_ENUM = re.compile(r"(?<=[.:;?’”\"])\s+\(?(?:[a-z]|[ivx]{1,4}|[A-Z]|\d{1,2})[.)]$")
_LABEL = re.compile(r"^[A-Z][A-Z ,/&]{2,40}:\s+(?=[A-Z“\"(])")  # "DATES: Written comments ..."
_CAPTION = re.compile(r"^(?:fig(?:ure)?\.?|table|exhibit|chart|box|diagram)\s*[A-Z]?\d+(?:\.\d+)?\s*[.:–-]?(?:\s|$)", re.I)
_LEADIN_END = re.compile(r"(?::|\b(?:which|that|these|they|this|it)\s+(?:include|includes|are|is)|\binclud(?:e|es|ing)|"
                         r"\bthe following|\bas follows|\bsuch as|\bnamely|\bfollowing (?:\w+\s+){0,2}\w+)\s*[:,]?$", re.I)
_MONTH = r"(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Sept|Oct|Nov|Dec)[a-z]*\.?"
_CITATION_NOTE = re.compile(r"https?://|www\.|\bdoi\b|\bPub\. ?L\.|\bU\.S\.C\.|\bet al\.|\bSee,? e\.g\.|^See\b|\bId\.|\(\d{4}\)"
                            r"|\barXiv\b|\bSSRN\b|\bpress release\b|\bWorking Paper\b"
                            rf"|\(\s*{_MONTH} \d{{1,2}}, \d{{4}}\s*\)"  # "(July 20, 2018)"
                            rf"|[”\"],? (?:[A-Z][\w.&’'-]*\s?){{1,4}}, {_MONTH} (?:\d{{1,2}}, )?\d{{4}}"  # "...,” Reuters, November 1, 2023"
                            rf"|,[”\"] (?:{_MONTH} (?:\d{{1,2}}, )?\d{{4}}|\d{{1,2}} {_MONTH} \d{{4}})")  # "“Report ...,” February 1, 2024"

# a footnote pointing to its source opens with "See" / "Cf." / "Id.": with a year or a link it is one, however long
_REFERENCE_LEAD = re.compile(r"(?:See|Cf\.|Id\.)(?:,? e\.g\.,?)?\s")


def unescape_markdown(text: str) -> str:
    """Markdown sources escape list markers and brackets ("\\(b\\)"): the reader sees "(b)"."""
    return re.sub(r"\\([()\[\]*_.#+!`{}<>|-])", r"\1", text)


def strip_footnote_marker(sentence: str) -> str:
    """Drop a leading footnote number ("9 In applicable situations" -> "In applicable situations").

    Only a marker at the very start is removed: digits inside a sentence ("Order 14110", a number
    glued to a word by PDF extraction) are the sentence's own.
    """
    return _FOOTNOTE_LEAD.sub("", sentence, count=1)


def clean_sentence(sentence: str) -> str:
    """A sentence as it may be quoted: no footnote marker, bullet, form label or stray trailing enumerator."""
    s = strip_footnote_marker(unescape_markdown(sentence).strip())
    s = _BULLET.sub("", s)
    s = _LABEL.sub("", s)
    s = _TRAILING_ENUM.sub("", s)
    return s.strip()


def is_list_item(sentence: str) -> bool:
    """A bullet or enumerated item ("• Led by DOC ...", "(i) Propose ...", "1. By October 15 ...")."""
    s = unescape_markdown(sentence).strip()
    return bool(_BULLET.match(s) or _ENUM.match(s))


def is_leadin(sentence: str) -> bool:
    """A sentence that only announces what follows ("... which include", "the following:", "... include:")."""
    return bool(_LEADIN_END.search(sentence.strip().rstrip("—–- ")))


def not_quotable(sentence: str) -> str | None:
    """Why a (cleaned) sentence cannot be an answer, or None when it can.

    Headings, captions and fragments resemble questions (they are short and full of topic words)
    but answer nothing; questions (a request for comment is full of them) answer nothing either.
    """
    s = sentence.strip()
    words = re.findall(r"[A-Za-z][\w’'-]*", s)
    if len(lexical_tokens(s)) < 3 or len(words) < 4:
        return "fragment"
    if s.rstrip("’”\"' ").endswith("?"):
        return "question"
    if _CAPTION.match(s):
        return "caption"
    letters = [c for c in s if c.isalpha()]
    if letters and sum(c.isupper() for c in letters) / len(letters) > 0.6:
        return "heading"  # ALL-CAPS: "SECTION 5 OF OMB MEMORANDUM M-24-10"
    if looks_like_heading(s, "", "", True) is not None:
        return "heading"
    big = [w for w in words if w.lower() not in _SMALL_WORDS]
    if len(words) <= 10 and big and sum(w[0].isupper() for w in big) / len(big) >= 0.8:
        return "heading"  # Title Case: "Sec. 3. Strengthening AI Governance."
    if s[-1] not in ".!?;:)”\"’" and len(words) < 8:
        return "fragment"
    if s[0].islower() and not _ENUM.match(s):
        return "fragment"  # the tail of a sentence cut by a chunk or page boundary
    if _REFERENCE_LEAD.match(s) and re.search(r"https?://|www\.|\b(?:19|20)\d{2}\b", s):
        return "citation"  # "See Arvind Narayanan and Sayash Kapoor, AI safety is not ..., Mar. 12, 2024, https://...": a footnote
    if _CITATION_NOTE.search(s) and (len(re.sub(r"\S*(?:https?://|www\.)\S*", "", s).split()) < 16
                                     or not re.search(r"\b(?:must|shall|should|will|may|can|is|are|was|were)\b", s)):
        return "citation"  # a footnote's reference, not a statement
    if re.search(r"\.{4,}|…{2,}", s):
        return "heading"  # a table-of-contents line
    return None


_SMALL_WORDS = frozenset(["a", "an", "and", "as", "at", "by", "for", "from", "in", "of", "on", "or", "the", "to", "with", "via", "into", "its", "is", "are", "be", "vs"])


@dataclass(frozen=True)
class Unit:
    """A quotable unit of a passage: one sentence, a list item, or a lead-in with the items it announces."""

    text: str  # cleaned, ready to quote
    parts: tuple[int, ...]  # indices into the passage's evidence sentences
    kind: str  # sentence | item | list


def passage_units(sentences: Sequence[str], max_items: int = 8) -> list[Unit]:
    """The quotable units of one passage's sentences, in document order.

    A lead-in is only quoted together with the list it announces ("... which include valid and
    reliable, safe, ..."; "To report on such waivers: 1. Agencies must ..."); alone it is dropped.
    """
    out: list[Unit] = []
    sentences = [unescape_markdown(x) for x in sentences]
    caption = False
    for i, raw in enumerate(sentences):
        s = clean_sentence(raw)
        if caption or not s:
            caption = False
            continue  # the text of a caption whose label ("Fig. 5.") the splitter cut off
        if _CAPTION.match(raw.strip()) and len(raw.split()) <= 3:
            caption = True
            continue
        item = is_list_item(raw) or is_list_item(strip_footnote_marker(raw))
        if is_leadin(s):
            parts, texts = [i], [s]
            for j in range(i + 1, min(len(sentences), i + 1 + 2 * max_items)):
                nxt = sentences[j].strip()
                if re.fullmatch(r"\(?(?:[a-z]|[ivx]{1,4}|\d{1,2})[.)]", nxt):
                    continue  # a bare enumerator split off its item
                if not (is_list_item(nxt) or nxt[:1].islower()) or len(parts) > max_items:
                    break
                parts.append(j)
                texts.append(clean_sentence(nxt))
            if len(parts) > 1 and not_quotable(" ".join(texts)) is None:
                out.append(Unit(" ".join(texts), tuple(parts), "list"))
            continue
        if not_quotable(s) is None:
            out.append(Unit(s, (i,), "item" if item else "sentence"))
    return out
