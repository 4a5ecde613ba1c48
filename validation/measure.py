#!/usr/bin/env python3
"""vramfit's measurement harness: what PyTorch really holds for one workload.

Each case names a model config and a workload in vramfit's own vocabulary (the
CLI's `infer` and `train`). The harness builds the model with random weights
(nothing is downloaded), runs exactly that workload and prints one JSON line:
parameter counts, the peak of live tensor bytes with the phase and aten op
where it falls, every phase's peak and end level, and on CUDA the caching
allocator's and the device's figures.

Backends (`--backend`):
  fake  FakeTensorMode on the CPU device: every aten op runs with real shapes,
        dtypes, views and lifetimes but no data and no compute, so a 70B model
        is measured in seconds without RAM. Live tensor bytes only.
  cpu   real tensors, PyTorch's CPU kernels. Live tensor bytes.
  cuda  the real run on the GPU: max_memory_allocated / max_memory_reserved per
        phase, cudaMemGetInfo at every phase end and after the context, and the
        live tensor bytes as well (tracker on, unless --no-track).
  auto  cuda when available, else cpu.

Usage (from the repository root):
  python validation/measure.py case.json [--backend fake]
  python validation/measure.py '{"model": "meta-llama/Llama-3.2-1B", "mode": "lora"}' --backend fake
  python validation/measure.py --matrix validation/cases/coverage.jsonl --backend fake --out results.jsonl

`--matrix` runs every case in a fresh Python process, so no case inherits
another's allocator state, caches or patches. The case format and the record
format are described in validation/README.md.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import gc
import inspect
import json
import math
import os
import platform
import re
import subprocess
import sys
import time
import traceback
import warnings
import weakref
from collections import defaultdict
from typing import Any, Callable, Iterator

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
warnings.filterwarnings("ignore")

import torch  # noqa: E402
from torch.utils._python_dispatch import TorchDispatchMode  # noqa: E402
from torch.utils._pytree import tree_leaves  # noqa: E402

SCHEMA = "vramfit-harness/1"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BLOCK = 512  # the CUDA caching allocator hands out multiples of 512 B

FLOAT_TYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
# training precision -> (type the trained weights are stored in, autocast type)
PRECISIONS = {
    "fp32": ("fp32", None),
    "bf16": ("bf16", None),
    "fp16": ("fp16", None),
    "bf16-mixed": ("fp32", "bf16"),
    "fp16-mixed": ("fp32", "fp16"),
}
TORCH_OPTIMIZERS = ("adamw", "sgd", "sgd-momentum")
BNB_OPTIMIZERS = ("adamw-8bit", "paged-adamw-8bit", "lion")
OPTIMIZERS = TORCH_OPTIMIZERS + ("adafactor",) + BNB_OPTIMIZERS
OPTIMIZER_IMPLS = ("foreach", "fused", "forloop")
MODES = ("inference", "full", "lora", "qlora")
ATTENTION = ("sdpa", "eager")
# the CLI's defaults (crates/vramfit/src/cli.rs), so a field left out means what it means there
DEFAULTS = {
    "batch": 1,
    "attn": "sdpa",
    "inference": {"dtype": "bf16", "seq": 1024, "gen": 256, "inference_impl": "generate"},
    "training": {"precision": "bf16-mixed", "optimizer": "adamw", "optimizer_impl": "foreach",
                 "seq": 2048, "grad_ckpt": False, "grad_accum": 1, "steps": 2},
    "lora": {"r": 8, "targets": "all-linear", "dora": False, "dropout": 0.0},
}
CASE_KEYS = {"id", "note", "backend", "model", "config", "arch", "arch_override", "mode", "batch", "seq",
             "attn", "dtype", "gen", "inference_impl", "precision", "optimizer", "optimizer_impl",
             "grad_ckpt", "grad_accum", "steps", "lora"}
LORA_KEYS = {"r", "alpha", "targets", "dora", "dropout"}
# config keys that describe a checkpoint file rather than the architecture
CHECKPOINT_KEYS = ("torch_dtype", "dtype", "transformers_version", "_name_or_path", "quantization_config")


class CaseError(ValueError):
    """The case asks for something the harness cannot run (bad field or value)."""


class Skip(Exception):
    """The case is valid but cannot run on this backend or installation."""


# ---------------------------------------------------------------------------
# Cases
# ---------------------------------------------------------------------------
def _choice(value: Any, allowed: tuple, field: str) -> str:
    if value not in allowed:
        raise CaseError(f"{field} must be one of {', '.join(allowed)}; got {value!r}")
    return value


def _count(value: Any, field: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise CaseError(f"{field} must be an integer >= {minimum}; got {value!r}")
    return value


def _read_config(path: str) -> dict:
    for base in ("", os.getcwd(), REPO):
        candidate = os.path.join(base, path) if base else path
        if os.path.isdir(candidate):
            candidate = os.path.join(candidate, "config.json")
        if os.path.isfile(candidate):
            with open(candidate) as f:
                return json.load(f)
    raise CaseError(f"config not found: {path}")


def resolve_arch(raw: dict) -> tuple[dict, list[str]]:
    """The config dict a case describes (`arch`, `config` path or catalog `model`), cleaned of
    checkpoint-only keys, with `arch_override` applied. Returns it with notes on what was dropped."""
    notes: list[str] = []
    if isinstance(raw.get("arch"), dict):
        arch = copy.deepcopy(raw["arch"])
    elif raw.get("config"):
        arch = _read_config(raw["config"])
    elif raw.get("model"):
        arch = _read_config(os.path.join(REPO, "crates", "vramfit-sources", "data", "models", raw["model"], "config.json"))
    else:
        raise CaseError("a case needs `arch` (a config dict), `config` (a path) or `model` (a catalog name)")
    for key in CHECKPOINT_KEYS:
        if key in arch:
            value = arch.pop(key)
            if key == "quantization_config":
                notes.append(f"dropped quantization_config ({value.get('quant_method', '?')}): weights are built in "
                             "the case's float type")
    arch.update(copy.deepcopy(raw.get("arch_override") or {}))
    if "model_type" not in arch:
        raise CaseError("the config has no model_type")
    return arch, notes


def normalize_case(raw: dict) -> tuple[dict, list[str]]:
    """Checks a case and fills every field the CLI would default, so a record says exactly what ran."""
    unknown = set(raw) - CASE_KEYS
    if unknown:
        raise CaseError(f"unknown case fields: {', '.join(sorted(unknown))}")
    arch, notes = resolve_arch(raw)
    mode = _choice(raw.get("mode", "full"), MODES, "mode")
    case: dict[str, Any] = {"id": raw.get("id")}
    if raw.get("model"):
        case["model"] = raw["model"]
    if raw.get("config"):
        case["config"] = raw["config"]
    if raw.get("note"):
        case["note"] = raw["note"]
    case["mode"] = mode
    case["batch"] = _count(raw.get("batch", DEFAULTS["batch"]), "batch")
    case["attn"] = _choice(raw.get("attn", DEFAULTS["attn"]), ATTENTION, "attn")
    if mode == "inference":
        d = DEFAULTS["inference"]
        extra = {"precision", "optimizer", "optimizer_impl", "grad_ckpt", "grad_accum", "steps", "lora"} & set(raw)
        if extra:
            raise CaseError(f"inference cases take no {', '.join(sorted(extra))}")
        case["seq"] = _count(raw.get("seq", d["seq"]), "seq")
        case["dtype"] = _choice(raw.get("dtype", d["dtype"]), tuple(FLOAT_TYPES), "dtype")
        case["gen"] = _count(raw.get("gen", d["gen"]), "gen", minimum=0)
        case["inference_impl"] = _choice(raw.get("inference_impl", d["inference_impl"]),
                                         ("generate", "manual"), "inference_impl")
    else:
        d = DEFAULTS["training"]
        extra = {"dtype", "gen", "inference_impl"} & set(raw)
        if extra:
            raise CaseError(f"training cases take no {', '.join(sorted(extra))} (use precision)")
        case["seq"] = _count(raw.get("seq", d["seq"]), "seq")
        case["precision"] = _choice(raw.get("precision", d["precision"]), tuple(PRECISIONS), "precision")
        case["optimizer"] = _choice(raw.get("optimizer", d["optimizer"]), OPTIMIZERS, "optimizer")
        impl = raw.get("optimizer_impl", d["optimizer_impl"])
        case["optimizer_impl"] = (_choice(impl, OPTIMIZER_IMPLS, "optimizer_impl")
                                  if case["optimizer"] in TORCH_OPTIMIZERS else None)
        case["grad_ckpt"] = bool(raw.get("grad_ckpt", d["grad_ckpt"]))
        case["grad_accum"] = _count(raw.get("grad_accum", d["grad_accum"]), "grad_accum")
        case["steps"] = _count(raw.get("steps", d["steps"]), "steps")
        if mode in ("lora", "qlora"):
            lora = raw.get("lora") or {}
            unknown = set(lora) - LORA_KEYS
            if unknown:
                raise CaseError(f"unknown lora fields: {', '.join(sorted(unknown))}")
            dl = DEFAULTS["lora"]
            r = _count(lora.get("r", dl["r"]), "lora.r")
            targets = lora.get("targets", dl["targets"])
            if isinstance(targets, str) and targets != "all-linear":
                targets = [t for t in targets.split(",") if t]
            if not (targets == "all-linear" or (isinstance(targets, list) and targets
                                                and all(isinstance(t, str) for t in targets))):
                raise CaseError(f"lora.targets must be a list of module names or \"all-linear\"; got {targets!r}")
            case["lora"] = {"r": r, "alpha": lora.get("alpha", 2 * r), "targets": targets,
                            "dora": bool(lora.get("dora", dl["dora"])),
                            "dropout": float(lora.get("dropout", dl["dropout"]))}
        elif "lora" in raw:
            raise CaseError("full fine-tuning takes no lora settings")
    case["arch"] = arch
    if not case["id"]:
        case["id"] = auto_id(case)
    return case, notes


def auto_id(case: dict) -> str:
    name = case.get("model") or case.get("config") or case["arch"]["model_type"]
    name = os.path.basename(name.rstrip("/").removesuffix("config.json").rstrip("/")) or case["arch"]["model_type"]
    parts = [name.lower(), case["mode"]]
    if case["mode"] == "inference":
        parts += [case["dtype"], f"b{case['batch']}", f"s{case['seq']}", f"gen{case['gen']}"]
    else:
        parts += [case["precision"], case["optimizer"]]
        if case.get("optimizer_impl") not in (None, "foreach"):
            parts.append(case["optimizer_impl"])
        parts += [f"b{case['batch']}", f"s{case['seq']}"]
        if case["grad_ckpt"]:
            parts.append("ckpt")
        if "lora" in case:
            lora = case["lora"]
            targets = lora["targets"] if lora["targets"] == "all-linear" else "-".join(lora["targets"])
            parts += [f"r{lora['r']}", targets] + (["dora"] if lora["dora"] else [])
    if case["attn"] != "sdpa":
        parts.append(case["attn"])
    return "-".join(str(p) for p in parts)


# ---------------------------------------------------------------------------
# The live-storage ledger
# ---------------------------------------------------------------------------
def rounded(nbytes: int) -> int:
    """Bytes the CUDA caching allocator hands out for a request of nbytes."""
    return 0 if nbytes <= 0 else -(-nbytes // BLOCK) * BLOCK


class PhaseStats:
    __slots__ = ("name", "kind", "peak", "peak_rounded", "peak_op", "rounded_peak_op", "kinds_at_peak",
                 "end", "end_rounded", "wall_s", "cuda", "_t0")

    def __init__(self, name: str, kind: str):
        self.name, self.kind = name, kind
        self.peak = self.peak_rounded = self.end = self.end_rounded = 0
        self.peak_op = self.rounded_peak_op = None
        self.kinds_at_peak: dict[str, int] = {}
        self.cuda: dict[str, int] = {}
        self.wall_s = 0.0
        self._t0 = time.perf_counter()


class StorageLedger(TorchDispatchMode):
    """Bytes of every tensor storage alive, brought up to date after each aten op.

    Every tensor an op returns (and every argument of an op that mutates its
    arguments: `resize_`, `set_`, `out=`) is looked up by its storage; a storage
    seen for the first time is entered with its size and a kind (what the
    current phase creates: activations in forward, optimizer state in the step,
    ...), and a weakref finalizer on the storage takes it out again when PyTorch
    frees it. Views share their base's storage, so nothing is counted twice.
    The running total, raw and with each storage rounded up to 512 B, is
    compared with the phase's peak after every op: allocations an op makes and
    frees inside itself (kernel workspaces) are not seen.
    """

    def __init__(self) -> None:
        super().__init__()
        self._entries: dict[int, list] = {}  # storage key -> [nbytes, kind]
        self.live = 0
        self.live_rounded = 0
        self.by_kind: dict[str, int] = defaultdict(int)  # rounded bytes per kind
        self.new_kind = "other"
        self.phase: PhaseStats | None = None
        self._mutating: dict[Any, bool] = {}

    # -- bookkeeping ----------------------------------------------------------
    def _forget(self, key: int) -> None:
        entry = self._entries.pop(key, None)
        if entry is not None:
            nbytes, kind = entry
            self.live -= nbytes
            self.live_rounded -= rounded(nbytes)
            self.by_kind[kind] -= rounded(nbytes)

    def note(self, tensor: Any, kind: str | None = None) -> None:
        """Enters the tensor's storage if it is new (or re-sizes it); `kind` re-labels it."""
        if not isinstance(tensor, torch.Tensor):
            return
        try:
            storage = tensor.untyped_storage()
        except (RuntimeError, NotImplementedError):  # sparse / nested / wrapper subclasses
            return
        key = storage._cdata
        nbytes = storage.nbytes()
        entry = self._entries.get(key)
        if entry is None:
            kind = kind or self.new_kind
            self._entries[key] = [nbytes, kind]
            weakref.finalize(storage, self._forget, key)
            self.live += nbytes
            self.live_rounded += rounded(nbytes)
            self.by_kind[kind] += rounded(nbytes)
            return
        old, old_kind = entry
        if nbytes != old:
            self.live += nbytes - old
            self.live_rounded += rounded(nbytes) - rounded(old)
            self.by_kind[old_kind] += rounded(nbytes) - rounded(old)
            entry[0] = nbytes
        if kind is not None and kind != old_kind:
            self.by_kind[old_kind] -= rounded(nbytes)
            self.by_kind[kind] += rounded(nbytes)
            entry[1] = kind

    def _check_peak(self, op: str) -> None:
        phase = self.phase
        if phase is None:
            return
        if self.live > phase.peak:
            phase.peak = self.live
            phase.peak_op = op
        if self.live_rounded > phase.peak_rounded:
            phase.peak_rounded = self.live_rounded
            phase.rounded_peak_op = op
            phase.kinds_at_peak = {k: v for k, v in self.by_kind.items() if v}

    # -- phases ---------------------------------------------------------------
    def open_phase(self, phase: PhaseStats) -> None:
        self.phase = phase
        self.new_kind = phase.kind
        phase.peak, phase.peak_rounded = self.live, self.live_rounded
        phase.kinds_at_peak = {k: v for k, v in self.by_kind.items() if v}

    def close_phase(self) -> None:
        phase = self.phase
        if phase is not None:
            phase.end, phase.end_rounded = self.live, self.live_rounded
        self.phase = None

    # -- dispatch ---------------------------------------------------------------
    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        result = func(*args, **kwargs)
        for leaf in tree_leaves(result):
            if isinstance(leaf, torch.Tensor):
                self.note(leaf)
        mutating = self._mutating.get(func)
        if mutating is None:
            mutating = self._mutating[func] = bool(func._schema.is_mutable)
        if mutating:
            for leaf in tree_leaves((args, kwargs)):
                if isinstance(leaf, torch.Tensor):
                    self.note(leaf)
        self._check_peak(func._schema.name.split("::")[-1])
        return result


