"""Issue 15, findings 4 and 5: a request never loads a model the operator did not configure, and every
way a request can grow (question, k, prompt tokens, time, batch rows, unpacked spreadsheet) is bounded by
a setting and refused with a clear message. The checks live in the service (the door the UI and the API
go through), so they are tested there.
"""

from __future__ import annotations

import threading
import time
import zipfile
from pathlib import Path
from typing import Any

import pytest

from rag.answer.answerer import Answerer
from rag.answer.generate import GenerationResult
from rag.answer.limits import MODEL_REFUSED
from rag.errors import ConfigError
from rag.jobs.batch import read_input
from rag.retrieve.retriever import Retriever
from rag.service import RagService
from rag.settings import Settings

QUESTION = "How often are fracture-critical members inspected?"


class TokenGenerator:
    """A stand-in LLM with a tokenizer (4 characters a token), a context window and a per-token cost; it
    honours `stop` as the real backends do, and records the prompts it was given."""

    name = "fake"

    def __init__(self, window: int = 8192, per_token_s: float = 0.0, tokens: int = 8) -> None:
        self.context_window = window
        self.per_token_s = per_token_s
        self.tokens = tokens
        self.prompts: list[int] = []

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        return "\n".join(m["content"] for m in messages)

    def count_tokens(self, text: str) -> int:
        return len(text) // 4

    def generate(self, messages, max_new_tokens=256, on_token=None, stop=None, **kw) -> GenerationResult:
        n_prompt = self.count_tokens(self.prompt_text(messages))
        assert n_prompt + max_new_tokens <= self.context_window, "prompt over the model's window"
        self.prompts.append(n_prompt)
        t0 = time.perf_counter()
        words = []
        for i in range(self.tokens):
            if stop is not None and stop():
                break
            time.sleep(self.per_token_s)
            words.append("Fracture-critical members are inspected every year [1]." if i == 0 else "")
            if on_token:
                on_token(words[-1])
        return GenerationResult(
            text=" ".join(words).strip(),
            tokens=len(words),
            prompt_tokens=n_prompt,
            first_token_s=0.0,
            generate_s=time.perf_counter() - t0,
        )


def _service(index: Path, gen: Any = None, **groups: Any) -> RagService:
    return RagService(Settings(index=index, corpus=index.parent / "no-corpus", **groups), generator=gen)


# -- 4. the model allowlist ------------------------------------------------------------------------


@pytest.fixture()
def no_model_loads(monkeypatch):
    """Any attempt to load a model (the real loader) is recorded and fails the test."""
    import rag.answer.generate as generate

    loads: list[str] = []

    def load(name, *a, **kw):
        loads.append(name)
        raise AssertionError(f"a request loaded model {name!r}")

    monkeypatch.setattr(generate, "get_generator", load)
    return loads


def test_request_model_outside_allowlist_refused_with_one_message(
    built_fixture_index, embedder, tmp_path, no_model_loads
):
    svc = _service(built_fixture_index[1], TokenGenerator(), answer={"mode": "generative"})
    svc._embedder = embedder
    (tmp_path / "folder").mkdir()
    existing = tmp_path / "secret.txt"
    existing.write_text("x")
    names = [
        str(tmp_path / "missing" / "model"),
        str(existing),
        str(tmp_path / "folder"),
        "/root/.bashrc",
        "Qwen/Qwen2.5-72B-Instruct",
        "~/.ssh/id_rsa",
        "x.gguf",
        "smollm2 "[:-1] + "-other",
    ]
    messages = set()
    for name in names:
        for mode in ("generative", "extractive"):
            with pytest.raises(ConfigError) as e:
                svc.ask(QUESTION, model=name, mode=mode)
            messages.add(str(e.value))
    assert messages == {MODEL_REFUSED}  # nothing in it depends on what the name points at
    assert no_model_loads == []
    # the UI's streaming door says the same
    events = list(svc.ask_stream(QUESTION, model=str(existing)))
    assert events == [("error", MODEL_REFUSED)]
    # batch through the service: ask_many refuses too
    with pytest.raises(ConfigError, match="does not offer that model"):
        svc.ask_many([QUESTION], model="/root/.bashrc")


