#!/usr/bin/env python3
"""Writes heldout.jsonl: a second held-out oracle matrix (fake backend), over shapes
and settings not in data/oracle-llama-matrix-cpu.jsonl or data/oracle-families-fake.jsonl
(larger models, longer sequences, bigger batches, all-linear LoRA at r=64, fp16 without
mixed precision, fused AdamW, MoE with shared experts, depth-upscaled SOLAR, ...).
Run from the repository root:

    /work/venv/bin/python validation/cases/make_heldout.py
    /work/venv/bin/python ../shared/oracle/measure.py --matrix validation/cases/heldout.jsonl \
        --backend fake --out validation/data/oracle-heldout-fake.jsonl

Configs come from crates/vramfit-sources/data/models/ORG/NAME/config.json, with the same keys dropped as in
make_families.py. gemma2 has no sdpa support in transformers 5 (_supports_sdpa = False),
so its cases run eager (the HF default for it); every other case runs sdpa unless its id
says -eager.
"""
import json
import os

from common import arch, short
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
DT = {"bfloat16": "bf16", "float16": "fp16", "float32": "fp32"}




cases = []


def add(cid, name, **kw):
    c = {"id": f"{cid}@fake", "backend": "fake", "model": name, "arch": arch(name)}
    c.update(kw)
    assert c["id"] not in {x["id"] for x in cases}, c["id"]
    cases.append(c)


def infer(name, dtype="bfloat16", b=1, s=1024, gen=16, attn="sdpa"):
    cid = f"{short(name)}-infer-{DT[dtype]}-b{b}-s{s}-gen{gen}" + ("-eager" if attn == "eager" else "")
    add(cid, name, mode="inference", dtype=dtype, batch=b, seq=s, gen_tokens=gen, attn_impl=attn)


def full(name, dtype="bfloat16", b=1, s=1024, opt="adamw", mixed=False, attn="sdpa", ckpt=False, suffix="", **kw):
    d = DT[dtype] + ("mixed" if mixed else "")
    cid = (f"{short(name)}-full-{d}-b{b}-s{s}" + ("-ckpt" if ckpt else "") + suffix
           + ("-eager" if attn == "eager" else ""))
    add(cid, name, mode="full", dtype=dtype, mixed_precision=mixed, batch=b, seq=s, optimizer=opt,
        attn_impl=attn, grad_ckpt=ckpt, **kw)


def lora(name, targets, r=16, dtype="bfloat16", b=1, s=1024, ckpt=False, attn="sdpa", tgt_tag=None):
    tag = tgt_tag or ("all-linear" if targets == "all-linear" else
                      "attn" if targets == ATTN else "-".join(t.replace("_proj", "") for t in targets))
    cid = (f"{short(name)}-lora-r{r}-{tag}-{DT[dtype]}-b{b}-s{s}" + ("-ckpt" if ckpt else "")
           + ("-eager" if attn == "eager" else ""))
    add(cid, name, mode="lora", dtype=dtype, batch=b, seq=s, grad_ckpt=ckpt, attn_impl=attn,
        lora={"r": r, "alpha": 2 * r, "target_modules": targets})


Q25 = "Qwen/Qwen2.5-7B"
lora(Q25, "all-linear", r=64, b=1, s=2048, ckpt=True)
infer(Q25, dtype="float16", b=8, s=2048, gen=32)

G9 = "google/gemma-2-9b"  # eager: gemma2 refuses sdpa in transformers 5
infer(G9, b=1, s=2048, gen=8, attn="eager")
lora(G9, ATTN, r=16, b=1, s=1024, ckpt=True, attn="eager")

L3 = "meta-llama/Llama-3.2-3B"
full(L3, dtype="bfloat16", mixed=True, b=2, s=1024, ckpt=True)
full(L3, dtype="float16", b=1, s=2048)
lora(L3, ["q_proj", "v_proj"], r=32, dtype="float32", b=4, s=512)
full(L3, dtype="bfloat16", b=1, s=2048, attn="eager")
full(L3, dtype="bfloat16", b=4, s=1024, opt="sgd_momentum", suffix="-sgdm")

Q3 = "Qwen/Qwen3-8B"
lora(Q3, "all-linear", r=16, b=1, s=4096, ckpt=True)
infer(Q3, b=4, s=4096, gen=64)

M7 = "mistralai/Mistral-7B-Instruct-v0.3"
infer(M7, b=32, s=512, gen=128)
full(M7, b=1, s=1024, optimizer_impl="fused", steps=2, suffix="-adamw-fused")

lora("microsoft/Phi-3-mini-4k-instruct", "all-linear", r=16, b=2, s=2048)
full("EleutherAI/pythia-1.4b", dtype="float32", b=2, s=1024, opt="sgd", suffix="-sgd")

QM = "Qwen/Qwen1.5-MoE-A2.7B"  # qwen2_moe: 60 routed experts + a shared expert
infer(QM, b=1, s=1024, gen=8)
lora(QM, ATTN, r=16, b=1, s=1024, ckpt=True)

lora("Qwen/Qwen3-30B-A3B", ATTN, r=16, b=1, s=1024, ckpt=True)
infer("upstage/SOLAR-10.7B-Instruct-v1.0", b=2, s=4096, gen=16)
lora("01-ai/Yi-6B", ["q_proj", "v_proj"], r=8, b=4, s=1024)
full("allenai/OLMo-2-1124-7B", b=1, s=2048, ckpt=True, steps=2)
infer("deepseek-ai/DeepSeek-V2-Lite", b=2, s=1024, gen=16)

# a few more away from the existing matrices
infer(L3, dtype="float32", b=1, s=1024, gen=0)  # forward only, fp32, full logits
lora("mistralai/Mistral-7B-Instruct-v0.3", ATTN, r=16, dtype="float16", b=2, s=1024)  # plain fp16 LoRA
full("EleutherAI/pythia-1.4b", dtype="bfloat16", mixed=True, b=1, s=2048, ckpt=True, optimizer_impl="forloop",
     suffix="-adamw-forloop")

out = os.path.join(os.path.dirname(os.path.abspath(__file__)), "heldout.jsonl")
with open(out, "w") as f:
    for c in cases:
        f.write(json.dumps(c) + "\n")
print(f"{len(cases)} cases -> {out}")
