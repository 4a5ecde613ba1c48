"""vramfit: will this model fit, on which GPUs, and how many?

GPU memory of running and training transformer models, exact to a fraction
of a percent and computed in microseconds. This package is the ``vramfit``
command in process: each function takes the command's long flags as keyword
arguments (``_`` for ``-``), with its defaults, and returns the document the
command prints with ``--json``, as an object with attribute access::

    import vramfit

    r = vramfit.train("llama-3.1-8b", method="lora", grad_ckpt=True, gpu="rtx-4090")
    r.memory.peak_allocated_bytes   # what torch.cuda.max_memory_allocated() reports
    r.fits                          # on the RTX 4090
    r.to_dict()                     # the same as `vramfit train ... --json`

MODEL is a catalog name (``llama-3.1-8b``), a Hugging Face repo id, a path to a
``config.json``, a folder or a ``.gguf`` file, a ``dict`` holding a config, or
any object with a ``to_dict()`` (a transformers ``PretrainedConfig``).
Errors are exceptions: :class:`Error` and its subclasses.
"""

from __future__ import annotations

import json
from typing import Any, Dict, Iterator, List, NoReturn, Optional, Sequence, Union

from . import _native

__all__ = [
    "Document",
    "Error",
    "HeaderError",
    "HubError",
    "InvalidSetting",
    "ModelNotFound",
    "fit",
    "gpus",
    "infer",
    "inspect",
    "models",
    "params",
    "rules",
    "run",
    "train",
    "train_from_args",
]

__version__: str = _native.__version__

#: What MODEL may be.
Model = Union[str, Dict[str, Any], Any]


class Error(Exception):
    """Any error of vramfit, with the message the CLI prints."""

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        #: The CLI's exit code for it (1 an error about the model or input, 2 bad usage).
        self.exit_code = exit_code


class ModelNotFound(Error):
    """The model is not a file, not in the catalog, not cached and not on the Hub."""


class InvalidSetting(Error):
    """A setting vramfit (or the framework it models) cannot run."""

    def __init__(self, message: str, setting: str, exit_code: int = 1) -> None:
        super().__init__(message, exit_code)
        #: The setting at fault, as the CLI's flag (``--batch-size``); empty when unknown.
        self.setting = setting


class HubError(Error):
    """The Hugging Face Hub could not answer."""


class HeaderError(Error):
    """A safetensors or GGUF header (or index) is invalid."""


class Document:
    """A JSON document of the CLI, with attribute access.

    ``doc.memory.peak_allocated_bytes`` reads ``doc.to_dict()["memory"]["peak_allocated_bytes"]``;
    nested objects are Documents, lists of objects lists of Documents.
    """

    __slots__ = ("_data",)

    def __init__(self, data: Dict[str, Any]) -> None:
        self._data = data

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_"):  # copy, pickle and the slot itself, before it is set
            raise AttributeError(name)
        try:
            return _wrap(self._data[name])
        except KeyError:
            raise AttributeError(f"no field `{name}` (fields: {', '.join(self._data)})") from None

    def __reduce__(self) -> tuple[type, tuple[Dict[str, Any]]]:
        return (Document, (self._data,))

    def __getitem__(self, name: str) -> Any:
        return _wrap(self._data[name])

    def __contains__(self, name: object) -> bool:
        return name in self._data

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __dir__(self) -> List[str]:
        return [*self._data, "to_dict", "components", "fits"]

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Document) and other._data == self._data

    def __repr__(self) -> str:
        return f"Document({json.dumps(self._data)[:200]})"

    def to_dict(self) -> Dict[str, Any]:
        """The document as the CLI prints it with ``--json`` (a deep copy)."""
        copy: Dict[str, Any] = json.loads(json.dumps(self._data))
        return copy

    @property
    def components(self) -> List[Any]:
        """What the peak holds, each with its bytes and formula (``memory.components``;
        a document with a ``components`` field of its own gives that)."""
        if "components" in self._data:
            return [_wrap(part) for part in self._data["components"]]
        memory = self._data.get("memory") or {}
        return [_wrap(part) for part in memory.get("components", [])]

    @property
    def fits(self) -> Optional[bool]:
        """Whether the job fits the chosen GPU (``gpu.fits``; a document with a ``fits``
        field of its own gives that); None without ``gpu=``."""
        if "fits" in self._data:
            return bool(self._data["fits"])
        gpu = self._data.get("gpu")
        return None if gpu is None else bool(gpu["fits"])


def _wrap(value: Any) -> Any:
    if isinstance(value, dict):
        return Document(value)
    if isinstance(value, list):
        return [_wrap(item) for item in value]
    return value


#: Flags that take ``on``/``off``: ``flash_attn=False`` is ``--flash-attn off``.
_SWITCHES = {"flash_attn"}
#: Switches on by default, turned off by a ``--no-…`` flag: ``fit=False`` is ``--no-fit``.
_NEGATED = {"fit": "no_fit", "kv_offload": "no_kv_offload"}


