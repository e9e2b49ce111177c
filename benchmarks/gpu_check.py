"""GPU check of the LLM path: device/dtype auto, load from a local folder, streaming, batched generation.

    python benchmarks/gpu_check.py [CONFIG_DIR]

CONFIG_DIR holds a model config + tokenizer (default: the converted SmolLM2 in the cache). Weights are
random (the shipped GGUF cannot be carried to the lent GPU machine), so only mechanics and speed are
checked, not answer quality.
"""
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
import torch  # noqa: E402
from transformers import AutoConfig, AutoModelForCausalLM  # noqa: E402

from rag.answer.generate import Generator  # noqa: E402

out = {"torch": torch.__version__, "cuda": torch.cuda.is_available(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}
SRC = sys.argv[1] if len(sys.argv) > 1 else next((Path.home() / ".cache/policy-rag/models").glob("*"))
cfg = AutoConfig.from_pretrained(SRC)
torch.manual_seed(0)
m = AutoModelForCausalLM.from_config(cfg)  # SmolLM2-135M architecture, random weights (the GGUF is too big to carry)
m.save_pretrained("/tmp/smol-random")
for f in ["tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "generation_config.json"]:
    shutil.copy(Path(SRC) / f, "/tmp/smol-random/")
g = Generator("/tmp/smol-random", device="auto", dtype="auto")
out.update(device=g.device, dtype=g.dtype, param_device=str(next(g.model.parameters()).device), param_dtype=str(next(g.model.parameters()).dtype), load_s=round(g.load_s, 2))
msgs = [{"role": "system", "content": "You answer questions about policy documents."},
        {"role": "user", "content": "Sources:\n<source id=\"1\">Agencies must designate a Chief AI Officer within 60 days.</source>\n\nQuestion: When must agencies designate a CAIO?"}]
msgs2 = [{"role": "system", "content": "You answer questions about policy documents."},
         {"role": "user", "content": "Question: What does the AI Action Plan say about open-weight models? Answer briefly."}]
g.generate(msgs, 8)  # warm-up
pieces = []
r = g.generate(msgs, 64, on_token=pieces.append)
out["stream"] = {"pieces": len(pieces), "tokens": r.tokens, "first_token_s": round(r.first_token_s, 4), "tokens_per_s": round(r.tokens_per_s, 1), "joined_equals_text": "".join(pieces).strip() == r.text}
enc = g.prompt_ids(msgs).to(g.device)
kw = dict(do_sample=False, temperature=None, top_p=None, top_k=None, repetition_penalty=1.1, pad_token_id=g.tokenizer.pad_token_id)
torch.cuda.synchronize() if out["cuda"] else None
t = time.perf_counter()
with torch.inference_mode():
    o = g.model.generate(**enc, max_new_tokens=64, min_new_tokens=64, **kw)
torch.cuda.synchronize() if out["cuda"] else None
bare = time.perf_counter() - t
out["bare_tokens_per_s"] = round(64 / bare, 1)
singles = [g.generate(x, 32).text for x in (msgs, msgs2)]
batch = g.generate_batch([msgs, msgs2], 32)
out["batch_equals_single"] = [b.text == s for b, s in zip(batch, singles, strict=False)]
t = time.perf_counter()
g.generate_batch([msgs, msgs2] * 8, 32)
out["batch16_s"] = round(time.perf_counter() - t, 3)
t = time.perf_counter()
for x in [msgs, msgs2] * 8:
    g.generate(x, 32)
out["sequential16_s"] = round(time.perf_counter() - t, 3)
print("GPUCHECK " + json.dumps(out))
