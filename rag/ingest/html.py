"""HTML loader (BeautifulSoup/lxml): boilerplate dropped, block structure and headings kept."""

from __future__ import annotations

import re
from typing import Any

from rag.errors import IngestError
from rag.ingest.files import Limits
from rag.ingest.structure import clean_text, detect_headings
from rag.types import Heading

_HTML_DROP = [
    "script",
    "style",
    "noscript",
    "nav",
    "header",
    "footer",
    "aside",
    "form",
    "iframe",
    "svg",
    "template",
    "button",
]
_HTML_BLOCKS = [
    "h1",
    "h2",
    "h3",
    "h4",
    "h5",
    "h6",
    "p",
    "li",
    "pre",
    "blockquote",
    "td",
    "th",
    "dt",
    "dd",
    "figcaption",
    "caption",
]


def load_html(data: bytes, rel: str, limits: Limits) -> dict[str, Any]:
    from bs4 import BeautifulSoup

    if b"\x00" in data[:8192]:
        raise IngestError(rel, "binary content (NUL bytes) in an HTML file", "encoding")
    try:
        soup = BeautifulSoup(data, "lxml")
    except Exception as e:
        raise IngestError(rel, f"cannot parse HTML ({e})", "corrupt") from None
    page_title = soup.title.get_text(" ", strip=True) if soup.title else ""
    date = None
    for attrs in (
        {"property": "article:published_time"},
        {"name": "date"},
        {"name": "dcterms.date"},
    ):
        tag = soup.find("meta", attrs=attrs)
        if tag and tag.get("content"):
            date = str(tag["content"])[:10]
            break
    if not date and (t := soup.find("time")) and t.get("datetime"):
        date = str(t["datetime"])[:10]
    url_tag = soup.find("link", rel="canonical")
    for t in soup(_HTML_DROP):
        t.decompose()
    for t in soup.select(
        '[role="navigation"], [role="banner"], [role="contentinfo"], .cookie, #cookie-banner'
    ):
        t.decompose()
    root = (
        soup.find("main")
        or soup.find("article")
        or soup.find(attrs={"role": "main"})
        or soup.body
        or soup
    )
    out: list[str] = []
    headings: list[Heading] = []
    pos = 0
    blocks = root.find_all(_HTML_BLOCKS)
    block_set = set(map(id, blocks))
    for el in blocks:
        if any(id(a) in block_set for a in el.parents):
            continue
        txt = clean_text(el.get_text(" " if el.name != "pre" else "", strip=el.name != "pre"))
        txt = re.sub(r"[ \t]{2,}", " ", txt)
        if not txt:
            continue
        if el.name and el.name[0] == "h" and el.name[1:].isdigit():
            headings.append(Heading(pos, int(el.name[1]), txt))
        out.append(txt)
        pos += len(txt) + 2
    collected = sum(len(o) for o in out)
    full = clean_text(root.get_text("\n", strip=True))
    if collected < 0.5 * len(full):  # text in bare divs: fall back to lines
        out = [ln for ln in full.split("\n") if ln.strip()]
        headings = []
    text = "\n\n".join(out)
    return {
        "text": text,
        "page_starts": (0,),
        "headings": tuple(detect_headings(text, headings, heuristic=False)),
        "title": page_title or (headings[0].title if headings else ""),
        "date": date,
        "source_url": url_tag.get("href") if url_tag else None,
        "has_pages": False,
    }
