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


# ---------------------------------------------------------------------------------------------
# Attribution


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
                todo[cid] = [s for s in evidence_sentences(p.chunk.text) if len(s) > 1]
    flat = [s for sents in todo.values() for s in sents]
    if not todo:
        return
    vecs = embedder.encode(flat) if flat else np.zeros((0, 1), np.float32)
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
