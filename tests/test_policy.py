"""Issue 13: document identity, relations between documents, status as of a date, named documents.

Fast tests run the patterns on sentences and a small fixture corpus (four short orders); the slow test
checks the issue's end-to-end claims on the shipped corpus.
"""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest

from rag.index.relations import classify, extract_relations, references
from rag.index.status import PolicyView, check
from rag.ingest.identity import extract_identity, identifiers_in, parse_date
from rag.retrieve.docmatch import named_documents

EO = "executive order"


def _types(sentence: str, kind: str = EO) -> dict[str, str]:
    refs = references(sentence)
    return {r["identifier"]: t for r, t in zip(refs, classify(sentence, kind, refs), strict=True)}


@pytest.mark.parametrize(
    ("sentence", "target", "expected"),
    [
        ("Executive Order 11111 of January 2, 2020 (Alpha Policy), is hereby revoked.", "EO 11111", "revokes"),
        ("Executive Order 11111 is revoked.", "EO 11111", "revokes"),
        ("This order hereby revokes Executive Order 11111.", "EO 11111", "revokes"),
        ("OMB Memorandum M-20-01 is hereby rescinded.", "M-20-01", "revokes"),
        ("This memorandum rescinds OMB Memorandum M-20-01.", "M-20-01", "revokes"),
        ("OMB Memorandum M-20-01 is superseded by this memorandum.", "M-20-01", "supersedes"),
        ("This memorandum replaces M-20-01 in its entirety.", "M-20-01", "supersedes"),
        ("M-20-01 is replaced by the guidance in section 4.", "M-20-01", "supersedes"),
        (
            "Section 3 of Executive Order 11111 is hereby amended by adding the following subsection:",
            "EO 11111",
            "amends",
        ),
        ("Executive Order 11111 is amended by striking section 2.", "EO 11111", "amends"),
        (
            "Within 60 days, the Director shall revise OMB Memoranda M-20-01 and M-20-02 as necessary.",
            "M-20-02",
            "directs_revision",
        ),
        (
            "The Director shall review all actions taken pursuant to Executive Order 11111 and report.",
            "EO 11111",
            "directs_review",
        ),
        # citations that change nothing
        (
            "The term has the meaning given in section 3 of Executive Order 12333 of December 4, 1981 (Intelligence), as amended.",
            "EO 12333",
            "none",
        ),
        ("This memorandum does not replace or supersede M-20-01.", "M-20-01", "none"),
        ("Agencies shall follow the definitions in Executive Order 11111.", "EO 11111", "none"),
    ],
)
def test_relation_patterns(sentence, target, expected):
    assert _types(sentence)[target] == expected


def test_title_in_parentheses_is_not_a_verb_or_a_target():
    # "(Amending Executive Order 14007)" is the title of the listed order, not a second relation
    refs = references("- Executive Order 14044 of September 13, 2021 (Amending Executive Order 14007).")
    assert [r["identifier"] for r in refs] == ["EO 14044"]
    assert refs[0]["date"] == "2021-09-13" and refs[0]["title"] == "Amending Executive Order 14007"


def test_list_items_inherit_the_lead_in_and_quote_it():
    text = (
        "Sec. 2. Revocation. The following executive actions are hereby revoked:\n\n"
        "-   Executive Order 11111 of January 2, 2020 (Alpha).\n"
        "-   Executive Order 11112 of January 3, 2020 (Beta).\n\n"
        "Sec. 3. The heads of agencies shall act consistent with Executive Order 11113."
    )
    rels = extract_relations(text, EO, lambda o: 1)
    got = {r["target"]["identifier"]: r["type"] for r in rels}
    assert got == {"EO 11111": "revokes", "EO 11112": "revokes", "EO 11113": "none"}
    assert rels[0]["sentence"].startswith(
        "The following executive actions are hereby revoked: … - Executive Order 11111"
    )


