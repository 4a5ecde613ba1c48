"""The Python API against the installed `vramfit` command.

Run from a venv where the wheel is installed (CI: .ci/run):
    python -m pytest python/tests
The command on PATH is the wheel's script; with VRAMFIT_BIN set, the
cargo-built binary is compared with it too, byte for byte.
"""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest

import vramfit

ROOT = Path(__file__).resolve().parents[2]
GGUF = str(ROOT / "crates/vramfit-sources/tests/fixtures/headers/tiny-llama.gguf")
CLI = shutil.which("vramfit")
ENV = dict(os.environ, HF_HUB_OFFLINE="1", NO_COLOR="1")


def cli(*args: str) -> subprocess.CompletedProcess:
    assert CLI, "the wheel installs a `vramfit` command on PATH"
    return subprocess.run([CLI, *args], capture_output=True, text=True, env=ENV, cwd=ROOT)


def cli_json(*args: str) -> dict:
    run = cli(*args, "--json")
    assert run.returncode == 0, run.stderr
    return json.loads(run.stdout)


# (API call, the same as CLI flags): at least ten settings across every command.
CASES = [
    (lambda: vramfit.train("llama-3.1-8b", method="lora", grad_ckpt=True, gpu="rtx-4090"),
     ["train", "llama-3.1-8b", "--method", "lora", "--grad-ckpt", "--gpu", "rtx-4090"]),
    (lambda: vramfit.train("qwen2.5-7b", method="qlora", grad_ckpt=True, seq_len=4096, gpu="a10g"),
     ["train", "qwen2.5-7b", "--method", "qlora", "--grad-ckpt", "--seq-len", "4096", "--gpu", "a10g"]),
    (lambda: vramfit.train("llama-3.1-70b", grad_ckpt=True, gpus=32, nodes=4, strategy="zero3",
                           gpu="h100-80gb"),
     ["train", "llama-3.1-70b", "--grad-ckpt", "--gpus", "32", "--nodes", "4", "--strategy", "zero3",
      "--gpu", "h100-80gb"]),
    (lambda: vramfit.train("mistral-7b", optimizer="adamw-8bit", batch_size=4, precision="bf16"),
     ["train", "mistral-7b", "--optimizer", "adamw-8bit", "--batch-size", "4", "--precision", "bf16"]),
    (lambda: vramfit.infer("mistral-7b", dtype="nf4", batch_size=8, prompt_len=4096, gen_len=512, gpu="l4"),
     ["infer", "mistral-7b", "--dtype", "nf4", "--batch-size", "8", "--prompt-len", "4096", "--gen-len",
      "512", "--gpu", "l4"]),
    (lambda: vramfit.infer("llama-3.1-8b", engine="vllm", gpu="h100-80gb", tp=2),
     ["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "h100-80gb", "--tp", "2"]),
    (lambda: vramfit.infer("llama-3.1-8b", engine="sglang", gpu="h100-80gb"),
     ["infer", "llama-3.1-8b", "--engine", "sglang", "--gpu", "h100-80gb"]),
    (lambda: vramfit.infer(GGUF, gpu="rtx-4090"), ["infer", GGUF, "--gpu", "rtx-4090"]),
    (lambda: vramfit.params("llama-3.1-8b", lora_r=16, lora_targets=["q_proj", "v_proj"], dora=True),
     ["params", "llama-3.1-8b", "--lora-r", "16", "--lora-targets", "q_proj,v_proj", "--dora"]),
    (lambda: vramfit.params("gemma-3-4b-pt"), ["params", "gemma-3-4b-pt"]),
    (lambda: vramfit.fit("llama-3.1-8b", method="lora", grad_ckpt=True, gpu="rtx-4090"),
     ["fit", "llama-3.1-8b", "--method", "lora", "--grad-ckpt", "--gpu", "rtx-4090"]),
    (lambda: vramfit.fit("llama-3.1-8b", mode="infer", engine="vllm", gpu="l4"),
     ["fit", "llama-3.1-8b", "--mode", "infer", "--engine", "vllm", "--gpu", "l4"]),
    (lambda: vramfit.rules("llama-2-7b", mode="train", gpu="a100-80gb"),
     ["rules", "llama-2-7b", "--mode", "train", "--gpu", "a100-80gb"]),
    (lambda: vramfit.inspect(GGUF), ["inspect", GGUF]),
    (lambda: vramfit.models(), ["models"]),
    (lambda: vramfit.models(family="qwen3", since="2025-04"),
     ["models", "--family", "qwen3", "--since", "2025-04"]),
    (lambda: vramfit.gpus(), ["gpus"]),
    (lambda: vramfit.gpus(vendor="amd", min_memory="48GiB"),
     ["gpus", "--vendor", "amd", "--min-memory", "48GiB"]),
    (lambda: vramfit.infer("llama-3.1-8b", engine="llama.cpp", dtype="int8", gpu="rtx-4090,rtx-3060-12gb",
                           tensor_split="2,1"),
     ["infer", "llama-3.1-8b", "--engine", "llama.cpp", "--dtype", "int8", "--gpu", "rtx-4090,rtx-3060-12gb",
      "--tensor-split", "2,1"]),
]


@pytest.mark.parametrize("call,args", CASES, ids=[" ".join(a[:2]) for _, a in CASES])
def test_to_dict_equals_the_cli_json(call, args):
    assert call().to_dict() == cli_json(*args)


def test_attribute_access_and_shortcuts():
    r = vramfit.train("llama-3.1-8b", method="lora", grad_ckpt=True, gpu="rtx-4090")
    assert r.memory.peak_allocated_bytes == r.to_dict()["memory"]["peak_allocated_bytes"]
    assert r.memory.peak_allocated_bytes > 2 * 8_030_261_248  # the bf16 base alone
    assert r.fits is True and r.gpu.name == "rtx-4090"
    assert [p.name for p in r.components] == [p["name"] for p in r.to_dict()["memory"]["components"]]
    assert r.workload.mode == "training" and r.workload.lora.rank == 8
    assert vramfit.train("llama-3.1-8b").fits is None
    with pytest.raises(AttributeError, match="no field"):
        _ = r.memory.no_such_field
    # to_dict is a copy: changing it changes nothing.
    r.to_dict()["memory"]["peak_allocated_bytes"] = 0
    assert r.memory.peak_allocated_bytes > 0


def test_accelerators_by_name_size_and_vendor():
    amd = vramfit.gpus(vendor="amd").gpus
    assert amd and all(g.vendor == "amd" and g.platform == "rocm" for g in amd)
    by_size = vramfit.infer("llama-3.1-8b", gpu="24GiB")
    assert by_size.gpu.memory_bytes == 24 * 2**30 and by_size.fits is True
    mac = vramfit.infer("llama-3.1-8b", gpu="m2-max-96gb")
    assert mac.gpu.memory_bytes == 73_728 * 2**20  # Metal's working set, not the RAM
    with pytest.raises(vramfit.InvalidSetting):
        vramfit.infer("llama-3.1-8b", engine="vllm", gpu="m2-max-96gb")


def test_models_filters_by_family_and_release():
    kimi = vramfit.models(family="kimi").models
    assert [m.id for m in kimi] == ["moonshotai/Kimi-K2-Instruct"] and kimi[0].release == "2025-07"
    recent = vramfit.models(since="2026").models
    assert recent and all(m.release >= "2026" for m in recent)
    assert len(recent) < len(vramfit.models().models)


def test_an_architecture_whose_memory_is_not_modelled_is_an_error_not_a_setting():
    assert vramfit.params("qwen3.5-27b").params.total == 27_356_728_560
    assert vramfit.infer("qwen3.5-27b").memory.peak_phase == "prefill.delta_net"
    with pytest.raises(vramfit.Error, match="not modelled") as error:
        vramfit.train("qwen3.5-27b", method="lora")
    assert not isinstance(error.value, vramfit.InvalidSetting)


def test_errors_are_exceptions_with_kinds():
    with pytest.raises(vramfit.ModelNotFound, match="no-such-model"):
        vramfit.params("no-such-model")
    with pytest.raises(vramfit.InvalidSetting) as error:
        vramfit.train("llama-3.1-8b", batch_size=0)
    assert error.value.setting == "--batch-size" and "at least 1" in str(error.value)
    with pytest.raises(vramfit.InvalidSetting) as error:
        vramfit.train("llama-3.1-8b", strategy="no-such-strategy")
    assert error.value.setting == "--strategy" and error.value.exit_code == 2
    with pytest.raises(vramfit.InvalidSetting) as error:
        vramfit.train("llama-3.1-8b", gpus=3, tp=2)
    assert error.value.setting == "--gpus"
    with pytest.raises(vramfit.InvalidSetting):
        vramfit.params(3.5)  # not a model
    assert issubclass(vramfit.HeaderError, vramfit.Error)


def test_a_broken_header_is_a_header_error(tmp_path):
    broken = tmp_path / "broken.gguf"
    broken.write_bytes(b"GGUF\x03\x00\x00\x00" + b"\xff" * 16)
    with pytest.raises(vramfit.HeaderError):
        vramfit.inspect(str(broken))


def test_an_unknown_architecture_is_refused_by_key():
    config = {"model_type": "my_arch", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 176,
              "num_hidden_layers": 2, "num_attention_heads": 4, "num_experts": 8}
    with pytest.raises(vramfit.Error, match="num_experts"):
        vramfit.params(config)


LLAMA = {"model_type": "llama", "vocab_size": 32000, "hidden_size": 4096, "intermediate_size": 11008,
         "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
         "max_position_embeddings": 4096}


def test_dict_and_object_configs(tmp_path):
    # Llama-2-7B's shape: the model card's 6,738,415,616 parameters.
    assert vramfit.params(LLAMA).params.total == 6_738_415_616
    (tmp_path / "config.json").write_text(json.dumps(LLAMA))
    from_file = vramfit.train(str(tmp_path), method="lora").to_dict()
    from_dict = vramfit.train(LLAMA, method="lora").to_dict()
    assert from_dict["memory"] == from_file["memory"]
    assert from_dict["model"]["source"] == "inline:dict"

    class PretrainedConfigLike:
        def to_dict(self):
            return dict(LLAMA)

    r = vramfit.train(PretrainedConfigLike(), method="lora")
    assert r.memory == vramfit.train(LLAMA, method="lora").memory
    assert r.model.source == "inline:PretrainedConfigLike"
    # A path object works like its string.
    assert vramfit.params(tmp_path).params.total == 6_738_415_616


def test_train_from_args_reads_training_and_lora_arguments():
    args = SimpleNamespace(per_device_train_batch_size=4, gradient_accumulation_steps=8,
                           gradient_checkpointing=True, bf16=True, fp16=False, optim="adamw_torch_fused",
                           max_seq_length=4096)
    lora = SimpleNamespace(r=16, target_modules={"q_proj", "v_proj"}, use_dora=False, lora_alpha=32)
    r = vramfit.train_from_args("llama-3.1-8b", args, lora, gpu="a100-80gb")
    expected = cli_json("train", "llama-3.1-8b", "--batch-size", "4", "--grad-accum", "8", "--grad-ckpt",
                        "--precision", "bf16-mixed", "--optimizer", "adamw", "--optimizer-impl", "fused",
                        "--seq-len", "4096", "--method", "lora", "--lora-r", "16",
                        "--lora-targets", "q_proj,v_proj", "--lora-alpha", "32", "--gpu", "a100-80gb")
    assert r.to_dict() == expected
    # Without a LoraConfig it is full fine-tuning; keyword options win.
    plain = SimpleNamespace(per_device_train_batch_size=2, gradient_checkpointing=False, bf16=False,
                            fp16=True, optim="paged_adamw_8bit")
    r = vramfit.train_from_args("llama-3.2-1b", plain, seq_len=1024)
    w = r.workload
    assert (w.method, w.precision, w.optimizer, w.batch_size, w.seq_len) == (
        "full", "fp16-mixed", "paged-adamw-8bit", 2, 1024)
    with pytest.raises(vramfit.InvalidSetting) as error:
        vramfit.train_from_args("llama-3.2-1b", SimpleNamespace(optim="adamw_apex_fused"))
    assert error.value.setting == "optim"


def test_the_installed_command_is_the_cli():
    # Tables, errors and exit codes as the CLI prints them.
    run = cli("train", "llama-3.1-8b", "--method", "lora", "--grad-ckpt", "--gpu", "rtx-4090")
    assert run.returncode == 0 and "fits on one NVIDIA GeForce RTX 4090" in run.stdout
    run = cli("train", "gpt2", "--batch-size", "0")
    assert run.returncode == 2 and run.stderr.startswith("error: invalid --batch-size")
    run = cli("frobnicate")
    assert run.returncode == 2 and "unrecognized subcommand" in run.stderr
    assert cli("--version").stdout.strip() == f"vramfit {vramfit.__version__}"
    cargo = os.environ.get("VRAMFIT_BIN")
    if cargo:  # the cargo-built binary prints the same, byte for byte
        for args in (["train", "llama-3.1-8b", "--method", "lora", "--gpu", "l4"], ["gpus"], ["frobnicate"]):
            ours, theirs = cli(*args), subprocess.run([cargo, *args], capture_output=True, text=True,
                                                      env=ENV, cwd=ROOT)
            assert (ours.returncode, ours.stdout, ours.stderr) == (
                theirs.returncode, theirs.stdout, theirs.stderr)


def test_help_is_useful():
    doc = vramfit.train.__doc__ or ""
    assert "method" in doc and "--json" in doc
    assert "TrainingArguments" in (vramfit.train_from_args.__doc__ or "")


def test_the_stubs_and_readme_examples_pass_mypy_strict(tmp_path):
    mypy = pytest.importorskip("mypy.api")
    example = tmp_path / "example.py"
    example.write_text(
        "import vramfit\n"
        "r = vramfit.train('llama-3.1-8b', method='lora', grad_ckpt=True, gpu='rtx-4090')\n"
        "peak: int = r.memory.peak_allocated_bytes\n"
        "fits: bool | None = r.fits\n"
        "names = [part.name for part in r.components]\n"
        "doc: dict[str, object] = r.to_dict()\n"
        "try:\n"
        "    vramfit.params('no-such-model')\n"
        "except vramfit.InvalidSetting as error:\n"
        "    setting: str = error.setting\n"
        "except vramfit.Error:\n"
        "    pass\n"
    )
    out, err, status = mypy.run(["--strict", "--python-version", f"{sys.version_info[0]}.{sys.version_info[1]}",
                                 str(example)])
    assert status == 0, out + err


def test_nested_fields_named_like_the_shortcuts_are_the_fields():
    r = vramfit.train("llama-3.1-8b", method="lora", grad_ckpt=True, gpu="rtx-4090")
    assert r.gpu.fits is True and r.fits is True
    assert len(r.memory.components) == len(r.components) > 0


def test_documents_copy_and_pickle():
    import copy
    import pickle

    r = vramfit.params("gpt2")
    assert copy.copy(r) == r and copy.deepcopy(r) == r
    assert pickle.loads(pickle.dumps(r)) == r


def test_check_returns_the_document_when_it_does_not_fit():
    r = vramfit.train("llama-3.1-70b", gpu="rtx-4090", check=True)
    assert r.fits is False and r.gpu.name == "rtx-4090"


def test_false_turns_a_switch_off():
    on = vramfit.infer(GGUF, gpu="rtx-4090")
    off = vramfit.infer(GGUF, gpu="rtx-4090", flash_attn=False, fit=False, kv_offload=False)
    flags = {s.flag: s.value for s in off.engine.settings}
    assert flags["-fa"] == "off" and flags["-nkvo"] == "true"
    assert {s.flag: s.value for s in on.engine.settings}["-fa"] == "on"
    assert off.to_dict() == cli_json("infer", GGUF, "--gpu", "rtx-4090", "--flash-attn", "off",
                                     "--no-fit", "--no-kv-offload")


def test_help_is_an_error_not_a_crash():
    with pytest.raises(vramfit.Error, match="no JSON document"):
        vramfit.train("gpt2", help=True)


def test_train_from_args_refuses_what_it_does_not_model():
    args = SimpleNamespace(per_device_train_batch_size=1)
    for lora in (SimpleNamespace(r=8, target_modules=None),
                 SimpleNamespace(r=8, target_modules=["q_proj"], modules_to_save=["lm_head"]),
                 SimpleNamespace(r=8, target_modules=["q_proj"], bias="all")):
        with pytest.raises(vramfit.InvalidSetting):
            vramfit.train_from_args("llama-3.2-1b", args, lora)
    with pytest.raises(vramfit.InvalidSetting) as error:
        vramfit.train_from_args("llama-3.2-1b", SimpleNamespace(fsdp="full_shard"))
    assert error.value.setting == "fsdp"