# ---------------------------------------------------------------------------
# Phases, and what the GPU says at their ends
# ---------------------------------------------------------------------------
class PhaseLog:
    def __init__(self, ledger: StorageLedger | None, on_cuda: bool):
        self.ledger = ledger
        self.on_cuda = on_cuda
        self.phases: list[PhaseStats] = []
        self.current: PhaseStats | None = None

    def begin(self, name: str, kind: str) -> None:
        if self.current is not None:
            self.end()
        phase = PhaseStats(name, kind)
        if self.on_cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        if self.ledger is not None:
            self.ledger.open_phase(phase)
        phase._t0 = time.perf_counter()
        self.current = phase

    def end(self) -> None:
        phase = self.current
        if phase is None:
            return
        if self.ledger is not None:
            self.ledger.close_phase()
        if self.on_cuda:
            torch.cuda.synchronize()
            free, total = torch.cuda.mem_get_info()
            phase.cuda = {
                "max_allocated": torch.cuda.max_memory_allocated(),
                "end_allocated": torch.cuda.memory_allocated(),
                "max_reserved": torch.cuda.max_memory_reserved(),
                "end_reserved": torch.cuda.memory_reserved(),
                "device_used_end": total - free,
            }
        phase.wall_s = round(time.perf_counter() - phase._t0, 3)
        self.phases.append(phase)
        self.current = None

    @contextlib.contextmanager
    def phase(self, name: str, kind: str) -> Iterator[None]:
        self.begin(name, kind)
        try:
            yield
        finally:
            self.end()