def test_reports_of_changes_are_not_changes():
    # a plan or fact sheet that says an order was rescinded does not rescind it
    s = "The President has already taken steps, including rescinding Executive Order 14110 on AI."
    assert _types(s, "plan") == {"EO 14110": "none"}
    assert _types(s, EO) == {"EO 14110": "revokes"}


def test_identity_from_text():
    text = (
        "Federal Register\nVol. 88, No. 210\nWednesday, November 1, 2023\nTitle 3—\nThe President\n"
        "Executive Order 14110 of October 30, 2023\nSafe AI\nBy the authority vested in me as President, "
        "it is hereby ordered as follows: ... consistent with Executive Order 13960 of December 3, 2020."
    )
    ident = extract_identity("fr/x.pdf", "Safe AI", text, "2023-11-01")
    assert ident["kind"] == EO and ident["identifiers"] == ["EO 14110"]
    assert (ident["signed"], ident["published"], ident["date"]) == ("2023-10-30", "2023-11-01", "2023-10-30")
    memo = extract_identity("omb/m.pdf", "Memo", "March 28, 2024 M-24-10 MEMORANDUM FOR THE HEADS OF AGENCIES", None)
    assert memo["kind"] == "omb memorandum" and memo["identifiers"] == ["M-24-10"] and memo["date"] == "2024-03-28"
    over = extract_identity(
        "wh/y.md",
        "An order",
        "By the authority vested in me as President ... ordered",
        "2025-01-20",
        {"identifiers": ["Executive Order 14148"], "kind": "executive order"},
    )
    assert over["identifiers"] == ["EO 14148"] and "identifiers" in over["from_metadata"]
    assert identifiers_in("see 89 FR 14059, NIST AI 100-1 and M-25 22") == ["89 FR 14059", "NIST AI 100-1", "M-25-22"]
    assert parse_date("August 14th, 2024") == "2024-08-14" and parse_date("February 30, 2024") is None


# -- a fixture corpus: A revoked by B, B amended by C, D revokes an order not in the corpus --------

ORDER = "By the authority vested in me as President by the Constitution, it is hereby ordered as follows:\n\n"
DOCS = {
    "a.md": (
        "2020-01-02",
        "Alpha Widgets Order",
        "Executive Order 15001 of January 2, 2020\n\n"
        + ORDER
        + "Section 1. Policy. Agencies shall register every widget with the Widget Office within 30 days.\n",
    ),
    "b.md": (
        "2021-03-04",
        "Beta Gadgets Order",
        "Executive Order 15002 of March 4, 2021\n\n"
        + ORDER
        + "Sec. 1. Revocation. Executive Order 15001 of January 2, 2020 (Alpha Widgets Order), is hereby revoked.\n\n"
        "Sec. 2. Gadgets. Agencies shall inventory gadgets annually.\n",
    ),
    "c.md": (
        "2022-05-06",
        "Gamma Sprockets Order",
        "Executive Order 15003 of May 6, 2022\n\n"
        + ORDER
        + "Sec. 1. Amendment. Section 2 of Executive Order 15002 is hereby amended to require quarterly gadget inventories.\n",
    ),
    "d.md": (
        "2023-07-08",
        "Delta Cogs Order",
        "Executive Order 15004 of July 8, 2023\n\n"
        + ORDER
        + "Sec. 1. Executive Order 10000 of June 1, 2019 (Old Cogs Rules) is hereby revoked. Cogs are now unregulated.\n",
    ),
}


def _write(corpus: Path, names: list[str]) -> None:
    corpus.mkdir(parents=True, exist_ok=True)
    for name in names:
        date, title, body = DOCS[name]
        (corpus / name).write_text(f"---\ntitle: {title}\ndate: '{date}'\n---\n\n{body}", encoding="utf-8")


def _build(corpus: Path, index: Path, embedder, **retrieval):
    from rag.index.build import build_index
    from rag.settings import Settings

    s = Settings(corpus=corpus, index=index, **({"retrieval": retrieval} if retrieval else {}))
    build_index(s, embedder=embedder)
    return s


