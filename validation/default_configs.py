"""The default config of every causal-LM ``model_type`` transformers ships, with its parameter count.

For each ``model_type`` in transformers' ``MODEL_FOR_CAUSAL_LM_MAPPING_NAMES`` this
script instantiates the type's ``*Config()`` with no arguments, writes it as
``save_pretrained`` would (``to_json_string(use_diff=True)``: the keys a real
``config.json`` of that type carries), builds the model class on the ``meta``
device (no weights, no network) and counts its unique parameters (tied weights
once), with the counting of ``param_counts.py``.

The records go to ``crates/vramfit-sources/tests/fixtures/transformers-default-configs.jsonl``,
one JSON object a line: ``model_type``, ``class``, ``config`` and ``total``, or
``error`` where transformers itself cannot make the default config or build the
model from it (the record then has no ``total``, and no ``config`` when the
config class refused its own defaults). The Rust test
``default_configs.rs`` feeds every config to vramfit's parser and checks that it
either counts exactly ``total`` or refuses with an error that names a key: the
guard against a silent guess on an architecture vramfit does not know.

Setup and run (from the repository root; versions as in ``validation/README.md``)::

    /work/venv/bin/python validation/default_configs.py
"""

import json
import os
import sys
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
warnings.filterwarnings("ignore")

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import param_counts  # noqa: E402
import transformers  # noqa: E402
from transformers.models.auto.configuration_auto import CONFIG_MAPPING  # noqa: E402
from transformers.models.auto.modeling_auto import MODEL_FOR_CAUSAL_LM_MAPPING_NAMES  # noqa: E402
from transformers.models.auto.modeling_auto import (  # noqa: E402
    MODEL_FOR_IMAGE_TEXT_TO_TEXT_MAPPING_NAMES as IMAGE_TEXT_NAMES,
)

OUT = os.path.join(param_counts.REPO, "crates", "vramfit-sources", "tests", "fixtures",
                   "transformers-default-configs.jsonl")


def record(model_type):
    rec = {"model_type": model_type, "transformers": transformers.__version__}
    try:
        config = CONFIG_MAPPING[model_type]()
        rec["config"] = json.loads(config.to_json_string(use_diff=True))
        cls = getattr(transformers, MODEL_FOR_CAUSAL_LM_MAPPING_NAMES[model_type])
        rec["class"] = cls.__name__
        try:
            model = param_counts.build(cls, config)
        except TypeError:
            # Some defaults leave `head_dim` None, which their own attention cannot
            # take (`ministral`); real checkpoints state it. Fill it as the
            # config's docstring describes (hidden_size // num_attention_heads).
            if getattr(config, "head_dim", 0) is not None or not hasattr(config, "num_attention_heads"):
                raise
            config.head_dim = config.hidden_size // config.num_attention_heads
            rec["config"]["head_dim"] = config.head_dim
            rec["note"] = "head_dim filled: the type's default leaves it None"
            model = param_counts.build(cls, config)
        except AttributeError:
            # The causal-LM class of some multimodal types (`qwen3_5`) takes only their
            # text config; the outer config builds the class its checkpoints name,
            # the image-text-to-text one (as `param_counts.py` does by `architectures`).
            if not hasattr(config, "text_config") or model_type not in IMAGE_TEXT_NAMES:
                raise
            cls = getattr(transformers, IMAGE_TEXT_NAMES[model_type])
            rec["class"] = cls.__name__
            rec["note"] = "the causal-LM class takes the text config only; built as the image-text class"
            model = param_counts.build(cls, config)
        rec["total"] = param_counts.count(model)["total"]
    except Exception as e:  # noqa: BLE001 - the error text is the record
        rec["error"] = f"{type(e).__name__}: {e}"[:300]
    return rec


def main():
    with open(OUT + ".tmp", "w") as out:
        for model_type in sorted(MODEL_FOR_CAUSAL_LM_MAPPING_NAMES):
            rec = record(model_type)
            out.write(json.dumps(rec, sort_keys=True) + "\n")
            out.flush()
            print(f"{model_type:28} {rec.get('total', rec.get('error', ''))}", file=sys.stderr)
    os.replace(OUT + ".tmp", OUT)


if __name__ == "__main__":
    main()
