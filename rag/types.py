"""The data that flows through the pipeline: Document -> Chunk -> Passage -> Answer.

Frozen dataclasses with ids derived from content hashes, so the same input always yields the same
ids (incremental builds and answer records depend on that).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any


def content_hash(*parts: str | bytes, length: int = 16) -> str:
    h = hashlib.sha256()
    for p in parts:
        h.update(p.encode("utf-8") if isinstance(p, str) else p)
        h.update(b"\x1f")
    return h.hexdigest()[:length]


@dataclass(frozen=True)
class Heading:
    """A heading found in a document: where it starts in the text, its depth and its title."""

    char_start: int
    level: int
    title: str


@dataclass(frozen=True)
class Document:
    """A loaded document: its whole text plus where pages and headings begin in that text."""

    doc_id: str  # content hash of the file bytes
    source: str  # path relative to the corpus root, with forward slashes
    title: str
    text: str
    page_starts: tuple[int, ...] = (0,)  # char offset where page i+1 starts
    headings: tuple[Heading, ...] = ()
    date: str | None = None
    source_url: str | None = None
    file_type: str = "txt"
    has_pages: bool = True  # False for formats without real pages (md, html, docx)
    sha256: str = ""  # of the bytes that were loaded (the manifest's change check)

    @property
    def page_count(self) -> int:
        return len(self.page_starts)

    def page_at(self, offset: int) -> int:
        """1-based page holding char `offset`."""
        import bisect

        return max(1, bisect.bisect_right(self.page_starts, offset))


@dataclass(frozen=True)
class Chunk:
    """A span of a document, sized to fit the embedder, with everything needed to cite it."""

    chunk_id: str
    doc_id: str
    source: str
    title: str
    ordinal: int  # position within its document
    text: str  # exactly document.text[char_start:char_end]
    char_start: int
    char_end: int
    page: int
    page_end: int
    section: str  # heading path, "A > B > C"
    n_tokens: int  # embedder tokens of embed_text, special tokens excluded
    embed_text: str  # what is embedded: a short context header + text
    date: str | None = None

    @property
    def text_hash(self) -> str:
        """Key of the embedding cache: equal embed texts share one vector."""
        return content_hash(self.embed_text, length=32)

    @property
    def label(self) -> str:
        pages = (
            f"p. {self.page}" if self.page == self.page_end else f"pp. {self.page}-{self.page_end}"
        )
        sec = f" § {self.section}" if self.section else ""
        return f"{self.title}, {pages}{sec}"

    @property
    def faiss_id(self) -> int:
        return chunk_faiss_id(self.chunk_id)


def chunk_faiss_id(chunk_id: str) -> int:
    """Stable positive int64 id for FAISS, derived from the chunk's hash id."""
    return int(chunk_id[:15], 16)


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its score and rank for one query."""

    chunk: Chunk
    score: float
    rank: int
    scores: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    neighbours: tuple[Chunk, ...] = field(default=(), compare=False, hash=False)  # context, not cited
    span: tuple[int, int] | None = None  # the part of chunk.text that answers best (char offsets), when focused
    # its document's identity and status ({identifiers, kind, date, status, tag}), when the index has them (issue 13)
    document: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    @property
    def text(self) -> str:
        """What a reader is shown first: the focused span of a long chunk, else the whole chunk."""
        return self.chunk.text[self.span[0] : self.span[1]] if self.span else self.chunk.text

    @property
    def display_score(self) -> tuple[str, float]:
        """(name, value in 0..1) of the score a reader is shown: the evidence scorer's relevance when the
        passage was reranked, else the cosine similarity of question and passage (clipped: a negative
        cosine only means unrelated). Lists shown to readers are sorted by it."""
        if "rerank_p" in self.scores:
            return "relevance", min(1.0, max(0.0, float(self.scores["rerank_p"])))
        return "similarity", min(1.0, max(0.0, float(self.scores.get("dense", self.score))))

    def to_dict(self) -> dict[str, Any]:
        c = self.chunk
        return {
            "rank": self.rank,
            "score": round(float(self.score), 6),
            "chunk_id": c.chunk_id,
            "doc_id": c.doc_id,
            "source": c.source,
            "title": c.title,
            "date": c.date,
            "page": c.page,
            "page_end": c.page_end,
            "section": c.section,
            "label": c.label,
            "char_start": c.char_start,
            "char_end": c.char_end,
            "text": c.text,
            **({"span": list(self.span), "span_text": self.text} if self.span else {}),
            **(
                {"scores": {k: round(float(v), 6) for k, v in self.scores.items()}}
                if self.scores
                else {}
            ),
            "display_score": {"name": self.display_score[0], "value": round(self.display_score[1], 4)},
            **({"document": self.document} if self.document else {}),
        }


@dataclass(frozen=True)
class Citation:
    """[n] -> the n-th passage given to the model, the sentence of it that supports the claim, and how well."""

    n: int
    passage: Passage
    quote: str
    support: float

    def to_dict(self) -> dict[str, Any]:
        c = self.passage.chunk
        return {
            "n": self.n, "chunk_id": c.chunk_id, "doc_id": c.doc_id, "source": c.source, "title": c.title, "date": c.date,
            "page": c.page, "page_end": c.page_end, "section": c.section, "label": c.label, "quote": self.quote,
            "support": round(float(self.support), 4),
            **({"document": self.passage.document} if self.passage.document else {}),
        }


@dataclass(frozen=True)
class AnswerSentence:
    text: str  # the sentence without markers
    citations: tuple[int, ...]  # passage numbers (1-based) it cites after attribution
    support: float  # best support score among its citations
    supported: bool
    added: bool = False  # citation added by attribution (the model gave none valid)

    def to_dict(self) -> dict[str, Any]:
        return {"text": self.text, "citations": list(self.citations), "support": round(float(self.support), 4),
                "supported": self.supported, "citation_added": self.added}


@dataclass(frozen=True)
class Answer:
    question: str
    text: str  # rendered answer with [n] markers
    refused: bool
    mode: str  # requested answer mode: generative | extractive | auto
    produced_by: str  # generative | extractive | refusal
    citations: tuple[Citation, ...]
    passages: tuple[Passage, ...]
    sentences: tuple[AnswerSentence, ...] = ()
    model: str | None = None
    index_id: str | None = None
    note: str | None = None
    timings: dict[str, float] = field(default_factory=dict, compare=False, hash=False)
    record: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    # the system's notes on cited documents revoked/superseded/amended as of the date asked (issue 13)
    status_notes: tuple[dict[str, Any], ...] = field(default=(), compare=False, hash=False)
    # a question comparing two documents or dates, answered side by side: its sides, relations, gaps (issue 13)
    comparison: dict[str, Any] | None = field(default=None, compare=False, hash=False)

    def to_dict(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.text,
            "refused": self.refused,
            "mode": self.mode,
            "produced_by": self.produced_by,
            "note": self.note,
            "citations": [c.to_dict() for c in self.citations],
            "sentences": [s.to_dict() for s in self.sentences],
            # sentences no passage backs (kept, flagged, in generative mode): a reader must not trust them
            "unsupported_sentences": [s.text for s in self.sentences if not s.supported],
            "passages": [p.to_dict() for p in self.passages],
            "model": self.model,
            "index_id": self.index_id,
            "timings": {k: (round(v, 4) if isinstance(v, float) else v) for k, v in self.timings.items()},
            "record": self.record,
            "status_notes": list(self.status_notes),
            **({"comparison": self.comparison} if self.comparison else {}),
        }
