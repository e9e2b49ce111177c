"""The index's description of itself: what built it (embedding model, chunk settings, FAISS kind) and
which documents it holds (hashes, sizes, times), so a reader can refuse a mismatch and a build can
process only what changed.

`Manifest` reads and writes itself; the JSON file keeps the format that earlier versions wrote
(`FORMAT_VERSION`), so an index built before this type existed opens unchanged.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rag.errors import IndexCorruptError, IndexMismatchError
from rag.index.layout import FORMAT_VERSION, MANIFEST, current_generation


@dataclass(frozen=True)
class DocumentEntry:
    """One indexed file: what the change check compares, and what status/docs show."""

    doc_id: str
    sha256: str
    size: int
    mtime_ns: int
    title: str
    date: str | None
    pages: int
    chunks: int
    file_type: str
    meta: dict[str, str] | None = None  # its metadata.yaml entry when it has one
    duplicate_of: str | None = None  # same bytes as this indexed source: recorded here, its chunks indexed once

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        if not self.meta:
            d.pop("meta")
        if not self.duplicate_of:
            d.pop("duplicate_of")
        return d


@dataclass(frozen=True)
class EmbeddingInfo:
    model: str
    dimension: int
    max_seq_length: int
    normalized: bool = True
    metric: str = "inner_product"
    # "fp32" (torch and ONNX fp32 give the same vectors), "bf16" (OpenVINO bf16) or "int8-<recipe>"; "" = an index
    # from before it was recorded
    vectors: str = ""


@dataclass(frozen=True)
class Manifest:
    index_id: str
    built_at: str
    embedding: EmbeddingInfo
    chunking: dict[str, Any]
    faiss: dict[str, Any]  # {"type": flat|hnsw|ivf, "hnsw_m": int}
    corpus: str
    documents: dict[str, DocumentEntry] = field(default_factory=dict)
    counts: dict[str, int] = field(default_factory=dict)  # as written at build time: `check` compares them with the rows
    build_seconds: float | None = None
    last_build: dict[str, Any] | None = None
    format_version: int = FORMAT_VERSION
    files: dict[str, int] = field(default_factory=dict)  # data file -> size in bytes at publish (empty: older index)

    # -- derived ---------------------------------------------------------------------------

    @property
    def n_documents(self) -> int:
        return int(self.counts.get("documents", len(self.documents)))

    @property
    def n_chunks(self) -> int:
        return int(self.counts.get("chunks", sum(d.chunks for d in self.documents.values())))

    @property
    def faiss_kind(self) -> str:
        return str(self.faiss.get("type", "flat"))

    # -- (de)serialisation -----------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": self.format_version,
            "index_id": self.index_id,
            "built_at": self.built_at,
            "build_seconds": self.build_seconds,
            "embedding": asdict(self.embedding),
            "chunking": self.chunking,
            "faiss": self.faiss,
            "corpus": self.corpus,
            "counts": {"documents": self.n_documents, "chunks": self.n_chunks},
            "documents": {src: d.to_dict() for src, d in self.documents.items()},
            "last_build": self.last_build,
            **({"files": self.files} if self.files else {}),
        }

    @classmethod
    def from_dict(cls, d: Any, where: Path | str = "manifest") -> Manifest:
        """Parse a manifest dict; a wrong shape or type is a corrupt index, not a traceback."""
        try:
            if not isinstance(d, dict):
                raise TypeError(f"expected an object, got {type(d).__name__}")
            emb = d["embedding"]
            docs = {
                str(src): DocumentEntry(
                    doc_id=str(e["doc_id"]), sha256=str(e.get("sha256", "")), size=int(e.get("size", 0)),
                    mtime_ns=int(e.get("mtime_ns", 0)), title=str(e.get("title", "")),
                    date=None if e.get("date") is None else str(e["date"]),
                    pages=int(e.get("pages", 0)), chunks=int(e["chunks"]), file_type=str(e.get("file_type", "")),
                    meta=dict(e["meta"]) if e.get("meta") else None,
                    duplicate_of=str(e["duplicate_of"]) if e.get("duplicate_of") else None,
                )
                for src, e in dict(d.get("documents") or {}).items()
            }
            return cls(
                format_version=int(d.get("format_version", 0)),
                index_id=str(d.get("index_id", "")),
                built_at=str(d.get("built_at", "")),
                build_seconds=None if d.get("build_seconds") is None else float(d["build_seconds"]),
                embedding=EmbeddingInfo(model=str(emb["model"]), dimension=int(emb["dimension"]),
                                        max_seq_length=int(emb.get("max_seq_length", 0)),
                                        normalized=bool(emb.get("normalized", True)), metric=str(emb.get("metric", "inner_product")),
                                        vectors=str(emb.get("vectors", ""))),
                chunking=dict(d.get("chunking") or {}),
                faiss=dict(d.get("faiss") or {"type": "flat"}),
                corpus=str(d.get("corpus", "")),
                documents=docs,
                counts={str(k): int(v) for k, v in dict(d.get("counts") or {}).items()},
                last_build=_optional_dict(d.get("last_build")),
                files={str(k): int(v) for k, v in dict(d.get("files") or {}).items()},
            )
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise IndexCorruptError(f"malformed manifest {where}: {type(e).__name__}: {e}; run `rag index build --full`") from None

    @classmethod
    def load(cls, path: Path) -> Manifest:
        """Read a generation's manifest.json."""
        try:
            raw = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as e:
            raise IndexCorruptError(f"cannot read {path}: {e}; run `rag index build --full`") from None
        return cls.from_dict(raw, path)

    @classmethod
    def read(cls, index_dir: Path) -> Manifest | None:
        """The live generation's manifest, or None when there is no index yet."""
        gen = current_generation(Path(index_dir))
        return None if gen is None else cls.load(gen / MANIFEST)

    def write(self, folder: Path) -> Path:
        path = Path(folder) / MANIFEST
        path.write_text(json.dumps(self.to_dict(), indent=1, sort_keys=False))
        return path

    # -- compatibility ---------------------------------------------------------------------

    def check_compatible(self, embedding_model: str, chunk_config: dict[str, Any], index_dir: Path) -> None:
        """Refuse an index built with another format, embedding model or chunk settings."""
        if self.format_version != FORMAT_VERSION:
            raise IndexMismatchError(
                f"index at {index_dir} has format version {self.format_version}, this version reads {FORMAT_VERSION}; "
                f"run `rag index build --full`"
            )
        if self.embedding.model != embedding_model:
            raise IndexMismatchError(
                f"index at {index_dir} was built with embedding model '{self.embedding.model}', but settings name "
                f"'{embedding_model}'; run `rag index build --full` to rebuild it (or set embedding.model back)"
            )
        if self.chunking != chunk_config:
            desc = ", ".join(f"{k}: index {self.chunking.get(k)} vs settings {v}"
                             for k, v in chunk_config.items() if self.chunking.get(k) != v)
            raise IndexMismatchError(
                f"index at {index_dir} was built with other chunk settings ({desc}); run `rag index build --full` to rebuild it"
            )


    def check_vectors(self, vectors: str, index_dir: Path) -> None:
        """Refuse to mix int8 and fp32 embeddings (or two int8 recipes) in one index: a query embedded one way
        against passages embedded the other loses up to 2.8 points of MRR (benchmarks/RESULTS.md, issue 16).
        bf16 and fp32 vectors mix (`interchangeable`); the manifest names the kind of the last build's embedder."""
        if self.embedding.vectors and not interchangeable(vectors, self.embedding.vectors):
            raise IndexMismatchError(
                f"index at {index_dir} holds {self.embedding.vectors} embeddings, but the settings give {vectors} ones "
                f"(embedding.quantize); run `rag index build --full` to rebuild it (or set embedding.quantize back)"
            )


# Kinds whose rows may share an index: OpenVINO bf16 vectors against fp32 ones (queries one way, passages the
# other) moved MRR@10 by <= 0.1 point on PolicyQA and ObliQA held-out (benchmarks/RESULTS.md, "Session 5: OpenVINO bf16").
MIXABLE = frozenset({"fp32", "bf16"})


def interchangeable(a: str, b: str) -> bool:
    """Whether vectors of kind `a` may be searched against (or added to) vectors of kind `b`."""
    return a == b or (a in MIXABLE and b in MIXABLE)


def vector_kind(embedder: Any) -> str:
    """What an embedder's vectors are, as the manifest records them ("fp32", "int8-channel")."""
    return str(getattr(embedder, "vectors", "fp32"))


def _optional_dict(v: Any) -> dict[str, Any] | None:
    if v is not None and not isinstance(v, dict):
        raise TypeError(f"expected an object or null, got {type(v).__name__}")
    return v


def read_manifest(index_dir: Path) -> Manifest | None:
    return Manifest.read(index_dir)