def _flags(options: Dict[str, Any]) -> List[str]:
    """Keyword arguments as the CLI's long flags: ``grad_ckpt=True`` → ``--grad-ckpt``."""
    argv: List[str] = []
    for key, value in options.items():
        if key in _SWITCHES and isinstance(value, bool):
            value = "on" if value else "off"
        elif key in _NEGATED and isinstance(value, bool):
            key, value = _NEGATED[key], not value
        if value is None or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        if value is True:
            argv.append(flag)
        elif isinstance(value, (list, tuple)):
            argv += [flag, ",".join(str(item) for item in value)]
        else:
            argv += [flag, str(value)]
    return argv


def _model(model: Model) -> tuple[str, Optional[tuple[str, str]]]:
    """The MODEL argument, and the config text when the model is a dict or a config object."""
    if isinstance(model, str):
        return model, None
    if hasattr(model, "__fspath__"):
        return str(model.__fspath__()), None
    if isinstance(model, dict):
        return "dict", ("dict", json.dumps(model, default=str))
    to_dict = getattr(model, "to_dict", None)
    if callable(to_dict):
        name = type(model).__name__
        return name, (name, json.dumps(to_dict(), default=str))
    raise InvalidSetting(
        f"MODEL must be a name, a path, a dict or an object with to_dict(), not {type(model).__name__}",
        "model",
    )


_ERRORS = {"model_not_found": ModelNotFound, "hub": HubError, "header": HeaderError}


def _raise(code: int, stderr: str, kind: Optional[str], setting: Optional[str]) -> NoReturn:
    message = stderr.strip().removeprefix("error: ")
    if kind == "invalid_setting":
        raise InvalidSetting(message, setting or "", code)
    raise _ERRORS.get(kind or "", Error)(message, code)


def run(argv: Sequence[str], config: Optional[tuple[str, str]] = None) -> str:
    """Runs ``vramfit`` with ``argv`` (no program name) and returns what it prints.

    ``config`` is ``(name, config.json text)`` standing for the model argument.
    Raises :class:`Error` (or a subclass) when the command fails.
    """
    code, stdout, stderr, kind, setting = _native.run(["vramfit", *argv], config)
    if code != 0:
        _raise(code, stderr, kind, setting)
    return stdout


def _document(command: str, model: Optional[Model], options: Dict[str, Any]) -> Document:
    argv = ["vramfit", command]
    config = None
    if model is not None:
        name, config = _model(model)
        argv.append(name)
    argv += _flags(options)
    argv.append("--json")
    code, data, stderr, kind, setting = _native.run_document(argv, config)
    if code not in (0, 3):  # 3: `check=True` and it does not fit; the document says so
        _raise(code, stderr, kind, setting)
    if data is None:
        raise Error("vramfit printed no JSON document (help and version print text: use run())", code)
    return Document(data)


def params(model: Model, **options: Any) -> Document:
    """Exact parameter counts by component; with ``lora_r``/``lora_targets``/``dora``,
    the adapters as PEFT creates them. ``vramfit params MODEL --json``."""
    return _document("params", model, options)


def infer(model: Model, **options: Any) -> Document:
    """Generation memory (``generate()``), or a serving engine's with ``engine="vllm"``,
    ``"sglang"`` or ``"llama.cpp"``. ``vramfit infer MODEL --json``."""
    return _document("infer", model, options)


def train(model: Model, **options: Any) -> Document:
    """One training step's memory: ``method`` (full, lora, qlora), ``precision``,
    ``optimizer``, ``batch_size``, ``seq_len``, ``grad_ckpt``, ``gpus`` and ``strategy``,
    … ``vramfit train MODEL --json``."""
    return _document("train", model, options)


def fit(model: Model, **options: Any) -> Document:
    """The estimate inverted: how many GPUs of each kind, the largest batch and the
    longest sequence. ``vramfit fit MODEL --json``."""
    return _document("fit", model, options)


def rules(model: Model, **options: Any) -> Document:
    """The popular rules of thumb beside vramfit's figure. ``vramfit rules MODEL --json``."""
    return _document("rules", model, options)


def inspect(path: str, **options: Any) -> Document:
    """A checkpoint read from its headers alone (safetensors, GGUF, a folder or a Hub
    repo). ``vramfit inspect PATH --json``."""
    return _document("inspect", path, options)


def models(**options: Any) -> Document:
    """The embedded model catalog. ``vramfit models --json``.

    ``family="qwen3"`` keeps the models whose ``model_type`` starts with it or whose
    repository id contains it; ``since="2025"`` (or ``"2025-06"``) those released then
    or later. Each entry has ``id``, ``aliases``, ``release``, ``model_type``,
    ``params_total``, the published count, and ``memory``: ``"all"``, ``"generate"``
    (transformers' ``generate()`` only) or ``"none"`` (parameters only)."""
    return _document("models", None, options)


