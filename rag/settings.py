"""One settings object: defaults < rag.toml < RAG_* environment < CLI flags.

The CLI passes its flags as init kwargs (highest priority). `rag.toml` is read from the working
directory, or from the file named by RAG_CONFIG.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from .errors import ConfigError

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _config_file() -> Path:
    return Path(os.environ.get("RAG_CONFIG", "rag.toml"))


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", extra="forbid", validate_default=True)

    # paths
    corpus: Path = Path("corpus")
    index: Path = Path("index")

    # embedding
    embedding_model: str = DEFAULT_EMBEDDING_MODEL
    device: str = "auto"  # auto | cpu | cuda | cuda:N | mps
    embed_batch_size: int = Field(64, ge=1, le=4096)

    # chunking (in the embedder's own tokens)
    chunk_tokens: int = Field(200, ge=16, le=8192)
    chunk_overlap: int = Field(32, ge=0)
    max_header_tokens: int = Field(40, ge=0)

    # FAISS
    faiss_index: Literal["flat", "hnsw", "ivf"] = "flat"
    hnsw_m: int = Field(32, ge=4)
    hnsw_ef_search: int = Field(128, ge=8)
    ivf_nlist: int = Field(0, ge=0)  # 0 = sqrt(n) chosen at build time
    ivf_nprobe: int = Field(16, ge=1)

    # ingestion limits: bound time and memory per file
    max_file_mb: float = Field(100.0, gt=0)
    max_pages: int = Field(5000, ge=1)
    load_timeout_s: float = Field(120.0, ge=0)  # per file; 0 = no limit
    max_load_memory_mb: int = Field(4096, ge=0)  # address space of the loader process; 0 = no cap
    isolate_loaders: bool = True  # parse files in a child process (a parser crash or hang costs one file)

    # retrieval
    top_k: int = Field(5, ge=1, le=1000)
    retrieval_mode: Literal["dense", "bm25", "hybrid"] = "hybrid"
    candidates: int = Field(30, ge=1, le=5000)  # per retriever, before fusion
    fusion: Literal["rrf", "convex"] = "rrf"  # how hybrid merges dense and BM25 (see benchmarks/RESULTS.md)
    fusion_alpha: float = Field(0.8, ge=0, le=1)  # convex: weight of the dense score (BM25 gets 1 - alpha)
    rrf_k: int = Field(60, ge=1)
    reranker: str | None = None  # a sentence-transformers CrossEncoder (HF id or folder); off by default
    rerank_top: int = Field(20, ge=1)
    dedupe: bool = True  # drop hits overlapping a better hit of the same document
    expand_neighbours: int = Field(0, ge=0, le=3)  # adjacent chunks attached to each hit for context

    # answering
    answer_mode: Literal["generative", "extractive", "auto"] = "extractive"  # auto loses to it with SmolLM2-135M (RESULTS.md)
    llm_model: str = "smollm2"  # "smollm2" (shipped GGUF), an HF id, a local folder or a .gguf file
    llm_device: str = "auto"
    llm_dtype: str = "auto"  # auto | float32 | bfloat16 | float16
    max_new_tokens: int = Field(160, ge=1, le=4096)
    # calibrated on eval/shipped.jsonl (see benchmarks/RESULTS.md)
    refusal_threshold: float = Field(0.45, ge=-1, le=1)
    unknown_term_similarity: float = Field(0.70, ge=-1, le=1)
    extractive_threshold: float = Field(0.40, ge=-1, le=2)
    support_threshold: float = Field(0.50, ge=0, le=1)

    # web UI
    ui_host: str = "127.0.0.1"
    ui_port: int = Field(7860, ge=1, le=65535)
    ui_username: str | None = None
    ui_password: str | None = None
    ui_concurrency: int = Field(2, ge=1, le=64)  # questions processed at once (one model on CPU: keep low)

    @field_validator("reranker")
    @classmethod
    def _reranker_off(cls, v: str | None) -> str | None:
        return None if v is None or v.strip().lower() in ("", "none", "off") else v

    @field_validator("chunk_overlap")
    @classmethod
    def _overlap_below_size(cls, v: int, info: Any) -> int:
        size = info.data.get("chunk_tokens")
        if size is not None and v >= size:
            raise ValueError(f"chunk_overlap ({v}) must be smaller than chunk_tokens ({size})")
        return v

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        sources: list[PydanticBaseSettingsSource] = [init_settings, env_settings]
        cfg = _config_file()
        if cfg.is_file():
            sources.append(TomlConfigSettingsSource(settings_cls, toml_file=cfg))
        return tuple(sources)

    def chunk_config(self) -> dict[str, Any]:
        """The settings that shape chunks; an index built with others must be rebuilt."""
        from .chunk import CHUNKER_VERSION
        from .lexical import LEXICAL_VERSION

        return {
            "lexical_version": LEXICAL_VERSION,
            "chunk_tokens": self.chunk_tokens,
            "chunk_overlap": self.chunk_overlap,
            "max_header_tokens": self.max_header_tokens,
            "chunker_version": CHUNKER_VERSION,
        }


def load_settings(**overrides: Any) -> Settings:
    """Build settings with CLI overrides (None values mean 'flag not given')."""
    kwargs = {k: v for k, v in overrides.items() if v is not None}
    try:
        return Settings(**kwargs)
    except ValidationError as e:
        errs = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in e.errors()
        )
        raise ConfigError(f"invalid settings ({errs})") from None
    except Exception as e:  # malformed rag.toml
        raise ConfigError(f"cannot read settings from {_config_file()}: {e}") from None
