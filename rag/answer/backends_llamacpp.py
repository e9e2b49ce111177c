"""The llama.cpp backend for GGUF models on CPU: same interface as `rag.answer.generate.Generator`.

Why: the shipped SmolLM2 GGUF runs several times faster through llama.cpp's quantized kernels than
de-quantized to fp32 in transformers on a 2-core CPU, loads in a fraction of a second (no GGUF ->
transformers conversion) and does not import torch at all.

Decoding is our own greedy loop over llama.cpp's logits, so it behaves like the transformers path:
the same chat template (read from the GGUF), the same control-token neutralisation of message text,
HF's repetition penalty (over prompt and draft), stop at any end-of-generation token, streaming of
whole UTF-8 characters, and a `stop` callable polled between tokens (request deadlines).

Time to the first token is prompt evaluation (compute-bound: ~2.4-3 ms of CPU per prompt token for SmolLM2-135M
on this machine), so three things keep it short (benchmarks/RESULTS.md, issue 16):
- a Q4_1 GGUF (the shipped SmolLM2) is converted once and cached, because llama.cpp has no fast x86 prompt kernel
  for Q4_1: to BF16 where the CPU backend has BF16 dot products (AVX512_BF16: ~3x less CPU than Q4_1, -23 % vs
  Q8_0, and its greedy texts match the de-quantized fp32 weights' on 7 of 8 evidence prompts, Q8_0's on 1),
  else to Q8_0 (2.3x less CPU than Q4_1; holds the weights to within 8-bit rounding);
- flash attention: another -23 % of prompt-evaluation CPU;
- the KV cache is kept between generations and only the tokens after the longest common prefix with the
  previous prompt are evaluated: the fixed head of every prompt (chat template, system rules; `warm`
  evaluates it once at load) is never recomputed. Once a head is warmed, a prompt that starts with it reuses
  the cache up to the head's end and no further, and its rest is evaluated in one batch: llama.cpp's sums
  depend on how the tokens were batched (with Q8_0 on an AVX2 CPU, re-evaluating only a repeated prompt's last
  token flipped SmolLM2's first greedy token), so the same prompt gives the same text whatever the cache held.
"""

from __future__ import annotations

import codecs
import contextlib
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelLoadError

