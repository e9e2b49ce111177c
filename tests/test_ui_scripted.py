"""The chat UI over a scripted service, in headless Chromium (issue 14, points 3-5): Stop, a second question
that cancels the first, unsupported sentences and invented quotations marked, sources ordered by score.

The app runs in this process over a service that answers from a script (slow drafts to stop, an answer with
an unsupported sentence and a quotation found in no passage), so these checks do not depend on a model.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from types import SimpleNamespace

import pytest
import test_ui_browser as base

from rag.types import AnswerSentence, Chunk, Citation, Passage

SHOTS, VIEW, _ask = base.SHOTS, base.VIEW, base._ask
pytestmark = base.pytestmark
chromium = base.chromium  # the same headless Chromium fixture


# -- a scripted service: deterministic answers, slow drafts ------------------------------------------


def _chunk(i: int, text: str, source="plans/ai-plan.md", title="AI Plan", page=1) -> Chunk:
    return Chunk(
        chunk_id=f"c{i}",
        doc_id="d1",
        source=source,
        title=title,
        ordinal=i,
        text=text,
        char_start=0,
        char_end=len(text),
        page=page,
        page_end=page,
        section="Sec. 2",
        n_tokens=10,
        embed_text=text,
        date="2025-07-23",
    )


class ScriptedService:
    """What the UI calls, answering from a script: `answers[question]` or a slow draft that never ends on its own."""

    def __init__(self, settings):
        self.settings = settings
        self.passage_text = "Agencies must publish AI inventories within 60 days. Open models are encouraged."
        self.started: list[str] = []
        self.cancelled: list[str] = []

    def docs(self):
        return [
            SimpleNamespace(
                source="plans/ai-plan.md",
                doc_id="d1",
                title="AI Plan",
                date="2025-07-23",
                source_url="https://example.gov/plan",
                file_type="md",
                pages=1,
                has_pages=False,
                n_chunks=3,
            )
        ]

    def status(self):
        return {"built_at": "2026-01-01T00:00:00"}

    def is_upload(self, source):
        return source.startswith("uploads/")

    def document(self, source):
        return self.docs()[0]

    def document_text(self, source):
        return self.passage_text + "\n\nMore text."

    def answer(self, question):
        cited = Passage(_chunk(1, self.passage_text), score=2.0, rank=1, scores={"dense": 0.7, "rerank_p": 0.9})
        low = Passage(
            _chunk(2, "An unrelated passage about weather.", title="Weather"),
            score=-1.0,
            rank=2,
            scores={"dense": -0.2},
        )
        mid = Passage(
            _chunk(3, "A passage about inventories.", title="Inventories"),
            score=0.5,
            rank=3,
            scores={"dense": 0.4, "rerank_p": 0.6},
        )
        text = (
            "Agencies must publish AI inventories within 60 days [1]. The plan calls information "
            "“the ability to create and share information is a fundamental human right” [1]. The moon is made of cheese."
        )
        sents = (
            AnswerSentence("Agencies must publish AI inventories within 60 days.", (1,), 0.9, True),
            AnswerSentence(
                "The plan calls information “the ability to create and share information is a fundamental human right”.",
                (1,),
                0.6,
                True,
            ),
            AnswerSentence("The moon is made of cheese.", (), 0.05, False),
        )
        from rag.types import Answer

        return Answer(
            question=question,
            text=text,
            refused=False,
            mode="generative",
            produced_by="generative",
            citations=(Citation(1, cited, "Agencies must publish AI inventories within 60 days.", 0.9),),
            passages=(low, cited, mid),
            sentences=sents,
            model="scripted-llm",
            record={"retrieval_query": question + " (condensed)"},
            timings={"retrieve_s": 0.01},
        )

    def ask_stream(self, question, cancel=None, history=(), **kw):
        self.started.append(question)
        try:
            if question.startswith("bad model"):
                yield (
                    "error",
                    "model 'x/y' cannot be loaded: OSError: We couldn't connect to 'https://huggingface.co' "
                    "to load this file, couldn't find it in the cached files at /root/.cache/huggingface/hub",
                )
                return
            if question.startswith("slow"):
                for i in range(600):
                    if cancel is not None and cancel.is_set():
                        break
                    time.sleep(0.1)
                    yield ("draft", "word " * (i + 1))
                self.cancelled.append(question)
                yield ("cancelled", "")
                return
            yield ("answer", replace(self.answer(question), question=question))
        except GeneratorExit:  # the UI stopped reading: the answer was cancelled
            self.cancelled.append(question)
            raise


@pytest.fixture(scope="module")
def scripted(free_port):
    from rag.settings import Settings
    from ui.app import CSS, HEAD, build_app

    svc = ScriptedService(Settings().with_overrides(**{"ui.refresh_s": 0}))
    port = free_port()
    demo = build_app(svc)
    demo.launch(server_name="127.0.0.1", server_port=port, css=CSS, head=HEAD, prevent_thread_lock=True, quiet=True)
    yield f"http://127.0.0.1:{port}", svc
    threading.Thread(target=demo.close, daemon=True).start()


# -- 3: one answer at a time, Stop -----------------------------------------------------------------------


def test_stop_and_a_second_question(scripted, chromium):
    from playwright.sync_api import expect

    url, svc = scripted
    page = chromium.new_page(viewport=VIEW)
    page.goto(url)
    _ask(page, "slow one")
    expect(page.locator("#chatbot")).to_contain_text("drafting", timeout=30_000)
    expect(page.locator("#ask")).to_be_disabled()
    expect(page.locator("#stop")).to_be_enabled()
    page.locator("#stop").click()
    expect(page.locator("#chatbot")).to_contain_text("Stopped.", timeout=30_000)
    expect(page.locator("#ask")).to_be_enabled()
    expect(page.locator("#stop")).to_be_disabled()
    page.wait_for_timeout(1500)
    assert "drafting" not in page.locator("#chatbot").inner_text()
    assert "slow one" in svc.cancelled
    # a second question while the first is drafting cancels it, visibly, and is answered
    _ask(page, "slow two")
    expect(page.locator("#chatbot")).to_contain_text("drafting", timeout=30_000)
    _ask(page, "What must agencies publish?", enter=True)
    expect(page.locator("#chatbot")).to_contain_text("you asked another question", timeout=30_000)
    expect(page.locator("#chatbot a.cite").first).to_be_visible(timeout=30_000)
    page.wait_for_timeout(1000)
    assert "drafting" not in page.locator("#chatbot").inner_text() and "slow two" in svc.cancelled
    page.screenshot(path=str(SHOTS / "stopped.png"))
    page.close()


# -- 4, 5: marked unsupported text, readable sources ---------------------------------------------------------


def test_unsupported_and_invented_quotes_are_marked(scripted, chromium):
    from playwright.sync_api import expect

    url, _ = scripted
    page = chromium.new_page(viewport=VIEW)
    page.goto(url)
    _ask(page, "What does the plan say?")
    expect(page.locator("#chatbot a.cite").first).to_be_visible(timeout=30_000)
    bad = page.locator("#chatbot .unsupported")
    expect(bad).to_have_count(1)
    expect(bad).to_contain_text("The moon is made of cheese")
    quote = page.locator("#chatbot .unverified-quote")
    expect(quote).to_contain_text("fundamental human right")
    text = page.locator("#chatbot").inner_text()
    assert "“the ability to create" not in text and "unverified quote" in text and "unsupported" in text
    assert "written by scripted-llm" in text and "searched for" in text
    scores = [
        float(x) for x in page.locator("#sources .src.other").evaluate_all("els => els.map(e => e.dataset.score)")
    ]
    assert scores == sorted(scores, reverse=True) and min(scores) >= 0
    assert page.locator("#sources .score").first.get_attribute("title").startswith("support:")
    assert "-0." not in page.locator("#sources").inner_text()
    # a Markdown source opens at the passage
    page.locator("#chatbot a.cite").first.click()
    expect(page.locator("#page-view mark#passage-here")).to_contain_text(
        "Agencies must publish AI inventories", timeout=30_000
    )
    expect(page.locator("#page-view a.source-url")).to_have_attribute("href", "https://example.gov/plan")
    page.screenshot(path=str(SHOTS / "marked-answer.png"), full_page=True)
    page.close()


def test_errors_are_friendly_and_relations_tab_answers(scripted, chromium):
    from playwright.sync_api import expect

    url, _ = scripted
    page = chromium.new_page(viewport=VIEW)
    page.goto(url)
    _ask(page, "bad model please")
    expect(page.locator("#chatbot")).to_contain_text("The language model could not be loaded", timeout=30_000)
    text = page.locator("#chatbot").inner_text()
    assert "extractive" in text and "https://" not in text and "OSError" not in text and "/root/" not in text
    expect(page.locator("#ask")).to_be_enabled()
    page.get_by_role("tab", name="Relations").click()
    expect(page.locator("#relations")).not_to_be_empty()
    page.close()