# ---------------------------------------------------------------------------
# The fake backend: what FakeTensors cannot answer, answered as the real run would
# ---------------------------------------------------------------------------
@contextlib.contextmanager
def fake_backend_shims() -> Iterator[None]:
    """Three places where a FakeTensor run would take another path than the real one:

    - transformers' mask code treats a FakeTensor as a trace and then materializes
      the [b, 1, q, kv] mask that a real run skips (SDPA's is_causal). The harness
      never pads, so an all-ones padding mask is passed on as no mask (the same
      answer `_ignore_causal_mask_sdpa` gives a real all-ones mask), and position
      ids are one plain sequence per row (no packed-sequence mask).
    - `Module._apply` (`.to()`, `.float()`, used by peft to place adapters) swaps
      FakeTensor parameters with `swap_tensors`, which refuses tensors that have
      weakrefs; here conversions go through `param.data = ...`, as they do for
      real CPU and CUDA tensors.
    - transformers' Adafactor picks its step size with `max(eps, rms)`, a read of
      a tensor's value: under fake tensors the rms tensor is taken (what a real
      run takes for every non-zero weight).
    """
    import transformers.masking_utils as masking
    from torch._subclasses.fake_tensor import FakeTensor
    from transformers.optimization import Adafactor

    saved_ignore = masking._ignore_causal_mask_sdpa
    saved_packed = masking.find_packed_sequence_indices
    saved_apply = torch.nn.Module._apply
    saved_lr = Adafactor.__dict__["_get_lr"]

    def ignore_causal_mask_sdpa(padding_mask, *args, **kwargs):
        if isinstance(padding_mask, FakeTensor):
            padding_mask = None
        return saved_ignore(padding_mask, *args, **kwargs)

    def find_packed_sequence_indices(position_ids):
        return None if isinstance(position_ids, FakeTensor) else saved_packed(position_ids)

    def apply_by_set_data(module, fn, recurse=True):
        if recurse:
            for child in module.children():
                child._apply(fn)
        for store in (module._parameters, module._buffers):
            for name, tensor in list(store.items()):
                if tensor is None:
                    continue
                with torch.no_grad():
                    converted = fn(tensor)
                if converted is tensor:
                    continue
                if isinstance(tensor, torch.nn.Parameter):
                    tensor.data = converted
                else:
                    store[name] = converted
        return module

    def adafactor_lr(param_group, param_state):
        step_size = param_group["lr"]
        if param_group["relative_step"]:
            floor = 1e-6 * param_state["step"] if param_group["warmup_init"] else 1e-2
            step_size = min(floor, 1.0 / math.sqrt(param_state["step"]))
        scale = param_state["RMS"] if param_group["scale_parameter"] else 1.0
        return scale * step_size

    masking._ignore_causal_mask_sdpa = ignore_causal_mask_sdpa
    masking.find_packed_sequence_indices = find_packed_sequence_indices
    torch.nn.Module._apply = apply_by_set_data
    Adafactor._get_lr = staticmethod(adafactor_lr)
    try:
        yield
    finally:
        masking._ignore_causal_mask_sdpa = saved_ignore
        masking.find_packed_sequence_indices = saved_packed
        torch.nn.Module._apply = saved_apply
        Adafactor._get_lr = saved_lr


