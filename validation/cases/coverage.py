#!/usr/bin/env python3
"""Writes coverage.jsonl: harness cases (validation/measure.py's format) for what the
oracle's records (data/oracle-*.jsonl) leave out.

- Families of the catalog (crates/vramfit-sources/data/models) that no record measures yet: GPT-J, XGLM,
  Gemma 1, DeepSeek-V3 (MLA + 256-expert MoE) and Gemma 3's multimodal layout
  (Gemma3ForConditionalGeneration, run on text), each with inference, full
  fine-tuning and LoRA, from their real configs on the fake backend.
- Modes missing for families the oracle measured only in part: full fine-tuning of
  StarCoder2, Falcon, Mixtral, Qwen3-MoE, Qwen1.5-MoE, DeepSeek-V2 and gpt-oss, LoRA
  of StarCoder2 and gpt-oss.
- Settings no record has, on Llama-3.2-1B: Adafactor (transformers' defaults), DoRA,
  LoRA under autocast (half-precision base, fp32 adapters), gradient accumulation.
- fake == cpu pairs (ids @fake / @cpu) on small models, for the new settings and the
  new families' code paths (MoE routing included), and one QLoRA case, which the
  fake backend skips (QLoRA is measured on the real CPU: cases/bnb.py).

Not here: Qwen 1 (`qwen`) and LLaMA-MoE (`llama_moe`) are remote code, not in
transformers; IDEFICS's forward requires image inputs (the CLI's workloads are text).
XGLM has no SDPA support in transformers 5 (it refuses attn_implementation="sdpa"),
so its cases run eager, as gemma2 and gpt-oss do. MoE full fine-tuning runs in pure
bf16: transformers' default experts kernel (`grouped_mm`) accepts only bf16, so fp32
master weights (`-mixed`) fail there on CPU and GPU alike.

Run from the repository root:

    /work/venv/bin/python validation/cases/coverage.py
    /work/venv/bin/python validation/measure.py --matrix validation/cases/coverage.jsonl \\
        --only '@fake$' --out validation/data/harness-coverage-fake.jsonl
    /work/venv/bin/python validation/measure.py --matrix validation/cases/coverage.jsonl \\
        --only '@cpu$' --out validation/data/harness-coverage-cpu.jsonl
"""
import json
import os

from common import TINY_DEEPSEEK_V3, TINY_GPTJ

HERE = os.path.dirname(os.path.abspath(__file__))
ATTN = ["q_proj", "k_proj", "v_proj", "o_proj"]
cases = []


def short(model):
    return model.split("/")[-1].lower()


def add(cid, backend="fake", **case):
    case = {"id": f"{cid}@{backend}", "backend": backend, **case}
    assert case["id"] not in {c["id"] for c in cases}, case["id"]
    cases.append(case)


def infer(model, dtype="bf16", batch=1, seq=1024, gen=16, attn="sdpa", tag="", **kw):
    cid = f"{short(model)}{tag}-infer-{dtype}-b{batch}-s{seq}-gen{gen}" + ("-eager" if attn == "eager" else "")
    add(cid, model=model, mode="inference", dtype=dtype, batch=batch, seq=seq, gen=gen, attn=attn, **kw)


def full(model, precision="bf16-mixed", batch=1, seq=1024, optimizer="adamw", ckpt=False, attn="sdpa", tag="", **kw):
    cid = (f"{short(model)}{tag}-full-{precision}-{optimizer}-b{batch}-s{seq}" + ("-ckpt" if ckpt else "")
           + ("-eager" if attn == "eager" else "")
           + (f"-accum{kw['grad_accum']}" if kw.get("grad_accum", 1) > 1 else ""))
    add(cid, model=model, mode="full", precision=precision, optimizer=optimizer, batch=batch, seq=seq,
        grad_ckpt=ckpt, attn=attn, **kw)


