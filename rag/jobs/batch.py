"""`rag batch`: answer a question list into a JSONL/CSV/XLSX file, resumably.

Every finished question is appended to the output (JSONL, CSV) or to a JSONL journal beside it
(XLSX, written from the journal at the end) and fsync'd, so a kill loses at most the questions in
flight; `--resume` skips ids already there. Retrieval runs for many questions at once and generation
is batched. The same Answerer as `rag ask` produces each answer.
"""

from __future__ import annotations

import csv
import json
import os
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import ConfigError
from rag.faults import checkpoint
from rag.jobs.batch_checks import (
    check_header,
    check_input_columns,
    check_jsonl_records,
    read_table,
    refuse_output_is_input,
    refuse_too_many,
    unique_ids,
)
from rag.retrieve.filters import normalise_filter_obj

FORMATS = (".txt", ".csv", ".xlsx", ".jsonl")
# status_notes (issue 13): the system's notes on revoked/superseded/amended documents, joined by " | "
FLAT_COLUMNS = ["id", "question", "answer", "refused", "produced_by", "citations", "sources", "status_notes", "retrieve_s",
                "generate_s", "total_s", "error"]


@dataclass
class BatchItem:
    id: str
    question: str
    extra: dict[str, Any] = field(default_factory=dict)
    error: str | None = None


@dataclass
class BatchSummary:
    answered: int = 0
    refused: int = 0
    failed: int = 0
    skipped_done: int = 0
    bad_rows: int = 0
    duplicates: int = 0
    seconds: float = 0.0

    @property
    def per_minute(self) -> float:
        n = self.answered + self.refused + self.failed
        return 60.0 * n / self.seconds if self.seconds > 0 else 0.0

    def line(self) -> str:
        return (f"batch: {self.answered} answered, {self.refused} refused, {self.failed} failed"
                f"{f', {self.skipped_done} already done' if self.skipped_done else ''}"
                f"{f', {self.bad_rows} bad rows' if self.bad_rows else ''}"
                f"{f', {self.duplicates} duplicate questions' if self.duplicates else ''}; "
                f"{self.seconds:.1f} s, {self.per_minute:.1f} questions/min")


# ---------------------------------------------------------------------------------------------
# Input


def _norm_header(h: Any) -> str:
    return str(h or "").strip().lower()


def read_input(path: Path, max_rows: int = 10000, max_unzipped_mb: float = 50.0,
               max_question_chars: int = 2000) -> list[BatchItem]:
    """Questions with ids and pass-through columns; malformed rows (and questions over max_question_chars)
    come back with `error` set. More than max_rows questions, or an .xlsx unpacking past max_unzipped_mb,
    is refused before any is answered (settings `limits`)."""
    path = Path(path)
    ext = path.suffix.lower()
    if ext not in FORMATS:
        raise ConfigError(f"{path}: unsupported input type '{ext}' (use .txt, .csv, .xlsx or .jsonl)")
    if not path.is_file():
        raise ConfigError(f"{path}: no such file")
    items: list[BatchItem] = []
    if ext == ".txt":
        for n, line in enumerate(_read_text(path).splitlines(), 1):
            if line.strip():
                items.append(BatchItem(id=f"q{n}", question=line.strip()))
                refuse_too_many(path, len(items), max_rows)
    elif ext == ".jsonl":
        for n, line in enumerate(_read_text(path).splitlines(), 1):
            if not line.strip():
                continue
            refuse_too_many(path, len(items) + 1, max_rows)
            try:
                obj = json.loads(line)
                if not isinstance(obj, dict):
                    raise ValueError("not a JSON object")
            except ValueError as e:
                items.append(BatchItem(id=f"line{n}", question="", error=f"line {n}: invalid JSON ({e})"))
                continue
            q = obj.get("question")
            extra = {k: v for k, v in obj.items() if k not in ("id", "question")}
            items.append(BatchItem(id=str(obj.get("id", f"line{n}")), question=q.strip() if isinstance(q, str) else "", extra=extra,
                                   error=None if isinstance(q, str) else f"line {n}: no \"question\" string"))
    else:
        rows = read_table(path, _read_text, max_rows, max_unzipped_mb)
        if not rows:
            return []
        header = [_norm_header(h) for h in rows[0]]
        if "question" not in header:
            raise ConfigError(f"{path}: needs a 'question' column (found: {', '.join(h for h in header if h) or 'none'})")
        qi = header.index("question")
        ii = header.index("id") if "id" in header else None
        for n, row in enumerate(rows[1:], 2):
            if not any(str(c).strip() for c in row if c is not None):
                continue
            row = list(row) + [None] * (len(header) - len(row))
            q = row[qi]
            rid = str(row[ii]).strip() if ii is not None and row[ii] not in (None, "") else f"row{n}"
            extra = {h: row[j] for j, h in enumerate(header) if h not in ("question", "id") and h}
            items.append(BatchItem(id=rid, question=str(q).strip() if q is not None else "", extra=extra))
    for it in items:
        if it.error is None and not it.question:
            it.error = "empty question"
        elif it.error is None and len(it.question) > max_question_chars:
            it.error = f"question of {len(it.question):,} characters, over the limit of {max_question_chars:,} (limits.max_question_chars)"
    return items


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{path}: not UTF-8 text (byte {e.start})") from None


