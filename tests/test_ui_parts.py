"""The UI's pure parts: chat history formats, answer/sources rendering, exports, document panel rules,
friendly errors, the cited PDF page with its highlight, and the service doors the UI uses for them."""

from __future__ import annotations

import io
from dataclasses import replace
from types import SimpleNamespace

import pytest
from helpers import make_pdf

from rag.answer.prompts import condense_query
from rag.types import AnswerSentence, Passage
from ui import export
from ui.docs_panel import (
    confirm_name,
    doc_choices,
    documents_rows,
    overview_markdown,
    removal_check,
    removal_plan,
    with_policy,
)
from ui.history import normalize_history, user_questions
from ui.messages import friendly, friendly_markdown
from ui.pages import locate, text_view_html
from ui.render import answer_markdown, display_score, ordered_passages, sources_html

Q1 = "What must agencies do under OMB memo M-24-10 regarding Chief AI Officers?"

# -- history ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "history",
    [
        # Gradio 6: content is a list of parts (the format the app used to drop)
        [
            {"role": "user", "metadata": None, "content": [{"text": Q1, "type": "text"}], "options": None},
            {
                "role": "assistant",
                "metadata": None,
                "content": [{"text": "<b>Quoted</b> … <a class='cite'>[1]</a>", "type": "text"}],
            },
        ],
        [{"role": "user", "content": Q1}, {"role": "assistant", "content": "An answer [1]."}],  # content as str
        [(Q1, "An answer [1].")],  # tuples
        [[Q1, "An answer [1]."]],  # lists, as JSON clients send pairs
        [
            SimpleNamespace(role="user", content=Q1),
            SimpleNamespace(role="assistant", content="An answer."),
        ],  # ChatMessage-like
        [
            {"role": "user", "content": [Q1]},
            {"role": "assistant", "content": [{"type": "file", "file": {"path": "x.png"}}]},
        ],
    ],
)
def test_every_history_format_reaches_the_condensed_query(history):
    norm = normalize_history(history)
    assert norm[0] == {"role": "user", "content": Q1}
    assert all(isinstance(m["content"], str) and "<" not in m["content"] for m in norm)
    assert user_questions(history) == [Q1]
    query = condense_query(norm, "By when?")
    assert "M-24-10" in query and "By when?" in query


def test_history_drops_markup_empty_turns_and_other_roles():
    norm = normalize_history(
        [
            {"role": "system", "content": "x"},
            {"role": "user", "content": [{"type": "text", "text": "  "}]},
            {"role": "assistant", "content": "<small>drafting…</small> &amp; more **bold**"},
            None,
            5,
        ]
    )
    assert norm == [{"role": "assistant", "content": "drafting… & more bold"}]
    assert normalize_history(None) == []


# -- rendering ----------------------------------------------------------------------------------


def _answer(
    make_answer,
    text,
    sentences,
    passage_text="Agencies must act quickly & well. The deadline is 60 days.",
    title="Plan",
):
    return replace(
        make_answer(text=text, passage_text=passage_text, title=title),
        sentences=tuple(sentences),
        record={"retrieval_query": "Agencies? By when?"},
        model="SmolLM2-135M",
    )


def test_unsupported_sentence_is_marked(make_answer):
    ans = _answer(
        make_answer,
        "Agencies must act quickly [1]. The moon is made of cheese.",
        [
            AnswerSentence("Agencies must act quickly.", (1,), 0.9, True),
            AnswerSentence("The moon is made of cheese.", (), 0.1, False),
        ],
    )
    md = answer_markdown(ans, turn=3)
    assert '<span class="unsupported"' in md and "The moon is made of cheese" in md.split('class="unsupported"')[1]
    assert "Agencies must act quickly" not in md.split('class="unsupported"')[1]
    assert 'href="#src-3-1"' in md and "unsupported</sup>" in md
    assert "searched for" in md and "Agencies? By when?" in md and "SmolLM2-135M" in md


def test_invented_quotation_is_never_shown_as_a_quotation(make_answer):
    ans = _answer(
        make_answer,
        "The plan says “the ability to create and share information is a fundamental human right” [1]. "
        "It says “The deadline is 60 days.” [1].",
        [],
    )
    md = answer_markdown(ans)
    invented = "the ability to create and share information is a fundamental human right"
    assert f"“{invented}”" not in md and f'"{invented}"' not in md
    assert '<span class="unverified-quote"' in md and "unverified quote" in md
    assert "“The deadline is 60 days.”" in md  # a real quotation stays one


