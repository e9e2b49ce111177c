"""The corpus as a picture: documents on a time axis, arrows for the changes between them.

`timeline_svg(RagService.policy_docs())` returns a self-contained inline SVG (no script, every text
escaped) so the Documents tab can show which order revoked which, and when, at a glance.
"""

from __future__ import annotations

import html
from datetime import date
from typing import Any

COLORS = {
    "revokes": "#c0392b",
    "supersedes": "#8e44ad",
    "amends": "#d68910",
    "directs_revision": "#2471a3",
    "directs_review": "#5d6d7e",
}
STATUS_FILL = {
    "in force": "#58d68d",
    "amended": "#f5b041",
    "revoked": "#e74c3c",
    "superseded": "#a569bd",
    "not yet issued": "#d5d8dc",
}
DRAWN = tuple(COLORS)


def _day(iso: str | None) -> int | None:
    try:
        return date.fromisoformat(str(iso)[:10]).toordinal() if iso else None
    except ValueError:
        return None


def _row(d: Any) -> dict[str, Any]:
    return d if isinstance(d, dict) else dict(vars(d))


def timeline_svg(docs: list[dict[str, Any]], width: int = 980) -> str:
    """Documents by date (one lane each, oldest on top), coloured by status; an arrow from each document
    to the document it revokes, supersedes, amends or orders revised/reviewed; a legend. Documents
    without a date are listed at the bottom."""
    rows = [_row(d) for d in docs]
    dated = sorted((r for r in rows if _day(r.get("date"))), key=lambda r: (r["date"], r.get("source", "")))
    undated = [r for r in rows if not _day(r.get("date"))]
    if not dated:
        return '<svg xmlns="http://www.w3.org/2000/svg" width="300" height="30"><text x="4" y="20">No dated documents.</text></svg>'
    lane, top, left, right = 26, 40, 330, 40
    days = [_day(r["date"]) or 0 for r in dated]
    lo, hi = min(days) - 30, max(days) + 30
    span = max(1, hi - lo)

    def x(day: int) -> float:
        return left + (width - left - right) * (day - lo) / span

    height = top + lane * len(dated) + 70 + 16 * len(undated)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" font-family="sans-serif" font-size="11" role="img" aria-label="Timeline of the corpus">',
        "<defs>"
        + "".join(
            f'<marker id="arrow-{k}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" orient="auto-start-reverse">'
            f'<path d="M 0 0 L 10 5 L 0 10 z" fill="{c}"/></marker>'
            for k, c in COLORS.items()
        )
        + "</defs>",
    ]
    # year ticks
    y0, y1 = date.fromordinal(lo).year, date.fromordinal(hi).year
    for year in range(y0, y1 + 2):
        d = date(year, 1, 1).toordinal()
        if lo <= d <= hi:
            out.append(
                f'<line x1="{x(d):.1f}" y1="{top - 14}" x2="{x(d):.1f}" y2="{top + lane * len(dated)}" stroke="#d5d8dc"/>'
                f'<text x="{x(d) + 3:.1f}" y="{top - 18}" fill="#566573">{year}</text>'
            )
    pos: dict[str, tuple[float, float]] = {}
    for i, r in enumerate(dated):
        y = top + lane * i + lane / 2
        cx = x(_day(r["date"]) or lo)
        status = (
            (r.get("status") or {}).get("status", "in force")
            if isinstance(r.get("status"), dict)
            else str(r.get("status") or "in force")
        )
        ids = ", ".join(r.get("identifiers") or [])
        label = (ids + " · " if ids else "") + str(r.get("title") or r.get("source", ""))
        label = label if len(label) <= 52 else label[:51] + "…"
        tip = f"{r.get('title')} ({r.get('date')}, {r.get('kind') or 'document'}): {status}"
        pos[r.get("source", "")] = (cx, y)
        out.append(
            f"<g><title>{html.escape(tip)}</title>"
            f'<text x="{left - 8}" y="{y + 4:.1f}" text-anchor="end" fill="#1c2833">{html.escape(label)}</text>'
            f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" stroke="#f2f3f4"/>'
            f'<circle cx="{cx:.1f}" cy="{y:.1f}" r="6" fill="{STATUS_FILL.get(status, "#ffffff")}" stroke="#1c2833"/></g>'
        )
    seen: set[tuple[str, str, str]] = set()
    for r in dated:
        for rel in r.get("relations") or []:
            key = (r.get("source", ""), str(rel.get("target_source")), rel.get("type", ""))
            if (
                rel.get("type") not in DRAWN
                or not rel.get("target_source")
                or key in seen
                or rel["target_source"] not in pos
            ):
                continue
            seen.add(key)
            (x1, y1), (x2, y2) = pos[r["source"]], pos[rel["target_source"]]
            bend = 40 + 6 * len(seen) % 60
            t = rel["type"]
            tip = f"{r.get('title')} {t.replace('_', ' ')} {rel.get('target')} (p. {rel.get('page')})"
            out.append(
                f'<path d="M {x1:.1f} {y1:.1f} C {x1 + bend:.1f} {y1:.1f}, {x2 + bend:.1f} {y2:.1f}, {x2 + 7:.1f} {y2:.1f}" '
                f'fill="none" stroke="{COLORS[t]}" stroke-width="1.6" marker-end="url(#arrow-{t})">'
                f"<title>{html.escape(tip)}</title></path>"
            )
    ly = top + lane * len(dated) + 24
    lx = 10.0
    for t, c in COLORS.items():
        out.append(
            f'<line x1="{lx}" y1="{ly}" x2="{lx + 22}" y2="{ly}" stroke="{c}" stroke-width="2" marker-end="url(#arrow-{t})"/>'
            f'<text x="{lx + 28}" y="{ly + 4}">{html.escape(t.replace("_", " "))}</text>'
        )
        lx += 150
    ly += 22
    lx = 10.0
    for s, fill in STATUS_FILL.items():
        out.append(
            f'<circle cx="{lx + 6}" cy="{ly}" r="6" fill="{fill}" stroke="#1c2833"/><text x="{lx + 16}" y="{ly + 4}">{html.escape(s)}</text>'
        )
        lx += 120
    for j, r in enumerate(undated):
        out.append(
            f'<text x="10" y="{ly + 22 + 16 * j}" fill="#566573">undated: {html.escape(str(r.get("title") or r.get("source")))}</text>'
        )
    out.append("</svg>")
    return "".join(out)
