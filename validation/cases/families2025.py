#!/usr/bin/env python3
"""Writes families2025.jsonl: the families of 2025-26 that vramfit reads, each measured with the
workloads issue 13 asks for (inference at two prompt lengths, LoRA all-linear with and without
checkpointing, full fine-tuning), plus one cross per family with a setting it had not met. The
cases were chosen together, before any was measured.

Configs are the real files in validation/configs-2025 (sources in its sources.toml). The large
models are cut to a few layers with `arch_override` (every per-layer list cut with them), which
keeps each layer's shape: SmolLM3-3B runs whole.

Run from the repository root:

    /work/venv/bin/python validation/cases/families2025.py
    /work/venv/bin/python validation/measure.py --matrix validation/cases/families2025.jsonl \\
        --out validation/data/harness-families2025-fake.jsonl
"""
import json
import os

HERE = os.path.dirname(os.path.abspath(__file__))
NOTE = "2025-26 family (validation/cases/families2025.py)"
C25 = "validation/configs-2025"
cases = []

MODELS = {
    # SmolLM3: every fourth layer without rotary positions (no_rope_layers).
    "smollm3-3b": (f"{C25}/HuggingFaceTB/SmolLM3-3B/config.json", None),
    # Ministral 3 (Devstral 2): Llama 4's query temperature after rotary; 8 of 88 layers.
    "devstral-2-123b-8layers": (f"{C25}/mistralai/Devstral-2-123B-Instruct-2512/config.json",
                                {"num_hidden_layers": 8}),
    # MiniMax-M2: 256 fused experts, sigmoid router, q/k norms over all heads, partial rotary.
    "minimax-m2.7-4layers": (f"{C25}/MiniMaxAI/MiniMax-M2.7/config.json",
                             {"num_hidden_layers": 4, "attn_type_list": [1, 1, 1, 1]}),
    # Mistral 3 with its Pixtral encoder (Devstral Small 2): 6 of 40 text layers.
    "devstral-small-2-24b-6layers": (f"{C25}/mistralai/Devstral-Small-2-24B-Instruct-2512/config.json",
                                     "text_config:num_hidden_layers=6"),
    # Kimi-K2 read as DeepSeek-V3 (architectures); one dense layer then 384 experts.
    "kimi-k2-3layers": (f"{C25}/moonshotai/Kimi-K2-Instruct/config.json",
                        {"num_hidden_layers": 3, "model_type": "deepseek_v3"}),
}


def add(cid, model, **case):
    config, override = MODELS[model]
    case = {"id": f"{model}-{cid}@fake", "backend": "fake", "config": config, **case, "note": NOTE}
    if isinstance(override, str):
        # A nested config cut: `arch_override` replaces top-level keys whole.
        key, setting = override.split(":")
        name, value = setting.split("=")
        with open(os.path.join(HERE, "..", "..", config)) as f:
            nested = json.load(f)[key]
        nested[name] = int(value)
        override = {key: nested}
    if override:
        case["arch_override"] = override
    assert case["id"] not in {c["id"] for c in cases}, case["id"]
    cases.append(case)


def infer(model, dtype="bf16", batch=1, seq=1024, gen=16, attn="sdpa"):
    add(f"infer-{dtype}-b{batch}-s{seq}-gen{gen}" + ("-eager" if attn == "eager" else ""), model,
        mode="inference", dtype=dtype, batch=batch, seq=seq, gen=gen, attn=attn)


def train(model, precision="bf16-mixed", optimizer="adamw", batch=1, seq=1024, ckpt=False, lora=None,
          attn="sdpa"):
    kind = "full" if lora is None else f"lora-r{lora['r']}-" + (
        "all-linear" if lora["targets"] == "all-linear" else "-".join(t.replace("_proj", "") for t in lora["targets"]))
    cid = f"{kind}-{precision}-{optimizer}-b{batch}-s{seq}" + ("-ckpt" if ckpt else "") + (
        "-eager" if attn == "eager" else "")
    case = dict(mode="full" if lora is None else "lora", precision=precision, optimizer=optimizer,
                batch=batch, seq=seq, grad_ckpt=ckpt, attn=attn)
    if lora is not None:
        case["lora"] = {"alpha": 2 * lora["r"], **lora}
    add(cid, model, **case)


ALL_LINEAR = {"r": 16, "targets": "all-linear"}
for model in ("smollm3-3b", "devstral-2-123b-8layers", "minimax-m2.7-4layers", "kimi-k2-3layers"):
    infer(model, seq=512)
    infer(model, seq=4096)
    train(model, lora=ALL_LINEAR)
    train(model, lora=ALL_LINEAR, ckpt=True)
    train(model, seq=512)

# Crosses, one a family.
infer("smollm3-3b", dtype="fp32", batch=4, seq=1024, attn="eager")
train("smollm3-3b", precision="fp16-mixed", batch=4, seq=2048, ckpt=True,
      lora={"r": 32, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]})
train("devstral-2-123b-8layers", precision="bf16", optimizer="sgd", batch=2, seq=2048, ckpt=True)
infer("minimax-m2.7-4layers", batch=4, seq=2048, gen=32)
train("minimax-m2.7-4layers", batch=2, seq=1024, lora={"r": 8, "targets": ["q_proj", "k_proj", "v_proj", "o_proj"]})

# Second round, chosen when Mistral 3's multimodal reading landed, before it was measured:
# text workloads on the model with its vision encoder (its weights, and under LoRA
# all-linear its adapters, count).
infer("devstral-small-2-24b-6layers", seq=2048)
train("devstral-small-2-24b-6layers", lora=ALL_LINEAR, ckpt=True)

if __name__ == "__main__":
    with open(os.path.join(HERE, "families2025.jsonl"), "w") as f:
        for c in cases:
            f.write(json.dumps(c) + "\n")
    print(f"{len(cases)} cases")
