"""Reference parameter counts from the real Hugging Face transformers and peft.

For every ``config.json`` under ``crates/vramfit-sources/data/models/`` and ``crates/*/tests/fixtures/``
this script builds the model on the ``meta`` device (no weights, no network),
counts its unique parameters (tied weights once), splits them into categories,
lists persistent buffers, and counts LoRA / DoRA trainable parameters with peft.
One JSON object per config is written to
``validation/data/transformers-param-counts.jsonl``.  The Rust tests use that
file as an independent oracle.

Setup and run (from the repository root)::

    python3 -m venv /work/venv
    /work/venv/bin/pip install torch==2.11.0 'transformers>=5,<6' peft==0.21.2 accelerate
    HF_HUB_OFFLINE=1 /work/venv/bin/python validation/param_counts.py [CONFIG.json ...]

With no arguments every config of the repository is processed; with arguments
only those files are, and the records go to stdout instead of the data file.
"""

import glob
import json
import os
import re
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

import peft  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from peft import LoraConfig, get_peft_model  # noqa: E402
from transformers import AutoModelForCausalLM  # noqa: E402
from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # noqa: E402

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
OUT = os.path.join(REPO, "validation", "data", "transformers-param-counts.jsonl")
VERSIONS = {"torch": torch.__version__, "transformers": transformers.__version__, "peft": peft.__version__}

CATEGORIES = ["embeddings", "attention", "mlp", "experts", "shared_experts", "router",
              "norms", "lm_head", "vision", "other"]
VISION_SEGMENTS = {"vision_model", "vision_tower", "visual", "vision_encoder", "perceiver_resampler",
                   "multi_modal_projector", "mm_projector", "connector", "image_newline",
                   "vision_projection", "vision_embed_tokens"}
ATTN_SEGMENTS = {"self_attn", "attn", "self_attention", "attention", "cross_attn", "encoder_attn", "linear_attn"}
MLP_SEGMENTS = {"mlp", "feed_forward", "ffn", "block_sparse_moe", "moe", "fc1", "fc2"}  # fc1/fc2: OPT
SHARED_SEGMENTS = {"shared_experts", "shared_expert", "shared_mlp"}
LORA_SETTINGS = {
    "r8_q_v": dict(r=8, target_modules=["q_proj", "v_proj"]),
    "r16_all_linear": dict(r=16, target_modules="all-linear"),
    "r8_all_linear_dora": dict(r=8, target_modules="all-linear", use_dora=True),
}


def generic(name):
    """model.layers.12.mlp.gate -> model.layers.N.mlp.gate"""
    return re.sub(r"\.\d+(?=\.|$)", ".N", name)


def discover():
    pats = ["crates/vramfit-sources/data/models/**/config.json", "crates/*/tests/fixtures/**/config.json"]
    found = {os.path.relpath(p, REPO) for pat in pats for p in glob.glob(os.path.join(REPO, pat), recursive=True)}
    return sorted(found)


def load_config(raw, notes):
    d = dict(raw)
    if "quantization_config" in d:
        method = d.pop("quantization_config").get("quant_method", "?")
        notes.append(f"removed quantization_config (quant_method={method}) before building")
    return CONFIG_MAPPING[d["model_type"]].from_dict(d)