def test_configured_and_allowed_models_are_served(built_fixture_index, embedder, monkeypatch):
    import rag.answer.generate as generate

    loaded: list[str] = []
    monkeypatch.setattr(generate, "get_generator", lambda name, *a, **kw: loaded.append(name) or TokenGenerator())
    svc = _service(
        built_fixture_index[1],
        TokenGenerator(),
        answer={"mode": "generative"},
        llm={"allowed_models": ["second-model"]},
    )
    svc._embedder = embedder
    assert not svc.ask(QUESTION, model=svc.settings.llm.model).refused  # the configured one (the UI's default value)
    assert not svc.ask(QUESTION, model="").refused  # empty = the configured one
    assert not svc.ask(QUESTION, model="second-model").refused
    assert set(loaded) == {"second-model"}
    with pytest.raises(ConfigError, match="does not offer"):
        svc.ask(QUESTION, model="third-model")


def test_operator_cli_still_chooses_the_model(cli, capsys, built_fixture_index, monkeypatch):
    """`rag ask --model X` is the operator: it sets llm.model, which is then the allowed one."""
    import rag.answer.generate as generate

    loaded: list[str] = []
    monkeypatch.setattr(generate, "get_generator", lambda name, *a, **kw: loaded.append(name) or TokenGenerator())
    code, out, err = cli(
        capsys,
        "ask",
        QUESTION,
        "--index",
        str(built_fixture_index[1]),
        "--model",
        "operator-model",
        "--answer-mode",
        "generative",
        "--no-stream",
    )
    assert code == 0, err
    assert loaded == ["operator-model"]


# -- 5. limits on a request ----------------------------------------------------------------------------


@pytest.mark.parametrize("k", [1e9, -5, 0, 2.5, "many", float("nan"), 51])
def test_k_out_of_range_refused(built_fixture_index, embedder, k):
    svc = _service(built_fixture_index[1])
    svc._embedder = embedder
    with pytest.raises(ConfigError, match="k must be a whole number from 1 to 50"):
        svc.ask(QUESTION, k=k)
    with pytest.raises(ConfigError, match="k must be"):
        svc.search([QUESTION], k=k)


def test_k_within_range_served(built_fixture_index, embedder):
    svc = _service(built_fixture_index[1], limits={"max_k": 3})
    svc._embedder = embedder
    assert len(svc.search([QUESTION], k=3.0)[0]) <= 3
    assert len(svc.ask(QUESTION, k=3).passages) <= 3
    with pytest.raises(ConfigError, match="1 to 3"):
        svc.ask(QUESTION, k=4)


def test_question_length_refused(built_fixture_index, embedder):
    svc = _service(built_fixture_index[1], limits={"max_question_chars": 500})
    svc._embedder = embedder
    with pytest.raises(ConfigError, match=r"6,000 characters; the limit is 500 \(limits.max_question_chars\)"):
        svc.ask("why " * 1500)
    with pytest.raises(ConfigError, match="max_question_chars"):
        svc.search(["why " * 1500])
    assert list(svc.ask_stream("why " * 1500))[0][0] == "error"
    svc.ask("why " * 100)  # within the limit


def test_prompt_fits_the_model_window(built_fixture_index, embedder):
    """Passages are shortened, then dropped, so the prompt fits the window less the answer's tokens."""
    gen = TokenGenerator(window=600)
    s = Settings(
        index=built_fixture_index[1],
        answer={"mode": "generative", "max_chars_per_passage": 2000},
        retrieval={"top_k": 8},
        llm={"max_new_tokens": 160},
    )
    a = Answerer(Retriever.open(s, embedder), s, generator=gen)
    ans = a.ask(QUESTION)
    assert gen.prompts and gen.prompts[-1] <= 600 - 160
    assert ans.timings["prompt_tokens"] <= 440


def test_question_too_long_for_the_window_refused(built_fixture_index, embedder):
    gen = TokenGenerator(window=400)  # evidence thresholds off: the question reaches the model
    s = Settings(
        index=built_fixture_index[1],
        answer={"mode": "generative", "refusal_threshold": -1, "answerable_probability": 0},
        llm={"max_new_tokens": 160},
    )
    a = Answerer(Retriever.open(s, embedder), s, generator=gen)
    question = " ".join([QUESTION] * 32)  # about 1,600 characters: ~400 tokens alone
    with pytest.raises(ConfigError, match="too long for the model"):
        a.ask(question)
    assert gen.prompts == []