def check_items(items: list[BatchItem]) -> tuple[list[str], int]:
    """Make ids unique (never onto another id of the input: see unique_ids) and report duplicate questions.
    Returns (warnings, n duplicate questions)."""
    new_ids, renames = unique_ids([it.id for it in items])
    warnings = [f"duplicate id '{old}' renamed to '{new}'" for old, new in renames]
    for it, new in zip(items, new_ids, strict=True):
        it.id = new
    seen_q: dict[str, str] = {}
    dups = 0
    for it in items:
        if it.error:
            warnings.append(f"{it.id}: {it.error}")
            continue
        key = " ".join(it.question.lower().split())
        if key in seen_q:
            dups += 1
            warnings.append(f"{it.id}: duplicate of question {seen_q[key]}")
        else:
            seen_q[key] = it.id
    return warnings, dups


# ---------------------------------------------------------------------------------------------
# Output


def flat_row(rec: dict[str, Any]) -> dict[str, Any]:
    """One spreadsheet row from a result record."""
    cites = rec.get("citations") or []
    timings = rec.get("timings") or {}
    row = {
        "id": rec.get("id"), "question": rec.get("question"), "answer": rec.get("answer"), "refused": rec.get("refused"),
        "produced_by": rec.get("produced_by"),
        "citations": "; ".join(f"[{c['n']}] {c['title']} p.{c['page']}" for c in cites),
        "sources": "; ".join(dict.fromkeys(c["source"] for c in cites)),
        "status_notes": _notes_cell(rec.get("status_notes")),
        "retrieve_s": timings.get("retrieve_s"), "generate_s": timings.get("generate_s"), "total_s": timings.get("total_s"),
        "error": rec.get("error"),
    }
    for k, v in (rec.get("input") or {}).items():
        row.setdefault(k, v)
    return row


def _notes_cell(notes: Any) -> str:
    """Status notes in one cell: their texts joined by " | " (a row read back from a sheet already is one)."""
    if isinstance(notes, str):
        return notes
    return " | ".join(str(n.get("text", n)) if isinstance(n, dict) else str(n) for n in notes or [])


