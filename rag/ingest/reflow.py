"""Readable text from line-broken pages (PDF, plain text exported from PDF).

PDF text comes out one printed line at a time: sentences cut into half-lines and words cut by
hyphenation ("illus-" / "trated"). Passages are quoted to readers and embedded for search, so the
page text is reflowed here, before offsets (pages, headings, chunks) are computed:

- a hyphen at a line end is removed when it only splits a word ("illus-trated" -> "illustrated") and
  kept when it is a real one ("open-weight"): the document's own vocabulary decides (is the joined
  form, or the hyphenated one, used elsewhere in it?), then a few rules (prefixes, suffixes, both
  halves words of their own);
- wrapped lines are joined into one line per paragraph; headings, list items, ALL-CAPS lines, memo
  header fields and short lines (table cells, addresses) keep their own lines.
"""

from __future__ import annotations

import re

from rag.text.headings import MEMO_FIELD, looks_like_heading

# a list item, a numbered paragraph or a footnote ("12 Executive Order ...") starts its own line
LIST_START = re.compile(
    r"^\s*(?:[•·▪●◦■□➢✓*–—-]\s|\(?[a-zA-Z]{1,2}\)\s|\(?[ivxlcIVXLC]{1,5}[.)]\s|\(?\d{1,3}(?:\.\d{1,3})*[.)]?\s+\S|[A-Za-z]\.\s)"
)

_WORD = re.compile(r"[A-Za-z]+")
# possessive runs and a word-start lookbehind: a 10 MB line of letters must stay linear, not quadratic
_COMPOUND = re.compile(r"(?<![\w])[A-Za-z]++-[A-Za-z]++\b")
_HYPHEN_BREAK = re.compile(r"(?<![A-Za-z0-9])([A-Za-z0-9]++)-\n\s*+([A-Za-z0-9]+)")
# hyphenated prefixes that stay hyphenated ("non-\nbinding" -> "non-binding")
_PREFIXES = {
    "non",
    "self",
    "cross",
    "well",
    "multi",
    "co",
    "semi",
    "post",
    "anti",
    "dual",
    "high",
    "low",
    "long",
    "short",
    "open",
    "real",
    "third",
    "first",
    "second",
    "state",
    "end",
    "all",
    "ex",
    "mid",
    "sub",
    "full",
    "large",
    "small",
    "wide",
    "near",
    "user",
    "risk",
    "data",
    "AI",
    "US",
}
# endings that are never words of their own: a break before them splits one word
_SUFFIXES = {
    "tion",
    "tions",
    "sion",
    "sions",
    "ment",
    "ments",
    "ness",
    "ity",
    "ities",
    "ing",
    "ings",
    "ed",
    "es",
    "ly",
    "al",
    "ally",
    "ance",
    "ances",
    "ence",
    "ences",
    "able",
    "ible",
    "ive",
    "ives",
    "ous",
    "ure",
    "ures",
    "ize",
    "izes",
    "ized",
    "izing",
    "ization",
    "izations",
    "ist",
    "ists",
    "ism",
    "ogy",
    "ical",
    "ary",
    "ory",
    "ated",
    "ates",
    "ating",
    "ers",
    "ors",
    "ful",
    "less",
    "ship",
    "ty",
    "ties",
    "cy",
    "cies",
    "ic",
    "ics",
    "ian",
    "ial",
}


def vocabulary(text: str) -> tuple[set[str], set[str]]:
    """(words, hyphenated compounds) the text uses away from line-end hyphens, lower-cased."""
    body = _HYPHEN_BREAK.sub(" ", text)
    words = {w.lower() for w in _WORD.findall(body) if len(w) >= 2}
    compounds = {c.lower() for c in _COMPOUND.findall(body)}
    return words, compounds


def keep_hyphen(left: str, right: str, words: set[str], compounds: set[str]) -> bool:
    """Is the hyphen that ends a line between `left` and `right` a real one (True) or hyphenation?"""
    if not left or not right or left[-1].isdigit() or right[0].isdigit():
        return True  # identifiers and numbers: "M-25-" / "21", "2019/07/m-19-" / "13.pdf"
    joined = (left + right).lower()
    if f"{left}-{right}".lower() in compounds and joined not in words:
        return True
    if joined in words:
        return False
    if right[0].isupper():
        return True  # "Rights-" / "Impacting"
    if left.lower() in _PREFIXES or left in _PREFIXES:
        return True
    if right.lower() in _SUFFIXES:
        return False
    return len(left) >= 3 and len(right) >= 3 and left.lower() in words and right.lower() in words


def _is_caps(line: str) -> bool:
    letters = [c for c in line if c.isalpha()]
    return len(letters) >= 4 and all(c.isupper() for c in letters)


def line_width(lines: list[str]) -> int:
    """The typical full line length of a document (80th percentile of its longer lines)."""
    lens = sorted(len(x.strip()) for x in lines if len(x.strip()) >= 10)
    if not lens:
        return 0
    return lens[min(len(lens) - 1, int(0.8 * len(lens)))]


_OPEN_END = re.compile(r"(?:,|\b(?:and|or|nor|the|a|an|of|to|in|for|with|by|on|at|from|as|that|under|including))$")


def _continues(para: str, prev: str, nxt: str, width: int, before: str) -> bool:
    """Does line `nxt` continue the paragraph `para` (whose last printed line is `prev`)?"""
    p, n = prev.rstrip(), nxt.strip()
    if not p or not n or LIST_START.match(n) or MEMO_FIELD.match(n) or _is_caps(p) or _is_caps(n):
        return False
    if n[0].islower() or _OPEN_END.search(para):
        return True  # a line never starts a sentence in lower case, nor ends a paragraph on "and" or ","
    if para == p and looks_like_heading(p, before, n) is not None:
        return False  # a heading as long as a line of text
    if len(p) < 0.7 * width or re.search(r"[.!?:;][”\"’')\]]*$", p):
        return False  # a short line (heading, table cell, last line of a paragraph) or a sentence end
    return n[0].isalnum() or n[0] in '(“"‘$§'


def reflow(page: str, words: set[str], compounds: set[str], width: int | None = None) -> str:
    """One page's lines -> paragraphs, one per line; hyphenation undone (see the module doc).

    `width` is the document's typical line length (`line_width`), the page's own when not given."""
    lines = page.split("\n")
    width = line_width(lines) if width is None else width
    out: list[str] = []
    last = ""  # the last printed line (its length tells a wrapped line from a short one)
    for line in lines:
        nxt = line.strip()
        if out and out[-1].strip() and nxt:
            prev = out[-1].rstrip()
            m = re.search(r"(?<![A-Za-z0-9])([A-Za-z0-9]++)-$", prev)
            first = re.match(r"[A-Za-z0-9]+", nxt)
            if m and first and not LIST_START.match(nxt) and not (m.group(1).isdigit() and nxt[0].isupper()):
                keep = keep_hyphen(m.group(1), first.group(0), words, compounds)
                out[-1] = (prev if keep else prev[:-1]) + nxt
                last = line
                continue
            if nxt[0] in ",;:.)]" and not _is_caps(prev):
                out[-1] = prev + nxt  # punctuation left on a line of its own (after a footnote marker)
                last = line
                continue
            if _continues(prev, last, line, width, out[-2] if len(out) > 1 else ""):
                out[-1] = prev + " " + nxt
                last = line
                continue
        out.append(line)
        last = line
    return "\n".join(out)