def model_class(config, raw):
    """The class named by architectures[0] if transformers has it for this config, else the causal-LM auto class."""
    arch = (raw.get("architectures") or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    if cls is not None and getattr(cls, "config_class", None) is type(config):
        return cls
    return AutoModelForCausalLM._model_mapping[type(config)]


def architecture_alias(raw):
    """The model_type of the transformers class that architectures[0] names, for a
    remote-code model_type whose architecture transformers ships (Kimi-K2 names
    DeepseekV3ForCausalLM); None when transformers has no such class."""
    arch = (raw.get("architectures") or [None])[0]
    cls = getattr(transformers, arch, None) if arch else None
    model_type = getattr(getattr(cls, "config_class", None), "model_type", None)
    return model_type if model_type in CONFIG_MAPPING else None


def build(cls, config):
    with torch.device("meta"):
        return cls._from_config(config) if hasattr(cls, "_from_config") else cls.from_config(config)


def classify(name, model, modules, lm_head_prefix, embed_prefixes):
    """Category of parameter `name`, decided from the path and the classes of the modules holding it."""
    parts = name.split(".")
    paths = [".".join(parts[:i]) for i in range(len(parts))]  # ancestors, outermost first ("" = root)
    segs = parts[:-1]
    classes = [type(modules[p]).__name__ for p in paths]
    owner = modules[paths[-1]]
    if any(s in VISION_SEGMENTS for s in segs) or any("Vision" in c for c in classes[1:]):
        return "vision"
    if lm_head_prefix and (name == lm_head_prefix or name.startswith(lm_head_prefix + ".")):
        return "lm_head"
    if any(s in SHARED_SEGMENTS for s in segs):
        return "shared_experts"
    if "experts" in segs or any(c.endswith("Experts") for c in classes):
        return "experts"
    for i, s in enumerate(segs):
        parent = modules[paths[i]]
        if (s == "router" or "Router" in classes[i + 1] or s == "shared_expert_gate"
                or (s == "gate" and hasattr(parent, "experts"))):
            return "router"
    # "...Attention" classes, but not wrappers such as IdeficsGatedCrossAttentionLayer (they hold an MLP too)
    if any(s in ATTN_SEGMENTS for s in segs) or any(re.search(r"Attention\d*$", c) for c in classes[1:]):
        return "attention"
    if isinstance(owner, torch.nn.Embedding) or paths[-1] in embed_prefixes:
        return "embeddings"
    if isinstance(owner, (torch.nn.LayerNorm, torch.nn.GroupNorm)) or "norm" in type(owner).__name__.lower():
        return "norms"
    if any(s in MLP_SEGMENTS for s in segs) or any("MLP" in c for c in classes[1:]):
        return "mlp"
    return "other"


def count(model):
    modules = dict(model.named_modules())
    out_emb = model.get_output_embeddings() if hasattr(model, "get_output_embeddings") else None
    in_emb = model.get_input_embeddings() if hasattr(model, "get_input_embeddings") else None
    name_of = {id(m): n for n, m in modules.items()}
    lm_head_prefix = name_of.get(id(out_emb)) if out_emb is not None else None
    embed_prefixes = {name_of[id(in_emb)]} if in_emb is not None and id(in_emb) in name_of else set()

    seen, breakdown, other_names, aliases = {}, dict.fromkeys(CATEGORIES, 0), {}, []
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:  # tied / shared tensor: counted once, under its first name
            aliases.append(f"{generic(name)} -> {generic(seen[id(p)])}")
            continue
        seen[id(p)] = name
        cat = classify(name, model, modules, lm_head_prefix, embed_prefixes)
        breakdown[cat] += p.numel()
        if cat == "other":
            other_names[generic(name)] = other_names.get(generic(name), 0) + p.numel()

    persistent, non_persistent = {}, {}
    for mname, mod in modules.items():
        for bname, b in mod._buffers.items():
            if b is None:
                continue
            full = generic(f"{mname}.{bname}" if mname else bname)
            target = non_persistent if bname in mod._non_persistent_buffers_set else persistent
            target[full] = target.get(full, 0) + b.numel()
    return {
        "total": sum(breakdown.values()),
        "breakdown": breakdown,
        "other_names": other_names,
        "tied_aliases": sorted(set(aliases)),
        "persistent_buffers": {"count": sum(persistent.values()), "names": persistent},
        "non_persistent_buffer_names": sorted(non_persistent),
    }


def lora_counts(cls, config):
    """Trainable parameters after get_peft_model, per setting, with a split by targeted module or parameter."""
    results = {}
    for key, kw in LORA_SETTINGS.items():
        try:
            model = build(cls, config)
            with torch.device("meta"):
                pm = get_peft_model(model, LoraConfig(bias="none", lora_dropout=0.0, **kw))
            per_target, magnitude, seen = {}, 0, set()
            for n, p in pm.named_parameters():
                if not p.requires_grad or id(p) in seen:
                    continue
                seen.add(id(p))
                holder, sep, _ = n.partition(".lora_")
                if "lora_magnitude_vector" in n:
                    magnitude += p.numel()
                wrapped = getattr(pm.get_submodule(holder), "parameter_name", None) if sep else None
                target = generic(holder.removeprefix("base_model.model.").replace(".base_layer", ""))
                target = (target + ":" + wrapped if wrapped else target) if sep else "not_lora:" + generic(n)
                per_target[target] = per_target.get(target, 0) + p.numel()
            cfg = pm.peft_config["default"]
            targets = cfg.target_modules
            results[key] = {
                "trainable": sum(per_target.values()),
                "dora_magnitude": magnitude,
                "adapted_modules": sum(1 for n, _ in pm.named_modules() if n.endswith(".lora_A")),
                "per_target": per_target,
                "peft_target_modules": sorted({t.rsplit(".", 1)[-1] for t in targets}) if not isinstance(targets, str) else targets,
                "peft_target_parameters": sorted(cfg.target_parameters or []),
                "peft_rank_pattern": dict(cfg.rank_pattern or {}),
            }
        except Exception as e:  # noqa: BLE001 - the error text is the record
            results[key] = {"error": f"{type(e).__name__}: {e}"[:500]}
    return results


def process(rel):
    path = rel if os.path.isabs(rel) else os.path.join(REPO, rel)
    rec = {"config": os.path.relpath(path, REPO), "model_type": None, "class": None,
           "versions": VERSIONS, "notes": []}
    try:
        with open(path) as f:
            raw = json.load(f)
        rec["model_type"] = mt = raw.get("model_type")
        if not mt:
            rec["status"] = "skipped: no model_type"
            return rec
        if mt not in CONFIG_MAPPING:
            alias = architecture_alias(raw)
            if alias is None:
                how = "has auto_map" if "auto_map" in raw else "model_type unknown to transformers"
                rec["status"] = f"skipped: remote code ({how})"
                return rec
            rec["notes"].append(f"model_type {mt} is remote code; built as transformers' {alias} "
                                f"(the class its architectures names)")
            raw = dict(raw, model_type=alias)
        config = load_config(raw, rec["notes"])
        cls = model_class(config, raw)
        rec["class"] = cls.__name__
        model = build(cls, config)
        rec.update(count(model))
        del model
        rec["lora"] = lora_counts(cls, config)
        rec["status"] = "ok"
    except Exception as e:  # noqa: BLE001
        rec["status"] = f"error: {type(e).__name__}: {e}"[:800]
    return rec


def main(argv):
    paths = argv or discover()
    out = sys.stdout if argv else open(OUT + ".tmp", "w")
    for rel in paths:
        rec = process(rel)
        out.write(json.dumps(rec, sort_keys=True) + "\n")
        out.flush()
        print(f"{rec['status'][:60]:60} {rec.get('total', ''):>16} {rec['config']}", file=sys.stderr)
    if not argv:
        out.close()
        os.replace(OUT + ".tmp", OUT)


if __name__ == "__main__":
    os.makedirs(os.path.dirname(OUT), exist_ok=True)
    main(sys.argv[1:])