def lora(model, targets=None, r=16, precision="bf16-mixed", batch=1, seq=1024, dora=False, ckpt=False,
         attn="sdpa", tag="", **kw):
    targets = targets or ATTN
    names = "all-linear" if targets == "all-linear" else ("attn" if targets == ATTN else
                                                          "-".join(t.replace("_proj", "") for t in targets))
    cid = (f"{short(model)}{tag}-{'dora' if dora else 'lora'}-r{r}-{names}-{precision}-b{batch}-s{seq}"
           + ("-ckpt" if ckpt else "") + ("-eager" if attn == "eager" else ""))
    add(cid, model=model, mode="lora", precision=precision, batch=batch, seq=seq, grad_ckpt=ckpt, attn=attn,
        lora={"r": r, "alpha": 2 * r, "targets": targets, "dora": dora}, **kw)


# ---- families not measured before: inference, full fine-tuning, LoRA (real configs, fake backend)
GPTJ = "EleutherAI/gpt-j-6b"
infer(GPTJ, seq=2048)
full(GPTJ, ckpt=True)
lora(GPTJ, targets=["q_proj", "k_proj", "v_proj", "out_proj"])

XGLM = "facebook/xglm-4.5B"  # no SDPA in transformers 5; dropout 0.1 as in its config
infer(XGLM, attn="eager")
full(XGLM, seq=512, attn="eager")
lora(XGLM, targets=["q_proj", "k_proj", "v_proj", "out_proj"], batch=2, seq=512, precision="bf16", attn="eager")

GEMMA = "google/gemma-2b"  # 256k vocabulary, one KV head
infer(GEMMA, batch=4, gen=32)
full(GEMMA, ckpt=True)
lora(GEMMA, targets="all-linear", batch=2)
infer("google/gemma-7b", dtype="fp16", seq=4096)

DSV3 = "deepseek-ai/DeepSeek-V3"  # MLA, 3 dense layers then 58 MoE layers of 256 routed experts
MLA = ["q_a_proj", "q_b_proj", "kv_a_proj_with_mqa", "kv_b_proj", "o_proj"]
infer(DSV3, seq=512, gen=8)
lora(DSV3, targets=MLA, seq=512, ckpt=True)
full(DSV3, precision="bf16", seq=512, ckpt=True)  # all 671B parameters
full(DSV3, precision="bf16", seq=512, tag="-5layers", arch_override={"num_hidden_layers": 5},
     note="DeepSeek-V3 cut to its first 5 layers (3 dense, 2 MoE): activations beside the weights")

GEMMA3 = "google/gemma-3-4b-pt"  # Gemma3ForConditionalGeneration (vision tower built, text input)
infer(GEMMA3, seq=2048)
full(GEMMA3, ckpt=True)
lora(GEMMA3, batch=2)

# ---- modes missing for families the oracle measured in part
full("bigcode/starcoder2-7b", ckpt=True)
lora("bigcode/starcoder2-7b", targets="all-linear", r=8)
full("tiiuae/falcon-7b", ckpt=True)
full("mistralai/Mixtral-8x7B-v0.1", precision="bf16", seq=512, ckpt=True)
full("Qwen/Qwen3-30B-A3B", precision="bf16", seq=512, ckpt=True)
full("Qwen/Qwen1.5-MoE-A2.7B", precision="bf16", seq=512)
full("deepseek-ai/DeepSeek-V2-Lite", precision="bf16", seq=512, ckpt=True)
lora("openai/gpt-oss-20b", precision="bf16", attn="eager")
full("openai/gpt-oss-20b", precision="bf16", seq=512, ckpt=True, attn="eager")