def _view(index: Path) -> tuple[PolicyView, list[str]]:
    from rag.index.layout import current_generation

    db = sqlite3.connect(current_generation(index) / "chunks.sqlite")
    try:
        return PolicyView.load(db), check(db)
    finally:
        db.close()


@pytest.fixture(scope="module")
def policy_corpus(tmp_path_factory, embedder):
    base = tmp_path_factory.mktemp("policy")
    _write(base / "corpus", list(DOCS))
    _build(base / "corpus", base / "index", embedder)
    return base


def test_chain_external_reference_and_as_of(policy_corpus):
    v, problems = _view(policy_corpus / "index")
    assert problems == []
    a = v.status("a.md")
    assert (a["status"], a["by"], a["on"]) == ("revoked", "EO 15002", "2021-03-04")
    assert "hereby revoked" in a["relation"]["sentence"] and a["relation"]["page"] == 1
    b = v.status("b.md")
    assert (b["status"], b["by"], b["on"]) == ("amended", "EO 15003", "2022-05-06")
    assert v.status("c.md")["status"] == "in force"
    ext = [r for r in v.relations if r["source"] == "d.md" and r["type"] == "revokes"]
    assert [r["target"]["identifier"] for r in ext] == ["EO 10000"] and ext[0]["target_source"] is None
    # as of a date: before B, A was in force; before C was signed, C was not yet issued
    assert v.status("a.md", "2021-03-03")["status"] == "in force"
    assert v.status("a.md", "2021-03-04")["status"] == "revoked"
    assert v.status("b.md", "2022-01-01")["status"] == "in force"
    assert v.status("c.md", "2022-05-05")["status"] == "not yet issued"
    assert v.in_force("2021-06-01") == {"b.md"}
    rows = {r["source"]: r for r in v.describe("2024-01-01")}
    assert rows["a.md"]["related_by"][0]["by"] == "EO 15002"
    assert rows["d.md"]["relations"][0]["in_corpus"] is False


def test_status_follows_the_revoking_document_incrementally(tmp_path, embedder):
    corpus, index = tmp_path / "corpus", tmp_path / "index"
    _write(corpus, ["a.md"])
    _build(corpus, index, embedder)
    assert _view(index)[0].status("a.md")["status"] == "in force"
    _write(corpus, ["b.md"])  # the revoking order arrives: A's rows are not read again, its status changes
    _build(corpus, index, embedder)
    v, problems = _view(index)
    assert problems == [] and v.status("a.md")["status"] == "revoked"
    (corpus / "b.md").unlink()  # and leaves
    _build(corpus, index, embedder)
    v, problems = _view(index)
    assert problems == [] and v.status("a.md")["status"] == "in force" and set(v.docs) == {"a.md"}


@pytest.mark.parametrize("damage", ["drop", "old_version"])
def test_plain_build_syncs_missing_or_stale_policy_tables_without_embedding(tmp_path, embedder, damage):
    from rag.index.build import build_index
    from rag.index.layout import current_generation
    from rag.service import RagService

    corpus, index = tmp_path / "corpus", tmp_path / "index"
    _write(corpus, ["a.md", "b.md"])
    s = _build(corpus, index, embedder)
    db = sqlite3.connect(current_generation(index) / "chunks.sqlite")
    if damage == "drop":  # an index built before the tables existed
        db.executescript("DROP TABLE policy_docs; DROP TABLE policy_relations;")
    else:  # identity read by an older extractor
        db.execute("UPDATE policy_docs SET fingerprint = 'old', identity = json_set(identity, '$.extractor', '0')")
    db.commit()
    db.close()
    assert _view(index)[1] != []  # `rag index check` reports it
    assert RagService(s, embedder=embedder).needs_build()
    result = build_index(s, embedder=embedder)
    assert result.chunks_embedded == 0 and result.policy_synced == 2 and not result.changed
    assert "identity and relations of 2 documents updated" in result.summary()
    v, problems = _view(index)
    assert problems == [] and v.status("a.md")["status"] == "revoked"
    assert not RagService(s, embedder=embedder).needs_build()
    again = build_index(s, embedder=embedder)  # and then it is up to date
    assert again.policy_synced == 0 and again.chunks_embedded == 0