def test_max_prompt_tokens_setting(built_fixture_index, embedder):
    gen = TokenGenerator(window=100_000)
    s = Settings(index=built_fixture_index[1], answer={"mode": "generative"}, limits={"max_prompt_tokens": 300})
    Answerer(Retriever.open(s, embedder), s, generator=gen).ask(QUESTION)
    assert gen.prompts[-1] <= 300


def test_generation_stops_at_the_time_limit(built_fixture_index, embedder):
    gen = TokenGenerator(per_token_s=0.05, tokens=400)  # 20 s without a limit
    svc = _service(built_fixture_index[1], gen, answer={"mode": "generative"}, limits={"request_timeout_s": 1.0})
    svc._embedder = embedder
    t0 = time.perf_counter()
    ans = svc.ask(QUESTION)
    assert time.perf_counter() - t0 < 6
    assert "time limit" in ans.record["stopped"]


def _write_lines(path: Path, n: int) -> None:
    if path.suffix == ".txt":
        path.write_text("".join(f"Question {i}?\n" for i in range(n)))
    elif path.suffix == ".jsonl":
        path.write_text("".join(f'{{"id": "q{i}", "question": "Question {i}?"}}\n' for i in range(n)))
    elif path.suffix == ".csv":
        path.write_text("id,question\n" + "".join(f"q{i},Question {i}?\n\n" for i in range(n)))
    else:
        import openpyxl

        wb = openpyxl.Workbook()
        wb.active.append(["id", "question"])
        for i in range(n):
            wb.active.append([f"q{i}", f"Question {i}?"])
        wb.save(path)


@pytest.mark.parametrize("ext", [".txt", ".jsonl", ".csv", ".xlsx"])
def test_batch_rows_limit(tmp_path, ext):
    p = tmp_path / f"q{ext}"
    _write_lines(p, 6)
    assert len(read_input(p, max_rows=6)) == 6  # blank rows do not count
    with pytest.raises(ConfigError, match=r"more than 5 questions \(limits.max_batch_rows\)"):
        read_input(p, max_rows=5)


def test_batch_question_length_is_a_bad_row(tmp_path):
    p = tmp_path / "q.txt"
    p.write_text("Short question?\n" + "long " * 1000 + "\n")
    items = read_input(p, max_question_chars=100)
    assert items[0].error is None and "limits.max_question_chars" in items[1].error


def _xlsx_bomb(path: Path, rows: int) -> None:
    """A valid .xlsx whose one sheet holds `rows` rows: a few hundred KB that unpack to tens of MB."""
    row = '<row r="{n}"><c r="A{n}" t="inlineStr"><is><t>What does the plan say about question {n}?</t></is></c></row>'
    sheet = (
        '<?xml version="1.0" encoding="UTF-8"?><worksheet xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main">'
        '<sheetData><row r="1"><c r="A1" t="inlineStr"><is><t>question</t></is></c></row>'
        + "".join(row.format(n=n) for n in range(2, rows + 2))
        + "</sheetData></worksheet>"
    )
    ct = (
        '<?xml version="1.0" encoding="UTF-8"?><Types xmlns="http://schemas.openxmlformats.org/package/2006/content-types">'
        '<Default Extension="rels" ContentType="application/vnd.openxmlformats-package.relationships+xml"/>'
        '<Default Extension="xml" ContentType="application/xml"/>'
        '<Override PartName="/xl/workbook.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.sheet.main+xml"/>'
        '<Override PartName="/xl/worksheets/sheet1.xml" ContentType="application/vnd.openxmlformats-officedocument.spreadsheetml.worksheet+xml"/></Types>'
    )
    rels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/officeDocument" Target="xl/workbook.xml"/></Relationships>'
    )
    wb = (
        '<?xml version="1.0" encoding="UTF-8"?><workbook xmlns="http://schemas.openxmlformats.org/spreadsheetml/2006/main" '
        'xmlns:r="http://schemas.openxmlformats.org/officeDocument/2006/relationships"><sheets><sheet name="q" sheetId="1" r:id="rId1"/></sheets></workbook>'
    )
    wbrels = (
        '<?xml version="1.0" encoding="UTF-8"?><Relationships xmlns="http://schemas.openxmlformats.org/package/2006/relationships">'
        '<Relationship Id="rId1" Type="http://schemas.openxmlformats.org/officeDocument/2006/relationships/worksheet" Target="worksheets/sheet1.xml"/></Relationships>'
    )
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        z.writestr("[Content_Types].xml", ct)
        z.writestr("_rels/.rels", rels)
        z.writestr("xl/workbook.xml", wb)
        z.writestr("xl/_rels/workbook.xml.rels", wbrels)
        z.writestr("xl/worksheets/sheet1.xml", sheet)


