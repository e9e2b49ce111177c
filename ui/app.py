"""Gradio UI: a thin layer over rag.service.RagService (chat with cited answers, documents)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import gradio as gr

from rag.errors import RagError
from rag.service import CallbackReporter, RagService

from .render import CSS, answer_markdown, documents_rows, draft_markdown, sources_html, timings_markdown

DOC_HEADERS = ["title", "date", "pages", "chunks", "source"]


def _history_pairs(history: list[dict[str, Any]]) -> list[dict[str, str]]:
    out = []
    for m in history or []:
        content = m.get("content") if isinstance(m, dict) else None
        if isinstance(content, str):
            out.append({"role": m.get("role", "user"), "content": content})
    return out


def build_app(service: RagService) -> gr.Blocks:
    s = service.settings

    def doc_choices() -> list[str]:
        return [d.source for d in service.docs()]

    with gr.Blocks(title="policy-rag") as demo:
        gr.Markdown("## policy-rag — cited answers from policy documents")
        with gr.Tab("Chat"):
            with gr.Row():
                with gr.Column(scale=3):
                    chatbot = gr.Chatbot(label="Conversation", height=480, elem_id="chatbot")
                    with gr.Row():
                        msg = gr.Textbox(placeholder="Ask about the documents…", show_label=False, scale=5, elem_id="question")
                        send = gr.Button("Ask", variant="primary", scale=1, elem_id="ask")
                    timings = gr.Markdown(elem_id="timings")
                    clear = gr.Button("New conversation", size="sm")
                with gr.Column(scale=2):
                    sources = gr.HTML(elem_id="sources")
            with gr.Accordion("Settings", open=False):
                with gr.Row():
                    k = gr.Slider(1, 20, value=s.retrieval.top_k, step=1, label="passages (k)")
                    rmode = gr.Radio(["hybrid", "dense", "bm25"], value=s.retrieval.mode, label="retrieval")
                    amode = gr.Radio(["auto", "extractive", "generative"], value=s.answer.mode, label="answer mode", elem_id="answer-mode")
                with gr.Row():
                    doc_filter = gr.Dropdown(choices=doc_choices(), multiselect=True, label="only these documents", elem_id="doc-filter")
                    model = gr.Textbox(value=s.llm.model, label="LLM (HF id, folder or .gguf)")

        def respond(message: str, history: list[dict[str, Any]], k_: float, rmode_: str, amode_: str, docs_: list[str] | None, model_: str):
            message = (message or "").strip()
            if not message:
                yield history, "", gr.update(), ""
                return
            prior = list(history or [])
            history = prior + [{"role": "user", "content": message}, {"role": "assistant", "content": "<small>retrieving…</small>"}]
            yield history, "", gr.update(), ""
            filters = {"source": list(docs_)} if docs_ else None
            kw = dict(k=int(k_), retrieval_mode=rmode_, mode=amode_, filters=filters, model=(model_ or None))
            for kind, value in service.ask_stream(message, history=_history_pairs(prior), **kw):
                if kind == "draft":
                    history[-1] = {"role": "assistant", "content": draft_markdown(value)}
                    yield history, "", gr.update(), ""
                elif kind == "error":
                    history[-1] = {"role": "assistant", "content": f"**Error:** {value}"}
                    yield history, "", gr.update(), ""
                else:
                    history[-1] = {"role": "assistant", "content": answer_markdown(value)}
                    yield history, "", sources_html(value), timings_markdown(value)

        inputs = [msg, chatbot, k, rmode, amode, doc_filter, model]
        outputs = [chatbot, msg, sources, timings]
        send.click(respond, inputs, outputs, api_name="chat")
        msg.submit(respond, inputs, outputs, api_name=False)
        clear.click(lambda: ([], "", "", ""), None, outputs, api_name=False)

        with gr.Tab("Documents"):
            docs_table = gr.Dataframe(headers=DOC_HEADERS, value=documents_rows(service.docs()), interactive=False, elem_id="docs-table")
            with gr.Row():
                upload = gr.File(label="Add documents (PDF, DOCX, HTML, Markdown, text)", file_count="multiple",
                                 file_types=[".pdf", ".docx", ".html", ".htm", ".md", ".markdown", ".txt"], elem_id="upload")
                with gr.Column():
                    add_btn = gr.Button("Add to index", variant="primary", elem_id="add-docs")
                    remove_sel = gr.Dropdown(choices=doc_choices(), label="remove a document", elem_id="remove-doc")
                    confirm = gr.Checkbox(label="Yes, delete it from the index and the corpus folder", value=False)
                    remove_btn = gr.Button("Remove", variant="stop")
            doc_status = gr.Markdown(elem_id="doc-status")

        def refreshed(status: str):
            choices = doc_choices()
            return (status, documents_rows(service.docs()), gr.update(choices=choices),
                    gr.update(choices=choices, value=None), None)

        def add_docs(files: list[Any] | None, progress=gr.Progress()):
            if not files:
                return refreshed("Choose files first.")
            uploads = [(Path(f if isinstance(f, str) else f.name), Path(getattr(f, "orig_name", None) or (f if isinstance(f, str) else f.name)).name) for f in files]
            try:
                result, saved, rejected = service.add_files(uploads, reporter=CallbackReporter(lambda frac, text: progress(frac, desc=text)))
            except RagError as e:
                return refreshed(f"**Error:** {e}")
            lines = []
            if saved:
                lines.append(f"Added {len(saved)} file(s): " + ", ".join(f"`{x}`" for x in saved))
            if result is not None:
                lines.append(result.summary())
                lines += [f"- skipped `{e.path}`: {e.reason}" for e in result.skipped]
            lines += [f"- rejected: {r}" for r in rejected]
            return refreshed("\n\n".join(lines) or "Nothing to do.")

        def remove_doc(source: str | None, sure: bool, progress=gr.Progress()):
            if not source:
                return refreshed("Choose a document to remove.")
            if not sure:
                return refreshed(f"Tick the box to confirm removing `{source}`.")
            try:
                result = service.remove_document(source, reporter=CallbackReporter(lambda frac, text: progress(frac, desc=text)))
            except RagError as e:
                return refreshed(f"**Error:** {e}")
            return refreshed(f"Removed `{source}`. {result.summary()}")

        doc_outputs = [doc_status, docs_table, doc_filter, remove_sel, upload]
        add_btn.click(add_docs, [upload], doc_outputs, api_name=False)
        remove_btn.click(remove_doc, [remove_sel, confirm], doc_outputs, api_name=False).then(lambda: False, None, confirm)

        # a plain JSON endpoint for scripts: gradio_client.Client(url).predict(question, ..., api_name="/ask")
        def api_ask(question: str, k_: float = s.retrieval.top_k, answer_mode: str = s.answer.mode, filter_json: str = "") -> dict[str, Any]:
            filters = json.loads(filter_json) if filter_json else None
            ans = service.ask(question, k=int(k_), mode=answer_mode, filters=filters)
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
    return demo.launch(server_name=host, server_port=port, share=share, auth=auth, css=CSS, prevent_thread_lock=not block,
                       max_file_size=f"{int(service.settings.ingest.max_file_mb)}mb", show_error=True, quiet=True)