def test_as_of_search_excludes_revoked_and_later_documents_but_keeps_named_ones(policy_corpus, tmp_path, embedder):
    from rag.retrieve.retriever import Retriever
    from rag.settings import Settings

    def sources(as_of, question, include_revoked=False):
        s = Settings(
            corpus=policy_corpus / "corpus",
            index=policy_corpus / "index",
            retrieval={"reranker": None, "as_of": as_of, "include_revoked": include_revoked, "top_k": 10},
        )
        return {p.chunk.source for p in Retriever.open(s, embedder).search([question], 10)[0]}

    q = "What must agencies do with widgets, gadgets, sprockets and cogs?"
    assert sources(None, q) == set(DOCS)
    assert sources("2021-06-01", q) == {"b.md"}  # A revoked, C and D not yet issued
    assert sources("2021-06-01", q, include_revoked=True) == {"a.md", "b.md"}
    assert "a.md" in sources("2021-06-01", "What did EO 15001 require for widgets?")  # named: kept, and noted
    # a user's own source filter wins over the named-document preference
    s = Settings(index=policy_corpus / "index", retrieval={"reranker": None, "top_k": 10})
    hits = Retriever.open(s, embedder).search(["What did EO 15001 require for widgets?"], 10, {"source": ["b.md"]})[0]
    assert hits and {p.chunk.source for p in hits} == {"b.md"}
    with pytest.raises(Exception, match="2021-13-45"):
        sources("2021-13-45", q)


def test_what_changed_notes_name_the_relation_and_its_sentence(policy_corpus):
    from rag.answer.status_notes import relation_notes
    from rag.index.reader import IndexStore

    store = IndexStore(policy_corpus / "index")
    notes = relation_notes("What did EO 15002 change about EO 15001?", store)
    assert [n["text"].split(" [")[0] for n in notes] == ["EO 15002 revoked EO 15001 on 2021-03-04"]
    assert "is hereby revoked" in notes[0]["citation"]["quote"] and notes[0]["citation"]["page"] == 1
    assert relation_notes("What does EO 15001 require for widgets?", store) == []  # not a question about change


def test_rag_docs_json_and_timeline(policy_corpus, cli, capsys):
    import json

    from ui.timeline import timeline_svg

    code, out, err = cli(capsys, "docs", "--json", "--as-of", "2021-06-01", "--index", str(policy_corpus / "index"))
    assert code == 0, err
    rows = {r["source"]: r for r in json.loads(out)}
    assert rows["a.md"]["identifiers"] == ["EO 15001"] and rows["a.md"]["kind"] == "executive order"
    assert rows["a.md"]["status"]["status"] == "revoked" and rows["a.md"]["status"]["page"] == 1
    assert rows["c.md"]["status"]["status"] == "not yet issued"
    code, out, _ = cli(capsys, "docs", "--index", str(policy_corpus / "index"))
    assert code == 0 and "revoked by EO 15002 on 2021-03-04" in out and "(not in the corpus)" in out
    code, _, err = cli(capsys, "docs", "--as-of", "yesterday", "--index", str(policy_corpus / "index"))
    assert code == 2 and "yesterday" in err
    rows["a.md"]["title"] = "<script>alert(1)</script>"
    svg = timeline_svg(list(rows.values()))
    assert svg.startswith("<svg") and svg.endswith("</svg>") and "<script>" not in svg and "&lt;script&gt;" in svg
    assert svg.count('marker-end="url(#arrow-revokes)"') >= 2  # B -> A (D's target is not in the corpus), legend
    assert svg.count('marker-end="url(#arrow-amends)"') >= 2  # C -> B, legend


