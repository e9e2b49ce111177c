"""Gradio UI: a thin layer over rag.service.RagService (chat with cited answers, documents, relations).

Per chat one answer runs at a time: asking again (Enter) cancels the running answer visibly, Stop ends
it, Ask is disabled meanwhile. Document lists (table, remove choice, filter, overview) are refreshed on
page load, after every change, and by a timer in every open page when another session changed them.
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

import gradio as gr

from rag.errors import RagError
from rag.service import CallbackReporter, RagService

from . import export
from .docs_panel import (
    DOC_HEADERS,
    DOC_WIDTHS,
    confirm_name,
    doc_choices,
    docs_version,
    documents_rows,
    overview_markdown,
    removal_check,
    removal_plan,
    with_policy,
)
from .history import normalize_history
from .messages import friendly_markdown
from .pages import viewer_html
from .render import CSS, MODE_HELP, answer_markdown, draft_markdown, md_esc, sources_html, timings_markdown

STOPPED = "<small>■ Stopped.</small>"
REPLACED = "<small>■ Stopped: you asked another question.</small>"
PENDING = "<small>retrieving…</small>"

# clicks on [n] links and "open" buttons anywhere in the page go to the hidden #cite-target box
HEAD = """<script>
(() => {
  document.addEventListener('click', (e) => {
    const el = e.target.closest && e.target.closest('a.cite, button.open-src');
    if (!el) return;
    let key = el.dataset ? el.dataset.cite : null;
    if (!key) { const m = (el.getAttribute('href') || '').match(/#src-(\\d+)-(\\d+)/); if (m) key = m[1] + ':' + m[2]; }
    if (!key) return;
    e.preventDefault(); e.stopPropagation();
    const entry = document.getElementById('src-' + key.replace(':', '-'));
    if (entry) entry.scrollIntoView({block: 'nearest'});
    const box = document.querySelector('#cite-target textarea, #cite-target input');
    if (!box) return;
    box.value = key;
    box.dispatchEvent(new Event('input', {bubbles: true}));
    setTimeout(() => { const b = document.querySelector('#cite-open'); if (b) b.click(); }, 80);
  }, true);
})();
</script>"""

SCROLL_TO_PASSAGE = ("() => { setTimeout(() => { const m = document.querySelector('#passage-here') || "
                     "document.querySelector('#page-view .viewer'); if (m) m.scrollIntoView({block: 'center'}); }, 150); }")


class _Runs:
    """The answer running in each chat session, so a new question, Stop or New conversation can cancel it.

    Only the answer's own handler writes its chat message, so a cancelled answer cannot overwrite what
    came after it: it writes "Stopped." when Stop ended it and nothing newer started, else nothing.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._current: dict[str, str] = {}  # session -> token of its running answer
        self._events: dict[str, threading.Event] = {}  # token -> its cancel event
        self._reason: dict[str, str] = {}  # token -> why it was cancelled: stopped | replaced | cleared
        self._done: dict[str, threading.Event] = {}  # token -> set when its handler has ended
        self._after: dict[str, threading.Event] = {}  # token -> the done event of the answer it replaced

    def start(self, session: str) -> tuple[str, bool]:
        """A token for a new answer; True when an earlier answer of this session was still running (now cancelled)."""
        token = uuid.uuid4().hex
        with self._lock:
            old = self._current.get(session)
            was_running = bool(old and old in self._events and not self._events[old].is_set())
            if old and old in self._events:
                self._reason[old] = "replaced"
                self._events[old].set()
                if old in self._done:
                    self._after[token] = self._done[old]
            self._current[session] = token
            self._events[token] = threading.Event()
            self._done[token] = threading.Event()
        return token, was_running

    def wait_replaced(self, token: str, timeout: float = 5.0) -> None:
        """Let the answer this one replaced end first, so its last draft cannot land after this answer."""
        with self._lock:
            done = self._after.pop(token, None)
        if done is not None:
            done.wait(timeout)

    def event(self, token: str) -> threading.Event:
        with self._lock:
            return self._events.get(token) or _SET

    def stop(self, session: str, reason: str = "stopped") -> bool:
        with self._lock:
            token = self._current.pop(session, None)
            ev = self._events.get(token) if token else None
            if ev is None or ev.is_set():
                return False
            self._reason[token] = reason  # type: ignore[index]
            ev.set()
            return True

    def should_mark_stopped(self, token: str, session: str) -> bool:
        """A cancelled answer writes "Stopped." only when Stop ended it and no newer answer has started."""
        with self._lock:
            return self._reason.get(token) == "stopped" and self._current.get(session) in (None, token)

    def finish(self, token: str, session: str) -> None:
        with self._lock:
            if self._current.get(session) == token:
                del self._current[session]
            self._events.pop(token, None)
            self._reason.pop(token, None)
            self._after.pop(token, None)
            done = self._done.pop(token, None)
        if done is not None:
            done.set()


_SET = threading.Event()
_SET.set()


def _session(request: gr.Request | None) -> str:
    return getattr(request, "session_hash", None) or "anonymous"


def _policy(service: RagService) -> list[Any] | None:
    """Kinds, status and relations per document where the index records them (None when it does not)."""
    describe = getattr(service, "policy_docs", None)
    if describe is None:
        return None
    try:
        return describe()
    except Exception:  # an index from before relations were extracted: the lists work without them
        return None


def _timeline_html(service: RagService, policy: list[Any] | None) -> str:
    try:
        from .timeline import timeline_svg  # written alongside the relations extraction; optional until then
    except ImportError:
        return "<p><i>Relations between documents (revokes, supersedes, amends) will appear here once the index records them.</i></p>"
    try:
        return timeline_svg(policy if policy is not None else service.docs())
    except Exception as e:  # a drawing problem must not break the page
        return f"<p><i>The relations view could not be drawn ({md_esc(type(e).__name__)}).</i></p>"


def build_app(service: RagService) -> gr.Blocks:
    s = service.settings
    runs = _Runs()
    export_dir = Path(tempfile.mkdtemp(prefix="policy-rag-export-"))

    with gr.Blocks(title="policy-rag") as demo:
        gr.Markdown("## policy-rag — cited answers from policy documents")
        answers = gr.State([])  # this chat's answers (dicts), index = turn
        pending = gr.State(("", ""))  # (question, run token) handed from `begin` to `respond`
        version = gr.State("")
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Conversation", height=470, elem_id="chatbot", buttons=[],
                                         placeholder="Ask a question about the documents, or pick an example below.")
                    with gr.Row():
                        msg = gr.Textbox(placeholder="Ask about the documents…", show_label=False, scale=5, elem_id="question")
                        send = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                        stop = gr.Button("Stop", variant="stop", scale=1, elem_id="stop", interactive=False)
                    gr.Examples([[q] for q in s.ui.examples], inputs=[msg], label="Example questions")
                    mode_help = gr.Markdown(MODE_HELP.get(s.answer.mode, ""), elem_id="mode-help")
                    timings = gr.Markdown(elem_id="timings")
                    with gr.Row():
                        clear = gr.Button("New conversation", size="sm")
                        copy_btn = gr.Button("Copy answer as text", size="sm", elem_id="copy-answer")
                        exp_md = gr.Button("Answer → Markdown", size="sm", elem_id="export-md")
                        exp_docx = gr.Button("Answer → DOCX", size="sm", elem_id="export-docx")
                        conv_md = gr.Button("Conversation → Markdown", size="sm", elem_id="export-conv-md")
                        conv_docx = gr.Button("Conversation → DOCX", size="sm", elem_id="export-conv-docx")
                    export_file = gr.File(label="Export", elem_id="export-file", interactive=False, height=90)
                    with gr.Accordion("Answer as plain text", open=False):
                        clean_text = gr.Textbox(show_label=False, lines=6, elem_id="clean-text", buttons=["copy"])
                with gr.Column(scale=2):
                    with gr.Accordion("What is indexed", open=True) as overview_box:
                        overview = gr.Markdown(elem_id="overview", max_height=420)
                    sources = gr.HTML(elem_id="sources")
                    cite_target = gr.Textbox(elem_id="cite-target", visible="hidden")
                    cite_open = gr.Button("open", elem_id="cite-open", visible="hidden")
            viewer = gr.HTML(elem_id="page-view")  # full width: a cited PDF page readable at its rendered size
            with gr.Accordion("Settings", open=False):
                with gr.Row():
                    k = gr.Slider(1, 20, value=s.retrieval.top_k, step=1, label="passages (k)")
                    rmode = gr.Radio(["hybrid", "dense", "bm25"], value=s.retrieval.mode, label="retrieval")
                    amode = gr.Radio(["auto", "extractive", "generative"], value=s.answer.mode, label="answer mode", elem_id="answer-mode")
                with gr.Row():
                    doc_filter = gr.Dropdown(choices=[], multiselect=True, label="only these documents", elem_id="doc-filter")
                    model = gr.Textbox(value=s.llm.model, label="LLM (HF id, folder or .gguf)")

        # -- chat ------------------------------------------------------------------------------

        def begin(message: str, history: list[Any], request: gr.Request):
            message = (message or "").strip()
            if not message:
                return gr.skip(), gr.skip(), ("", ""), gr.skip(), gr.skip()
            token, was_running = runs.start(_session(request))
            history = list(history or [])
            if was_running and history and history[-1].get("role") == "assistant":
                history[-1] = {"role": "assistant", "content": REPLACED}
            history += [{"role": "user", "content": message}, {"role": "assistant", "content": PENDING}]
            return history, "", (message, token), gr.update(interactive=False), gr.update(interactive=True)

        def respond(job: tuple[str, str], history: list[Any], past: list[dict[str, Any]], k_: float, rmode_: str, amode_: str,
                    docs_: list[str] | None, model_: str, request: gr.Request):
            question, token = job
            if not question:
                return
            cancel = runs.event(token)
            history = list(history or [])
            prior = normalize_history(history[:-2])
            turn = len(past)
            filters = {"source": list(docs_)} if docs_ else None
            kw = dict(k=int(k_), retrieval_mode=rmode_, mode=amode_, filters=filters, model=(model_ or None))
            idle = (gr.update(interactive=True), gr.update(interactive=False))
            finished = False
            session = _session(request)

            def stopped():
                if runs.should_mark_stopped(token, session):
                    history[-1] = {"role": "assistant", "content": STOPPED}
                    yield history, gr.skip(), gr.skip(), past, *idle, gr.skip(), gr.skip()

            try:
                runs.wait_replaced(token)  # one answer at a time per chat: the replaced one ends first
                if cancel.is_set():  # stopped while waiting for a free slot
                    yield from stopped()
                    return
                for kind, value in service.ask_stream(question, cancel=cancel, history=prior, **kw):
                    if cancel.is_set():  # Stop, a newer question or a new conversation took over this chat
                        yield from stopped()
                        return
                    finished = kind in ("error", "answer")
                    if kind == "draft":
                        history[-1] = {"role": "assistant", "content": draft_markdown(value)}
                        yield history, gr.skip(), gr.skip(), past, gr.skip(), gr.skip(), gr.skip(), gr.skip()
                    elif kind == "error":
                        history[-1] = {"role": "assistant", "content": friendly_markdown(value)}
                        yield history, gr.skip(), "", past, *idle, gr.skip(), gr.skip()
                    elif kind == "answer":
                        urls = {d.source: d.source_url for d in service.docs()}
                        d = export.with_urls(value.to_dict(), urls)
                        past = [*past, d]
                        history[-1] = {"role": "assistant", "content": answer_markdown(value, turn)}
                        yield (history, sources_html(value, turn), timings_markdown(value), past, *idle, export.answer_text(d),
                               gr.update(open=False))
                if not finished and not cancel.is_set():  # the stream ended without a result: never leave Ask disabled
                    history[-1] = {"role": "assistant", "content": STOPPED}
                    yield history, gr.skip(), gr.skip(), past, *idle, gr.skip(), gr.skip()
            finally:
                runs.finish(token, session)

        def stop_answer(request: gr.Request):
            # the running answer notices within a quarter second and writes "Stopped." itself (one writer per message)
            runs.stop(_session(request))
            return gr.update(interactive=True), gr.update(interactive=False)

        chat_in = [pending, chatbot, answers, k, rmode, amode, doc_filter, model]
        chat_out = [chatbot, sources, timings, answers, send, stop, clean_text, overview_box]
        begin_out = [chatbot, msg, pending, send, stop]
        ev_click = send.click(begin, [msg, chatbot], begin_out, api_name=False, concurrency_limit=None).then(
            respond, chat_in, chat_out, api_name=False)
        ev_submit = msg.submit(begin, [msg, chatbot], begin_out, api_name=False, concurrency_limit=None, trigger_mode="multiple").then(
            respond, chat_in, chat_out, api_name=False)
        stop.click(stop_answer, None, [send, stop], api_name=False, concurrency_limit=None)

        def new_conversation(request: gr.Request):
            runs.stop(_session(request), reason="cleared")
            return [], "", "", [], gr.update(interactive=True), gr.update(interactive=False), "", "", None

        clear.click(new_conversation, None, [chatbot, sources, timings, answers, send, stop, clean_text, viewer, export_file],
                    api_name=False, cancels=[ev_click, ev_submit])
        chatbot.clear(new_conversation, None, [chatbot, sources, timings, answers, send, stop, clean_text, viewer, export_file],
                      api_name=False, cancels=[ev_click, ev_submit])
        amode.change(lambda m: MODE_HELP.get(m, ""), amode, mode_help, api_name=False)

        def open_source(key: str, past: list[dict[str, Any]]):
            return viewer_html(service, past, key)

        cite_open.click(open_source, [cite_target, answers], viewer, api_name=False).then(None, None, None, js=SCROLL_TO_PASSAGE)

        def do_export(past: list[dict[str, Any]], what: str):
            if not past:
                gr.Warning("Nothing to export yet: ask a question first.")
                return None
            stamp = time.strftime("%Y%m%d-%H%M%S")
            items = past[-1:] if what.startswith("answer") else past
            name = f"policy-rag-{'answer' if what.startswith('answer') else 'conversation'}-{stamp}"
            path = export_dir / (name + (".docx" if what.endswith("docx") else ".md"))
            if what.endswith("docx"):
                path.write_bytes(export.to_docx(items))
            else:
                path.write_text(export.answer_markdown_doc(items[0], 1) if what == "answer-md" else export.conversation_markdown(items),
                                encoding="utf-8")
            return str(path)

        for btn, what in ((exp_md, "answer-md"), (exp_docx, "answer-docx"), (conv_md, "conv-md"), (conv_docx, "conv-docx")):
            btn.click(lambda past, w=what: do_export(past, w), answers, export_file, api_name=False)
        copy_btn.click(None, clean_text, None, js="(t) => { navigator.clipboard.writeText(t || ''); return []; }")

        # -- documents ---------------------------------------------------------------------------

        with gr.Tab("Documents"):
            docs_table = gr.Dataframe(headers=DOC_HEADERS, interactive=False, elem_id="docs-table", wrap=True,
                                      column_widths=DOC_WIDTHS, max_height=520)
            with gr.Row():
                upload = gr.File(label="Add documents (PDF, DOCX, HTML, Markdown, text)", file_count="multiple",
                                 file_types=[".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt"], elem_id="upload")
                with gr.Column():
                    add_btn = gr.Button("Add to index", variant="primary", elem_id="add-docs")
                    remove_sel = gr.Dropdown(choices=[], value=None, label="remove a document", elem_id="remove-doc")
                    remove_info = gr.Markdown(elem_id="remove-info")
                    confirm = gr.Textbox(label="type the file name to confirm", elem_id="remove-confirm")
                    remove_btn = gr.Button("Remove", variant="stop", elem_id="remove-btn")
            doc_status = gr.Markdown(elem_id="doc-status")

        with gr.Tab("Relations"):
            relations = gr.HTML(elem_id="relations")

        def lists(seen: str, chosen_filter: list[str] | None, chosen_remove: str | None, force: bool = True):
            docs = service.docs()
            now = docs_version(docs)
            if not force and now == seen:
                return (gr.skip(),) * 6
            sources_now = {d.source for d in docs}
            try:
                status = service.status()
            except RagError:
                status = None
            policy = _policy(service)
            shown = with_policy(docs, policy)
            return (documents_rows(shown), overview_markdown(shown, status),
                    gr.update(choices=doc_choices(docs), value=[x for x in chosen_filter or [] if x in sources_now]),
                    gr.update(choices=doc_choices(docs), value=chosen_remove if chosen_remove in sources_now else None),
                    _timeline_html(service, policy), now)

        list_in = [version, doc_filter, remove_sel]
        list_out = [docs_table, overview, doc_filter, remove_sel, relations, version]
        demo.load(lists, list_in, list_out, api_name=False)
        if s.ui.refresh_s > 0:
            # the timer only compares versions (cheap, touches no visible component); the lists are redrawn only
            # when another session changed the documents
            changed = gr.Textbox(visible="hidden", elem_id="docs-changed")

            def check(seen: str):
                now = docs_version(service.docs())
                return gr.skip() if now == seen else now

            gr.Timer(s.ui.refresh_s).tick(check, version, changed, api_name=False, show_progress="hidden", concurrency_limit=None)
            changed.change(lambda v, f, r: lists(v, f, r, force=False), list_in, list_out, api_name=False, show_progress="hidden")

        def explain_removal(source: str | None):
            if not source:
                return "", gr.update(value="", placeholder="")
            return removal_plan(source, service.is_upload(source)), gr.update(value="", placeholder=confirm_name(source))

        remove_sel.change(explain_removal, remove_sel, [remove_info, confirm], api_name=False)

        def add_docs(files: list[Any] | None, progress=gr.Progress()):
            if not files:
                return "Choose files first.", None
            uploads = [(Path(f if isinstance(f, str) else f.name), Path(getattr(f, "orig_name", None) or (f if isinstance(f, str) else f.name)).name) for f in files]
            try:
                result, saved, rejected = service.add_files(uploads, reporter=CallbackReporter(lambda frac, text: progress(frac, desc=text)))
            except RagError as e:
                return f"**Nothing was added:** {md_esc(str(e))}", None
            lines = []
            if saved:
                lines.append(f"Added {len(saved)} file(s): " + ", ".join(f"`{md_esc(x)}`" for x in saved))
            if result is not None:
                lines.append(md_esc(result.summary()))
                lines += [f"- skipped `{md_esc(e.path)}`: {md_esc(e.reason)}" for e in result.skipped]
            lines += [f"- rejected: {md_esc(r)}" for r in rejected]
            return "\n\n".join(lines) or "Nothing to do.", None

        def remove_doc(source: str | None, typed: str, progress=gr.Progress()):
            indexed = {d.source for d in service.docs()}
            problem = removal_check(source, typed, indexed)
            if problem:
                return problem, gr.skip()
            try:
                title = next(d.title for d in service.docs() if d.source == source)
                result = service.remove_document(source, reporter=CallbackReporter(lambda frac, text: progress(frac, desc=text)))
            except (RagError, StopIteration) as e:
                return f"Nothing was removed: {md_esc(str(e) or 'the document is no longer in the index')}", gr.skip()
            kept = "its file was deleted from corpus/uploads/" if service.is_upload(source) else "its file stays in the corpus folder"
            return f"Removed **{md_esc(title)}** (`{md_esc(source)}`) from the index; {kept}. {md_esc(result.summary())}", ""

        add_btn.click(add_docs, [upload], [doc_status, upload], api_name=False).then(lists, list_in, list_out, api_name=False)
        remove_btn.click(remove_doc, [remove_sel, confirm], [doc_status, confirm], api_name=False).then(
            lists, list_in, list_out, api_name=False)

        # a plain JSON endpoint for scripts: gradio_client.Client(url).predict(question, ..., api_name="/ask")
        def api_ask(question: str, k_: float = s.retrieval.top_k, answer_mode: str = s.answer.mode, filter_json: str = "") -> dict[str, Any]:
            try:
                filters = json.loads(filter_json) if filter_json else None
            except json.JSONDecodeError as e:
                raise gr.Error(f"the filter is not valid JSON ({e.msg}); use e.g. {{\"source\": \"omb/\"}}") from None
            try:
                ans = service.ask(question, k=int(k_), mode=answer_mode, filters=filters)
            except RagError as e:
                raise gr.Error(str(e)) from None
            d = ans.to_dict()
            d["record"]["index"]["folder"] = Path(d["record"]["index"]["folder"]).name  # no server paths to clients
            return d

        api_in = [gr.Textbox(visible=False), gr.Number(visible=False), gr.Textbox(visible=False), gr.Textbox(visible=False)]
        api_out = gr.JSON(visible=False)
        gr.Button(visible=False).click(api_ask, api_in, api_out, api_name="ask")
    demo.queue(default_concurrency_limit=s.ui.concurrency)
    return demo


def launch(service: RagService, host: str, port: int, share: bool = False, auth: tuple[str, str] | None = None, block: bool = True) -> Any:
    demo = build_app(service)
    return demo.launch(server_name=host, server_port=port, share=share, auth=auth, css=CSS, head=HEAD, prevent_thread_lock=not block,
                       max_file_size=f"{int(service.settings.ingest.max_file_mb)}mb", show_error=True, quiet=True)
