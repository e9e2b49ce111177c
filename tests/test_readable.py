"""Issue 14: readable sources (reflowed PDF text, hyphenation, footnote markers, memo fields,
sentences around abbreviations), citations numbered in order of first use, scores shown to readers,
unsupported sentences flagged in the CLI and the JSON."""

from __future__ import annotations

from pathlib import Path

import pytest

from rag.answer.markers import render, renumber
from rag.cli.output import by_display_score, flag_unsupported
from rag.errors import IndexMismatchError
from rag.index.chunk import CHUNKER_VERSION, section_paths
from rag.index.manifest import EmbeddingInfo, Manifest
from rag.ingest.pdf import drop_footnote_markers
from rag.ingest.reflow import keep_hyphen, reflow, vocabulary
from rag.ingest.structure import clean_text, detect_headings, join_pages
from rag.text.headings import is_memo_field
from rag.text.sentences import split_sentences
from rag.types import Answer, AnswerSentence, Chunk, Heading, Passage

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
M_24_10 = CORPUS / "omb" / "M-24-10-advancing-governance-innovation-risk-management-agency-use-of-ai.pdf"


def _sentences(text: str) -> list[str]:
    return [text[a:b] for a, b in split_sentences(text, 0, len(text))]


# -- hyphenation -------------------------------------------------------------------------------


def test_line_break_hyphen_joins_a_split_word():
    words, compounds = vocabulary("As shown here, nothing else.")
    out = reflow(
        "activities to manage AI risks responsibly. As illus-\ntrated in Figure 2, the AI lifecycle has",
        words,
        compounds,
    )
    assert "As illustrated in Figure 2" in out and "illus-" not in out


def test_line_break_hyphen_kept_when_the_joined_form_is_no_word():
    words, compounds = vocabulary("models with widely available weight files; the open source community")
    out = reflow(
        "dual-use foundation models with widely available model weights, also called open-\nweight models, and",
        words,
        compounds,
    )
    assert "open-weight models" in out


def test_hyphen_decision_uses_the_documents_vocabulary():
    words, compounds = vocabulary("rights-impacting AI and floating-point operations; however, the environment")
    assert keep_hyphen("floating", "point", words, compounds)  # "floating-point" is used, "floatingpoint" never
    assert keep_hyphen("rights", "impacting", words, compounds)
    assert not keep_hyphen("how", "ever", words, compounds)  # "however" is a word of the document
    assert not keep_hyphen("envi", "ronment", words, compounds)
    assert not keep_hyphen("recommenda", "tion", set(), set())  # a suffix is no word of its own
    assert keep_hyphen("Rights", "Impacting", set(), set())
    assert keep_hyphen("M-25", "21", set(), set())  # identifiers keep their hyphens


def test_pdfium_soft_hyphen_becomes_a_line_end_hyphen():
    # pdfium writes a line-end hyphen as U+FFFE, sometimes with no line break after it
    assert clean_text("Safety-Impacting and Rights\ufffeImpacting") == "Safety-Impacting and Rights-\nImpacting"
    text, _ = join_pages(
        ["Appendix I: Purposes for Which AI is Presumed to be Safety-Impacting and Rights-\nImpacting"]
    )
    assert "Rights-Impacting" in text


# -- wrapped lines -------------------------------------------------------------------------------


PAGE = """\
MEMORANDUM FOR THE HEADS OF EXECUTIVE DEPARTMENTS AND AGENCIES
FROM: Shalanda D. Young
SUBJECT: Advancing Governance, Innovation, and Risk Management for Agency Use of
Artificial Intelligence
1. OVERVIEW
While AI is improving operations and service delivery across the Federal Government,
agencies must effectively manage its use. As such, this memorandum establishes new agency
requirements and guidance for AI governance, innovation, and risk management.
Strengthening AI Governance
Each agency must designate a Chief AI Officer within 60 days of the issuance of this
memorandum. Agencies must:
a. convene their senior officials to coordinate and govern issues tied to the use of
AI within the agency;
b. publish compliance plans; and
• report use cases.
"""