def gpus(**options: Any) -> Document:
    """The accelerator catalog (NVIDIA, AMD, Apple, Intel), each figure with its
    source. ``vramfit gpus --json``.

    ``vendor="amd"`` and ``min_memory="48GiB"`` filter it; ``local=True`` lists this
    machine's accelerators instead. Elsewhere ``gpu=`` takes a catalog name, a size
    (``gpu="24GiB"``), ``"local"``, or for llama.cpp several GPUs
    (``gpu="rtx-4090,rtx-3090", tensor_split="3,1"``)."""
    return _document("gpus", None, options)


_OPTIMIZERS = {
    "adamw_torch": ("adamw", "foreach"),
    "adamw_torch_fused": ("adamw", "fused"),
    "adamw_bnb_8bit": ("adamw-8bit", None),
    "adamw_8bit": ("adamw-8bit", None),
    "paged_adamw_8bit": ("paged-adamw-8bit", None),
    "adafactor": ("adafactor", None),
    "sgd": ("sgd", None),
    "lion_32bit": ("lion", None),
}


def train_from_args(model: Model, args: Any, lora: Any = None, **options: Any) -> Document:
    """The training step a Hugging Face ``TrainingArguments`` (and a peft ``LoraConfig``)
    describe, read by attribute, so a script can check its plan before it loads a model.

    From ``args``: ``per_device_train_batch_size``, ``gradient_accumulation_steps``,
    ``gradient_checkpointing``, ``bf16``/``fp16`` (autocast over fp32 weights, a model
    loaded in fp32; for one loaded in bf16 pass ``precision="bf16"``; neither: fp32),
    ``optim`` (``adamw_torch``, ``adamw_torch_fused``, ``adamw_bnb_8bit``,
    ``paged_adamw_8bit``, ``adafactor``, ``sgd``, ``lion_32bit``) and, when present,
    TRL's ``max_length``/``max_seq_length``. From ``lora``: ``r``, ``target_modules``
    (a list or ``"all-linear"``; None is refused, as PEFT's per-architecture default is
    not guessed), ``use_dora``, ``lora_alpha``. Settings these objects hold that vramfit
    does not model (``fsdp``, ``deepspeed``, ``optim_args``, ``modules_to_save``,
    ``layers_to_transform``, ``rank_pattern``, ``bias``) raise :class:`InvalidSetting`.
    Keyword ``options`` (``gpu=``, ``method="qlora"``, ``seq_len=``, …) are added, and win.
    """
    settings: Dict[str, Any] = {}

    def read(name: str) -> Any:
        return getattr(args, name, None)

    if read("per_device_train_batch_size") is not None:
        settings["batch_size"] = int(read("per_device_train_batch_size"))
    if read("gradient_accumulation_steps") is not None:
        settings["grad_accum"] = int(read("gradient_accumulation_steps"))
    settings["grad_ckpt"] = bool(read("gradient_checkpointing"))
    settings["precision"] = "bf16-mixed" if read("bf16") else "fp16-mixed" if read("fp16") else "fp32"
    optim = read("optim")
    if optim is not None:
        name = str(getattr(optim, "value", optim))
        if name not in _OPTIMIZERS:
            raise InvalidSetting(f"optim `{name}` is not one vramfit models ({', '.join(_OPTIMIZERS)})", "optim")
        optimizer, implementation = _OPTIMIZERS[name]
        settings["optimizer"] = optimizer
        if implementation is not None:
            settings["optimizer_impl"] = implementation
    for length in ("max_length", "max_seq_length"):
        if isinstance(read(length), int):
            settings["seq_len"] = read(length)
            break
    # What TrainingArguments can say that this reading does not model is refused,
    # never dropped: several GPUs come as gpus=/strategy= options.
    for name in ("fsdp", "deepspeed", "optim_args"):
        if read(name):
            raise InvalidSetting(
                f"TrainingArguments.{name} is not read: give the layout as gpus=, nodes=, strategy= "
                "and the optimizer as optimizer=",
                name,
            )
    if lora is not None:
        settings["method"] = "lora"
        settings["lora_r"] = int(lora.r)
        targets = getattr(lora, "target_modules", None)
        if targets is None:
            raise InvalidSetting(
                "LoraConfig.target_modules is None: PEFT then picks per-architecture defaults, which "
                "vramfit does not guess; give target_modules (a list or \"all-linear\")",
                "target_modules",
            )
        settings["lora_targets"] = targets if isinstance(targets, str) else sorted(targets)
        for name in ("modules_to_save", "layers_to_transform", "rank_pattern", "alpha_pattern"):
            if getattr(lora, name, None):
                raise InvalidSetting(f"LoraConfig.{name} is not modelled", name)
        if getattr(lora, "bias", "none") not in (None, "none"):
            raise InvalidSetting("LoraConfig.bias other than \"none\" is not modelled", "bias")
        settings["dora"] = bool(getattr(lora, "use_dora", False))
        alpha = getattr(lora, "lora_alpha", None)
        if alpha is not None:
            settings["lora_alpha"] = alpha
    settings.update(options)
    return train(model, **settings)
