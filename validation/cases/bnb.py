#!/usr/bin/env python3
"""Writes bnb.jsonl: harness cases for what bitsandbytes does, measured on the real CPU
(and, as their control, plain LoRA on the same wide layers).

bitsandbytes 0.50 runs on the CPU (its NF4 quantize/dequantize and 8-bit optimizer
updates have CPU kernels), so QLoRA and the 8-bit optimizers are measured here as
live tensor bytes, the same level every other CPU record has. QLoRA goes through
what users call: `from_pretrained(..., quantization_config=BitsAndBytesConfig(nf4,
double quant))` on a checkpoint of random weights, then peft's
`prepare_model_for_kbit_training` (validation/measure.py). Fake tensors cannot run
it (bitsandbytes quantizes real data as the checkpoint loads), so these run on
real tensors, with catalog architectures cut to a size the CPU runs in seconds
(`arch_override`), and two real-size ones (Qwen2.5-0.5B, Llama-3.2-1B).

Not here: paged 8-bit optimizers (their states live in CUDA unified memory) and
every device-level figure: they need the cuda backend.

Run from the repository root:

    /work/venv/bin/python validation/cases/bnb.py
    /work/venv/bin/python validation/measure.py --matrix validation/cases/bnb.jsonl \\
        --out validation/data/harness-bnb-cpu.jsonl
"""
import json
import os

from common import TINY_DEEPSEEK_V3, TINY_GPTJ

HERE = os.path.dirname(os.path.abspath(__file__))
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
cases = []


def add(cid, **case):
    case = {"id": f"{cid}@cpu", "backend": "cpu", **case}
    assert case["id"] not in {c["id"] for c in cases}, case["id"]
    cases.append(case)


# families cut to a small size; each keeps its own layout (MoE, MLA, tied head, biases, ...)
TINY = {
    "llama": ("meta-llama/Llama-3.2-1B", {"hidden_size": 512, "intermediate_size": 1376, "num_hidden_layers": 4,
                                          "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64,
                                          "vocab_size": 32000}),
    "qwen2": ("Qwen/Qwen2.5-0.5B", {"hidden_size": 448, "intermediate_size": 1216, "num_hidden_layers": 4,
                                    "num_attention_heads": 7, "num_key_value_heads": 1, "vocab_size": 32000}),
    "gemma2": ("google/gemma-2-2b", {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 4,
                                     "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 64,
                                     "vocab_size": 32000, "sliding_window": 128}),
    "phi3": ("microsoft/Phi-3-mini-4k-instruct", {"hidden_size": 512, "intermediate_size": 1024,
                                                   "num_hidden_layers": 4, "num_attention_heads": 8,
                                                   "num_key_value_heads": 8, "vocab_size": 32064}),
    "gptj": ("EleutherAI/gpt-j-6b", TINY_GPTJ),
    "starcoder2": ("bigcode/starcoder2-7b", {"hidden_size": 512, "intermediate_size": 1536, "num_hidden_layers": 4,
                                             "num_attention_heads": 8, "num_key_value_heads": 2,
                                             "vocab_size": 32000}),
    "mixtral": ("mistralai/Mixtral-8x7B-v0.1", {"hidden_size": 512, "intermediate_size": 1024,
                                                "num_hidden_layers": 3, "num_attention_heads": 8,
                                                "num_key_value_heads": 2, "num_local_experts": 4,
                                                "vocab_size": 32000}),
    "qwen3-moe": ("Qwen/Qwen3-30B-A3B", {"hidden_size": 512, "intermediate_size": 1024,
                                         "moe_intermediate_size": 256, "num_hidden_layers": 3,
                                         "num_attention_heads": 8, "num_key_value_heads": 2, "head_dim": 64,
                                         "num_experts": 8, "num_experts_per_tok": 2, "vocab_size": 32000}),
    "deepseek-v3": ("deepseek-ai/DeepSeek-V3", TINY_DEEPSEEK_V3),
}

for name, (model, shrink) in TINY.items():
    attn = "eager" if name == "gemma2" else "sdpa"
    common = dict(model=model, arch_override=dict(shrink), attn=attn, mode="qlora",
                  note=f"{model} cut to a small size (arch_override)")
    add(f"{name}-tiny-qlora-r8-all-linear-bf16-mixed-b2-s256", precision="bf16-mixed", batch=2, seq=256,
        lora={"r": 8, "targets": "all-linear"}, **common)
    add(f"{name}-tiny-qlora-r16-attn-bf16-mixed-b2-s256-ckpt", precision="bf16-mixed", batch=2, seq=256,
        grad_ckpt=True, lora={"r": 16, "targets": ATTN if name != "gptj" else ["q_proj", "v_proj"]}, **common)

