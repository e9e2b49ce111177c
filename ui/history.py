"""Chat history as the library reads it, from every shape Gradio hands the app.

Gradio 6 sends messages dicts whose `content` is a list of parts (`[{"type": "text", "text": ...}]`);
older releases and scripts send plain strings, `ChatMessage` objects or (user, assistant) pairs. A format
dropped here makes a follow-up ("By when?") reach retrieval without its subject, so all of them are read.
"""

from __future__ import annotations

import html
import re
from collections.abc import Iterable
from typing import Any

_TAG = re.compile(r"<[^>]+>")
_MARKDOWN_NOISE = re.compile(r"(\*\*|__|`)")


def part_text(part: Any) -> str:
    """The text of one content part: a string, {"type": "text", "text": ...}, or a file/component (no text)."""
    if part is None:
        return ""
    if isinstance(part, str):
        return part
    if isinstance(part, dict):
        if isinstance(part.get("text"), str):
            return part["text"]
        if isinstance(part.get("content"), (str, list, tuple)):
            return message_text(part["content"])
        return ""  # a file, an image or a component: nothing to read
    text = getattr(part, "text", None)
    return text if isinstance(text, str) else ""


def message_text(content: Any) -> str:
    """Plain text of a message's content (a string, a list of parts, one part)."""
    if isinstance(content, (list, tuple)):
        return " ".join(t for t in (part_text(p) for p in content) if t)
    return part_text(content)


def plain(text: str) -> str:
    """Markup the app itself put into a message (links, <small> notes, bold) removed, entities decoded."""
    return " ".join(html.unescape(_MARKDOWN_NOISE.sub("", _TAG.sub(" ", text))).split())


def _role_content(m: Any) -> tuple[str | None, Any]:
    if isinstance(m, dict):
        return m.get("role"), m.get("content")
    role = getattr(m, "role", None)
    if role is not None:
        return role, getattr(m, "content", None)
    return None, None


def normalize_history(history: Iterable[Any] | None) -> list[dict[str, str]]:
    """[{"role": "user"|"assistant", "content": str}] from messages (str or parts), ChatMessage objects or pairs.

    Empty turns and the app's own status placeholders ("retrieving…", a stopped draft) are left out.
    """
    out: list[dict[str, str]] = []
    for m in history or []:
        role, content = _role_content(m)
        if role is not None:
            if role not in ("user", "assistant"):
                continue
            text = plain(message_text(content))
            if text:
                out.append({"role": role, "content": text})
            continue
        if isinstance(m, (list, tuple)) and len(m) == 2:  # a (user, assistant) pair
            for role_, item in zip(("user", "assistant"), m, strict=True):
                text = plain(message_text(item))
                if text:
                    out.append({"role": role_, "content": text})
    return out


def user_questions(history: Iterable[Any] | None) -> list[str]:
    """The user's earlier questions, oldest first."""
    return [m["content"] for m in normalize_history(history) if m["role"] == "user"]
