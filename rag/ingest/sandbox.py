"""Isolation: parsers are C libraries (pdfium, libxml2) fed hostile bytes, so files are parsed in a child
process under a per-file timeout and an address-space cap.
"""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import json
import os
import select
import signal
import struct
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from rag.errors import IngestError
from rag.ingest.files import Limits, relative_source
from rag.ingest.load import load_document
from rag.types import Document, Heading

# ---------------------------------------------------------------------------------------------
# Isolation: parsers are C libraries (pdfium, libxml2) fed hostile bytes


def document_to_json(doc: Document) -> dict[str, Any]:
    d = dataclasses.asdict(doc)
    d["headings"] = [[h.char_start, h.level, h.title] for h in doc.headings]
    return d


def document_from_json(d: dict[str, Any]) -> Document:
    d = dict(d)
    d["headings"] = tuple(Heading(int(a), int(b), str(c)) for a, b, c in d["headings"])
    d["page_starts"] = tuple(int(x) for x in d["page_starts"])
    return Document(**d)


def _frame(obj: Any) -> bytes:
    body = json.dumps(obj, ensure_ascii=False).encode("utf-8")
    return struct.pack(">Q", len(body)) + body


class IsolatedLoader:
    """Loads files in a long-lived child process under a per-file timeout and an address-space cap.

    A PDF that sends pdfium into a loop, a nested structure that overflows a C stack, or a bomb that
    eats memory costs that one file (an IngestError) and a restarted child, never the build or the
    server. Results come back as JSON, not pickle: a child compromised by a hostile file cannot
    run code in the parent through the channel.
    """

    def __init__(self, limits: Limits) -> None:
        self.limits = limits
        self.proc: subprocess.Popen[bytes] | None = None
        self._lock = threading.Lock()

    def _start(self) -> subprocess.Popen[bytes]:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rag.ingest.sandbox", "--worker", json.dumps(dataclasses.asdict(self.limits))],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, start_new_session=True,
            )
        return self.proc

    def _kill(self) -> None:
        if self.proc is not None:
            with contextlib.suppress(OSError):
                self.proc.kill()
            with contextlib.suppress(Exception):
                self.proc.wait(timeout=10)
            for f in (self.proc.stdin, self.proc.stdout):
                with contextlib.suppress(Exception):
                    f.close()  # type: ignore[union-attr]
            self.proc = None

    def close(self) -> None:
        self._kill()

    def __enter__(self) -> IsolatedLoader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_exact(self, fd: int, n: int, deadline: float | None) -> bytes:
        buf = bytearray()
        while len(buf) < n:
            wait = None if deadline is None else max(0.0, deadline - time.monotonic())
            ready, _, _ = select.select([fd], [], [], wait)
            if not ready:
                raise TimeoutError
            part = os.read(fd, min(n - len(buf), 1 << 20))
            if not part:
                raise EOFError
            buf += part
        return bytes(buf)

    def load(self, path: Path, root: Path, meta: dict[str, str] | None = None, read_from: Path | None = None) -> Document:
        """Load `path` (named relative to `root`); `read_from` holds its bytes when they are elsewhere (an upload)."""
        rel = relative_source(path, root)
        with self._lock:
            proc = self._start()
            assert proc.stdin is not None and proc.stdout is not None
            deadline = time.monotonic() + self.limits.timeout_s if self.limits.timeout_s > 0 else None
            try:
                proc.stdin.write(_frame({"path": str(path), "root": str(root), "meta": meta,
                                         "read_from": str(read_from) if read_from else None}))
                proc.stdin.flush()
                fd = proc.stdout.fileno()
                (n,) = struct.unpack(">Q", self._read_exact(fd, 8, deadline))
                reply = json.loads(self._read_exact(fd, n, deadline))
            except TimeoutError:
                self._kill()
                raise IngestError(
                    rel, f"loading took longer than {self.limits.timeout_s:g} s (load_timeout_s); skipped", "timeout"
                ) from None
            except (EOFError, BrokenPipeError, OSError, ValueError):
                code = proc.poll()
                if code is None:
                    with contextlib.suppress(Exception):
                        code = proc.wait(timeout=5)
                self._kill()
                why = f"signal {signal.Signals(-code).name}" if code is not None and code < 0 else f"exit code {code}"
                if self.limits.max_memory_mb > 0:
                    why += f"; out of memory under the {self.limits.max_memory_mb} MB cap (max_load_memory_mb)?"
                raise IngestError(rel, f"the parser crashed on this file ({why}); skipped", "corrupt") from None
        if "error" in reply:
            e = reply["error"]
            raise IngestError(e["path"], e["reason"], e["kind"])
        return document_from_json(reply["document"])


def _worker_main(limits_json: str) -> None:
    """Child side of IsolatedLoader: frames in on stdin, frames out on stdout, until stdin closes."""
    limits = Limits(**json.loads(limits_json))
    parent = os.getppid()

    def watchdog() -> None:  # die with the parent, even mid-parse of a file that hangs (C calls release the GIL)
        while True:
            time.sleep(1.0)
            if os.getppid() != parent:
                os._exit(0)

    threading.Thread(target=watchdog, daemon=True).start()
    with contextlib.suppress(Exception):  # warm the parsers before the cap
        import bs4  # noqa: F401
        import docx  # noqa: F401
        import pypdfium2  # noqa: F401
    if limits.max_memory_mb > 0:
        import resource

        cap = limits.max_memory_mb * 1024 * 1024
        with contextlib.suppress(ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))
    sys.setrecursionlimit(5000)
    inp, out = sys.stdin.buffer, sys.stdout.buffer
    sys.stdout = sys.stderr  # a chatty library must not corrupt the channel
    while True:
        head = inp.read(8)
        if len(head) < 8:
            return
        (n,) = struct.unpack(">Q", head)
        req = json.loads(inp.read(n))
        path, root = Path(req["path"]), Path(req["root"])
        read_from = Path(req["read_from"]) if req.get("read_from") else None
        try:
            doc = load_document(path, root, limits, meta=req.get("meta"), read_from=read_from)
            reply: dict[str, Any] = {"document": document_to_json(doc)}
        except IngestError as e:
            reply = {"error": {"path": e.path, "reason": e.reason, "kind": e.kind}}
        except MemoryError:
            reply = {"error": {"path": relative_source(path, root), "kind": "too_large",
                               "reason": f"file needs more than {limits.max_memory_mb} MB to load (max_load_memory_mb)"}}
        try:
            out.write(_frame(reply))
            out.flush()
        except MemoryError:
            os._exit(3)


_LOADERS_BY_LIMITS: dict[Limits, IsolatedLoader] = {}
_LOADERS_LOCK = threading.Lock()


def load_safely(path: Path, root: Path, limits: Limits | None = None, meta: dict[str, str] | None = None,
                read_from: Path | None = None) -> Document:
    """load_document under the limits' isolation: in a child process when `limits.isolate`."""
    limits = limits or Limits()
    if not limits.isolate:
        return load_document(path, root, limits, meta=meta, read_from=read_from)
    with _LOADERS_LOCK:
        loader = _LOADERS_BY_LIMITS.get(limits)
        if loader is None:
            loader = _LOADERS_BY_LIMITS[limits] = IsolatedLoader(limits)
    return loader.load(path, root, meta, read_from)


@atexit.register
def _close_loaders() -> None:
    for loader in list(_LOADERS_BY_LIMITS.values()):
        loader.close()


if __name__ == "__main__" and len(sys.argv) == 3 and sys.argv[1] == "--worker":
    _worker_main(sys.argv[2])
