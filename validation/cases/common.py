"""What the case generators share: catalog configs as a case's `arch`."""

import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
# Keys the measuring script must not see: they select weights, dtypes or remote code.
DROP = {"architectures", "auto_map", "quantization_config", "torch_dtype", "dtype", "transformers_version"}


def arch(name, **override):
    """The catalog config of `name` (crates/vramfit-sources/data/models/ORG/NAME/config.json), with `override` applied."""
    with open(os.path.join(ROOT, "crates", "vramfit-sources", "data", "models", name, "config.json")) as f:
        d = json.load(f)
    d = {k: v for k, v in d.items() if k not in DROP}
    assert "model_type" in d, name
    d.update(override)
    return d


def short(name):
    """`org/Model-Name` -> `model-name`."""
    return name.split("/")[1].lower()


# catalog architectures cut to a size the real CPU runs in seconds (`arch_override`), shared by
# the case generators so that their records describe the same small models
TINY_GPTJ = {"n_embd": 512, "n_layer": 4, "n_head": 8, "rotary_dim": 32, "vocab_size": 32000}
TINY_DEEPSEEK_V3 = {
    "hidden_size": 512, "intermediate_size": 1024, "moe_intermediate_size": 256, "num_hidden_layers": 3,
    "first_k_dense_replace": 1, "n_routed_experts": 8, "num_experts_per_tok": 2, "n_group": 2,
    "topk_group": 1, "num_attention_heads": 8, "num_key_value_heads": 8, "q_lora_rank": 128,
    "kv_lora_rank": 64, "qk_nope_head_dim": 32, "qk_rope_head_dim": 16, "v_head_dim": 32,
    "vocab_size": 32000}
