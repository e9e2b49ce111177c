"""Document identity and relations in the index, and each document's status as of a date.

Stored per document in two tables of the generation's chunks.sqlite (`policy_docs`, `policy_relations`),
written by `sync` at the end of every build from the chunk rows themselves, so the local and Ray
engines, kept-previous versions and duplicates all get them the same way, and only new or changed
documents are read again. Targets are resolved to documents when read (`PolicyView`): adding the
order that revokes EO 14110 changes EO 14110's status without touching EO 14110's rows, and removing
it changes it back.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date as _date
from datetime import datetime as _dt
from typing import Any

from rag.index.relations import extract_relations, metadata_relations
from rag.ingest.identity import extract_identity

SCHEMA = """
CREATE TABLE IF NOT EXISTS policy_docs (source TEXT PRIMARY KEY, fingerprint TEXT NOT NULL, identity TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS policy_relations (source TEXT NOT NULL, ord INTEGER NOT NULL, relation TEXT NOT NULL,
                                             PRIMARY KEY (source, ord));
"""
CHANGES = ("revokes", "supersedes")  # relations that end a document's force
EXTRACTOR_VERSION = "1"  # bump when identity/relation extraction changes: documents are read again
POLICY_META_KEYS = ("kind", "identifiers", "signed", "published", "effective", "relations")


def parse_as_of(value: str | None) -> str | None:
    """A --as-of value -> ISO date (YYYY-MM-DD; YYYY-MM and YYYY mean their first day), or a
    ConfigError naming the value."""
    if value is None or not str(value).strip():
        return None
    v = str(value).strip()
    for fmt in ("%Y-%m-%d", "%Y-%m", "%Y"):
        try:
            return _dt.strptime(v, fmt).date().isoformat()
        except ValueError:
            continue
    from rag.errors import ConfigError

    raise ConfigError(f"bad --as-of '{v}': use a date such as 2024-06-01")


def fingerprint(sha256: str, meta: Mapping[str, Any] | None) -> str:
    """What identity and relations depend on: the file's bytes and its metadata.yaml entry."""
    m = json.dumps({k: (meta or {}).get(k) for k in POLICY_META_KEYS}, sort_keys=True, default=str)
    return hashlib.sha256(f"{EXTRACTOR_VERSION}\x1f{sha256}\x1f{m}".encode()).hexdigest()[:24]


def text_from_chunks(rows: list[tuple[int, int, str, int, int]]) -> tuple[str, Any]:
    """(text, page_of) rebuilt from a document's chunk rows (char_start, char_end, text, page, page_end).

    Chunks cover the document's text (gaps are whitespace only, filled with newlines so list items stay
    apart); a sentence's page is that of the last chunk starting at or before it, exact unless a page
    break falls inside that chunk before the sentence."""
    end = max((r[1] for r in rows), default=0)
    buf = ["\n"] * end
    for a, b, text, _, _ in rows:
        buf[a:b] = list(text[: b - a].ljust(b - a))
    starts = sorted((r[0], r[3]) for r in rows)

    def page_of(offset: int) -> int:
        page = 1
        for a, p in starts:
            if a > offset:
                break
            page = p
        for a, b, _, p, p_end in rows:  # a chunk holding the offset within one page settles it
            if a <= offset < b and p == p_end:
                return p
        return page

    return "".join(buf), page_of


def ensure_schema(db: Any) -> None:
    db.executescript(SCHEMA)


def sync(db: Any, metadata: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """Bring the policy tables of a generation being written in line with its documents table: drop the
    rows of removed or changed documents, extract those of new or changed ones. Returns how many were
    (re)extracted."""
    ensure_schema(db)
    metadata = metadata or {}
    docs = {r[0]: r for r in db.execute("SELECT source, doc_id, sha256, title, date FROM documents")}
    have = dict(db.execute("SELECT source, fingerprint FROM policy_docs").fetchall())
    stale = [s for s in have if s not in docs or have[s] != fingerprint(docs[s][2] or "", metadata.get(s))]
    for s in stale:
        db.execute("DELETE FROM policy_docs WHERE source = ?", (s,))
        db.execute("DELETE FROM policy_relations WHERE source = ?", (s,))
    n = 0
    for source, doc_id, sha, title, date in docs.values():
        if source in have and source not in stale:
            continue
        rows = db.execute(
            "SELECT char_start, char_end, text, page, page_end FROM chunks WHERE doc_id = ? ORDER BY char_start",
            (doc_id,),
        ).fetchall()
        text, page_of = text_from_chunks([tuple(r) for r in rows])
        meta = metadata.get(source) or {}
        ident = {**extract_identity(source, title, text, date, meta), "extractor": EXTRACTOR_VERSION}
        rels = extract_relations(text, ident["kind"], page_of, tuple(ident["identifiers"]))
        try:
            rels += metadata_relations(meta, text, page_of)
        except ValueError as e:
            ident.setdefault("problems", []).append(f"metadata.yaml: {e}")
        db.execute(
            "INSERT OR REPLACE INTO policy_docs VALUES (?, ?, ?)",
            (source, fingerprint(sha or "", meta), json.dumps(ident)),
        )
        db.executemany(
            "INSERT INTO policy_relations VALUES (?, ?, ?)", [(source, i, json.dumps(r)) for i, r in enumerate(rels)]
        )
        n += 1
    db.commit()
    return n


def policy_stale(generation: Any, metadata: Mapping[str, Mapping[str, Any]] | None = None) -> bool:
    """Whether a generation's policy tables lag its documents: missing (an index built before them), read
    by another extractor version, or out of step with the rows or metadata.yaml. A plain build then
    rewrites only these tables (`sync`); no chunk is embedded again."""
    import sqlite3
    from pathlib import Path

    if generation is None:
        return False
    try:
        db = sqlite3.connect(f"file:{Path(generation) / 'chunks.sqlite'}?mode=ro", uri=True)
    except sqlite3.Error:
        return False
    try:
        docs = {r[0]: r[1] for r in db.execute("SELECT source, sha256 FROM documents")}
        have = dict(db.execute("SELECT source, fingerprint FROM policy_docs").fetchall())
    except sqlite3.Error:  # no policy tables yet
        return True
    finally:
        db.close()
    meta = metadata or {}
    return set(docs) != set(have) or any(have[s] != fingerprint(sha or "", meta.get(s)) for s, sha in docs.items())


def check(db: Any) -> list[str]:
    """Problems of the policy tables: documents without identity, rows of documents not indexed,
    unreadable rows, metadata quotes not found in their document."""
    names = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    if not {"policy_docs", "policy_relations"} <= names:
        return ["no document identity/relations tables (index built before them); run `rag index build`"]
    try:
        docs = {r[0] for r in db.execute("SELECT source FROM documents")}
        ids = {r[0]: r[1] for r in db.execute("SELECT source, identity FROM policy_docs")}
        rels = db.execute("SELECT source, ord, relation FROM policy_relations").fetchall()
    except Exception as e:
        return [f"policy tables cannot be read: {e}; run `rag index build`"]
    problems = [f"{s}: no identity row" for s in sorted(docs - set(ids))]
    problems += [f"{s}: identity row of a document not in the index" for s in sorted(set(ids) - docs)]
    for s, raw in ids.items():
        try:
            ident = json.loads(raw)
            problems += [f"{s}: {p}" for p in ident.get("problems", [])]
            if ident.get("extractor") != EXTRACTOR_VERSION:
                problems.append(f"{s}: identity read by another version of the extractor; run `rag index build`")
        except ValueError:
            problems.append(f"{s}: identity row is not valid JSON")
    for s, o, raw in rels:
        if s not in ids:
            problems.append(f"{s}: relation {o} of a document without identity")
            continue
        try:
            r = json.loads(raw)
        except ValueError:
            problems.append(f"{s}: relation {o} is not valid JSON")
            continue
        if r.get("from_metadata") and r.get("page") is None:
            problems.append(f"{s}: metadata.yaml relation quote not found in the text: {r.get('sentence', '')[:80]!r}")
    return problems


# -- reading: resolution and status ------------------------------------------------------------


def _words(t: str) -> set[str]:
    return {
        w
        for w in re.findall(r"[a-z0-9]+", t.lower())
        if len(w) > 2 and w not in {"the", "and", "for", "order", "executive"}
    }


@dataclass
class PolicyView:
    """Identities and relations of one generation, targets resolved to its documents."""

    docs: dict[str, dict[str, Any]]
    relations: list[dict[str, Any]] = field(default_factory=list)  # each with "source" and resolved "target_source"
    by_identifier: dict[str, str] = field(default_factory=dict)

    @classmethod
    def load(cls, db: Any) -> PolicyView:
        try:
            docs = {r[0]: json.loads(r[1]) for r in db.execute("SELECT source, identity FROM policy_docs")}
            rels = [
                {**json.loads(r[1]), "source": r[0]}
                for r in db.execute("SELECT source, relation FROM policy_relations ORDER BY source, ord")
            ]
        except Exception:  # an index built before these tables existed: no policy information
            return cls({}, [])
        view = cls(docs, rels)
        view._resolve()
        return view

    def _resolve(self) -> None:
        for s, d in self.docs.items():
            d.setdefault("inferred_identifiers", [])
            d["mentions"] = sorted(
                {
                    r["target"]["identifier"]
                    for r in self.relations
                    if r["source"] == s and r["target"].get("identifier")
                }
            )
            for ident in d.get("identifiers", []):
                self.by_identifier.setdefault(ident, s)
        # a citation "Executive Order 14141 of January 14, 2025 (Advancing ... Infrastructure)" names a
        # corpus document by date and title even where that document's own text has no number: it then
        # gets the number (the White House pages of orders carry none)
        for r in self.relations:
            t = r["target"]
            if t.get("date") and t.get("title") and t.get("identifier") not in self.by_identifier:
                s = self._by_date_title(t["date"], t["title"])
                if s and s != r["source"]:
                    if t.get("identifier"):
                        self.by_identifier[t["identifier"]] = s
                        self.docs[s]["inferred_identifiers"].append(
                            {"identifier": t["identifier"], "from": r["source"]}
                        )
                        self.docs[s]["identifiers"] = list(
                            dict.fromkeys(self.docs[s]["identifiers"] + [t["identifier"]])
                        )
                    r["target_source"] = s
        for r in self.relations:
            if "target_source" not in r:
                ident = r["target"].get("identifier")
                s = self.by_identifier.get(ident) if ident else None
                r["target_source"] = s if s != r["source"] else None

    def _by_date_title(self, date: str, title: str) -> str | None:
        want = _words(title)
        best, best_score = None, 0.0
        for s, d in self.docs.items():
            if date not in (d.get("signed"), d.get("published"), d.get("date")):
                continue
            have = _words(d.get("title") or "")
            score = len(want & have) / max(1, len(want))
            if score > best_score:
                best, best_score = s, score
        return best if best_score >= 0.6 else None

    def label(self, source: str | None, fallback: str = "") -> str:
        """How a document is named in notes: its first identifier, else its title."""
        d = self.docs.get(source or "")
        if not d:
            return fallback
        ids = sorted(d.get("identifiers") or [], key=lambda i: " FR " in i)  # "EO 14110" before "88 FR 75191"
        return (ids or [None])[0] or d.get("title") or source or fallback

    def changes_to(self, source: str) -> list[dict[str, Any]]:
        """Relations (other than "none") whose target is `source`, oldest first."""
        out = [r for r in self.relations if r.get("target_source") == source and r["type"] != "none"]
        return sorted(out, key=lambda r: self.relation_date(r) or "")

    def relation_date(self, r: dict[str, Any]) -> str | None:
        if r.get("date"):
            return str(r["date"])
        d = self.docs.get(r["source"], {})
        return d.get("effective") or d.get("date")

    def status(self, source: str, as_of: str | None = None) -> dict[str, Any]:
        """{status, by, on, relation} of a document as of `as_of` (ISO date; default today):
        not yet issued, in force, amended, revoked or superseded."""
        as_of = as_of or _date.today().isoformat()
        d = self.docs.get(source, {})
        if d.get("date") and d["date"] > as_of:
            return {"status": "not yet issued", "as_of": as_of}
        out: dict[str, Any] = {"status": "in force", "as_of": as_of}
        # of several sentences stating one change ("Revocation of EO 14141." and "... is hereby revoked."), the fullest
        for r in sorted(self.changes_to(source), key=lambda r: (self.relation_date(r) or "", -len(r["sentence"]))):
            on = self.relation_date(r)
            if not on or on > as_of:
                continue
            if r["type"] in CHANGES:
                return {
                    "status": "revoked" if r["type"] == "revokes" else "superseded",
                    "as_of": as_of,
                    "on": on,
                    "by": r.get("subject") or self.label(r["source"]),
                    "by_source": r["source"],
                    "relation": r,
                }
            if r["type"] == "amends":
                out = {
                    "status": "amended",
                    "as_of": as_of,
                    "on": on,
                    "by": self.label(r["source"]),
                    "by_source": r["source"],
                    "relation": r,
                }
        return out

    def in_force(self, as_of: str) -> set[str]:
        return {s for s in self.docs if self.status(s, as_of)["status"] in ("in force", "amended")}

    def describe(self, as_of: str | None = None) -> list[dict[str, Any]]:
        """One row per document for `rag docs`: identity, status as of the date, relations both ways
        (each with its sentence and page), oldest document first."""

        def rel_out(r: dict[str, Any]) -> dict[str, Any]:
            return {
                "type": r["type"],
                "target": r["target"].get("identifier") or r["target"].get("text"),
                "target_title": r["target"].get("title"),
                "target_source": r.get("target_source"),
                "in_corpus": r.get("target_source") is not None,
                **({"subject": r["subject"]} if r.get("subject") else {}),
                "sentence": r["sentence"],
                "page": r["page"],
                "date": self.relation_date(r),
            }

        def rel_in(r: dict[str, Any]) -> dict[str, Any]:
            return {
                "type": r["type"],
                "by": r.get("subject") or self.label(r["source"]),
                "by_source": r["source"],
                "sentence": r["sentence"],
                "page": r["page"],
                "date": self.relation_date(r),
                **({"via": r["source"]} if r.get("subject") else {}),
            }

        rows = []
        for s, d in sorted(self.docs.items(), key=lambda x: (x[1].get("date") or "", x[0])):
            st = self.status(s, as_of)
            status = {k: v for k, v in st.items() if k != "relation"}
            if st.get("relation"):
                status.update(sentence=st["relation"]["sentence"], page=st["relation"]["page"])
            rows.append(
                {
                    "source": s,
                    "identifiers": d.get("identifiers", []),
                    "kind": d.get("kind"),
                    "title": d.get("title"),
                    "date": d.get("date"),
                    "signed": d.get("signed"),
                    "published": d.get("published"),
                    "effective": d.get("effective"),
                    "status": status,
                    "relations": [rel_out(r) for r in self.relations if r["source"] == s and r["type"] != "none"],
                    "related_by": [rel_in(r) for r in self.changes_to(s)],
                    "inferred_identifiers": d.get("inferred_identifiers", []),
                }
            )
        return rows


def policy_summary(generation: Any) -> dict[str, Any]:
    """For `rag index status`: identifiers and kind per document, how many relations, what is not in force today."""
    import sqlite3
    from pathlib import Path

    try:
        db = sqlite3.connect(f"file:{Path(generation) / 'chunks.sqlite'}?mode=ro", uri=True)
    except sqlite3.Error:
        return {}
    try:
        view = PolicyView.load(db)
    finally:
        db.close()
    out: dict[str, Any] = {
        "documents": {},
        "relations": sum(r["type"] != "none" for r in view.relations),
        "not_in_force": {},
    }
    for s, d in sorted(view.docs.items()):
        out["documents"][s] = {"kind": d.get("kind"), "identifiers": d.get("identifiers", []), "date": d.get("date")}
        st = view.status(s)
        if st["status"] not in ("in force", "amended"):
            out["not_in_force"][s] = f"{st['status']} by {st.get('by')} on {st.get('on')}"
    return out