# GGUF file types (llama.cpp's LLAMA_FTYPE_*) converted for speed: Q4_1 (= 3) has no fast x86 prompt kernel
# (measured: 1.85 vs 0.80 CPU s for 256 prompt tokens as Q8_0). Files above the size limits stay as they are or
# become Q8_0 (BF16 needs ~3.6x the memory of Q4_1, Q8_0 ~1.5x; for big models memory, not prompt compute, limits).
_SLOW_PREFILL_FTYPES = {3}
_REQUANTIZE_MAX_BYTES = 1 << 30
_BF16_MAX_BYTES = 300 << 20
_FTYPES = {"q8_0": 7, "bf16": 32}


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppGenerator:
    """A GGUF model in llama.cpp. One generation at a time per model (a lock), like `Generator`."""

    backend = "llamacpp"

    def __init__(
        self,
        gguf: Path,
        name: str | None = None,
        threads: int = 0,
        n_ctx: int = 0,
        cache_dir: Path | None = None,
        requantize: bool = True,
        fast_type: str = "auto",
    ) -> None:
        """`requantize`: convert a slow-prefill GGUF (Q4_1) once and load the cached copy; `fast_type` is the copy's
        type: "auto" (BF16 where the CPU backend has BF16 dot products and the file is small, else Q8_0), "bf16",
        "q8_0"."""
        t0 = time.perf_counter()
        # llama.cpp's OpenMP threads spin while waiting; on a busy 2-core machine two spinning threads ran 10-20x slower
        # (benchmarks/RESULTS.md, issue 16). Passive waiting costs little when the cores are free. (Read when the
        # OpenMP runtime loads: it has no effect if torch was imported first.)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        from rag.settings import default_cache_dir

        try:
            from llama_cpp import llama_chat_format
        except ImportError as e:
            raise ModelLoadError(f"cannot load GGUF model {gguf}: llama-cpp-python is not installed ({e})") from None
        self.source_gguf = Path(gguf)
        # where the converted copy and the prompt head's KV cache (`warm`) are kept; requantize=False: the file as is
        self._cache_dir = (cache_dir or default_cache_dir()) if requantize else None
        self._threads = threads or (os.cpu_count() or 1)
        self._n_ctx = n_ctx
        if fast_type not in ("auto", *_FTYPES):
            raise ModelLoadError(f"unknown GGUF conversion type '{fast_type}' (use auto, bf16 or q8_0)")
        self.fast_type = _choose_fast_type(self.source_gguf) if fast_type == "auto" else fast_type
        cached = _fast_path(self.source_gguf, cache_dir, self.fast_type) if requantize else None
        self.gguf = self.source_gguf
        if cached is not None and cached.is_file():
            try:
                self.llm = self._load(cached)
                self.gguf = cached
            except ModelLoadError:  # a damaged copy: use the original (and write the copy again below)
                cached.unlink(missing_ok=True)
        if self.gguf == self.source_gguf:
            self.llm = self._load(self.gguf)
        if cached is not None and self.gguf == self.source_gguf and self._slow_prefill():
            fast = _requantize(self.source_gguf, cached, _FTYPES[self.fast_type])
            if fast is not None:
                self.llm = self._load(fast)
                self.gguf = fast
        self.name = name or str(gguf)
        self.device = "cpu"
        self.dtype = "gguf"
        self.context_window = int(self.llm.n_ctx())
        self.n_vocab = int(self.llm.n_vocab())
        self._eog: set[int] = set()
        self.specials = self._control_tokens()
        template = self.llm.metadata.get("tokenizer.chat_template")
        self._formatter = None
        if template:
            bos = self._piece(self.llm.token_bos()) if self.llm.token_bos() >= 0 else ""
            eos = self._piece(self.llm.token_eos()) if self.llm.token_eos() >= 0 else ""
            self._formatter = llama_chat_format.Jinja2ChatFormatter(
                template=template, eos_token=eos, bos_token=bos, add_generation_prompt=True
            )
        self.load_s = time.perf_counter() - t0
        self._lock = threading.Lock()
        self._head: list[int] = []  # the warmed prompt head: the only prefix reused across prompts that start with it
        self.last_timings: dict[str, float] = {}

    def _load(self, gguf: Path) -> Any:
        try:
            from llama_cpp import Llama

            return Llama(
                model_path=str(gguf),
                n_ctx=self._n_ctx,
                n_threads=self._threads,
                n_batch=512,
                logits_all=False,
                flash_attn=True,  # prompt evaluation -23 % CPU (300 tokens: 0.84 vs 1.09 s)
                verbose=False,
            )
        except Exception as e:
            raise ModelLoadError(
                f"cannot load GGUF model {gguf} with llama.cpp: {type(e).__name__}: {str(e)[:300]}"
            ) from None

    def _slow_prefill(self) -> bool:
        try:
            ftype = int(self.llm.metadata.get("general.file_type", -1))
        except ValueError:
            return False
        return ftype in _SLOW_PREFILL_FTYPES and self.source_gguf.stat().st_size <= _REQUANTIZE_MAX_BYTES

    def _piece(self, token: int) -> str:
        return self.llm.detokenize([token], special=True).decode("utf-8", errors="replace")

    def _control_tokens(self) -> list[str]:
        """Text of every control/user-defined special token (what a document must never smuggle in); also
        collects the end-of-generation tokens."""
        import llama_cpp

        vocab = self.llm._model.vocab
        flags = llama_cpp.LLAMA_TOKEN_ATTR_CONTROL | llama_cpp.LLAMA_TOKEN_ATTR_USER_DEFINED
        out = []
        for i in range(self.n_vocab):
            if llama_cpp.llama_vocab_is_eog(vocab, i):
                self._eog.add(i)
            if llama_cpp.llama_vocab_get_attr(vocab, i) & flags:
                out.append(self._piece(i))
        self._eog.add(self.llm.token_eos())
        return [t for t in out if t.strip()]

    def warm(self, messages: list[dict[str, str]]) -> float:
        """Evaluate a prompt's fixed head once (e.g. the system rules), so that every later prompt starting with
        the same tokens evaluates only what follows them. The head's KV cache (~2 MB for SmolLM2) is saved
        beside the model's cached copy, so a new process (a cold `rag ask`) reads it instead of computing it.
        Returns the seconds it took."""
        t = time.perf_counter()
        tokens = self.prompt_tokens(messages)
        saved = self._head_file(tokens)
        with self._lock:
            if saved is None or not self._restore(saved, tokens):
                try:
                    self._eval_prompt(tokens)
                except Exception as e:
                    raise ModelLoadError(
                        f"llama.cpp could not evaluate the prompt head: {type(e).__name__}: {e}"
                    ) from None
                if saved is not None:
                    self._save(saved)
            self._head = list(tokens)
        return time.perf_counter() - t

    def _head_file(self, tokens: list[int]) -> Path | None:
        if self._cache_dir is None:
            return None
        import hashlib

        import llama_cpp

        st = self.gguf.stat()
        key = (
            f"{self.gguf.name}|{st.st_size}|{st.st_mtime_ns}|{llama_cpp.__version__}|{self.context_window}|fa|{tokens}"
        )
        digest = hashlib.sha256(key.encode()).hexdigest()[:20]
        return self._cache_dir / "models" / f"{self.gguf.stem[-80:]}.head-{digest}.kv"

    def _restore(self, path: Path, tokens: list[int]) -> bool:
        import ctypes

        import llama_cpp

        try:
            data = path.read_bytes()
        except OSError:
            return False
        llm = self.llm
        llm.reset()
        llm._ctx.kv_cache_seq_rm(-1, 0, -1)
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        if not llama_cpp.llama_state_seq_set_data(llm._ctx.ctx, buf, len(data), 0):
            llm._ctx.kv_cache_seq_rm(-1, 0, -1)
            return False
        llm.input_ids[: len(tokens)] = tokens
        llm.n_tokens = len(tokens)
        return True

    def _save(self, path: Path) -> None:
        """Best effort: an unwritable cache only means the head is computed again next time."""
        import ctypes

        import llama_cpp

        ctx = self.llm._ctx.ctx
        size = llama_cpp.llama_state_seq_get_size(ctx, 0)
        buf = (ctypes.c_uint8 * size)()
        got = llama_cpp.llama_state_seq_get_data(ctx, buf, size, 0)
        tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp.write_bytes(bytes(buf)[:got])
            os.replace(tmp, path)
        except OSError:
            with contextlib.suppress(OSError):
                tmp.unlink(missing_ok=True)

    def _eval_prompt(self, prompt: list[int]) -> int:
        """Bring the model's state to `prompt`, reusing the KV cache of the longest common prefix with the
        tokens already evaluated (at least the last token is evaluated, for fresh logits), but never past a
        warmed head the prompt starts with: such a prompt is always evaluated as head + rest, whatever the
        cache held, so its text does not depend on what was asked before. Returns how many prompt tokens were
        reused. Caller holds the lock."""
        llm = self.llm
        have = llm.input_ids[: llm.n_tokens]
        shared = _common_prefix(self._head, prompt) if self._head else 0  # the head's tokens this prompt starts with
        if shared >= len(prompt):
            shared = 0  # the head itself (or a prompt inside it): nothing of it to keep fixed
        limit = min(len(have), len(prompt) - 1, shared or len(prompt))  # never past a warmed head
        same = _common_prefix(have[:limit], prompt[:limit])
        try:
            if shared and same < shared:  # the head is not in the cache: evaluated whole, as `warm` did, then cut
                llm.n_tokens = 0
                llm.eval(self._head)
                same = 0
            llm.n_tokens = max(same, shared)  # eval() drops the KV cache from here on
            llm.eval(prompt[llm.n_tokens :])
        except BaseException:
            llm.reset()  # the cache may hold part of a batch: start clean next time
            raise
        return same

    # -- prompt ----------------------------------------------------------------------------------

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        from rag.answer.prompts import neutralise_special_tokens

        messages = [{**m, "content": neutralise_special_tokens(m["content"], self.specials)} for m in messages]
        if self._formatter is not None:
            return self._formatter(messages=messages).prompt
        return "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages) + "\n\nASSISTANT:"

    def prompt_tokens(self, messages: list[dict[str, str]]) -> list[int]:
        # special=True parses the template's own control strings; message text had them broken up above
        return self.llm.tokenize(self.prompt_text(messages).encode("utf-8"), add_bos=False, special=True)

    def count_tokens(self, text: str) -> int:
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=False))

    # -- generation ------------------------------------------------------------------------------

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        on_token: Callable[[str], None] | None = None,
        temperature: float = 0.0,
        repetition_penalty: float = 1.1,
        stop: Callable[[], bool] | None = None,
    ) -> Any:
        from rag.answer.generate import GenerationResult

        pieces: list[str] = []
        stats: list[float] = []
        t0 = time.perf_counter()
        for piece in self.stream(messages, max_new_tokens, temperature, repetition_penalty, _stats=stats, stop=stop):
            pieces.append(piece)
            if on_token:
                on_token(piece)
        total = time.perf_counter() - t0
        return GenerationResult(
            text="".join(pieces).strip(),
            tokens=int(stats[2]),
            prompt_tokens=int(stats[1]),
            first_token_s=stats[0] if stats else total,
            generate_s=total,
            timings=dict(self.last_timings),
        )

    def generate_batch(
        self, batch: list[list[dict[str, str]]], max_new_tokens: int = 256, repetition_penalty: float = 1.1
    ) -> list[Any]:
        """One after another: on CPU, batching buys nothing over llama.cpp's own threading."""
        return [self.generate(m, max_new_tokens, repetition_penalty=repetition_penalty) for m in batch]

    def stream(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        temperature: float = 0.0,
        repetition_penalty: float = 1.1,
        _stats: list[float] | None = None,
        stop: Callable[[], bool] | None = None,
    ) -> Iterator[str]:
        prompt = self.prompt_tokens(messages)
        room = self.context_window - len(prompt)
        if room <= 0:
            raise ModelLoadError(
                f"the prompt has {len(prompt)} tokens; the model's context window is {self.context_window}"
            )
        max_new_tokens = min(max_new_tokens, room)
        rng = np.random.default_rng(0)
        t0 = time.perf_counter()
        first_at: float | None = None
        n_new = 0
        with self._lock:
            llm = self.llm
            seen = np.zeros(self.n_vocab, dtype=bool)
            seen[prompt] = True
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            try:
                reused = self._eval_prompt(prompt)
                self.last_timings = {"prompt_eval_s": time.perf_counter() - t0, "cached_prompt_tokens": float(reused)}
                for _ in range(max_new_tokens):
                    if stop is not None and stop():
                        break
                    logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(self.n_vocab,)).copy()
                    if repetition_penalty != 1.0:  # as transformers' RepetitionPenaltyLogitsProcessor
                        s = logits[seen]
                        logits[seen] = np.where(s < 0, s * repetition_penalty, s / repetition_penalty)
                    if temperature > 0:
                        p = np.exp((logits - logits.max()) / temperature)
                        tok = int(rng.choice(self.n_vocab, p=p / p.sum()))
                    else:
                        tok = int(np.argmax(logits))
                    if first_at is None:
                        first_at = time.perf_counter() - t0
                        self.last_timings["first_sample_s"] = first_at - self.last_timings["prompt_eval_s"]
                    n_new += 1
                    if tok in self._eog:
                        break
                    seen[tok] = True
                    text = decoder.decode(llm.detokenize([tok], special=False))
                    if text:
                        yield text
                    llm.eval([tok])
                tail = decoder.decode(b"", final=True)
                if tail:
                    yield tail
            except ModelLoadError:
                raise
            except Exception as e:
                raise ModelLoadError(f"generation failed: {type(e).__name__}: {e}") from None
        if _stats is not None:
            _stats[:] = [first_at if first_at is not None else time.perf_counter() - t0, len(prompt), n_new]


