"""Metadata filters on hits: {"source": ["omb/M-24-10.pdf"], "date": ["2025"]} (keys AND, values OR).

Askers write them as `--filter KEY=VALUE` strings or JSON objects; `as_filters` accepts either.
"""

from __future__ import annotations

from collections.abc import Sequence

from rag.errors import ConfigError

Filters = dict[str, list[str]]


def parse_filters(items: Sequence[str] | None) -> Filters:
    """['source=x.pdf', 'title=Plan'] -> {'source': ['x.pdf'], 'title': ['Plan']} (repeated keys OR)."""
    out: Filters = {}
    for item in items or []:
        if "=" not in item:
            raise ConfigError(f"bad --filter '{item}': use KEY=VALUE, e.g. source=omb/M-24-10.pdf")
        k, v = item.split("=", 1)
        k, v = k.strip(), v.strip()
        if not k or not v:
            raise ConfigError(f"bad --filter '{item}': key and value must be non-empty")
        out.setdefault(k, []).append(v)
    return out


def normalise_filter_obj(obj: object) -> Filters:
    """A JSON filter object ({"source": "x"} or {"source": ["x", "y"]}) -> Filters."""
    if obj is None:
        return {}
    if not isinstance(obj, dict):
        raise ConfigError(f"filter must be a JSON object, got {type(obj).__name__}")
    return {str(k): [str(x) for x in (v if isinstance(v, list) else [v])] for k, v in obj.items()}


def as_filters(obj: object) -> Filters | None:
    """None, ['KEY=VALUE', ...] or a JSON-style object -> Filters (None when empty)."""
    if obj is None:
        return None
    if isinstance(obj, list | tuple) and all(isinstance(x, str) for x in obj):
        return parse_filters(list(obj)) or None
    return normalise_filter_obj(obj) or None