def test_wrapped_lines_become_paragraphs_and_structure_stays():
    words, compounds = vocabulary(PAGE)
    lines = reflow(PAGE.strip(), words, compounds).split("\n")
    assert (
        "While AI is improving operations and service delivery across the Federal Government, agencies must "
        "effectively manage its use. As such, this memorandum establishes new agency requirements" in lines[4]
    )
    assert lines[0].startswith("MEMORANDUM FOR")
    assert lines[1] == "FROM: Shalanda D. Young"
    assert (
        lines[2]
        == "SUBJECT: Advancing Governance, Innovation, and Risk Management for Agency Use of Artificial Intelligence"
    )
    assert lines[3] == "1. OVERVIEW"
    assert lines[5] == "Strengthening AI Governance"
    assert lines[6].startswith("Each agency must designate") and lines[6].endswith("memorandum. Agencies must:")
    assert (
        lines[7]
        == "a. convene their senior officials to coordinate and govern issues tied to the use of AI within the agency;"
    )
    assert lines[8:] == ["b. publish compliance plans; and", "• report use cases."]


def test_memo_header_fields_are_no_sections():
    text, _ = join_pages([PAGE.strip()])
    titles = [h.title for h in detect_headings(text)]
    assert "1. OVERVIEW" in titles
    assert not [t for t in titles if t.startswith(("FROM", "SUBJECT", "MEMORANDUM"))]
    # a loader that reports a memo field as a heading (markup) still keeps it out of section paths
    paths = section_paths([Heading(0, 1, "Memo"), Heading(10, 2, "FROM: Shalanda D. Young"), Heading(20, 2, "Scope")])
    assert [p for _, p in paths] == ["Memo", "Memo > Scope"]
    assert is_memo_field("TO: The Heads of Agencies") and is_memo_field("T H E DI RE C T O R")
    assert not is_memo_field("Toward Trustworthy AI") and not is_memo_field("1. OVERVIEW")


# -- footnote markers ------------------------------------------------------------------------


def test_footnote_marker_glued_to_a_number_is_dropped():
    text = "of Executive Order 1396012 and Section 4(b) of EO 14110 and M-24-10"
    sizes = [12.0] * len(text)
    at = text.index("1396012") + 5
    sizes[at : at + 2] = [8.0, 8.0]
    assert (
        drop_footnote_markers(text, lambda i: sizes[i])
        == "of Executive Order 13960 and Section 4(b) of EO 14110 and M-24-10"
    )


def test_footnote_markers_after_words_and_alone_on_a_line():
    text = "the AI in Government Act of 2020,\r\n1\r\nthe Advancing American AI Act,2\r\nand Executive Order 14110."
    small = {text.index("\r\n1\r\n") + 2, text.index("Act,2") + 4}
    out = drop_footnote_markers(text, lambda i: 8.0 if i in small else 12.0)
    assert out == "the AI in Government Act of 2020,\r\nthe Advancing American AI Act,\r\nand Executive Order 14110."


def test_exponent_and_footnote_numbers_are_kept():
    text = "greater than 1026 integer operations\r\n1 Pub. L. No. 116-260, div. U"
    small = {text.index("1026") + 2, text.index("1026") + 3, text.index("\r\n1 ") + 2}
    out = drop_footnote_markers(text, lambda i: 8.0 if i in small else 12.0)
    assert out == "greater than 10^26 integer operations\r\n1 Pub. L. No. 116-260, div. U"
    same = "EO 14110 and M-24-10 (2023), 44 U.S.C. 3502"
    assert drop_footnote_markers(same, lambda i: 12.0) == same


def test_shipped_memo_reads_cleanly():
    from rag.ingest.load import load_document

    doc = load_document(M_24_10, CORPUS)
    assert "1396012" not in doc.text and "Executive Order 13960 and Section 4(b) of Executive Order 14091" in doc.text
    assert "Rights-Impacting" in doc.text and "RightsImpacting" not in doc.text
    assert "Act of 2020, the Advancing American AI Act, and" in doc.text
    assert not [h for h in doc.headings if is_memo_field(h.title)]
    assert {"1. OVERVIEW", "2. SCOPE"} <= {h.title for h in doc.headings}


