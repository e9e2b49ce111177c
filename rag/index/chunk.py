"""Structure-aware chunking, sized in the embedder's own tokens.

Pure functions: given a Document and a tokenizer that returns token character spans, split the text
on sections (headings), then paragraphs, then sentences, then (for very long sentences) token
windows, and pack the pieces greedily into chunks of at most `chunk_tokens` body tokens with
`overlap` tokens of trailing sentences carried into the next chunk. A short context header (title and
heading path) is prepended to what is embedded; header plus body never exceeds the model's
max_seq_length, so nothing is silently truncated by the embedder.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from rag.text.headings import is_memo_field
from rag.text.lexical import LEXICAL_VERSION
from rag.text.sentences import split_sentences, strip_span
from rag.types import Chunk, Document, Heading, content_hash

# 2: readable sources (issue 14): reflowed PDF/text lines, hyphenation undone, footnote markers off
#    words, memo header fields out of section paths, sentences kept whole around "E.O.", "U.S.C.", "No."
CHUNKER_VERSION = 2


def chunk_signature(chunking: Any) -> dict[str, Any]:
    """The settings (`Settings.chunking`) and code versions that shape chunks and BM25 tokens.

    Stored in the manifest: an index built with another signature must be rebuilt.
    """
    return {
        "lexical_version": LEXICAL_VERSION,
        "chunk_tokens": chunking.tokens,
        "chunk_overlap": chunking.overlap,
        "max_header_tokens": chunking.max_header_tokens,
        "chunker_version": CHUNKER_VERSION,
    }

# text -> list of (start, end) character spans of its tokens, special tokens excluded
TokenSpans = Callable[[str], Sequence[tuple[int, int]]]

@dataclass(frozen=True)
class ChunkConfig:
    chunk_tokens: int = 200
    overlap: int = 32
    max_header_tokens: int = 40
    max_seq_length: int = 256  # the embedder's limit, special tokens included
    special_tokens: int = 2  # [CLS] and [SEP] for BERT-style models
    min_section_tokens: int = 24  # a section smaller than this is merged into the next


MAX_TOKEN_CHARS = 24  # longer token spans are counted as several tokens (bounds a chunk's length)
PIECE_CHARS = 16_384  # tokenizers slow down on one huge string; tokenize in pieces cut at whitespace


def _pieces(text: str) -> list[tuple[int, int]]:
    """Spans of `text` of about PIECE_CHARS, cut at whitespace (token-preserving) where there is any."""
    out = []
    a, n = 0, len(text)
    while a < n:
        b = min(n, a + PIECE_CHARS)
        if b < n:
            ws = max(text.rfind(" ", a + PIECE_CHARS // 2, b), text.rfind("\n", a + PIECE_CHARS // 2, b))
            if ws > a:
                b = ws
        out.append((a, b))
        a = b
    return out


class _Counter:
    """Counts tokens of any span of one text from a single tokenizer pass."""

    def __init__(self, text: str, tokenize: TokenSpans) -> None:
        self.starts: list[int] = []
        self.ends: list[int] = []
        pieces = _pieces(text)
        many = getattr(tokenize, "many", None)
        all_spans = many([text[a:b] for a, b in pieces]) if many else [tokenize(text[a:b]) for a, b in pieces]
        for (pa, _), spans in zip(pieces, all_spans, strict=True):
            for s, e in spans:
                s, e = s + pa, e + pa
                # a giant "word" is one [UNK] to the embedder but must not become one giant chunk:
                # count it as a token per MAX_TOKEN_CHARS characters
                while e - s > MAX_TOKEN_CHARS:
                    self.starts.append(s)
                    self.ends.append(s + MAX_TOKEN_CHARS)
                    s += MAX_TOKEN_CHARS
                self.starts.append(s)
                self.ends.append(e)

    def count(self, a: int, b: int) -> int:
        lo = bisect.bisect_left(self.starts, a)
        hi = bisect.bisect_right(self.ends, b)
        return max(0, hi - lo)

    def cut_after(self, a: int, n: int) -> int:
        """Char offset just after the n-th token starting at or after `a`."""
        lo = bisect.bisect_left(self.starts, a)
        idx = min(lo + n, len(self.ends)) - 1
        return self.ends[idx] if idx >= lo else a


def _units(text: str, a: int, b: int, counter: _Counter, budget: int) -> list[tuple[int, int]]:
    """Paragraphs split into sentences, over-long sentences split into token windows."""
    units: list[tuple[int, int]] = []
    para_starts = [a] + [m.end() for m in re.finditer(r"\n[ \t]*\n", text[a:b])]
    bounds = [a + 0] + [a + p for p in para_starts[1:]] + [b]
    for i in range(len(bounds) - 1):
        pa, pb = strip_span(text, bounds[i], bounds[i + 1])
        if pb <= pa:
            continue
        for sa, sb in split_sentences(text, pa, pb):
            while counter.count(sa, sb) > budget:
                cut = counter.cut_after(sa, budget)
                # back off to a space so a word is not split when possible
                space = max(text.rfind(" ", sa, cut), text.rfind("\n", sa, cut))
                if space > sa and counter.count(sa, space) >= budget // 2:
                    cut = space
                elif cut < sb and not text[cut].isspace():
                    # one giant word: cut inside it with a margin, since its pieces re-tokenize
                    # slightly differently on their own ("##ious" -> "ious")
                    cut = counter.cut_after(sa, max(1, budget - 3))
                if cut <= sa:
                    break
                ca, cb = strip_span(text, sa, cut)
                if cb > ca:
                    units.append((ca, cb))
                sa, _ = strip_span(text, cut, sb)
            if sb > sa:
                units.append((sa, sb))
    return units


def section_paths(headings: Sequence[Heading]) -> list[tuple[int, str]]:
    """(char_start, 'A > B > C') for each heading, following heading levels.

    Memo header fields ("FROM: ...", "SUBJECT: ...") are no sections: a loader that reports them as
    headings does not put them in paths."""
    stack: list[Heading] = []
    out = []
    for h in headings:
        if is_memo_field(h.title):
            continue
        while stack and stack[-1].level >= h.level:
            stack.pop()
        stack.append(h)
        out.append((h.char_start, " > ".join(x.title for x in stack)))
    return out


def _header(title: str, section: str, tokenize: TokenSpans, max_tokens: int) -> tuple[str, int]:
    head = f"{title} > {section}" if section else title
    head = re.sub(r"\s+", " ", head).strip()
    if max_tokens <= 0 or not head:
        return "", 0
    spans = list(tokenize(head))
    if len(spans) > max_tokens:
        head = head[: spans[max_tokens - 1][1]].rstrip() + " …"
        spans = list(tokenize(head))
    return head, len(spans)


def chunk_document(
    doc: Document, tokenize: TokenSpans, cfg: ChunkConfig = ChunkConfig()
) -> list[Chunk]:
    text = doc.text
    counter = _Counter(text, tokenize)
    paths = section_paths(doc.headings)
    # section segments: [start, end) with their heading path
    cuts = [(0, "")] + [(s, p) for s, p in paths if s > 0]
    if paths and paths[0][0] == 0:
        cuts[0] = (0, paths[0][1])
    segments: list[tuple[int, int, str]] = []
    for i, (s, p) in enumerate(cuts):
        e = cuts[i + 1][0] if i + 1 < len(cuts) else len(text)
        if e > s:
            segments.append((s, e, p))
    # merge tiny segments (a heading alone) into the next one, keeping the deeper path
    merged: list[tuple[int, int, str]] = []
    carry: int | None = None
    for s, e, p in segments:
        start = carry if carry is not None else s
        if counter.count(s, e) < cfg.min_section_tokens and e < len(text):
            carry = start
            continue
        carry = None
        merged.append((start, e, p))
    if carry is not None:
        if merged:
            s0, _, p0 = merged.pop()
            merged.append((s0, len(text), p0))
        else:
            merged.append((carry, len(text), segments[-1][2] if segments else ""))

    spans: list[tuple[int, int, str, str]] = []  # (a, b, section path, header)
    headers: dict[str, tuple[str, int]] = {}
    for seg_a, seg_b, path in merged:
        if path not in headers:
            headers[path] = _header(doc.title, path, tokenize, cfg.max_header_tokens)
        head, head_tokens = headers[path]
        budget = min(cfg.chunk_tokens, cfg.max_seq_length - cfg.special_tokens - head_tokens)
        budget = max(budget, 8)
        overlap = min(cfg.overlap, budget // 2)
        units = _units(text, seg_a, seg_b, counter, budget)
        i = 0
        while i < len(units):
            j = i
            start = units[i][0]
            while j + 1 < len(units) and counter.count(start, units[j + 1][1]) <= budget:
                j += 1
            a, b = units[i][0], units[j][1]
            spans.append((a, b, path, head))
            if j + 1 >= len(units):
                break
            # overlap: trailing units of this chunk, within the overlap budget, that leave room
            k = j + 1
            while (
                k - 1 > i
                and counter.count(units[k - 1][0], b) <= overlap
                and counter.count(units[k - 1][0], units[j + 1][1]) <= budget
            ):
                k -= 1
            i = k if k <= j else j + 1
    return _make_chunks(doc, spans, tokenize, cfg.max_seq_length - cfg.special_tokens)


def _embed_text(text: str, a: int, b: int, head: str) -> str:
    return f"{head}\n{text[a:b]}" if head else text[a:b]


def _make_chunks(doc: Document, spans: list[tuple[int, int, str, str]], tokenize: TokenSpans, limit: int) -> list[Chunk]:
    """Chunks with exact token counts (batched tokenizer calls). A span that still exceeds the model's
    limit (a cut word re-tokenises into more pieces than it had in place) is halved until it fits."""
    many = getattr(tokenize, "many", None)

    def count(todo: list[tuple[int, int, str, str]]) -> list[int]:
        texts = [_embed_text(doc.text, a, b, head) for a, b, _, head in todo]
        return [len(x) for x in (many(texts) if many else [tokenize(t) for t in texts])]

    counted: list[tuple[tuple[int, int, str, str], int | None]] = list(zip(spans, count(spans), strict=True))
    while any(n is None or (n > limit and sp[1] - sp[0] >= 2) for sp, n in counted):
        nxt: list[tuple[tuple[int, int, str, str], int | None]] = []
        for sp, n in counted:
            a, b, path, head = sp
            if n is not None and (n <= limit or b - a < 2):
                nxt.append((sp, n))
                continue
            mid = (a + b) // 2
            ws = doc.text.rfind(" ", a + (b - a) // 4, mid)
            mid = ws if ws > a else mid
            for x, y in (strip_span(doc.text, a, mid), strip_span(doc.text, mid, b)):
                if y > x:
                    nxt.append(((x, y, path, head), None))
        todo = [sp for sp, n in nxt if n is None]
        fresh = iter(count(todo))
        counted = [(sp, next(fresh) if n is None else n) for sp, n in nxt]
    return [_make_chunk(doc, i, a, b, path, head, int(n or 0)) for i, ((a, b, path, head), n) in enumerate(counted)]


def _make_chunk(doc: Document, ordinal: int, a: int, b: int, section: str, head: str, n_tokens: int) -> Chunk:
    body = doc.text[a:b]
    embed_text = _embed_text(doc.text, a, b, head)
    text_hash = content_hash(embed_text, length=32)
    return Chunk(
        chunk_id=content_hash(doc.doc_id, str(a), str(b), text_hash, length=20),
        doc_id=doc.doc_id,
        source=doc.source,
        title=doc.title,
        ordinal=ordinal,
        text=body,
        char_start=a,
        char_end=b,
        page=doc.page_at(a),
        page_end=doc.page_at(b - 1),
        section=section,
        n_tokens=n_tokens,
        embed_text=embed_text,
        date=doc.date,
    )
