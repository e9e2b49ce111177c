"""The llama.cpp backend for GGUF models on CPU: same interface as `rag.answer.generate.Generator`.

Why: the shipped SmolLM2 GGUF runs several times faster through llama.cpp's quantized kernels than
de-quantized to fp32 in transformers on a 2-core CPU, loads in a fraction of a second (no GGUF ->
transformers conversion) and does not import torch at all.

Decoding is our own greedy loop over llama.cpp's logits, so it behaves like the transformers path:
the same chat template (read from the GGUF), the same control-token neutralisation of message text,
HF's repetition penalty (over prompt and draft), stop at any end-of-generation token, streaming of
whole UTF-8 characters, and a `stop` callable polled between tokens (request deadlines).
"""

from __future__ import annotations

import codecs
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelLoadError


def llama_cpp_available() -> bool:
    import importlib.util

    return importlib.util.find_spec("llama_cpp") is not None


class LlamaCppGenerator:
    """A GGUF model in llama.cpp. One generation at a time per model (a lock), like `Generator`."""

    backend = "llamacpp"

    def __init__(self, gguf: Path, name: str | None = None, threads: int = 0, n_ctx: int = 0) -> None:
        t0 = time.perf_counter()
        # llama.cpp's OpenMP threads spin while waiting; on a busy 2-core machine two spinning threads ran 10-20x slower
        # (benchmarks/RESULTS.md, issue 16). Passive waiting costs little when the cores are free. (Read when the
        # OpenMP runtime loads: it has no effect if torch was imported first.)
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from llama_cpp import Llama, llama_chat_format

            self.llm = Llama(
                model_path=str(gguf),
                n_ctx=n_ctx,
                n_threads=threads or (os.cpu_count() or 1),
                n_batch=512,
                logits_all=False,
                verbose=False,
            )
        except Exception as e:
            raise ModelLoadError(
                f"cannot load GGUF model {gguf} with llama.cpp: {type(e).__name__}: {str(e)[:300]}"
            ) from None
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
            llm.reset()
            seen = np.zeros(self.n_vocab, dtype=bool)
            seen[prompt] = True
            decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
            try:
                llm.eval(prompt)
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
