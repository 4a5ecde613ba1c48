"""What the case generators share: catalog configs as a case's `arch`."""

import json
import os

ROOT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
# Keys the measuring script must not see: they select weights, dtypes or remote code.
DROP = {"architectures", "auto_map", "quantization_config", "torch_dtype", "dtype", "transformers_version"}


def arch(name, **override):
    """The catalog config of `name` (data/models/ORG/NAME/config.json), with `override` applied."""
    with open(os.path.join(ROOT, "data", "models", name, "config.json")) as f:
        d = json.load(f)
    d = {k: v for k, v in d.items() if k not in DROP}
    assert "model_type" in d, name
    d.update(override)
    return d


def short(name):
    """`org/Model-Name` -> `model-name`."""
    return name.split("/")[1].lower()
