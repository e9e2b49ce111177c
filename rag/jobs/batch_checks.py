"""Checks that keep `rag batch --resume` from losing or corrupting answers (issue 15).

A resumed output must be an earlier output of the same kind of run: never the input itself (appending
answers to the question file corrupts it, and a JSONL input read as its own output looks "done"), never
a file with other columns (rows would be written under the wrong header), never a file holding lines
that are not result records. Each problem is one ConfigError naming the file, before anything is written. The input is bounded too
(settings `limits`): rows, and the unpacked size of an .xlsx, are checked before any question is answered.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import Any

from rag.errors import ConfigError

# keys every result record holds besides "id": an answer (result_record) or an error (error_record)
_RESULT_KEYS = ("answer", "error")
# result columns added since outputs were first written: an output without them is named as older, not foreign
_ADDED_COLUMNS = ("status_notes",)


def same_file(a: Path, b: Path) -> bool:
    """The same file, however spelt (relative, `..`, a link): compared by resolved path, and by inode when both exist."""
    a, b = Path(a), Path(b)
    if a.resolve() == b.resolve():
        return True
    try:
        return a.exists() and b.exists() and a.samefile(b)
    except OSError:
        return False


def refuse_output_is_input(output: Path, source: Path | None) -> None:
    if source is not None and same_file(output, source):
        raise ConfigError(f"{output}: the output is the same file as the input {source}; choose another output file")


def check_jsonl_records(path: Path) -> None:
    """Every complete line of a JSONL output must be a result record (an object with an id and an answer or
    an error). Lines that are not JSON are left to the caller (a line torn by a kill is redone)."""
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            continue
        if not isinstance(obj, dict):
            raise ConfigError(
                f"{path}: line {n} is not a JSON object (a {type(obj).__name__}); "
                "this is not a batch output: choose another output file"
            )
        if "id" not in obj or not any(k in obj for k in _RESULT_KEYS):
            raise ConfigError(
                f"{path}: line {n} is not a batch output record (no id with an answer or error); "
                "choose another output file"
            )


def check_header(path: Path, header: Sequence[Any] | None, flat_columns: Sequence[str]) -> None:
    """A CSV/XLSX output starts with the result columns, in order."""
    found = [str(h or "").strip() for h in (header or [])]
    older = [c for c in flat_columns if c not in _ADDED_COLUMNS]
    if found[: len(flat_columns)] != list(flat_columns) and found[: len(older)] == older:
        added = ", ".join(c for c in _ADDED_COLUMNS if c in flat_columns)
        raise ConfigError(
            f"{path}: written by an earlier version of `rag batch`, without the {added} column; "
            "choose another output file (its answers stay as they are)"
        )
    if found[: len(flat_columns)] != list(flat_columns):
        raise ConfigError(
            f"{path}: its columns ({', '.join(h for h in found if h) or 'none'}) are not those of a batch "
            f"output ({', '.join(flat_columns)}, ...); choose another output file"
        )


def check_input_columns(path: Path, header: Sequence[str], keys: Iterable[str]) -> None:
    """Resuming a CSV: every pass-through input column must have a place in the existing header."""
    missing = [k for k in dict.fromkeys(keys) if k not in header]
    if missing:
        raise ConfigError(
            f"{path}: has no column for the input's {', '.join(repr(m) for m in missing)}; "
            "resume with the same input, or choose another output file"
        )


def unique_ids(ids: Sequence[str]) -> tuple[list[str], list[tuple[str, str]]]:
    """Rename repeated ids to `id#n`, never onto an id the input holds or one already given.

    Deterministic (the same input gives the same ids), so a resume finds each finished question again:
    `a, a, a#2, a` becomes `a, a#3, a#2, a#4`. Returns (new ids, [(old, new)] renames).
    """
    taken = set(ids)
    first: set[str] = set()
    counters: dict[str, int] = {}
    out: list[str] = []
    renames: list[tuple[str, str]] = []
    for i in ids:
        if i not in first:
            first.add(i)
            out.append(i)
            continue
        n = counters.get(i, 2)
        new = f"{i}#{n}"
        while new in taken:
            n += 1
            new = f"{i}#{n}"
        counters[i] = n
        taken.add(new)
        out.append(new)
        renames.append((i, new))
    return out, renames


def check_unzipped(path: Path, max_mb: float) -> None:
    """An .xlsx is a zip: refuse one that unpacks past `max_mb` before openpyxl inflates it (a 1 MB file
    can hold hundreds of MB of rows, costing minutes and gigabytes)."""
    import zipfile

    try:
        with zipfile.ZipFile(path) as z:
            total = sum(i.file_size for i in z.infolist())
    except (zipfile.BadZipFile, OSError) as e:
        raise ConfigError(f"{path}: cannot read the workbook ({e})") from None
    if total > max_mb * 1024 * 1024:
        raise ConfigError(
            f"{path}: unpacks to {total / 1e6:,.0f} MB, over the limit of {max_mb:g} MB "
            "(limits.max_input_unzipped_mb); split the file"
        )


def refuse_too_many(path: Path, n: int, max_rows: int) -> None:
    if n > max_rows:
        raise ConfigError(f"{path}: more than {max_rows:,} questions (limits.max_batch_rows); split the file")


def read_table(path: Path, read_text: Callable[[Path], str], max_rows: int, max_unzipped_mb: float) -> list[list[Any]]:
    """The rows of a CSV/XLSX batch input; refused at the first non-blank row past `max_rows` (so a huge sheet is
    never read whole). Blank rows are kept: row numbers name the ids."""
    if path.suffix.lower() == ".csv":
        import csv
        import io

        return _capped(path, csv.reader(io.StringIO(read_text(path))), max_rows)
    check_unzipped(path, max_unzipped_mb)
    import openpyxl

    try:
        wb = openpyxl.load_workbook(path, read_only=True, data_only=True)
    except Exception as e:
        raise ConfigError(f"{path}: cannot read the workbook ({e})") from None
    ws = wb.active
    return _capped(path, (list(r) for r in ws.iter_rows(values_only=True)), max_rows) if ws is not None else []


def _capped(path: Path, rows: Iterable[Sequence[Any]], max_rows: int) -> list[list[Any]]:
    out: list[list[Any]] = []
    filled = 0
    for r in rows:
        out.append(list(r))
        filled += any(c is not None and str(c).strip() for c in r)
        refuse_too_many(path, filled - 1, max_rows)  # the header, then questions: one too many is enough to refuse
    return out
