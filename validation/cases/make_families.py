#!/usr/bin/env python3
"""Writes families.jsonl: held-out oracle cases over model families and settings
not in data/oracle-llama-matrix-cpu.jsonl. Run from the repository root:

    /work/venv/bin/python validation/cases/make_families.py
    /work/venv/bin/python ../shared/oracle/measure.py --matrix validation/cases/families.jsonl \
        --backend fake --out validation/data/oracle-families-fake.jsonl

Cases with "backend": "cpu" (ids ending @cpu) run on the real CPU backend; each
has an @fake twin with the same settings for the fake == cpu check.
"""
import json
import os

from common import arch, short

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
TARGETS = {
    "phi3": ["qkv_proj", "o_proj"],
    "gpt2": ["c_attn"],
    "gpt_neox": ["query_key_value", "dense"],
    "falcon": ["query_key_value", "dense"],
    "phi": ["q_proj", "k_proj", "v_proj", "dense"],
}




cases = []


def add(cid, name, backend="fake", arch_override=None, **kw):
    c = {"id": f"{cid}@{backend}", "backend": backend, "model": name, "arch": arch(name, **(arch_override or {}))}
    c.update(kw)
    cases.append(c)


def infer(name, dtype="bfloat16", b=1, s=1024, gen=16, attn="sdpa", tag=None, **kw):
    d = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype]
    cid = tag or f"{short(name)}-infer-{d}-b{b}-s{s}-gen{gen}" + ("-eager" if attn == "eager" else "")
    add(cid, name, mode="inference", dtype=dtype, batch=b, seq=s, gen_tokens=gen, attn_impl=attn, **kw)


def full(name, dtype="bfloat16", b=1, s=1024, opt="adamw", mixed=False, attn="sdpa", ckpt=False, suffix="", **kw):
    d = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}[dtype] + ("mixed" if mixed else "")
    cid = f"{short(name)}-full-{d}-b{b}-s{s}" + ("-ckpt" if ckpt else "") + suffix + ("-eager" if attn == "eager" and "eager" not in suffix else "")
    add(cid, name, mode="full", dtype=dtype, mixed_precision=mixed, batch=b, seq=s, optimizer=opt,
        attn_impl=attn, grad_ckpt=ckpt, **kw)


def lora(name, targets=None, r=16, dtype="bfloat16", b=2, s=1024, ckpt=False, suffix="", attn="sdpa", **kw):
    mt = arch(name)["model_type"]
    targets = targets if targets is not None else TARGETS.get(mt, ATTN)
    cid = f"{short(name)}-lora-r{r}-bf16-b{b}-s{s}" + ("-ckpt" if ckpt else "") + suffix + ("-eager" if attn == "eager" else "")
    add(cid, name, mode="lora", dtype=dtype, batch=b, seq=s, grad_ckpt=ckpt, attn_impl=attn,
        lora={"r": r, "alpha": 2 * r, "target_modules": targets}, **kw)


# ---- families: (a) inference, (b) full fine-tuning, (c) LoRA on attention projections
FAMILIES = [
    "Qwen/Qwen3-0.6B", "Qwen/Qwen2.5-0.5B", "meta-llama/Llama-3.2-1B", "google/gemma-2-2b",
    "google/gemma-3-1b-pt", "microsoft/Phi-3-mini-4k-instruct", "openai-community/gpt2",
    "EleutherAI/pythia-1.4b", "microsoft/phi-2", "allenai/OLMo-2-1124-7B",
]
for name in FAMILIES:
    if name == "openai-community/gpt2":
        # n_positions = 1024: prompt + generated tokens must fit the learned position table
        infer(name, s=1008, gen=16)
    else:
        infer(name)
    full(name, steps=2 if "7B" in name else 3)
    lora(name)
# gpt2's real config has attn_pdrop 0.1: on the CPU dispatch path SDPA with dropout
# falls back to the math kernel (keeps b*heads*s^2 probabilities), a GPU would not.
full("openai-community/gpt2", suffix="-attndrop0", arch_override={"attn_pdrop": 0.0})

infer("mistralai/Mistral-7B-v0.1")
lora("mistralai/Mistral-7B-v0.1", ckpt=True)
infer("bigcode/starcoder2-7b")
infer("tiiuae/falcon-7b")
lora("tiiuae/falcon-7b")

# ---- MoE
infer("mistralai/Mixtral-8x7B-v0.1", s=512, gen=8)
lora("mistralai/Mixtral-8x7B-v0.1", b=1, s=512, ckpt=True)
infer("Qwen/Qwen3-30B-A3B")
infer("deepseek-ai/DeepSeek-V2-Lite", s=512, gen=8)
lora("deepseek-ai/DeepSeek-V2-Lite", b=1, s=512,
     targets=["q_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"])
infer("openai/gpt-oss-20b", s=1024, gen=8)
# gemma2 (softcapping) and gpt_oss (sinks) refuse sdpa in transformers 5 (_supports_sdpa =
# False): the sdpa cases above record that error; these run eager, the HF default for them.
infer("google/gemma-2-2b", attn="eager")
full("google/gemma-2-2b", attn="eager")
lora("google/gemma-2-2b", attn="eager")
infer("openai/gpt-oss-20b", s=1024, gen=8, attn="eager")

# ---- settings on Llama-3.2-1B
L = "meta-llama/Llama-3.2-1B"
full(L, dtype="float32", b=1, s=512, opt="adamw", suffix="-adamw-foreach")
full(L, dtype="float32", b=1, s=512, opt="sgd", suffix="-sgd")
full(L, dtype="float32", b=1, s=512, opt="sgd_momentum", suffix="-sgdm")
full(L, dtype="float32", b=1, s=512, opt="adamw", suffix="-adamw-fused", optimizer_impl="fused")
full(L, dtype="float32", b=1, s=512, opt="adamw", suffix="-adamw-forloop", optimizer_impl="forloop")
full(L, dtype="bfloat16", b=2, s=512, attn="eager")
full(L, dtype="bfloat16", b=4, s=512, mixed=True)
lora(L, targets="all-linear", r=8, suffix="-all-linear")
# DoRA: the oracle's case format has no DoRA switch, so it is not measured here.
infer(L, dtype="float16", b=16, s=512, gen=64)
infer(L, dtype="bfloat16", b=1, s=8192, gen=8)
infer(L, dtype="bfloat16", b=4, s=1024, gen=0, tag="llama-3.2-1b-fwd-bf16-b4-s1024-gen0")
infer(L, dtype="bfloat16", b=2, s=1024, gen=8, attn="eager")

# ---- larger
lora("meta-llama/Llama-3.1-8B", b=1, s=4096, ckpt=True)
infer("meta-llama/Llama-3.1-70B", s=4096, gen=16)

# ---- fake == cpu on non-Llama families (small models, short sequences); each pair
for be in ("cpu", "fake"):
    full("openai-community/gpt2", b=1, s=256, suffix="-attndrop0", arch_override={"attn_pdrop": 0.0}, backend=be)
    lora("Qwen/Qwen3-0.6B", b=1, s=256, backend=be)
    # manual decode on cpu too, so the pair runs the same loop
    infer("Qwen/Qwen2.5-0.5B", s=256, gen=8, backend=be, inference_impl="manual")
    infer("openai-community/gpt2", dtype="float32", b=2, s=256, gen=0, tag="gpt2-fwd-fp32-b2-s256-gen0", backend=be)

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "families.jsonl")
with open(out, "w") as f:
    for c in cases:
        f.write(json.dumps(c) + "\n")
print(f"{len(cases)} cases -> {out}")