class FakeDropoutAsReal(TorchDispatchMode):
    """Sits between the ledger and FakeTensorMode. Under inference_mode, `aten.dropout`
    reaches the dispatch modes whole; PyTorch's kernel returns its input itself when it
    does not drop (eval, or p = 0), but FakeTensorMode runs the tracing decomposition,
    which returns `input.clone()`: a new storage of the input's size that the real run
    never allocates. Here those calls return the input, as the real kernel does."""

    IDENTITY_WHEN_OFF = {torch.ops.aten.dropout.default, torch.ops.aten.feature_dropout.default,
                         torch.ops.aten.alpha_dropout.default, torch.ops.aten.feature_alpha_dropout.default}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        if func in self.IDENTITY_WHEN_OFF:
            bound = dict(zip(("input", "p", "train"), args), **kwargs)
            if not bound["train"] or bound["p"] == 0:
                return bound["input"]
        return func(*args, **kwargs)


@contextlib.contextmanager
def fake_tensors() -> Iterator[None]:
    from torch._subclasses.fake_tensor import FakeTensorMode

    with fake_backend_shims(), FakeTensorMode(allow_non_fake_inputs=False), FakeDropoutAsReal():
        yield


# ---------------------------------------------------------------------------
# Model, inputs, optimizer
# ---------------------------------------------------------------------------
def model_class(config, arch: dict):
    """The class `architectures[0]` names when transformers has it for this config, else the causal-LM class."""
    import transformers
    from transformers import AutoModelForCausalLM

    named = (arch.get("architectures") or [None])[0]
    cls = getattr(transformers, named, None) if named else None
    if cls is not None and getattr(cls, "config_class", None) is type(config):
        return cls
    try:
        return AutoModelForCausalLM._model_mapping[type(config)]
    except KeyError:
        raise Skip(f"transformers has no causal-LM class for model_type {arch['model_type']!r}") from None


# what QLoRA recipes pass to transformers (the QLoRA paper's settings; bnb_4bit_compute_dtype
# follows the case's precision)
QLORA_SETTINGS = {"load_in_4bit": True, "bnb_4bit_quant_type": "nf4", "bnb_4bit_use_double_quant": True,
                  "bnb_4bit_quant_storage": "uint8",
                  "then": "peft.prepare_model_for_kbit_training(use_gradient_checkpointing=<grad_ckpt>, "
                          "gradient_checkpointing_kwargs={'use_reentrant': False})"}


