#!/usr/bin/env python3
"""Cross-checks the harness (validation/measure.py) against the shared oracle's records.

The records in validation/data/oracle-*.jsonl were made by ../shared/oracle/measure.py.
`cases` turns each of their cases into a harness case in vramfit's vocabulary (same
config, same workload, same backend); `compare` lines the harness's records up with
the oracle's and prints, per case, both workload peaks (live tensor bytes, each storage
rounded to 512 B, the model build left out) and where they fall.

    python validation/compare_oracle.py cases validation/data/oracle-*.jsonl > /tmp/twins.jsonl
    python validation/measure.py --matrix /tmp/twins.jsonl --out /tmp/twins-out.jsonl
    python validation/compare_oracle.py compare /tmp/twins-out.jsonl validation/data/oracle-*.jsonl

Differences in the settings: the oracle runs 3 training steps, the twins 2 (step 3
repeats step 2 to the byte); the oracle's cpu generate() runs pass min_new_tokens
(a logits processor the CLI's workload does not have), the harness's do not.
"""
import json
import sys

PRECISION = {("float32", False): "fp32", ("bfloat16", False): "bf16", ("float16", False): "fp16",
             ("float32", True): "fp32", ("bfloat16", True): "bf16-mixed", ("float16", True): "fp16-mixed"}
DTYPE = {"float32": "fp32", "bfloat16": "bf16", "float16": "fp16"}
OPTIMIZER = {"adamw": "adamw", "sgd": "sgd", "sgd_momentum": "sgd-momentum", "adamw_8bit": "adamw-8bit"}
ATTENTION = ["q_proj", "k_proj", "v_proj", "o_proj"]


def twin(case: dict) -> dict:
    """The oracle's case in the harness's vocabulary."""
    out = {"id": case["id"], "backend": case.get("backend", "fake"), "arch": case["arch"],
           "mode": case.get("mode", "full"), "batch": case.get("batch", 1), "seq": case.get("seq", 512),
           "attn": case.get("attn_impl", "sdpa")}
    if out["mode"] == "inference":
        out["dtype"] = DTYPE[case.get("dtype", "float32")]
        out["gen"] = case.get("gen_tokens", 0)
        if case.get("inference_impl"):
            out["inference_impl"] = case["inference_impl"]
    else:
        mixed = bool(case.get("mixed_precision", False))
        if out["mode"] == "lora" and mixed:
            raise ValueError("the oracle's LoRA with mixed precision keeps an fp32 base; vramfit's has a half one")
        out["precision"] = PRECISION[(case.get("dtype", "float32"), mixed)]
        out["optimizer"] = OPTIMIZER[case.get("optimizer", "adamw")]
        out["optimizer_impl"] = case.get("optimizer_impl", "foreach")
        out["grad_ckpt"] = bool(case.get("grad_ckpt", False))
        out["steps"] = 2
        if out["mode"] == "lora":
            lora = case.get("lora", {})
            out["lora"] = {"r": lora.get("r", 16), "alpha": lora.get("alpha", 32),
                           "targets": lora.get("target_modules", ATTENTION)}
    return out


def oracle_peak(record: dict):
    """The oracle's workload peak: the highest phase after `load` (as vramfit's reader takes it)."""
    phases = [p for p in record.get("phases", []) if p.get("phase") != "load"
              and p.get("tracked_peak_bytes_rounded512") is not None]
    if not phases:
        return None, None
    top = max(phases, key=lambda p: p["tracked_peak_bytes_rounded512"])
    where = record.get("tracked", {}).get("peak_where", "")
    op = where.split(" / ")[-1] if where.startswith(top["phase"] + " ") else None
    return top["tracked_peak_bytes_rounded512"], f"{top['phase']} / {op}" if op else top["phase"]


def read(paths):
    for path in paths:
        with open(path) as f:
            for line in f:
                if line.strip():
                    yield json.loads(line)


def main() -> int:
    if len(sys.argv) < 3 or sys.argv[1] not in ("cases", "compare"):
        print(__doc__, file=sys.stderr)
        return 2
    if sys.argv[1] == "cases":
        for record in read(sys.argv[2:]):
            if record.get("status") != "ok":
                continue
            try:
                print(json.dumps(twin(record["case"])))
            except ValueError as e:
                print(f"{record['id']}: not comparable: {e}", file=sys.stderr)
        return 0
    harness = {r["id"]: r for r in read([sys.argv[2]])}
    rows, same, differ = [], 0, 0
    for record in read(sys.argv[3:]):
        mine = harness.get(record.get("id"))
        if record.get("status") != "ok" or mine is None:
            continue
        theirs, where = oracle_peak(record)
        tensor = mine.get("tensor") or {}
        ours = tensor.get("peak_bytes_rounded")
        if mine["status"] != "ok" or ours is None:
            rows.append((record["id"], theirs, None, None, where, mine.get("error") or mine.get("reason")))
            differ += 1
            continue
        delta = ours - theirs
        same += delta == 0
        differ += delta != 0
        rows.append((record["id"], theirs, ours, delta, where, f"{tensor['peak_phase']} / {tensor['peak_op']}"))
    print("| case | oracle peak (B) | harness peak (B) | difference | oracle at | harness at |")
    print("|---|---:|---:|---:|---|---|")
    for cid, theirs, ours, delta, where, mine_where in rows:
        pct = "" if not delta or not theirs else f" ({100 * delta / theirs:+.4f} %)"
        print(f"| {cid} | {theirs:,} | {'' if ours is None else f'{ours:,}'} | "
              f"{'' if delta is None else f'{delta:+,}{pct}'} | {where} | {mine_where} |")
    print(f"\n{same} identical, {differ} different", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