def test_xlsx_unzipped_size_and_rows_refused_fast(tmp_path):
    p = tmp_path / "bomb.xlsx"
    _xlsx_bomb(p, 200_000)  # ~1 MB on disk, ~24 MB unpacked, 200k rows
    assert p.stat().st_size < 3_000_000
    t0 = time.perf_counter()
    with pytest.raises(ConfigError, match=r"unpacks to .* MB, over the limit of 5 MB \(limits.max_input_unzipped_mb\)"):
        read_input(p, max_unzipped_mb=5)
    assert time.perf_counter() - t0 < 2.0  # refused from the zip directory, nothing inflated
    with pytest.raises(ConfigError, match="more than 1,000 questions"):
        read_input(p, max_rows=1000)  # within the size limit: refused at the first row too many


def test_service_batch_applies_the_limits(tmp_path):
    inp = tmp_path / "q.txt"
    _write_lines(inp, 4)
    svc = RagService(Settings(index=tmp_path / "index", corpus=tmp_path / "corpus", limits={"max_batch_rows": 3}))
    with pytest.raises(ConfigError, match="limits.max_batch_rows"):
        svc.batch(inp, tmp_path / "out.jsonl")
    assert not (tmp_path / "out.jsonl").exists()


def test_limits_are_settings_with_descriptions():
    from rag.settings import describe

    rows = {r["key"]: r for r in describe(Settings())}
    for key in (
        "limits.max_question_chars",
        "limits.max_k",
        "limits.max_prompt_tokens",
        "limits.request_timeout_s",
        "limits.max_batch_rows",
        "limits.max_input_unzipped_mb",
        "llm.allowed_models",
    ):
        assert rows[key]["description"], key


@pytest.mark.slow
def test_real_model_stops_at_deadline_and_frees_the_lock():
    """The shipped model on the torch backend: generation ends at the `stop` deadline (within a few tokens,
    whatever the machine's speed), and an asker who goes away frees the model lock at once (no orphan
    generation keeps running behind it)."""
    from rag.answer.generate import get_generator

    gen = get_generator("smollm2", "cpu", "auto", None, "torch")
    msgs = [{"role": "user", "content": "Count from 1 to 5000, separated by commas."}]
    gen.generate(msgs, 2)  # warm
    stamps: list[float] = []
    deadline: list[float] = []

    def on_token(piece: str) -> None:
        stamps.append(time.monotonic())
        if len(stamps) == 3:
            deadline.append(time.monotonic() + 2.0)  # two seconds after the first tokens (prefill timing aside)

    res = gen.generate(msgs, 2000, on_token=on_token, stop=lambda: bool(deadline) and time.monotonic() >= deadline[0])
    assert deadline and res.tokens < 2000
    gaps = sorted(b - a for a, b in zip(stamps, stamps[1:], strict=False)) or [0.1]
    assert stamps[-1] - deadline[0] < max(1.0, 5 * gaps[len(gaps) // 2])

    got: list[str] = []

    def leave(piece: str) -> None:
        got.append(piece)
        if len(got) > 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        gen.generate(msgs, 2000, on_token=leave)
    assert gen._lock.acquire(timeout=5.0)  # released as soon as the model stopped
    gen._lock.release()
    assert not [t for t in threading.enumerate() if t.daemon and t.is_alive() and "run" in t.name]