def _choose_fast_type(gguf: Path) -> str:
    """BF16 where llama.cpp's CPU backend was built with BF16 dot products (AVX512_BF16: tinyBLAS multiplies BF16
    weights natively) and the BF16 copy stays small; Q8_0 elsewhere (without them BF16 is converted on the fly)."""
    import llama_cpp

    try:
        info = llama_cpp.llama_print_system_info().decode(errors="replace")
        small = gguf.stat().st_size <= _BF16_MAX_BYTES
    except (OSError, AttributeError):
        return "q8_0"
    return "bf16" if small and ("AVX512_BF16 = 1" in info or "AMX_BF16 = 1" in info) else "q8_0"


def _common_prefix(a: Any, b: Any) -> int:
    """How many leading tokens two token sequences share."""
    n = min(len(a), len(b))
    if n == 0:
        return 0
    diff = np.flatnonzero(np.asarray(a[:n], dtype=np.int64) != np.asarray(b[:n], dtype=np.int64))
    return int(diff[0]) if len(diff) else n


def _fast_path(gguf: Path, cache_dir: Path | None, fast_type: str) -> Path | None:
    """Where the converted copy of `gguf` is cached (keyed by name and size, like the transformers conversion)."""
    from rag.settings import default_cache_dir

    try:
        size = gguf.stat().st_size
    except OSError:
        return None
    return (cache_dir or default_cache_dir()) / "models" / f"{gguf.stem[-100:]}-{size}.{fast_type}.gguf"


def _requantize(src: Path, target: Path, ftype: int) -> Path | None:
    """Write the converted copy once (about a second for SmolLM2-135M); None when it cannot be written (an
    unwritable cache): the original file is used then, only slower."""
    import ctypes

    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    tmp = target.with_name(f"{target.name}.tmp-{os.getpid()}")
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        params = llama_cpp.llama_model_quantize_default_params()
        params.ftype = ftype
        params.allow_requantize = True
        params.nthread = min(os.cpu_count() or 1, 4)
        with suppress_stdout_stderr(disable=False):
            rc = llama_cpp.llama_model_quantize(str(src).encode(), str(tmp).encode(), ctypes.byref(params))
        if rc != 0 or not tmp.is_file():
            return None
        os.replace(tmp, target)
        return target
    except OSError:
        return None
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
