"""Bounds on what one request may cost (issue 15): which model it may name, how long its question may
be, how many passages it may ask for, how many prompt tokens it may fill, how long it may run.

The service (the one door for the UI, the API and scripts) checks each request here before any work
is done; the answerer fits the LLM prompt into the model's window and stops generation at the deadline,
so one request never holds the model lock beyond its limit.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from typing import Any

from rag.errors import ConfigError

# One message for every refused model, whatever it names (a missing path, an existing file, a folder, a
# hub id): the answer must reveal nothing about the server's files, and nothing is looked up to give it.
MODEL_REFUSED = (
    "this server does not offer that model: choose one of the models the operator configured "
    "(llm.model, llm.allowed_models)"
)


def allowed_models(settings: Any) -> list[str]:
    return list(dict.fromkeys([settings.llm.model, *settings.llm.allowed_models]))


def check_model(model: Any, settings: Any) -> str | None:
    """The model a request names, if the operator allows it (exact name; None = the configured model)."""
    if model is None or (isinstance(model, str) and not model.strip()):
        return None
    if not isinstance(model, str) or model.strip() not in allowed_models(settings):
        raise ConfigError(MODEL_REFUSED)
    return model.strip()


def check_question(question: Any, settings: Any) -> str:
    if not isinstance(question, str):
        raise ConfigError("the question must be text")
    limit = settings.limits.max_question_chars
    if len(question) > limit:
        raise ConfigError(
            f"the question has {len(question):,} characters; the limit is {limit:,} (limits.max_question_chars)"
        )
    return question


def check_k(k: Any, settings: Any) -> int | None:
    """A request's passage count: a whole number in 1..limits.max_k (None = retrieval.top_k)."""
    if k is None:
        return None
    limit = settings.limits.max_k
    try:
        value = float(k)
    except (TypeError, ValueError):
        raise ConfigError(f"k must be a whole number from 1 to {limit} (got {k!r})") from None
    if not math.isfinite(value) or value != int(value) or not 1 <= value <= limit:
        raise ConfigError(f"k must be a whole number from 1 to {limit} (limits.max_k); got {k!r}")
    return int(value)


def check_request(settings: Any, question: Any, kw: dict[str, Any]) -> None:
    """All checks of one question request, in place on its keyword arguments."""
    check_question(question, settings)
    if "k" in kw:
        kw["k"] = check_k(kw["k"], settings)
    if "model" in kw:
        kw["model"] = check_model(kw["model"], settings)


def deadline_from(settings: Any, start: float | None = None) -> float | None:
    """time.monotonic() by which a request must be done (None = no limit)."""
    limit = settings.limits.request_timeout_s
    return (start if start is not None else time.monotonic()) + limit if limit > 0 else None


def past(deadline: float | None) -> Callable[[], bool]:
    """A `stop` callable for the generators: True once the deadline has passed."""
    return lambda: deadline is not None and time.monotonic() >= deadline


def prompt_budget(generator: Any, settings: Any, max_new_tokens: int) -> int | None:
    """Prompt tokens allowed: limits.max_prompt_tokens, within the model's window less the answer's tokens."""
    window = int(getattr(generator, "context_window", 0) or 0)
    room = window - max_new_tokens if window > 0 else None
    cap = settings.limits.max_prompt_tokens or None
    if room is None:
        return cap
    return min(room, cap) if cap else room


def count_prompt(generator: Any, messages: list[dict[str, str]]) -> int | None:
    if hasattr(generator, "prompt_tokens") and callable(generator.prompt_tokens):
        return len(generator.prompt_tokens(messages))
    if hasattr(generator, "prompt_text") and hasattr(generator, "count_tokens"):
        return int(generator.count_tokens(generator.prompt_text(messages)))
    return None


def fit_prompt(
    build: Callable[[int, int], list[dict[str, str]]],
    n_passages: int,
    max_chars: int,
    budget: int | None,
    count: Callable[[list[dict[str, str]]], int | None],
) -> tuple[list[dict[str, str]], int, int]:
    """Messages within `budget` tokens: passages are shortened (down to 150 characters), then the last ones
    dropped. `build(n, chars)` makes the messages of the first n passages. Returns (messages, n, tokens);
    ConfigError when even one short passage with the question does not fit."""
    n, chars = n_passages, max_chars
    messages = build(n, chars)
    tokens = count(messages) if budget is not None else None
    while budget is not None and tokens is not None and tokens > budget:
        if chars > 150:
            chars = max(150, int(chars * 0.6))
        elif n > 1:
            n -= 1
        else:
            raise ConfigError(
                f"the question is too long for the model: its prompt needs {tokens:,} tokens, the limit is "
                f"{budget:,} (the model's context window less llm.max_new_tokens, or limits.max_prompt_tokens)"
            )
        messages = build(n, chars)
        tokens = count(messages)
    return messages, n, tokens or 0
