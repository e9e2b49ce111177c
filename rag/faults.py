"""Fault injection for the crash-safety tests, free when unused.

`checkpoint(name)` marks a point where a crash must leave everything consistent. With
RAG_TEST_KILL_AT=N the process SIGKILLs itself at the N-th checkpoint it passes (no cleanup, no
atexit: the same as a power cut for the process), with RAG_TEST_KILL_AT=NAME at the first checkpoint
of that name (e.g. build.before_publish); RAG_TEST_CHECKPOINTS=FILE appends "N name" per
checkpoint, so a test can list the points of a run and then kill at each of them.
"""

from __future__ import annotations

import os
import signal

_count = 0


def checkpoint(name: str) -> None:
    kill_at = os.environ.get("RAG_TEST_KILL_AT")
    trace = os.environ.get("RAG_TEST_CHECKPOINTS")
    if not (kill_at or trace):
        return
    global _count
    _count += 1
    if trace:
        with open(trace, "a", encoding="utf-8") as f:
            f.write(f"{_count} {name}\n")
    if kill_at and (_count == int(kill_at) if kill_at.isdigit() else name == kill_at):
        os.kill(os.getpid(), signal.SIGKILL)


def reset() -> None:
    """Restart the count (for in-process tracing between runs)."""
    global _count
    _count = 0