def test_hits_and_citations_carry_document_identity(policy_corpus, cli, capsys):
    import json

    idx = ["--index", str(policy_corpus / "index"), "--reranker", "none"]
    q = "What must agencies do with widgets?"
    code, out, err = cli(capsys, "search", q, "-k", "8", "--json", *idx)
    assert code == 0, err
    docs = {h["source"]: h["document"] for h in json.loads(out)}
    assert docs["a.md"]["identifiers"] == ["EO 15001"] and docs["a.md"]["kind"] == "executive order"
    assert docs["a.md"]["date"] == "2020-01-02" and docs["a.md"]["status"] == "revoked"
    assert docs["a.md"]["status_by"] == "EO 15002" and docs["a.md"]["tag"] == "EO 15001 · 2020-01-02 · revoked"
    assert docs["d.md"]["status"] == "in force"
    code, out, err = cli(capsys, "search", q, "-k", "8", "--as-of", "2020-06-01", "--include-revoked", *idx)
    assert code == 0, err
    assert "a.md  · EO 15001 · 2020-01-02 · in force" in out  # the status as of the date asked
    q = "Within how many days must agencies register every widget with the Widget Office?"
    ask = ["ask", q, "--answer-mode", "extractive", "--no-stream", *idx]
    code, out, err = cli(capsys, *ask, "--json")
    assert code == 0, err
    ans = json.loads(out)
    assert ans["citations"] and all("document" in c for c in ans["citations"])
    cited = {c["source"]: c["document"] for c in ans["citations"]}
    assert cited.get("a.md", {}).get("tag") == "EO 15001 · 2020-01-02 · revoked"
    code, out, err = cli(capsys, *ask)
    assert code == 0, err
    assert "a.md  · EO 15001 · 2020-01-02 · revoked (support" in out


@pytest.mark.parametrize("ext", [".csv", ".xlsx"])
def test_batch_sheets_have_a_status_notes_column(tmp_path, ext):
    import csv

    from rag.errors import ConfigError
    from rag.jobs.batch import FLAT_COLUMNS, ResultWriter, read_input, run_batch

    notes = [{"text": "EO 15001 was revoked on 2021-03-04 by EO 15002 [2]."}, {"text": "EO 15002 was amended [3]."}]

    class _Ans:
        refused = False

        def __init__(self, q):
            self.q = q

        def to_dict(self):
            return {
                "question": self.q,
                "answer": "x [1]",
                "refused": False,
                "produced_by": "extractive",
                "citations": [],
                "timings": {},
                "status_notes": notes if "widget" in self.q else [],
            }

    class _Fake:
        def ask_many(self, qs, **_):
            return [_Ans(q) for q in qs]

    inp = tmp_path / "q.csv"
    inp.write_text("id,question\na,What about widgets?\nb,What about cogs?\n")
    out = tmp_path / f"out{ext}"
    run_batch(_Fake(), read_input(inp), ResultWriter(out, False, source=inp), batch_size=2)
    if ext == ".csv":
        rows = list(csv.DictReader(out.open(encoding="utf-8")))
    else:
        import openpyxl

        cells = list(openpyxl.load_workbook(out).active.iter_rows(values_only=True))
        rows = [dict(zip(cells[0], r, strict=False)) for r in cells[1:]]
    cell = {r["id"]: r["status_notes"] for r in rows}
    assert cell["a"] == "EO 15001 was revoked on 2021-03-04 by EO 15002 [2]. | EO 15002 was amended [3]."
    assert cell["b"] in ("", None)
    ResultWriter(out, True, source=inp)  # a fresh run's output resumes
    if ext == ".csv":  # an output written before the column existed: refused, named as older, left as it was
        old = tmp_path / "old.csv"
        header = ",".join(c for c in FLAT_COLUMNS if c != "status_notes")
        old.write_text(header + "\na,What about widgets?,x,False,extractive,,,,,,\n")
        before = old.read_text()
        with pytest.raises(ConfigError, match="earlier version.*status_notes"):
            ResultWriter(old, True, source=inp)
        assert old.read_text() == before


