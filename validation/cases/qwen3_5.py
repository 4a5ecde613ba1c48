#!/usr/bin/env python3
"""Writes qwen3_5.jsonl: Qwen3.5 inference (gated DeltaNet beside gated attention), chosen before
any of it was measured, to check vramfit's model of the prefill inside the chunked delta rule
(transformers 5.24's torch fallback `torch_chunk_gated_delta_rule`, which also runs on a GPU
without flash-linear-attention), the recurrent and convolution states, and the KV cache of the
full-attention layers.

Real configs from validation/configs-2025 (multimodal, so the vision tower's weights count):
prompts that are and are not a multiple of the 64-token chunk, batch 1 to 4, both value-head
widths (9B: 32 value heads over 16 key heads; 27B: 48), the MoE (35B-A3B), eager attention
at a long prompt, fp32, and a plain forward (no generation).

Run from the repository root:

    /work/venv/bin/python validation/cases/qwen3_5.py
    /work/venv/bin/python validation/measure.py --matrix validation/cases/qwen3_5.jsonl \\
        --out validation/data/harness-qwen3_5-fake.jsonl
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NOTE = "Qwen3.5 inference (validation/cases/qwen3_5.py)"
C25 = "validation/configs-2025/Qwen"
cases = []


def infer(model, dtype="bf16", batch=1, seq=1024, gen=16, attn="sdpa"):
    cid = f"{model.lower()}-infer-{dtype}-b{batch}-s{seq}-gen{gen}" + ("-eager" if attn == "eager" else "")
    case = {"id": f"{cid}@fake", "backend": "fake", "config": f"{C25}/{model}/config.json", "mode": "inference",
            "dtype": dtype, "batch": batch, "seq": seq, "gen": gen, "attn": attn, "note": NOTE}
    assert case["id"] not in {c["id"] for c in cases}, case["id"]
    cases.append(case)


infer("Qwen3.5-9B", seq=512)
infer("Qwen3.5-9B", seq=4096)
infer("Qwen3.5-9B", seq=1000, batch=4)
infer("Qwen3.5-9B", seq=8192, attn="eager", gen=4)
infer("Qwen3.5-9B", dtype="fp32", seq=2048, batch=2)
infer("Qwen3.5-27B", seq=3000, gen=32)
infer("Qwen3.5-27B", seq=1024, batch=2, gen=0)
infer("Qwen3.5-35B-A3B", seq=2048)
infer("Qwen3.5-35B-A3B", seq=777, batch=3, gen=8)

if __name__ == "__main__":
    with open(os.path.join(HERE, "qwen3_5.jsonl"), "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    print(f"{len(cases)} cases")
