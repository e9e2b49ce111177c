"""Errors as a reader should see them: what happened and what to do, never a traceback, a hub URL or a
server path. The library's message is classified by what it is about; its raw text goes to the server log.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from .render import md_esc

log = logging.getLogger("policy-rag.ui")

_URL = re.compile(r"https?://\S+")
_PATH = re.compile(r"(?<![\w.])/(?:[\w.@+-]+/)+[\w.@+-]*")
_EXC_NAME = re.compile(r"\b[A-Z]\w*(Error|Exception)\b:?\s*")

_RULES: list[tuple[re.Pattern[str], str, str]] = [
    (
        re.compile(r"model|OSError|huggingface|hub|gguf|tokenizer|safetensors|config\.json", re.I),
        "The language model could not be loaded.",
        "Switch the answer mode to **extractive** (it needs no language model), or ask whoever runs the server to "
        "set `llm.model` to a model that is available offline.",
    ),
    (
        re.compile(r"filter", re.I),
        "The document filter was not understood.",
        "Clear the filter or choose documents from the list.",
    ),
    (
        re.compile(r"no index|index .*(missing|stale|built with|inconsistent)|rag index build", re.I),
        "The index is missing or out of date.",
        "Ask whoever runs the server to run `rag index build`, then reload this page.",
    ),
    (
        re.compile(r"question is empty|too long|question", re.I),
        "The question could not be used.",
        "Type a question of a sentence or two and ask again.",
    ),
    (
        re.compile(r"memory|out of memory|CUDA|MPS", re.I),
        "The server ran out of resources while answering.",
        "Try again in a moment, lower k in Settings, or use the extractive mode.",
    ),
]


def _scrub(text: str) -> str:
    text = _URL.sub("(link removed)", text)
    text = _PATH.sub("(path removed)", text)
    text = _EXC_NAME.sub("", text)
    first = " ".join(text.split())
    return first[:200] + ("…" if len(first) > 200 else "")


def friendly(error: Any) -> tuple[str, str, str]:
    """(what happened, what to do, detail safe to show) for an exception or an error message."""
    raw = str(error)
    log.warning("answer failed: %s", raw)
    for pattern, what, todo in _RULES:
        if pattern.search(raw):
            return what, todo, _scrub(raw)
    return (
        "Something went wrong while answering.",
        "Try again; if it keeps happening, try the extractive mode or "
        "tell whoever runs the server (the details are in its log).",
        _scrub(raw),
    )


def friendly_markdown(error: Any) -> str:
    what, todo, detail = friendly(error)
    out = f"**{what}** {todo}"
    if detail:
        out += f"\n\n<small>Details: {md_esc(detail)}</small>"
    return out
