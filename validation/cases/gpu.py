#!/usr/bin/env python3
"""Writes gpu.jsonl: the matrix for a session that is lent a GPU (the `device` tool).

Real-size models on one 80 GB H100, each case measured at the three levels the
report compares (live tensors, `max_memory_allocated`/`max_memory_reserved`, the
device's used memory with the CUDA context), so that the constants only a GPU
shows can be calibrated: the CUDA context, cuBLAS/cuDNN workspaces, the caching
allocator's reserve, bitsandbytes' kernels and the paged optimizer.

Four parts, each meant to fit one device call of ten minutes (untimed; ids carry the
part: `gpu-a-…` to `gpu-d-…`):
  a  inference: 1B to 32B, contexts 1K to 32K, batch 1 to 8, a 70B-shaped model
     cut to 36 of its 80 layers (63 GB of bf16 weights), Gemma 2 eager
  b  full fine-tuning: AdamW foreach and fused, checkpointing, Adafactor, Lion,
     SGD, 8-bit and paged 8-bit AdamW
  c  LoRA and DoRA on 3B-8B models, and two wide-layer QLoRA cases the CPU also
     measured (validation/data/harness-bnb-cpu.jsonl), to compare CPU and CUDA
  d  QLoRA on 7B-8B models: each writes a 15 GB checkpoint of random weights on the
     CPU first and quantizes it as it loads (a few minutes a case; --resume goes on)

How to run it is in validation/README.md ("On a lent GPU").
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
ALL = "all-linear"
cases = []


def add(part, cid, **case):
    case = {"id": f"gpu-{part}-{cid}@cuda", "backend": "cuda", **case}
    assert case["id"] not in {c["id"] for c in cases}, case["id"]
    cases.append(case)


def infer(part, model, name, batch, seq, gen, attn="sdpa", **kw):
    add(part, f"{name}-infer-bf16-b{batch}-s{seq}-gen{gen}" + ("-eager" if attn == "eager" else ""),
        model=model, mode="inference", dtype="bf16", batch=batch, seq=seq, gen=gen, attn=attn, **kw)


# ---- a: inference
infer("a", "meta-llama/Llama-3.2-1B", "llama-3.2-1b", 1, 1024, 64)
infer("a", "meta-llama/Llama-3.1-8B", "llama-3.1-8b", 1, 1024, 64)
infer("a", "meta-llama/Llama-3.1-8B", "llama-3.1-8b", 8, 4096, 64)
infer("a", "meta-llama/Llama-3.1-8B", "llama-3.1-8b", 1, 32768, 16)
infer("a", "Qwen/Qwen2.5-7B", "qwen2.5-7b", 4, 2048, 64)
infer("a", "mistralai/Mistral-7B-v0.1", "mistral-7b", 1, 8192, 16)
infer("a", "google/gemma-2-9b", "gemma-2-9b", 1, 8192, 16, attn="eager")
infer("a", "Qwen/Qwen2.5-32B", "qwen2.5-32b", 1, 4096, 16)
infer("a", "meta-llama/Llama-3.1-70B", "llama-3.1-70b-36of80", 1, 4096, 16,
      arch_override={"num_hidden_layers": 36},
      note="Llama-3.1-70B's layers, 36 of 80, so that bf16 weights (63 GB) fit one H100")

# ---- b: full fine-tuning
L1, L3 = "meta-llama/Llama-3.2-1B", "meta-llama/Llama-3.2-3B"
for impl in ("foreach", "fused"):
    add("b", f"llama-3.2-1b-full-bf16-mixed-adamw-{impl}-b4-s1024", model=L1, mode="full",
        precision="bf16-mixed", optimizer="adamw", optimizer_impl=impl, batch=4, seq=1024)
add("b", "llama-3.2-1b-full-bf16-mixed-adamw-b8-s2048-ckpt", model=L1, mode="full", precision="bf16-mixed",
    batch=8, seq=2048, grad_ckpt=True)
for optimizer in ("adafactor", "lion", "sgd"):
    add("b", f"llama-3.2-1b-full-bf16-{optimizer}-b4-s1024", model=L1, mode="full", precision="bf16",
        optimizer=optimizer, batch=4, seq=1024)
add("b", "qwen2.5-1.5b-full-bf16-mixed-adamw-b2-s2048", model="Qwen/Qwen2.5-1.5B", mode="full",
    precision="bf16-mixed", batch=2, seq=2048)
for optimizer in ("adamw-8bit", "paged-adamw-8bit"):
    add("b", f"llama-3.2-3b-full-bf16-mixed-{optimizer}-b2-s1024-ckpt", model=L3, mode="full",
        precision="bf16-mixed", optimizer=optimizer, batch=2, seq=1024, grad_ckpt=True)

# ---- c: adapters
L8 = "meta-llama/Llama-3.1-8B"
add("c", "llama-3.1-8b-lora-r16-all-linear-bf16-mixed-b1-s2048", model=L8, mode="lora",
    precision="bf16-mixed", batch=1, seq=2048, lora={"r": 16, "targets": ALL})
add("c", "llama-3.1-8b-lora-r16-all-linear-bf16-mixed-b4-s2048-ckpt", model=L8, mode="lora",
    precision="bf16-mixed", batch=4, seq=2048, grad_ckpt=True, lora={"r": 16, "targets": ALL})
add("c", "llama-3.2-3b-dora-r16-all-linear-bf16-mixed-b1-s1024", model=L3, mode="lora",
    precision="bf16-mixed", batch=1, seq=1024, lora={"r": 16, "targets": ALL, "dora": True})
add("d", "llama-3.1-8b-qlora-r16-all-linear-bf16-mixed-b1-s2048-ckpt", model=L8, mode="qlora",
    precision="bf16-mixed", batch=1, seq=2048, grad_ckpt=True, lora={"r": 16, "targets": ALL})
add("d", "llama-3.1-8b-qlora-r16-all-linear-bf16-mixed-b4-s2048-ckpt", model=L8, mode="qlora",
    precision="bf16-mixed", batch=4, seq=2048, grad_ckpt=True, lora={"r": 16, "targets": ALL})
add("d", "qwen2.5-7b-qlora-r16-all-linear-bf16-mixed-b2-s2048-ckpt", model="Qwen/Qwen2.5-7B", mode="qlora",
    precision="bf16-mixed", batch=2, seq=2048, grad_ckpt=True, lora={"r": 16, "targets": ALL})
add("d", "mistral-7b-qlora-r16-all-linear-bf16-mixed-b1-s1024", model="mistralai/Mistral-7B-v0.1",
    mode="qlora", precision="bf16-mixed", batch=1, seq=1024, lora={"r": 16, "targets": ALL})
# the CPU's wide-layer QLoRA cases again, on CUDA (same configs as cases/bnb.py)
with open(os.path.join(HERE, "bnb.jsonl")) as f:
    for line in f:
        cpu = json.loads(line)
        if cpu["id"] in ("llama-wide-qlora-r16-all-linear-bf16-mixed-b4-s512-ckpt@cpu",
                         "mixtral-wide-qlora-r16-all-linear-bf16-mixed-b2-s512@cpu"):
            same = {k: v for k, v in cpu.items() if k not in ("id", "backend")}
            same["note"] = f"the CPU's {cpu['id']} on CUDA"
            add("c", cpu["id"].removesuffix("@cpu"), **same)

with open(os.path.join(HERE, "gpu.jsonl"), "w") as f:
    for case in cases:
        f.write(json.dumps(case) + "\n")
print(f"{len(cases)} cases -> validation/cases/gpu.jsonl")
