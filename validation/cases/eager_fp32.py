#!/usr/bin/env python3
"""Writes eager_fp32.jsonl: the misses an independent check reported in issue 13 (item 7),
at the shapes it named, chosen before vramfit's fix was measured against them: eager-attention
inference in fp32 on Llama- and GPT-2-shaped models at batch 8-16 with 1-2K-token prompts, and
GPT-2 LoRA all-linear with eager attention in bf16.

Run from the repository root:

    /work/venv/bin/python validation/cases/eager_fp32.py
    /work/venv/bin/python validation/measure.py --matrix validation/cases/eager_fp32.jsonl \\
        --out validation/data/harness-eager-fake.jsonl
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NOTE = "issue 13 item 7: eager attention misses (validation/cases/eager_fp32.py)"
cases = []


def add(cid, **case):
    cases.append({"id": f"{cid}@fake", "backend": "fake", **case, "attn": "eager", "note": NOTE})


add("llama-3.2-1b-infer-fp32-b8-s1024-gen16-eager", model="meta-llama/Llama-3.2-1B", mode="inference",
    dtype="fp32", batch=8, seq=1024, gen=16)
add("llama-3.2-1b-infer-fp32-b16-s2048-gen16-eager", model="meta-llama/Llama-3.2-1B", mode="inference",
    dtype="fp32", batch=16, seq=2048, gen=16)
add("gpt2-infer-fp32-b16-s1000-gen16-eager", model="openai-community/gpt2", mode="inference",
    dtype="fp32", batch=16, seq=1000, gen=16)
add("gpt2-xl-infer-fp32-b8-s1000-gen16-eager", model="openai-community/gpt2-xl", mode="inference",
    dtype="fp32", batch=8, seq=1000, gen=16)
add("gpt2-lora-r16-all-linear-bf16-b8-s1024-eager", model="openai-community/gpt2", mode="lora",
    precision="bf16", batch=8, seq=1024, lora={"r": 16, "alpha": 32, "targets": "all-linear"})

if __name__ == "__main__":
    with open(os.path.join(HERE, "eager_fp32.jsonl"), "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    print(f"{len(cases)} cases")