# wide layers and a small vocabulary, so the layers, not the logits, set the peak: the
# dequantized weights (forward and backward), Linear4bit's casts and the adapters' saved inputs
WIDE = {
    "llama": ("meta-llama/Llama-3.2-1B", {"hidden_size": 2048, "intermediate_size": 8192, "num_hidden_layers": 3,
                                          "num_attention_heads": 32, "num_key_value_heads": 8, "head_dim": 64,
                                          "vocab_size": 2048}),
    "mixtral": ("mistralai/Mixtral-8x7B-v0.1", {"hidden_size": 1024, "intermediate_size": 3584,
                                                "num_hidden_layers": 2, "num_attention_heads": 16,
                                                "num_key_value_heads": 4, "num_local_experts": 4,
                                                "vocab_size": 2048}),
    "gemma2": ("google/gemma-2-2b", {"hidden_size": 1536, "intermediate_size": 6144, "num_hidden_layers": 2,
                                     "num_attention_heads": 8, "num_key_value_heads": 4, "head_dim": 128,
                                     "vocab_size": 2048, "sliding_window": 256}),
    "phi3": ("microsoft/Phi-3-mini-4k-instruct", {"hidden_size": 1536, "intermediate_size": 6144,
                                                   "num_hidden_layers": 2, "num_attention_heads": 12,
                                                   "num_key_value_heads": 12, "vocab_size": 2048,
                                                   "pad_token_id": 0}),
    "gptj": ("EleutherAI/gpt-j-6b", {"n_embd": 1536, "n_layer": 2, "n_head": 12, "rotary_dim": 64,
                                     "vocab_size": 2048}),
    "starcoder2": ("bigcode/starcoder2-7b", {"hidden_size": 1536, "intermediate_size": 6144,
                                             "num_hidden_layers": 2, "num_attention_heads": 12,
                                             "num_key_value_heads": 4, "vocab_size": 2048}),
    "qwen3-moe": ("Qwen/Qwen3-30B-A3B", {"hidden_size": 1024, "intermediate_size": 3072,
                                         "moe_intermediate_size": 1536, "num_hidden_layers": 2,
                                         "num_attention_heads": 16, "num_key_value_heads": 4, "head_dim": 64,
                                         "num_experts": 8, "num_experts_per_tok": 2, "vocab_size": 2048}),
    "deepseek-v3": ("deepseek-ai/DeepSeek-V3", {
        "hidden_size": 1024, "intermediate_size": 4096, "moe_intermediate_size": 1024, "num_hidden_layers": 2,
        "first_k_dense_replace": 1, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_group": 2,
        "topk_group": 1, "num_attention_heads": 16, "num_key_value_heads": 16, "q_lora_rank": 384,
        "kv_lora_rank": 256, "qk_nope_head_dim": 64, "qk_rope_head_dim": 32, "v_head_dim": 64,
        "vocab_size": 2048}),
}
for name, (model, shrink) in WIDE.items():
    attn = "eager" if name == "gemma2" else "sdpa"
    common = dict(model=model, arch_override=dict(shrink), attn=attn, mode="qlora", precision="bf16-mixed",
                  note=f"{model} with wide layers and a small vocabulary (arch_override)")
    add(f"{name}-wide-qlora-r16-all-linear-bf16-mixed-b2-s512", batch=2, seq=512,
        lora={"r": 16, "targets": "all-linear"}, **common)
    add(f"{name}-wide-qlora-r16-all-linear-bf16-mixed-b4-s512-ckpt", batch=4, seq=512, grad_ckpt=True,
        lora={"r": 16, "targets": "all-linear"}, **common)
    # the control: plain LoRA on the same layers (a bf16 base under autocast, bf16 activations)
    if name in ("llama", "mixtral", "gptj"):
        plain = dict(common, mode="lora", note=common["note"] + "; plain LoRA, the QLoRA cases' control")
        add(f"{name}-wide-lora-r16-all-linear-bf16-mixed-b2-s512", batch=2, seq=512,
            lora={"r": 16, "targets": "all-linear"}, **plain)
        add(f"{name}-wide-lora-r16-all-linear-bf16-mixed-b4-s512-ckpt", batch=4, seq=512, grad_ckpt=True,
            lora={"r": 16, "targets": "all-linear"}, **plain)