# ---- settings no record has, on Llama-3.2-1B
L1 = "meta-llama/Llama-3.2-1B"
full(L1, precision="fp32", seq=512, optimizer="adafactor")
full(L1, precision="bf16", seq=512, optimizer="adafactor")
full(L1, precision="bf16-mixed", batch=2, seq=512, optimizer="adafactor", ckpt=True)
lora(L1, targets="all-linear", batch=2, seq=512, dora=True)
lora(L1, targets=["q_proj", "v_proj"], r=8, precision="bf16", batch=2, seq=512, dora=True)
lora(L1, targets="all-linear", batch=2, seq=1024, dora=True, ckpt=True)
lora(L1, targets="all-linear", batch=2, seq=512)
lora(L1, precision="fp16-mixed", batch=2, seq=512)
lora(L1, targets="all-linear", precision="fp32", batch=2, seq=512, optimizer="adafactor")
full(L1, precision="bf16-mixed", seq=512, grad_accum=2)
full(L1, precision="bf16", batch=4, seq=512, optimizer="sgd-momentum", optimizer_impl="forloop")
add("llama-3.2-1b-qlora-r16-all-linear-bf16-mixed-b1-s512", model=L1, mode="qlora", precision="bf16-mixed",
    seq=512, lora={"r": 16, "targets": "all-linear"},
    note="QLoRA on fake tensors: skipped (bitsandbytes quantizes real data; measured on the CPU by cases/bnb.py)")

# ---- fake == cpu pairs on small models
S = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 512, "intermediate_size": 1376,
     "num_hidden_layers": 8, "num_attention_heads": 8, "num_key_value_heads": 8,
     "max_position_embeddings": 4096, "tie_word_embeddings": False}
TINY = {  # the new families at a size the real CPU runs in seconds
    "gptj": ("EleutherAI/gpt-j-6b", TINY_GPTJ),
    "xglm": ("facebook/xglm-4.5B", {"d_model": 512, "ffn_dim": 1024, "num_layers": 4, "attention_heads": 8,
                                    "vocab_size": 32000}),
    "gemma": ("google/gemma-2b", {"hidden_size": 512, "intermediate_size": 1024, "num_hidden_layers": 4,
                                  "num_attention_heads": 8, "num_key_value_heads": 1, "head_dim": 64,
                                  "vocab_size": 32000}),
    "deepseek-v3": ("deepseek-ai/DeepSeek-V3", TINY_DEEPSEEK_V3),
}
for backend in ("fake", "cpu"):
    add("S-full-fp32-adafactor-b2-s512", backend, arch=S, mode="full", precision="fp32", optimizer="adafactor",
        batch=2, seq=512)
    add("S-full-bf16-adafactor-b2-s512", backend, arch=S, mode="full", precision="bf16", optimizer="adafactor",
        batch=2, seq=512)
    add("S-dora-r16-all-linear-bf16-mixed-b2-s512", backend, arch=S, mode="lora", precision="bf16-mixed",
        batch=2, seq=512, lora={"r": 16, "targets": "all-linear", "dora": True})
    add("S-lora-r16-attn-bf16-mixed-b2-s512-ckpt", backend, arch=S, mode="lora", precision="bf16-mixed",
        batch=2, seq=512, grad_ckpt=True, lora={"r": 16, "targets": ATTN})
    add("S-full-fp32-adamw-b1-s512-accum2", backend, arch=S, mode="full", precision="fp32", batch=1, seq=512,
        grad_accum=2)
    add("S-infer-fp32-b4-s256-gen8", backend, arch=S, mode="inference", dtype="fp32", batch=4, seq=256, gen=8,
        inference_impl="manual")
    for name, (model, shrink) in TINY.items():
        attn = "eager" if name == "xglm" else "sdpa"
        # transformers' default MoE kernel (grouped_mm) takes bf16 only
        kind = "bf16" if name == "deepseek-v3" else "fp32"
        common = dict(model=model, arch_override=dict(shrink), batch=2, seq=256, attn=attn,
                      note=f"{model} cut to a small size (arch_override) for the real-CPU check")
        add(f"{name}-tiny-full-{kind}-adamw-b2-s256", backend, mode="full", precision=kind, **common)
        add(f"{name}-tiny-lora-r8-all-linear-{kind}-b2-s256", backend, mode="lora", precision=kind,
            lora={"r": 8, "targets": "all-linear"}, **common)
        add(f"{name}-tiny-infer-{kind}-b2-s256-gen8", backend, mode="inference", dtype=kind, gen=8,
            inference_impl="manual", **common)

out = os.path.join(HERE, "coverage.jsonl")
with open(out, "w") as f:
    for case in cases:
        f.write(json.dumps(case) + "\n")
print(f"{len(cases)} cases -> {out}")