def test_named_documents():
    docs = {
        "eo.md": {
            "title": "Preventing Woke AI in the Federal Government",
            "date": "2025-07-23",
            "kind": EO,
            "identifiers": ["EO 14319"],
        },
        "dec.md": {
            "title": "Ensuring a National Policy Framework for Artificial Intelligence",
            "date": "2025-12-11",
            "kind": EO,
            "identifiers": [],
        },
        "memo.pdf": {
            "title": "OMB M-24-10: Advancing Governance",
            "date": "2024-03-28",
            "kind": "omb memorandum",
            "identifiers": ["M-24-10"],
        },
    }
    assert named_documents("What does M-24-10 require?", docs)[0][0] == "memo.pdf"
    assert named_documents("what does eo 14319 say", docs)[0][0] == "eo.md"
    assert named_documents("What does the woke AI order require?", docs)[0][0] == "eo.md"
    assert named_documents("What does the December 2025 executive order say?", docs)[0][0] == "dec.md"
    assert named_documents("What are the risks of AI?", docs) == []


@pytest.mark.slow
def test_shipped_corpus_status_and_notes(shipped_index, tmp_path):
    """The issue's end-to-end claims, on the shipped corpus built into a tmp dir."""
    from rag.service import RagService

    idx = tmp_path / "index"
    shutil.copytree(shipped_index.index, idx)
    svc = RagService(shipped_index.model_copy(update={"index": idx}))
    rows = {r["source"]: r for r in svc.policy_docs()}
    eo14110 = rows["federal-register/2023-24283-eo-14110-safe-secure-trustworthy-ai.pdf"]["status"]
    assert (eo14110["status"], eo14110["by"], eo14110["on"]) == ("revoked", "EO 14148", "2025-01-20")
    assert "Executive Order 14110 of October 30, 2023" in eo14110["sentence"] and eo14110["page"] == 1
    eo14141 = rows[
        "whitehouse/2025-01-14-executive-order-on-advancing-united-states-leadership-in-artificial-intelligence-infrastructure.md"
    ]
    assert eo14141["identifiers"] == ["EO 14141"] and eo14141["status"]["on"].startswith("2025-07")
    assert "is hereby revoked" in eo14141["status"]["sentence"]
    m2410 = rows["omb/M-24-10-advancing-governance-innovation-risk-management-agency-use-of-ai.pdf"]
    kinds = {(r["type"], r["by"]) for r in m2410["related_by"]}
    assert ("directs_revision", "EO 14179") in kinds and ("supersedes", "M-25-21") in kinds
    q = "What does EO 14110 require of developers of dual-use foundation models?"
    now = svc.ask(q)
    assert now.citations and now.citations[0].passage.chunk.source.startswith("federal-register/")
    assert any("revoked on 2025-01-20 by EO 14148" in n["text"] and n["citation"]["page"] for n in now.status_notes)
    before = RagService(
        svc.settings.model_copy(update={"retrieval": svc.settings.retrieval.model_copy(update={"as_of": "2024-06-01"})})
    ).ask(q)
    assert not [n for n in before.status_notes if n["source"].startswith("federal-register/")]
    after = RagService(
        svc.settings.model_copy(update={"retrieval": svc.settings.retrieval.model_copy(update={"as_of": "2025-06-01"})})
    ).ask(q)
    assert any(n["text"].startswith("EO 14110 was no longer in force on 2025-06-01") for n in after.status_notes)
    assert not after.refused and any(c.passage.chunk.source.startswith("federal-register/") for c in after.citations)
    assert "status_notes" in after.to_dict()