def test_sources_ordered_by_displayed_score_never_negative_with_tooltips(make_answer):
    base = make_answer()
    c = base.passages[0].chunk
    ps = [
        Passage(replace(c, chunk_id=f"x{i}", title=f"T{i}"), score=s, rank=i + 1, scores={"dense": d})
        for i, (s, d) in enumerate([(0.9, 0.30), (0.8, -0.12), (0.7, 0.55)])
    ]
    ans = replace(base, passages=(base.passages[0], *ps))
    assert [p.chunk.title for p in ordered_passages(ps)] == ["T2", "T0", "T1"]
    assert display_score(ps[1])[1] == 0.0
    h = sources_html(ans, turn=2)
    scores = [float(x.split('"')[0]) for x in h.split('data-score="')[1:]]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0
    assert "-0.12" not in h and 'title="similarity: cosine' in h and 'title="support: how well' in h
    assert 'id="src-2-1"' in h and 'data-cite="2:1"' in h and "open page" in h


def test_refusal_names_the_search(make_answer):
    ans = replace(make_answer(), refused=True, produced_by="refusal", citations=(), record={"retrieval_query": "x y"})
    md = answer_markdown(ans)
    assert "The documents don't say" in md and "searched for" in md and "refused" in md


# -- export ---------------------------------------------------------------------------------------


def _dicts(make_answer):
    a = _answer(
        make_answer,
        "Agencies must act quickly [1]. Unbacked claim.",
        [
            AnswerSentence("Agencies must act quickly.", (1,), 0.9, True),
            AnswerSentence("Unbacked claim.", (), 0.1, False),
        ],
    )
    d = export.with_urls(a.to_dict(), {"dir/plan.pdf": "https://example.gov/plan.pdf"})
    d2 = {**d, "question": "Second question?", "answer": "Second answer [1]."}
    return d, d2


def test_export_markdown_text_and_docx(make_answer):
    d, d2 = _dicts(make_answer)
    md = export.answer_markdown_doc(d)
    assert md.startswith("## q") and "### Sources" in md and "1. Plan" in md and "p. 7" in md
    assert "https://example.gov/plan.pdf" in md and "Agencies must act quickly" in md and "Unbacked claim." in md
    text = export.answer_text(d)
    assert "class=" not in text and "href" not in text and "[1] Plan" in text and "Not supported" in text
    conv = export.conversation_markdown([d, d2])
    assert conv.count("### Sources") == 2 and "Second question?" in conv
    from docx import Document

    doc = Document(io.BytesIO(export.to_docx([d, d2])))
    paras = [p.text for p in doc.paragraphs]
    assert "q" in paras and "Second question?" in paras and paras.count("Sources") == 2
    assert any(p.startswith("[1] Plan") and "“Agencies must act quickly”" in p for p in paras)
    assert any("Not supported by the sources" in p for p in paras)


# -- documents panel --------------------------------------------------------------------------------


def _doc(source, title="Doc", date="2024-01-01", **kw):
    return SimpleNamespace(
        source=source,
        doc_id="d" + source,
        title=title,
        date=date,
        source_url=None,
        file_type="pdf",
        pages=3,
        has_pages=True,
        n_chunks=4,
        **kw,
    )


def test_documents_panel_rules():
    docs = [
        _doc("federal-register/eo.pdf", "EO 14110", status="revoked by EO 14148"),
        _doc("uploads/memo.md", "Memo", None),
    ]
    assert documents_rows(docs)[0] == [
        "EO 14110 (revoked by EO 14148)",
        "2024-01-01",
        "PDF",
        3,
        4,
        "federal-register/eo.pdf",
    ]
    assert doc_choices(docs)[0] == ("EO 14110 — federal-register/eo.pdf", "federal-register/eo.pdf")
    indexed = {d.source for d in docs}
    assert "Choose" in removal_check(None, "", indexed)
    assert "Type the file name" in removal_check("federal-register/eo.pdf", "", indexed)
    assert "Type the file name" in removal_check("federal-register/eo.pdf", "memo.md", indexed)
    assert removal_check("federal-register/eo.pdf", " eo.pdf ", indexed) is None
    assert "no longer in the index" in removal_check("gone.pdf", "gone.pdf", indexed)
    assert confirm_name("uploads/memo.md") == "memo.md"
    assert "not deleted" in removal_plan("federal-register/eo.pdf", False) and "deleted" in removal_plan(
        "uploads/memo.md", True
    )
    ov = overview_markdown(docs, {"built_at": "2026-01-01T10:00:00"})
    assert "2 documents indexed" in ov and "revoked by EO 14148" in ov and "undated" in ov


def test_policy_view_adds_kind_and_status():
    docs = [_doc("federal-register/eo.pdf", "EO 14110"), _doc("omb/m.pdf", "M-24-10")]
    policy = [
        {
            "source": "federal-register/eo.pdf",
            "kind": "executive_order",
            "status": {"status": "revoked", "by": "EO 14148", "on": "2025-01-20", "as_of": "2026-01-01"},
        },
        {"source": "omb/m.pdf", "kind": None, "status": {"status": "in force"}},
    ]
    rows = documents_rows(with_policy(docs, policy))
    assert rows[0][0] == "EO 14110 (revoked by EO 14148 on 2025-01-20)" and rows[0][2] == "executive order"
    assert rows[1][0] == "M-24-10 (in force)" and rows[1][2] == "PDF"
    assert documents_rows(with_policy(docs, None))[0][0] == "EO 14110"


