"""Lexical tokens for BM25: keeps policy identifiers whole ("m-24-10", "4.6", "14110") and adds parts.

Pure functions, shared by indexing and querying so both sides tokenize alike.
"""

from __future__ import annotations

import re

LEXICAL_VERSION = 1  # bump when tokens change: indexes built before must be rebuilt

_TOKEN = re.compile(r"[a-z0-9]+(?:[-./§][a-z0-9]+)*")
STOPWORDS = frozenset(
    ["a", "an", "and", "are", "as", "at", "be", "been", "but", "by", "can", "could", "did", "do", "does", "for", "from", "had", "has", "have", "how", "i", "if", "in", "into", "is", "it", "its", "may", "might", "must", "not", "of", "on", "or", "our", "shall", "should", "so", "such", "than", "that", "the", "their", "them", "then", "there", "these", "they", "this", "those", "to", "under", "upon", "was", "we", "were", "what", "when", "where", "which", "while", "who", "whom", "why", "will", "with", "would", "you", "your", "about", "any", "all", "also", "each", "other"]
)


def _singular(tok: str) -> str:
    """A light plural fold ("officers" -> "officer", "policies" -> "policy"); identifiers untouched."""
    if len(tok) <= 3 or not tok.isalpha():
        return tok
    if tok.endswith("ies") and len(tok) > 4:
        return tok[:-3] + "y"
    if tok.endswith("s") and not tok.endswith(("ss", "us", "is")):
        return tok[:-1]
    return tok


def lexical_tokens(text: str) -> list[str]:
    out: list[str] = []
    for m in _TOKEN.finditer(text.lower()):
        tok = m.group(0).strip("-./")
        if not tok or tok in STOPWORDS:
            continue
        tok = _singular(tok)
        if tok not in STOPWORDS and (len(tok) > 1 or tok.isdigit()):
            out.append(tok)
        if any(c in tok for c in "-./§"):
            out.extend(p for p in re.split(r"[-./§]", tok) if p and p not in STOPWORDS and (len(p) > 1 or p.isdigit()))
    return out


def identifiers(text: str) -> list[str]:
    """Tokens that name something exactly: they mix digits with letters or separators (m-24-10, 4.6, 14110)."""
    out = []
    for m in _TOKEN.finditer(text.lower()):
        tok = m.group(0).strip("-./")
        if any(c.isdigit() for c in tok) and (len(tok) >= 3 or any(c in tok for c in "-./§")):
            out.append(tok)
    return out
