"""The few error types the library raises.

The CLI maps each to a one-line message and an exit code, so users never see a traceback for a
problem they can fix (bad file, bad setting, stale index).
"""

from __future__ import annotations


class RagError(Exception):
    """Base class: anything the user can act on."""

    exit_code = 1


class ConfigError(RagError):
    """A setting or CLI value is invalid."""

    exit_code = 2


class IngestError(RagError):
    """One file could not be loaded. The build skips it and goes on."""

    def __init__(self, path: str, reason: str, kind: str = "error") -> None:
        super().__init__(f"{path}: {reason}")
        self.path = path
        self.reason = reason
        self.kind = kind  # unsupported | empty | encrypted | corrupt | encoding | no_text | too_large | error


class IndexMissingError(RagError):
    """No index at the given path."""

    exit_code = 3


class IndexMismatchError(RagError):
    """The index was built with other embedding or chunk settings than those now in force."""

    exit_code = 4


class IndexCorruptError(RagError):
    """The index files disagree with each other (FAISS ids, SQLite rows, manifest)."""

    exit_code = 5


class ModelLoadError(RagError):
    """A model named in settings could not be loaded (offline, wrong path, wrong format)."""

    exit_code = 6