# -- sentences ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "Under E.O. 14110 agencies must act.",
        "See 40 U.S.C. 11301 for the definition.",
        "As set out in Sec. 4.6 of the order.",
        "Pub. L. No. 117-263 applies.",
        "It is codified at 44 U.S.C. Section 3502.",
        "The memo was signed by Shalanda D. Young.",
        "Exec. Order 13960 still applies.",
    ],
)
def test_sentences_are_not_split_at_abbreviations(text):
    assert _sentences(f"{text} The next sentence follows.") == [text, "The next sentence follows."]


def test_sentences_still_split_at_real_ends():
    assert _sentences("It uses AI. M-24-10 says so. EO 14110 too! Really? Yes.") == [
        "It uses AI.",
        "M-24-10 says so.",
        "EO 14110 too!",
        "Really?",
        "Yes.",
    ]


# -- citations and scores ------------------------------------------------------------------------


def test_citations_are_numbered_in_order_of_first_use():
    sents = [
        AnswerSentence("First claim", (3,), 0.8, True),
        AnswerSentence("Second claim", (1, 3), 0.7, True),
        AnswerSentence("Third claim", (5,), 0.6, True),
        AnswerSentence("No source", (), 0.1, False),
    ]
    out, by_number = renumber(sents)
    assert [s.citations for s in out] == [(1,), (2, 1), (3,), ()]
    assert by_number == {1: 3, 2: 1, 3: 5}
    assert render(out) == "First claim [1]. Second claim [2][1]. Third claim [3]. No source."


def _passage(rank: int, dense: float, rerank: float | None = None) -> Passage:
    ch = Chunk(
        chunk_id=f"c{rank}",
        doc_id="d",
        source="a.pdf",
        title="A",
        ordinal=rank,
        text="t",
        char_start=0,
        char_end=1,
        page=1,
        page_end=1,
        section="",
        n_tokens=1,
        embed_text="t",
    )
    scores = {"dense": dense, **({"rerank_p": rerank} if rerank is not None else {})}
    return Passage(chunk=ch, score=0.01, rank=rank, scores=scores)


def test_passages_are_listed_by_the_score_shown_and_none_negative():
    ps = [_passage(1, 0.2), _passage(2, 0.6), _passage(3, -0.1)]
    assert [p.rank for p in by_display_score(ps)] == [2, 1, 3]
    assert ps[2].display_score == ("similarity", 0.0)
    assert _passage(4, 0.3, rerank=0.9).display_score == ("relevance", 0.9)
    assert ps[2].to_dict()["display_score"] == {"name": "similarity", "value": 0.0}


def test_unsupported_sentences_are_flagged_in_text_and_json():
    sents = (
        AnswerSentence("Agencies must designate a CAIO", (1,), 0.8, True),
        AnswerSentence("The ability to share information is a fundamental human right", (), 0.2, False),
    )
    text = render(sents)
    flagged, missing = flag_unsupported(text, sents)
    assert (
        flagged
        == "Agencies must designate a CAIO [1]. The ability to share information is a fundamental human right. [unsupported]"
    )
    assert missing == []
    ans = Answer(
        question="q",
        text=text,
        refused=False,
        mode="generative",
        produced_by="generative",
        citations=(),
        passages=(),
        sentences=sents,
    )
    d = ans.to_dict()
    assert d["unsupported_sentences"] == ["The ability to share information is a fundamental human right"]
    assert [s["supported"] for s in d["sentences"]] == [True, False]


# -- index compatibility -----------------------------------------------------------------------


def test_old_chunker_version_asks_for_a_full_rebuild(tmp_path):
    sig = {"chunker_version": CHUNKER_VERSION, "chunk_tokens": 200}
    old = Manifest(
        index_id="x",
        built_at="now",
        embedding=EmbeddingInfo("m", 384, 256),
        chunking={**sig, "chunker_version": CHUNKER_VERSION - 1},
        faiss={"type": "flat"},
        corpus="corpus",
    )
    with pytest.raises(
        IndexMismatchError, match=r"chunker_version: index 1 vs settings 2.*run `rag index build --full`"
    ):
        old.check_compatible("m", sig, tmp_path)