class ResultWriter:
    """Appends one record per finished question, fsync'd; knows which ids are already done."""

    def __init__(self, output: Path, resume: bool, source: Path | None = None) -> None:
        """`source`: the input file, which the output must not be."""
        self.output = Path(output)
        self.ext = self.output.suffix.lower()
        if self.ext not in (".jsonl", ".csv", ".xlsx"):
            raise ConfigError(f"{output}: unsupported output type '{self.ext}' (use .jsonl, .csv or .xlsx)")
        refuse_output_is_input(self.output, source)
        self.journal = self.output.with_name(self.output.name + ".partial.jsonl") if self.ext == ".xlsx" else None
        exists = self.output.exists() or (self.journal is not None and self.journal.exists())
        if exists and not resume:
            raise ConfigError(f"{output} already exists: add --resume to continue it, or choose another file")
        self._csv_header: list[str] | None = None
        if resume:
            self._check_existing()
            for f in (self.output, self.journal):
                if f is not None and f.exists() and f.suffix != ".xlsx":
                    _repair_tail(f)
        # ids already answered, and ids whose bad-row record is already written (never journaled twice)
        self.done: set[str] = self._existing_ids() if resume else set()
        self.recorded_errors: set[str] = self._existing_ids(errors=True) if resume else set()
        self.output.parent.mkdir(parents=True, exist_ok=True)

    def _check_existing(self) -> None:
        """Refuse, before writing anything, an existing output that is not an earlier output of a batch."""
        for f in (self.journal, self.output if self.ext == ".jsonl" else None):
            if f is not None and f.exists():
                check_jsonl_records(f)
        if self.ext == ".csv" and self.output.exists() and self.output.stat().st_size:
            with open(self.output, newline="", encoding="utf-8") as f:
                self._csv_header = next(csv.reader(f), None)
            check_header(self.output, self._csv_header, FLAT_COLUMNS)
        elif self.ext == ".xlsx" and self.output.exists() and (self.journal is None or not self.journal.exists()):
            check_header(self.output, _xlsx_header(self.output), FLAT_COLUMNS)

    def _existing_ids(self, errors: bool = False) -> set[str]:
        """Ids of the records without an error (answered), or with one (`errors`)."""
        ids: set[str] = set()
        for rec in self.records():
            if rec.get("id") not in (None, "") and bool(rec.get("error")) == errors:
                ids.add(str(rec["id"]))
        return ids

    def records(self) -> Iterator[dict[str, Any]]:
        src = self.journal if self.journal is not None else self.output
        if src.exists():
            if self.ext == ".csv":
                with open(src, newline="", encoding="utf-8") as f:
                    for row in csv.DictReader(f):
                        if None not in row.values() and None not in row:  # a row torn by a kill is redone
                            yield row
            else:
                for line in src.read_text(encoding="utf-8").splitlines():
                    try:
                        yield json.loads(line)
                    except json.JSONDecodeError:
                        continue  # a line torn by a kill: that question is redone
        elif self.ext == ".xlsx" and self.output.exists():
            import openpyxl

            wb = openpyxl.load_workbook(self.output, read_only=True)
            rows = list(wb.active.iter_rows(values_only=True)) if wb.active is not None else []
            if rows:
                header = [str(h) for h in rows[0]]
                for r in rows[1:]:
                    yield dict(zip(header, r, strict=False))

    def set_input_columns(self, keys: Sequence[str]) -> None:
        """CSV: the pass-through input columns, fixed before the first row (kept when resuming)."""
        if self.ext == ".csv" and self._csv_header is None:
            self._csv_header = FLAT_COLUMNS + [k for k in dict.fromkeys(keys) if k not in FLAT_COLUMNS]
            self._csv_new = True
        elif self.ext == ".csv" and self._csv_header is not None:
            check_input_columns(self.output, self._csv_header, keys)

    def append(self, rec: dict[str, Any]) -> None:
        if self.ext == ".csv":
            row = flat_row(rec)
            new = self._csv_header is None or getattr(self, "_csv_new", False)
            self._csv_new = False
            if self._csv_header is None:
                self._csv_header = FLAT_COLUMNS + [k for k in row if k not in FLAT_COLUMNS]
            with open(self.output, "a", newline="", encoding="utf-8") as f:
                w = csv.DictWriter(f, fieldnames=self._csv_header, extrasaction="ignore")
                if new:
                    w.writeheader()
                checkpoint("batch.before_append")
                w.writerow(row)
                f.flush()
                os.fsync(f.fileno())
            checkpoint("batch.appended")
            return
        target = self.journal if self.journal is not None else self.output
        line = json.dumps(rec, ensure_ascii=False) + "\n"
        checkpoint("batch.before_append")
        with open(target, "a", encoding="utf-8") as f:
            f.write(line)
            f.flush()
            os.fsync(f.fileno())
        checkpoint("batch.appended")

    def finish(self) -> None:
        """XLSX: write the workbook from the journal (atomically), then drop the journal."""
        if self.ext != ".xlsx" or self.journal is None or not self.journal.exists():
            return
        import openpyxl

        recs = list(self.records())
        rows = [flat_row(r) for r in recs]
        cols = FLAT_COLUMNS + sorted({k for r in rows for k in r} - set(FLAT_COLUMNS))
        wb = openpyxl.Workbook()
        ws = wb.active
        ws.title = "answers"
        ws.append(cols)
        for r in rows:
            ws.append([_cell(r.get(c)) for c in cols])
        tmp = self.output.with_name(f".{self.output.name}.tmp")
        wb.save(tmp)
        checkpoint("batch.xlsx_saved")
        os.replace(tmp, self.output)
        checkpoint("batch.xlsx_replaced")
        self.journal.unlink()


