"""Every document the CLI prints validates against schema/vramfit.schema.json.

The schema is generated from the same structs the CLI serializes
(crates/vramfit-report), so this checks the generator and the serializer
agree: serde and schemars attributes, untagged unions, optional fields.

    python3 schema/validate.py [path/to/vramfit]   # default: target/debug/vramfit

Needs the `jsonschema` package. Prints one line per document and a count;
exits non-zero on any failure.
"""

import json
import os
import subprocess
import sys

import jsonschema

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
GGUF = "crates/vramfit-sources/tests/fixtures/headers/tiny-llama.gguf"
CASES = {
    "EstimateDocument": [
        ["train", "llama-3.1-8b", "--method", "lora", "--grad-ckpt", "--gpu", "rtx-4090"],
        ["train", "llama-3.1-70b", "--grad-ckpt", "--gpus", "32", "--nodes", "4",
         "--strategy", "zero3", "--offload", "params", "--gpu", "h100-80gb"],
        ["infer", "mistral-7b", "--dtype", "nf4", "--gpu", "l4"],
        ["train", "qwen2.5-7b", "--method", "qlora", "--optimizer", "paged-adamw-8bit"],
    ],
    "ParamsDocument": [
        ["params", "llama-3.1-8b", "--lora-r", "16", "--lora-targets", "all-linear"],
        ["params", "mixtral-8x7b", "--lora-targets", "q_proj,v_proj", "--dora"],
        ["params", "gemma-3-4b-pt"],
    ],
    "EngineDocument": [
        ["infer", "llama-3.1-8b", "--engine", "llama.cpp", "--gpu", "rtx-4090,rtx-3060-12gb"],
        ["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "h100-80gb", "--tp", "2"],
        ["infer", "llama-3.1-8b", "--engine", "sglang", "--gpu", "h100-80gb"],
        ["infer", GGUF, "--gpu", "rtx-4090"],
    ],
    "EngineSweepDocument": [
        ["fit", "llama-3.1-8b", "--mode", "infer", "--engine", "vllm"],
        ["fit", GGUF, "--mode", "infer"],
    ],
    "FitDocument": [
        ["fit", "llama-3.1-70b", "--method", "lora", "--grad-ckpt"],
        ["fit", "llama-3.1-8b", "--mode", "infer", "--gpu", "l4"],
    ],
    "RulesDocument": [
        ["rules", "llama-2-7b", "--mode", "train", "--gpu", "a100-80gb"],
        ["rules", "llama-2-7b"],
    ],
    "InspectDocument": [["inspect", GGUF]],
    "ModelsDocument": [["models"]],
    "GpusDocument": [["gpus"], ["gpus", "--vendor", "apple"]],
    "AccuracyDocument": [["accuracy"]],
    "EngineLogDocument": [["accuracy", "--engines"]],
}


def main():
    binary = sys.argv[1] if len(sys.argv) > 1 else os.path.join(ROOT, "target", "debug", "vramfit")
    with open(os.path.join(ROOT, "schema", "vramfit.schema.json")) as f:
        schema = json.load(f)
    passed = failed = 0
    env = dict(os.environ, HF_HUB_OFFLINE="1", NO_COLOR="1")
    for document, runs in CASES.items():
        validator = jsonschema.Draft202012Validator({"$ref": f"#/$defs/{document}", "$defs": schema["$defs"]})
        for args in runs:
            run = subprocess.run([binary, *args, "--json"], capture_output=True, text=True, cwd=ROOT, env=env)
            errors = [run.stderr.strip()] if run.returncode else [
                f"{'/'.join(map(str, e.path))}: {e.message}" for e in validator.iter_errors(json.loads(run.stdout))]
            if errors:
                failed += 1
                print(f"FAIL {document}: vramfit {' '.join(args)}: {errors[0][:300]}")
            else:
                passed += 1
                print(f"ok   {document}: vramfit {' '.join(args)}")
    print(f"schema check: {passed} documents valid, {failed} invalid")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