@contextlib.contextmanager
def random_checkpoint(cls, config, dtype) -> Iterator[str]:
    """A safetensors checkpoint of the model with random weights, in a temporary folder:
    bitsandbytes quantizes weights as transformers loads them, so QLoRA is measured
    through the same `from_pretrained` users call (nothing is downloaded)."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="vramfit-qlora-") as folder:
        with torch.device("cpu"):
            model = cls._from_config(config, dtype=dtype)
        model.save_pretrained(folder)
        del model
        gc.collect()
        yield folder


def load_qlora_base(cls, folder: str, dtype, device, case: dict):
    """`from_pretrained` with bitsandbytes NF4 (double-quantized), then peft's
    `prepare_model_for_kbit_training`, as QLoRA recipes do."""
    from peft import prepare_model_for_kbit_training
    from transformers import BitsAndBytesConfig

    try:
        import bitsandbytes  # noqa: F401
    except ImportError:
        raise Skip("qlora needs bitsandbytes, which is not installed") from None
    quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4",
                                      bnb_4bit_use_double_quant=True, bnb_4bit_compute_dtype=dtype,
                                      bnb_4bit_quant_storage=torch.uint8)
    model = cls.from_pretrained(folder, quantization_config=quantization, dtype=dtype,
                                device_map={"": device}, attn_implementation=case["attn"])
    return prepare_model_for_kbit_training(model, use_gradient_checkpointing=case["grad_ckpt"],
                                           gradient_checkpointing_kwargs={"use_reentrant": False})


def build_config(arch: dict):
    from transformers.models.auto.configuration_auto import CONFIG_MAPPING

    if arch["model_type"] not in CONFIG_MAPPING:
        raise Skip(f"model_type {arch['model_type']!r} is not in transformers (remote code)")
    return CONFIG_MAPPING[arch["model_type"]].from_dict(copy.deepcopy(arch))


def text_config(config):
    return config.get_text_config(decoder=True) if hasattr(config, "get_text_config") else config


def count_params(model) -> dict:
    total = trainable = nbytes = trainable_bytes = quant_state_bytes = 0
    by_dtype: dict[str, int] = defaultdict(int)
    for p in model.parameters():  # unique: a tied weight is counted once
        n = p.numel()
        nbytes += n * p.element_size()
        state = getattr(p, "quant_state", None)
        if state is not None:  # bitsandbytes Params4bit: packed bytes; the logical shape is in its state
            n = math.prod(state.shape)
            quant_state_bytes += quant_state_nbytes(state)
            by_dtype[f"{state.quant_type}({str(p.dtype).removeprefix('torch.')} packed)"] += n
        else:
            by_dtype[str(p.dtype).removeprefix("torch.")] += n
        total += n
        if p.requires_grad:
            trainable += n
            trainable_bytes += n * p.element_size()
    buffers = sum(b.numel() * b.element_size() for b in model.buffers())
    record = {"total": total, "trainable": trainable, "bytes": nbytes, "trainable_bytes": trainable_bytes,
              "buffer_bytes": buffers, "by_dtype": dict(by_dtype)}
    if quant_state_bytes:
        record["quant_state_bytes"] = quant_state_bytes
    return record


def quant_state_nbytes(state) -> int:
    """Bytes of a bitsandbytes QuantState's tensors (block absmax, the second level's
    absmax and code when double-quantized, the NF4 code, the offset)."""
    tensors = []
    stack = [state]
    while stack:
        s = stack.pop()
        for value in vars(s).values():
            if isinstance(value, torch.Tensor):
                tensors.append(value)
            elif type(value).__name__ == "QuantState":
                stack.append(value)
    return storage_bytes(tensors)


def storage_bytes(tensors) -> int:
    """Bytes of the distinct storages behind `tensors` (views and shared storages once)."""
    seen: set[int] = set()
    total = 0
    for t in tensors:
        st = t.untyped_storage()
        if st._cdata not in seen:
            seen.add(st._cdata)
            total += st.nbytes()
    return total


def make_optimizer(case: dict, params: list, backend: str, model):
    name, impl = case["optimizer"], case["optimizer_impl"]
    if name == "adafactor":
        from transformers.optimization import Adafactor

        return Adafactor(params), {"class": "transformers.optimization.Adafactor", "kwargs": {}}
    if name in BNB_OPTIMIZERS:
        if name.startswith("paged-") and backend != "cuda":
            raise Skip(f"{name} keeps its states in CUDA unified memory: it needs the cuda backend")
        if backend == "fake":
            raise Skip(f"{name} runs bitsandbytes' kernels, which need real tensors (cpu or cuda backend)")
        try:
            import bitsandbytes as bnb
        except ImportError:
            raise Skip(f"{name} needs bitsandbytes, which is not installed") from None
        cls = {"adamw-8bit": bnb.optim.AdamW8bit, "paged-adamw-8bit": bnb.optim.PagedAdamW8bit,
               "lion": bnb.optim.Lion}[name]
        described = {"class": f"bitsandbytes.optim.{cls.__name__}", "kwargs": {"lr": 1e-5}}
        optimizer = cls(params, lr=1e-5)
        if name.endswith("8bit"):
            # as transformers' Trainer does for its 8-bit bitsandbytes optimizers: embeddings'
            # states stay in 32 bits (Trainer.create_optimizer, register_module_override)
            manager = bnb.optim.GlobalOptimManager.get_instance()
            for module in model.modules():
                if isinstance(module, torch.nn.Embedding):
                    manager.register_module_override(module, "weight", {"optim_bits": 32})
            described["overrides"] = "nn.Embedding weights: optim_bits=32 (as transformers' Trainer)"
        return optimizer, described
    kwargs: dict[str, Any] = {"lr": 1e-5}
    kwargs.update({"foreach": {"foreach": True}, "forloop": {"foreach": False}, "fused": {"fused": True}}[impl])
    if name == "adamw":
        cls = torch.optim.AdamW
    else:
        cls = torch.optim.SGD
        if name == "sgd-momentum":
            kwargs["momentum"] = 0.9
    return cls(params, **kwargs), {"class": f"torch.optim.{cls.__name__}", "kwargs": kwargs}


def kv_cache_bytes(cache) -> int | None:
    if cache is None:
        return None
    return storage_bytes(t for layer in getattr(cache, "layers", []) or [] for name in ("keys", "values")
                         if isinstance(t := getattr(layer, name, None), torch.Tensor))


def optimizer_state_bytes(optimizer) -> int:
    return storage_bytes(value for state in optimizer.state.values() for value in state.values()
                         if isinstance(value, torch.Tensor))


def accepts(fn: Callable, name: str) -> bool:
    try:
        return name in inspect.signature(fn).parameters
    except (TypeError, ValueError):
        return False


# ---------------------------------------------------------------------------
# Workloads
# ---------------------------------------------------------------------------
def run_inference(model, case: dict, ids, log: PhaseLog, impl: str, out: dict) -> None:
    from transformers import DynamicCache

    gen = case["gen"]
    model.eval()
    cache_kw = "cache" if accepts(model.forward, "cache") else "past_key_values"
    keep_one = {"logits_to_keep": 1} if accepts(model.forward, "logits_to_keep") else {}
    with torch.inference_mode():
        if gen == 0:  # one forward returning every position's logits, as the CLI's --gen-len 0
            with log.phase("forward", "activations"):
                result = model(input_ids=ids, use_cache=True)
                cache = getattr(result, cache_kw, None) or getattr(result, "past_key_values", None)
                out["kv_cache_bytes"] = kv_cache_bytes(cache)
                del result, cache
            return
        mask = torch.ones_like(ids)
        cache = DynamicCache(config=text_config(model.config))
        out["cache_class"] = type(cache).__name__
        settings = model.generation_config
        settings.eos_token_id = None  # random weights: never stop early, generate exactly `gen` tokens
        settings.pad_token_id = 0 if settings.pad_token_id is None else settings.pad_token_id
        settings.cache_implementation = None
        if impl == "generate":
            calls = [0]

            def split_phases(_module, _args, _kwargs):
                calls[0] += 1
                if calls[0] == 2:
                    log.begin("decode", "activations")

            log.begin("prefill", "activations")
            hook = model.register_forward_pre_hook(split_phases, with_kwargs=True)
            try:
                result = model.generate(input_ids=ids, attention_mask=mask, max_new_tokens=gen, do_sample=False,
                                        num_beams=1, use_cache=True, return_dict_in_generate=True,
                                        **{cache_kw: cache})
            finally:
                hook.remove()
            log.end()
            out["generated_tokens"] = int(result.sequences.shape[1] - ids.shape[1])
            del result
        else:
            # generate()'s greedy loop (transformers 5.24's `_sample`) without its reads of
            # token values, which a FakeTensor cannot answer, and holding what it holds
            # from step to step: the special-token tensors and per-row "unfinished" flags;
            # position ids made from the attention mask, which is then dropped because it
            # is all ones (the first ones stay referenced until generate returns); a
            # contiguous copy of each step's input ids and position ids;
            # the last position's logits copied to fp32 (prefill keeps only that one),
            # their argmax, and the growing token tensor.
            takes_positions = accepts(model.forward, "position_ids")
            takes_mask = accepts(model.forward, "attention_mask")
            with log.phase("prefill", "activations"):
                specials = [torch.tensor(t, dtype=torch.long, device=ids.device)
                            for t in (settings.bos_token_id, settings.pad_token_id) if t is not None]
                positions = first_positions = None
                if takes_positions:
                    positions = mask.long().cumsum(-1) - 1
                    positions = positions.masked_fill(mask == 0, 0)
                first_positions = positions  # generate() keeps these in its own kwargs until it returns
                step_mask = mask
                if takes_mask:
                    (mask == 1).all()  # generate's "no padding" test, whose answer (yes) drops the mask
                    step_mask = None
                unfinished = torch.ones(ids.shape[0], dtype=torch.long, device=ids.device)
                seqs = ids
                inputs = {"input_ids": ids.clone(memory_format=torch.contiguous_format), "use_cache": True,
                          cache_kw: cache, **keep_one}
                if positions is not None:
                    inputs["position_ids"] = positions
                if step_mask is not None:
                    inputs["attention_mask"] = step_mask
                result = model(**inputs)
                del inputs

                def advance(result, seqs, positions, step_mask):
                    if positions is not None:
                        step = torch.arange(1, dtype=positions.dtype, device=positions.device).view(1, -1)
                        positions = torch.cat([positions, step + positions[..., -1:] + 1], dim=-1)
                    if step_mask is not None:
                        step_mask = torch.cat([step_mask, step_mask.new_ones((step_mask.shape[0], 1))], dim=-1)
                    logits = result.logits[:, -1].to(copy=True, dtype=torch.float32)
                    token = logits.argmax(dim=-1)
                    seqs = torch.cat([seqs, token[:, None]], dim=-1)
                    return logits, token, seqs, positions, step_mask

                logits, token, seqs, positions, step_mask = advance(result, seqs, positions, step_mask)
                del result
            if gen > 1:
                with log.phase("decode", "activations"):
                    for _ in range(gen - 1):
                        inputs = {"input_ids": seqs[:, -1:].clone(memory_format=torch.contiguous_format),
                                  "use_cache": True, cache_kw: cache, **keep_one}
                        if positions is not None:
                            inputs["position_ids"] = positions[..., -1:].clone(memory_format=torch.contiguous_format)
                        if step_mask is not None:
                            inputs["attention_mask"] = step_mask
                        result = model(**inputs)
                        logits, token, seqs, positions, step_mask = advance(result, seqs, positions, step_mask)
                        del result
                    generated = int(seqs.shape[1] - ids.shape[1])
                    del inputs, seqs, positions, first_positions, step_mask, specials, unfinished, logits, token
            else:
                generated = int(seqs.shape[1] - ids.shape[1])
            out["generated_tokens"] = generated
        out["kv_cache_bytes"] = kv_cache_bytes(cache)
        del cache


def run_training(model, case: dict, ids, log: PhaseLog, ledger: StorageLedger | None, backend: str,
                 autocast_type, out: dict) -> None:
    model.train()
    model.config.use_cache = False
    if case["grad_ckpt"]:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
    params = [p for p in model.parameters() if p.requires_grad]
    with log.phase("setup.optimizer", "optimizer"):
        optimizer, described = make_optimizer(case, params, backend, model)
    out["optimizer"] = described
    if ledger is not None:
        for p in params:  # a gradient is whatever storage lands in .grad
            p.register_post_accumulate_grad_hook(lambda q: ledger.note(q.grad, "grads"))
    device_type = "cuda" if backend == "cuda" else "cpu"
    autocast = (torch.autocast(device_type=device_type, dtype=FLOAT_TYPES[autocast_type])
                if autocast_type else contextlib.nullcontext())
    accum = case["grad_accum"]
    for step in range(1, case["steps"] + 1):
        for micro in range(1, accum + 1):
            prefix = f"step{step}" + (f".micro{micro}" if accum > 1 else "")
            with log.phase(f"{prefix}.forward", "activations"):
                with autocast:
                    # the Trainer keeps the loss and lets the outputs (logits) go before backward
                    loss = model(input_ids=ids, labels=ids, use_cache=False).loss
                if accum > 1:
                    loss = loss / accum
            with log.phase(f"{prefix}.backward", "backward"):
                loss.backward()
                del loss
        with log.phase(f"step{step}.optimizer_step", "optimizer"):
            optimizer.step()
        with log.phase(f"step{step}.zero_grad", "optimizer"):
            optimizer.zero_grad(set_to_none=True)
    out["optimizer_state_bytes"] = optimizer_state_bytes(optimizer)


# ---------------------------------------------------------------------------
# One case
# ---------------------------------------------------------------------------
def environment(backend: str) -> dict:
    env: dict[str, Any] = {"python": platform.python_version(), "machine": platform.machine(),
                           "torch": torch.__version__}
    for name in ("transformers", "peft", "accelerate", "bitsandbytes"):
        try:
            env[name] = __import__(name).__version__
        except Exception:  # noqa: BLE001 - absent or broken: say so
            env[name] = None
    if backend == "cuda":
        props = torch.cuda.get_device_properties(torch.cuda.current_device())
        env["gpu"] = {"name": props.name, "capability": f"{props.major}.{props.minor}",
                      "total_bytes": props.total_memory, "multiprocessors": props.multi_processor_count,
                      "driver": gpu_driver_version(), "cuda_runtime": torch.version.cuda,
                      "cudnn": torch.backends.cudnn.version() if torch.backends.cudnn.is_available() else None,
                      "alloc_conf": os.environ.get("PYTORCH_CUDA_ALLOC_CONF")}
    return env


def gpu_driver_version() -> str | None:
    try:
        import pynvml

        pynvml.nvmlInit()
        version = pynvml.nvmlSystemGetDriverVersion()
        return version.decode() if isinstance(version, bytes) else version
    except Exception:  # noqa: BLE001 - fall back to nvidia-smi
        pass
    try:
        done = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                              capture_output=True, text=True, timeout=30)
        return done.stdout.strip().splitlines()[0] if done.returncode == 0 and done.stdout.strip() else None
    except (OSError, subprocess.TimeoutExpired):
        return None


def cuda_context_probe(device) -> dict:
    """Device-level used memory once the CUDA context exists (before any tensor), and what the
    first matmul adds: cuBLAS's handle outside the allocator, its workspace inside it."""
    torch.cuda.init()
    free, total = torch.cuda.mem_get_info(device)  # needs, and so creates, the primary context
    after_context = total - free
    before = torch.cuda.memory_allocated()
    a = torch.ones(64, 64, device=device)
    b = a @ a
    torch.cuda.synchronize()
    workspace = torch.cuda.memory_allocated() - before - 2 * rounded(64 * 64 * 4)
    free, total = torch.cuda.mem_get_info(device)
    del a, b
    return {"device_total_bytes": total, "device_used_after_context": after_context,
            "device_used_after_first_matmul": total - free, "cublas_workspace_bytes": workspace}