# which adapters change the plain-LoRA control's backward: the wide Llama with LoRA on the
# MLP's output projection only, on its gate and up projections only, on attention only
W = WIDE["llama"]
for tag, targets in (("down", ["down_proj"]), ("gate-up", ["gate_proj", "up_proj"]), ("attn", ATTN)):
    for ckpt in (False, True):
        add(f"llama-wide-lora-r16-{tag}-bf16-mixed-b4-s512" + ("-ckpt" if ckpt else ""), model=W[0],
            arch_override=dict(W[1]), mode="lora", precision="bf16-mixed", batch=4, seq=512, grad_ckpt=ckpt,
            lora={"r": 16, "targets": targets},
            note="plain LoRA on part of the wide Llama's linears, to find which adapter changes the backward")

# attention-only plain LoRA on the wide Mixtral (gradients through frozen routed experts) and
# on the wide GPT-J (through a frozen `gelu_new` MLP)
for name in ("mixtral", "gptj"):
    model, shrink = WIDE[name]
    for ckpt in (False, True):
        add(f"{name}-wide-lora-r16-attn-bf16-mixed-b4-s512" + ("-ckpt" if ckpt else ""), model=model,
            arch_override=dict(shrink), mode="lora", precision="bf16-mixed", batch=4, seq=512, grad_ckpt=ckpt,
            lora={"r": 16, "targets": ATTN if name != "gptj" else ["q_proj", "k_proj", "v_proj", "out_proj"]},
            note="plain LoRA on attention only: the backward goes through the frozen MLP")

# settings, on the small Llama
L = TINY["llama"]
small = dict(model=L[0], arch_override=dict(L[1]), mode="qlora")
add("llama-tiny-qlora-r8-all-linear-bf16-b4-s256", precision="bf16", batch=4, seq=256,
    lora={"r": 8, "targets": "all-linear"}, **small)
add("llama-tiny-qlora-r8-all-linear-fp16-mixed-b2-s256", precision="fp16-mixed", batch=2, seq=256,
    lora={"r": 8, "targets": "all-linear"}, **small)
add("llama-tiny-qlora-r16-all-linear-bf16-mixed-b8-s128-ckpt", precision="bf16-mixed", batch=8, seq=128,
    grad_ckpt=True, lora={"r": 16, "targets": "all-linear"}, **small)
add("llama-tiny-qdora-r8-all-linear-bf16-mixed-b2-s256", precision="bf16-mixed", batch=2, seq=256,
    lora={"r": 8, "targets": "all-linear", "dora": True}, **small)
add("llama-tiny-qlora-r8-all-linear-bf16-mixed-adamw-8bit-b2-s256", precision="bf16-mixed", batch=2, seq=256,
    optimizer="adamw-8bit", lora={"r": 8, "targets": "all-linear"}, **small)

# real sizes (the real CPU runs them in about a minute)
add("qwen2.5-0.5b-qlora-r16-all-linear-bf16-mixed-b1-s512", model="Qwen/Qwen2.5-0.5B", mode="qlora",
    precision="bf16-mixed", batch=1, seq=512, lora={"r": 16, "targets": "all-linear"})
add("llama-3.2-1b-qlora-r16-all-linear-bf16-mixed-b1-s512-ckpt", model="meta-llama/Llama-3.2-1B", mode="qlora",
    precision="bf16-mixed", batch=1, seq=512, grad_ckpt=True, lora={"r": 16, "targets": "all-linear"})

# the 8-bit optimizers: states block-quantized for tensors of 4096+ elements, fp32 below
small_full = dict(model=L[0], arch_override=dict(L[1]), batch=2, seq=256)
for optimizer in ("adamw-8bit", "lion"):
    add(f"llama-tiny-full-bf16-mixed-{optimizer}-b2-s256", mode="full", precision="bf16-mixed",
        optimizer=optimizer, **small_full)
    add(f"llama-tiny-full-bf16-{optimizer}-b2-s256", mode="full", precision="bf16", optimizer=optimizer,
        **small_full)
    add(f"llama-tiny-lora-r16-all-linear-bf16-mixed-{optimizer}-b2-s256", mode="lora", precision="bf16-mixed",
        optimizer=optimizer, lora={"r": 16, "targets": "all-linear"}, **small_full)

with open(os.path.join(HERE, "bnb.jsonl"), "w") as f:
    for case in cases:
        f.write(json.dumps(case) + "\n")
print(f"{len(cases)} cases -> validation/cases/bnb.jsonl")