def _xlsx_header(path: Path) -> list[Any]:
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True)
    except Exception as e:
        raise ConfigError(f"{path}: cannot read the workbook ({e}); choose another output file") from None
    ws = wb.active
    first = next(ws.iter_rows(values_only=True), None) if ws is not None else None
    return list(first or [])


def _repair_tail(path: Path) -> None:
    """Cut a last line left unfinished by a kill, so the next append starts on a fresh line."""
    with open(path, "rb+") as f:
        data = f.read()
        if data and not data.endswith(b"\n"):
            f.truncate(data.rfind(b"\n") + 1)
            f.flush()
            os.fsync(f.fileno())


def _cell(v: Any) -> Any:
    if v is None or isinstance(v, str | int | float | bool):
        return v
    return json.dumps(v, ensure_ascii=False)


# ---------------------------------------------------------------------------------------------
# Running


def result_record(item: BatchItem, answer: Any) -> dict[str, Any]:
    rec = {"id": item.id, **answer.to_dict()}
    if item.extra:
        rec["input"] = item.extra
    return rec


def error_record(item: BatchItem, error: str) -> dict[str, Any]:
    rec: dict[str, Any] = {"id": item.id, "question": item.question, "error": error}
    if item.extra:
        rec["input"] = item.extra
    return rec


def start_run(items: Sequence[BatchItem], writer: ResultWriter, summary: BatchSummary) -> list[BatchItem]:
    """Fix the output columns, record bad rows, skip ids already done; returns the items to answer."""
    writer.set_input_columns([k for it in items for k in it.extra])
    todo: list[BatchItem] = []
    for it in items:
        if it.id in writer.done or (it.error and it.id in writer.recorded_errors):  # a bad row is recorded once
            summary.skipped_done += 1
        elif it.error:
            summary.bad_rows += 1
            writer.append(error_record(it, it.error))
            writer.recorded_errors.add(it.id)
        else:
            todo.append(it)
    return todo


def run_batch(
    answerer: Any,
    items: Sequence[BatchItem],
    writer: ResultWriter,
    *,
    batch_size: int = 8,
    filters: Any = None,
    mode: str | None = None,
    k: int | None = None,
    model: str | None = None,
    on_progress: Callable[[int, int, int], None] | None = None,
) -> BatchSummary:
    """Answer `items` (skipping ids the writer already holds), appending each result as it is done."""
    summary = BatchSummary()
    t0 = time.perf_counter()
    todo = start_run(items, writer, summary)
    done = 0
    for start in range(0, len(todo), max(1, batch_size)):
        part = todo[start : start + batch_size]
        try:
            answers = answerer.ask_many([it.question for it in part], filters=filters, mode=mode, k=k, model=model, batch_size=batch_size)
        except Exception as e:  # the whole batch failed (e.g. model load): record each
            answers = [e] * len(part)
        for it, ans in zip(part, answers, strict=True):
            if isinstance(ans, Exception):
                summary.failed += 1
                writer.append(error_record(it, f"{type(ans).__name__}: {ans}"))
            else:
                summary.refused += ans.refused
                summary.answered += not ans.refused
                writer.append(result_record(it, ans))
            done += 1
        if on_progress:
            on_progress(done, len(todo), summary.failed)
    writer.finish()
    summary.seconds = time.perf_counter() - t0
    return summary


def read_queries(path: Path) -> list[tuple[str, Any]]:
    """`rag search --queries`: one query a line, or JSONL objects with "question" and an optional "filter"."""
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read queries file {path}: {e}") from None
    out: list[tuple[str, Any]] = []
    jsonl = path.suffix.lower() in (".jsonl", ".json") or raw.lstrip().startswith("{")
    for n, line in enumerate(raw.splitlines(), 1):
        if not line.strip():
            continue
        if jsonl:
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as e:
                raise ConfigError(f"{path}:{n}: not valid JSON ({e.msg})") from None
            q = obj.get("question") if isinstance(obj, dict) else None
            if not isinstance(q, str) or not q.strip():
                raise ConfigError(f'{path}:{n}: needs a non-empty "question" string')
            out.append((q, normalise_filter_obj(obj.get("filter"))))
        else:
            out.append((line.strip(), None))
    return out