def measure(case: dict, backend: str, track: bool, notes: list[str]) -> dict:
    from peft import LoraConfig, get_peft_model

    out: dict[str, Any] = {}
    on_cuda = backend == "cuda"
    if case["mode"] == "qlora" and backend == "fake":
        raise Skip("qlora needs real tensors: bitsandbytes quantizes the weights as a checkpoint loads "
                   "(use the cpu or cuda backend)")
    device = torch.device("cuda" if on_cuda else "cpu")
    if on_cuda:
        out["cuda_context"] = cuda_context_probe(device)
    config = build_config(case["arch"])
    cls = model_class(config, case["arch"])
    out["model_class"] = cls.__name__
    ledger = StorageLedger() if (track or not on_cuda) else None
    log = PhaseLog(ledger, on_cuda)

    if case["mode"] == "inference":
        weight_type, autocast_type = case["dtype"], None
    else:
        weight_type, autocast_type = PRECISIONS[case["precision"]]
        if case["mode"] == "lora" and autocast_type:
            weight_type = autocast_type  # LoRA under autocast: a half-precision base, fp32 adapters
        if case["mode"] == "qlora":
            # bnb_4bit_compute_dtype: the autocast type, or the precision's own half type
            weight_type = autocast_type or weight_type
            if weight_type == "fp32":
                raise CaseError("qlora computes in bf16 or fp16 (bnb_4bit_compute_dtype), as the CLI requires")
    impl = case.get("inference_impl")
    if backend == "fake" and case["mode"] == "inference" and case["gen"] > 0 and impl == "generate":
        impl = "manual"
        notes.append("fake backend: generate() reads token values to stop, so its loop is run by hand")

    torch.manual_seed(0)
    checkpoint = (random_checkpoint(cls, config, FLOAT_TYPES[weight_type]) if case["mode"] == "qlora"
                  else contextlib.nullcontext())
    with checkpoint as checkpoint_dir, \
            (fake_tensors() if backend == "fake" else contextlib.nullcontext()), \
            (ledger if ledger is not None else contextlib.nullcontext()):
        with log.phase("build", "weights"):
            if case["mode"] == "qlora":
                model = load_qlora_base(cls, checkpoint_dir, FLOAT_TYPES[weight_type], device, case)
            else:
                with torch.device(device):
                    model = cls._from_config(config, dtype=FLOAT_TYPES[weight_type],
                                            attn_implementation=case["attn"])
            if case["mode"] in ("lora", "qlora"):
                lora = case["lora"]
                lora_config = LoraConfig(r=lora["r"], lora_alpha=lora["alpha"], lora_dropout=lora["dropout"],
                                         target_modules=lora["targets"], use_dora=lora["dora"],
                                         task_type="CAUSAL_LM")
                model = get_peft_model(model, lora_config)  # peft keeps fp16/bf16 bases' adapters in fp32
            if ledger is not None:
                for p in model.parameters():
                    ledger.note(p, "weights")
                for b in model.buffers():
                    ledger.note(b, "buffers")
            gc.collect()
        stray = {p.device.type for p in model.parameters()} - {device.type}
        if stray:
            raise RuntimeError(f"parameters built on {sorted(stray)}, not {device}")
        out["params"] = count_params(model)
        vocab = text_config(config).vocab_size
        with log.phase("setup.inputs", "inputs"):
            # ids below 30000 keep clear of multimodal models' image and special tokens
            ids = torch.randint(0, min(vocab, 30000), (case["batch"], case["seq"]), device=device)
        if case["mode"] == "inference":
            run_inference(model, case, ids, log, impl, out)
        else:
            run_training(model, case, ids, log, ledger, backend, autocast_type, out)
        log.end()
        del ids

    out["settings"] = {
        "weight_dtype": weight_type,
        "autocast": autocast_type,
        "adapter_dtype": (sorted({str(p.dtype).removeprefix("torch.") for n, p in model.named_parameters()
                                  if p.requires_grad}) if case["mode"] in ("lora", "qlora") else None),
        "quantization": QLORA_SETTINGS if case["mode"] == "qlora" else None,
        "inference_impl": impl if case["mode"] == "inference" and case["gen"] > 0 else None,
        "grad_ckpt_use_reentrant": False if case.get("grad_ckpt") else None,
        "labels": "the input ids (one tensor)" if case["mode"] != "inference" else None,
        "device": str(device),
        "attn_implementation": getattr(text_config(model.config), "_attn_implementation", None),
        "experts_implementation": getattr(text_config(model.config), "_experts_implementation", None),
    }
    out["phases"] = [phase_record(p) for p in log.phases]
    if ledger is not None:
        out["tensor"] = tensor_summary(log.phases, backend)
    if on_cuda:
        out["cuda"] = cuda_summary(log.phases, out["cuda_context"])
    if backend == "cpu":
        import resource

        out["process_max_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def phase_record(p: PhaseStats) -> dict:
    rec: dict[str, Any] = {"phase": p.name, "wall_s": p.wall_s}
    if p.peak_op is not None or p.end or p.peak:
        rec.update(peak_bytes=p.peak, peak_bytes_rounded=p.peak_rounded, end_bytes=p.end,
                   end_bytes_rounded=p.end_rounded, peak_op=p.rounded_peak_op)
    for key, value in p.cuda.items():
        rec[f"cuda_{key}"] = value
    if p.cuda and (p.peak or p.end):
        # allocator bytes no tensor accounts for at the phase end: cuBLAS/cuBLASLt workspaces, mostly
        rec["cuda_end_allocated_minus_tensors"] = p.cuda["end_allocated"] - p.end_rounded
    return rec


def workload_phases(phases: list[PhaseStats]) -> list[PhaseStats]:
    # building from random weights briefly holds an untied copy of a tied head, which loading a
    # checkpoint does not: the build is reported on its own and left out of the workload's peak
    return [p for p in phases if p.name != "build"]


def tensor_summary(phases: list[PhaseStats], backend: str) -> dict:
    work = workload_phases(phases)
    top = max(work, key=lambda p: p.peak_rounded)
    top_raw = max(work, key=lambda p: p.peak)
    build = next((p for p in phases if p.name == "build"), None)
    return {
        "method": "live storages, fake tensors on the CPU device" if backend == "fake" else
                  f"live storages, real {backend} tensors",
        "peak_bytes_rounded": top.peak_rounded,
        "peak_phase": top.name,
        "peak_op": top.rounded_peak_op,
        "peak_kinds_rounded": top.kinds_at_peak,
        "peak_bytes": top_raw.peak,
        "raw_peak_phase": top_raw.name,
        "raw_peak_op": top_raw.peak_op,
        "build_peak_bytes_rounded": build.peak_rounded if build else None,
        "end_bytes_rounded": phases[-1].end_rounded if phases else None,
    }


def cuda_summary(phases: list[PhaseStats], context: dict) -> dict:
    work = [p for p in workload_phases(phases) if p.cuda]
    top = max(work, key=lambda p: p.cuda["max_allocated"])
    max_reserved = max(p.cuda["max_reserved"] for p in work)
    # device memory outside the allocator (context, cuBLAS/cuDNN handles, ...), seen at phase ends
    outside = max(p.cuda["device_used_end"] - p.cuda["end_reserved"] for p in work)
    stats = torch.cuda.memory_stats()
    build = next((p for p in phases if p.name == "build" and p.cuda), None)
    return {
        "max_memory_allocated": top.cuda["max_allocated"],
        "max_memory_allocated_phase": top.name,
        "max_memory_reserved": max_reserved,
        "device_used_max_sampled": max(p.cuda["device_used_end"] for p in work),
        "device_outside_allocator_max": outside,
        "device_peak_estimate": outside + max_reserved,
        "device_used_after_context": context["device_used_after_context"],
        "cublas_workspace_bytes": context["cublas_workspace_bytes"],
        "build_max_memory_allocated": build.cuda["max_allocated"] if build else None,
        "num_alloc_retries": stats.get("num_alloc_retries", 0),
        "num_ooms": stats.get("num_ooms", 0),
    }


def run_one(raw: dict, backend: str, track: bool) -> dict:
    t0 = time.time()
    record: dict[str, Any] = {"schema": SCHEMA, "id": raw.get("id"), "status": "error", "backend": backend}
    notes: list[str] = []
    try:
        case, notes = normalize_case(raw)
        record["id"] = case["id"]
        record["case"] = case
        if backend == "cuda" and not torch.cuda.is_available():
            raise Skip("the cuda backend needs a CUDA device")
        record["env"] = environment(backend)
        record.update(measure(case, backend, track, notes))
        record["status"] = "ok"
    except CaseError as e:
        record["error"] = f"bad case: {e}"
    except Skip as e:
        record["status"] = "skipped"
        record["reason"] = str(e)
    except Exception as e:  # noqa: BLE001 - the record says what failed
        record["error"] = f"{type(e).__name__}: {e}"[:2000]
        record["traceback"] = traceback.format_exc()[-4000:]
    if notes:
        record["notes"] = notes
    record["wall_s"] = round(time.time() - t0, 2)
    record.setdefault("env", environment("cpu") if backend != "cuda" else {"torch": torch.__version__})
    return record


# ---------------------------------------------------------------------------
# Matrices and the command line
# ---------------------------------------------------------------------------
def read_cases(path: str) -> list[dict]:
    cases = []
    with open(path) as f:
        for number, line in enumerate(f, 1):
            line = line.strip()
            if not line or line.startswith("#"):
                continue
            try:
                cases.append(json.loads(line))
            except json.JSONDecodeError as e:
                sys.exit(f"{path}:{number}: {e}")
    return cases


def emit(record: dict, out: str | None) -> None:
    line = json.dumps(record, default=str)
    if out and out != "-":
        with open(out, "a") as f:
            f.write(line + "\n")
    else:
        print(line, flush=True)


def mib(x: int | None) -> str:
    return "-" if x is None else f"{x / 2**20:.1f} MiB"


def run_matrix(args) -> int:
    cases = read_cases(args.matrix)
    if args.only:
        pattern = re.compile(args.only)
        cases = [c for c in cases if pattern.search(c.get("id") or "")]
    done: set[str] = set()
    if args.resume and args.out and os.path.exists(args.out):
        with open(args.out) as f:
            done = {json.loads(line).get("id") for line in f if line.strip()}
    failures = 0
    for i, raw in enumerate(cases, 1):
        if raw.get("id") in done:
            continue
        backend = raw.get("backend") or args.backend
        if backend == "auto":
            backend = "cuda" if torch.cuda.is_available() else "cpu"
        command = [sys.executable, os.path.abspath(__file__), "-", "--backend", backend]
        if not args.track:
            command.append("--no-track")
        t0 = time.time()
        try:
            done_ = subprocess.run(command, input=json.dumps(raw), capture_output=True, text=True,
                                   timeout=args.timeout)
            lines = done_.stdout.strip().splitlines()
            record = json.loads(lines[-1]) if lines else None
            if record is None:
                record = {"schema": SCHEMA, "id": raw.get("id"), "status": "error", "backend": backend,
                          "case": raw, "error": f"exit {done_.returncode}: {done_.stderr[-2000:]}"}
        except subprocess.TimeoutExpired:
            record = {"schema": SCHEMA, "id": raw.get("id"), "status": "timeout", "backend": backend,
                      "case": raw, "error": f"ran past {args.timeout} s"}
        emit(record, args.out)
        tensor = record.get("tensor") or {}
        cuda = record.get("cuda") or {}
        where = f"{tensor.get('peak_phase')} / {tensor.get('peak_op')}" if tensor else ""
        print(f"[{i}/{len(cases)} {time.time() - t0:6.1f}s] {record.get('id')} {backend}: {record['status']} "
              f"tensors={mib(tensor.get('peak_bytes_rounded'))} {where} "
              f"allocated={mib(cuda.get('max_memory_allocated'))} "
              f"{record.get('reason') or record.get('error', '')[:200]}", file=sys.stderr, flush=True)
        failures += record["status"] in ("error", "timeout")
    return 1 if failures else 0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("case", nargs="?", help="a case: a JSON file, inline JSON, or - for stdin")
    ap.add_argument("--matrix", help="a JSON-lines file of cases; each runs in a fresh process")
    ap.add_argument("--backend", default="auto", choices=["auto", "fake", "cpu", "cuda"],
                    help="where to run (a case's own `backend` field wins in --matrix)")
    ap.add_argument("--no-track", dest="track", action="store_false",
                    help="cuda: skip the live-tensor tracker (allocator figures only)")
    ap.add_argument("--out", help="append records to this file (default: stdout)")
    ap.add_argument("--only", help="--matrix: run the cases whose id matches this regex")
    ap.add_argument("--resume", action="store_true", help="--matrix: skip ids already in --out")
    ap.add_argument("--timeout", type=int, default=1800, help="--matrix: seconds per case")
    args = ap.parse_args()
    if args.matrix:
        return run_matrix(args)
    if not args.case:
        ap.error("give a case (file, inline JSON or -) or --matrix FILE")
    if args.case == "-":
        text = sys.stdin.read()
    elif args.case.lstrip().startswith("{"):
        text = args.case
    else:
        with open(args.case) as f:
            text = f.read()
    raw = json.loads(text)
    backend = args.backend
    if backend == "auto":
        backend = raw.get("backend") or ("cuda" if torch.cuda.is_available() else "cpu")
    record = run_one(raw, backend, args.track)
    emit(record, args.out)
    return 0 if record["status"] in ("ok", "skipped") else 1


if __name__ == "__main__":
    sys.exit(main())
