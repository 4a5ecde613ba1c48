#!/usr/bin/env python3
"""Writes long.jsonl: inference at long contexts (16K to 128K tokens), fake backend.

The other matrices measure generation at up to 8K tokens; at long contexts the KV
cache, the attention kernels' choices (SDPA's flash path, eager's s × s
probabilities), sliding windows and MLA's latent cache set the peak. Each case
prefills the prompt and generates 16 tokens with real configs from the catalog.

Run from the repository root:

    /work/venv/bin/python validation/cases/long.py
    /work/venv/bin/python validation/measure.py --matrix validation/cases/long.jsonl \\
        --out validation/data/harness-long-fake.jsonl
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
cases = []


def infer(model, seq, batch=1, attn="sdpa", gen=16):
    name = model.split("/")[1].lower()
    cid = f"{name}-infer-bf16-b{batch}-s{seq}-gen{gen}" + ("-eager" if attn == "eager" else "") + "@fake"
    cases.append({"id": cid, "backend": "fake", "model": model, "mode": "inference", "dtype": "bf16",
                  "batch": batch, "seq": seq, "gen": gen, "attn": attn,
                  "note": "long-context generation (validation/cases/long.py)"})


infer("meta-llama/Llama-3.1-8B", 32768)
infer("meta-llama/Llama-3.1-8B", 131072)
infer("meta-llama/Llama-3.1-8B", 16384, batch=4)
infer("Qwen/Qwen2.5-7B", 32768)
infer("mistralai/Mistral-7B-v0.1", 16384)
infer("mistralai/Mistral-7B-v0.1", 8192, batch=2)
infer("google/gemma-2-9b", 8192, attn="eager")
infer("google/gemma-3-4b-pt", 32768)
infer("Qwen/Qwen3-30B-A3B", 32768)
infer("deepseek-ai/DeepSeek-V2-Lite", 32768)
infer("microsoft/Phi-3-mini-4k-instruct", 16384)

with open(os.path.join(HERE, "long.jsonl"), "w") as f:
    for case in cases:
        f.write(json.dumps(case) + "\n")
print(f"{len(cases)} cases -> validation/cases/long.jsonl")