def test_friendly_errors_hide_raw_errors():
    raw = (
        "OSError: We couldn't connect to 'https://huggingface.co' to load the files, and couldn't find them in the cached "
        "files at /root/.cache/huggingface/hub/models--x. model 'Qwen/Qwen2.5-72B' cannot be loaded"
    )
    what, todo, detail = friendly(raw)
    assert what == "The language model could not be loaded." and "extractive" in todo
    md = friendly_markdown(raw)
    assert "https://" not in md and "/root/" not in md and "OSError" not in md
    assert friendly("something odd")[0].startswith("Something went wrong")


# -- the source viewer ------------------------------------------------------------------------------


def test_locate_and_text_view(make_answer):
    d, _ = _dicts(make_answer)
    loc = locate([d], "0:1")
    assert loc["source"] == "dir/plan.pdf" and loc["page"] == 7 and loc["source_url"] == "https://example.gov/plan.pdf"
    assert (
        locate([d], "0:p1")["source"] == "dir/plan.pdf" and locate([d], "5:1") is None and locate([d], "junk") is None
    )
    text = "Intro.\n\n" + "x" * 50 + " Agencies must act <now>. Tail."
    a = text.index("Agencies")
    h = text_view_html({**loc, "char_start": a, "char_end": a + 23}, text)
    assert '<mark id="passage-here">Agencies must act &lt;now&gt;</mark>' in h and "opened at the passage" in h


def test_find_span_survives_hyphenation_and_line_breaks():
    from rag.ingest.page_image import find_span

    page = "The plan is illus-\r\ntrated in Fig. 2 and agencies\r\nmust comply12 within 60 days."
    a, b = find_span(page, "illustrated in Fig. 2 and agencies must comply")
    assert page[a:b].startswith("illus-") and page[a:b].endswith("comply")
    assert find_span(page, "nothing like this at all here") is None


def test_page_image_highlights_the_quote(tmp_path):
    from PIL import Image

    from rag.ingest.page_image import render_page

    pdf = tmp_path / "r.pdf"
    pdf.write_bytes(
        make_pdf([["Cover page"], ["Recommendations", "The report recommends faster interconnection studies."]])
    )
    img = render_page(pdf, 1, "The report recommends faster interconnection studies.", also_pages=(2,), scale=1.0)
    assert img.page == 2 and img.pages == 2 and img.found and img.boxes
    im = Image.open(io.BytesIO(img.png)).convert("RGB")
    left, top, right, bottom = img.boxes[0]
    yellow = sum(
        1
        for x in range(left + 3, right - 3, 4)
        for y in range(top + 3, bottom - 3, 2)
        if (lambda p: p[0] > 200 and p[1] > 180 and p[2] < 190)(im.getpixel((x, y)))
    )
    assert yellow > 10  # the highlight is painted where the boxes say
    miss = render_page(pdf, 1, "words that are nowhere", scale=1.0)
    assert miss.page == 1 and not miss.found and not miss.boxes


def test_service_removal_keeps_shipped_files_and_deletes_uploads(index_copy, embedder, tmp_path):
    from rag.errors import ConfigError
    from rag.ingest.files import load_excluded
    from rag.service import RagService
    from rag.settings import Settings

    corpus, index = index_copy
    svc = RagService(Settings(corpus=corpus, index=index), embedder=embedder)
    shipped = "reports/grid-report.pdf"
    img = svc.page_image(shipped, 1, "The report recommends faster interconnection studies", 2)
    assert img.found and img.page == 2
    svc.remove_document(shipped)
    assert (corpus / shipped).is_file() and shipped in load_excluded(corpus)
    assert shipped not in {d.source for d in svc.docs()}
    assert not svc.needs_build()  # the next build does not bring it back
    with pytest.raises(ConfigError, match="not in the index"):
        svc.page_image(shipped, 1)
    up = tmp_path / "up.md"
    up.write_text("# Lighthouse Memo\n\nThe lighthouse program restores coastal beacons in Maine by 2027.\n")
    _, saved, _ = svc.add_files([(up, "lighthouse.md")])
    assert saved == ["uploads/lighthouse.md"] and svc.is_upload(saved[0]) and not svc.is_upload(shipped)
    assert "coastal beacons" in svc.document_text(saved[0])
    svc.remove_document(saved[0])
    assert not (corpus / saved[0]).exists() and saved[0] not in {d.source for d in svc.docs()}
