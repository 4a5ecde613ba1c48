#!/usr/bin/env python3
"""Writes batch.jsonl: harness cases at batch sizes 8 to 32, which the other case sets
reach only up to 16 — the range where activations, logits and the KV cache outgrow the
weights. Real catalog configs on the fake backend (live tensor bytes, nothing allocated),
across a dense GQA model, a small-vocabulary-heavy one, a sliding-window family and a MoE.

Run from the repository root:

    /work/venv/bin/python validation/cases/batch.py
    /work/venv/bin/python validation/measure.py --matrix validation/cases/batch.jsonl \\
        --out validation/data/harness-batch-fake.jsonl
"""
import json
import os

from common import short

ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]

HERE = os.path.dirname(os.path.abspath(__file__))
cases = []


def add(cid, **case):
    case = {"id": f"{cid}@fake", "backend": "fake", **case}
    assert case["id"] not in {c["id"] for c in cases}, case["id"]
    cases.append(case)


def infer(model, batch, seq, gen=16, dtype="bf16", attn="sdpa"):
    add(f"{short(model)}-infer-{dtype}-b{batch}-s{seq}-gen{gen}" + ("-eager" if attn == "eager" else ""),
        model=model, mode="inference", dtype=dtype, batch=batch, seq=seq, gen=gen, attn=attn)


def full(model, batch, seq, precision="bf16-mixed", ckpt=True):
    add(f"{short(model)}-full-{precision}-adamw-b{batch}-s{seq}" + ("-ckpt" if ckpt else ""),
        model=model, mode="full", precision=precision, optimizer="adamw", batch=batch, seq=seq,
        grad_ckpt=ckpt, attn="sdpa")


def lora(model, batch, seq, ckpt=True, targets=None):
    targets = targets or ATTN
    add(f"{short(model)}-lora-r16-{'attn' if targets == ATTN else 'all-linear'}-bf16-mixed-b{batch}-s{seq}"
        + ("-ckpt" if ckpt else ""),
        model=model, mode="lora", precision="bf16-mixed", batch=batch, seq=seq, grad_ckpt=ckpt, attn="sdpa",
        lora={"r": 16, "alpha": 32, "targets": targets, "dora": False})


LLAMA1B = "meta-llama/Llama-3.2-1B"
for b in (8, 16, 32):
    infer(LLAMA1B, batch=b, seq=1024)
full(LLAMA1B, batch=32, seq=512)
lora(LLAMA1B, batch=32, seq=512)
lora(LLAMA1B, batch=32, seq=256, ckpt=False, targets="all-linear")

QWEN05 = "Qwen/Qwen2.5-0.5B"  # 152k vocabulary on a 0.5B model: logits dominate at batch 32
full(QWEN05, batch=32, seq=256)
infer(QWEN05, batch=32, seq=512)

infer("meta-llama/Llama-3.1-8B", batch=32, seq=2048)
infer("mistralai/Mistral-7B-v0.1", batch=32, seq=1024)
infer("google/gemma-2-2b", batch=32, seq=512, attn="eager")
infer("Qwen/Qwen3-30B-A3B", batch=32, seq=512)

with open(os.path.join(HERE, "batch.jsonl"), "w") as f:
    for case in cases:
        f.write(json.dumps(case) + "\n")
print(f"{len(cases)} cases")
