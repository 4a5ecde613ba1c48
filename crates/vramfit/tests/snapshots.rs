//! Each command's JSON document and table, pinned for a few representative
//! models (insta snapshots in `tests/snapshots/`). A change to any figure,
//! field or line shows here as a diff to review; accept a deliberate one with
//! `INSTA_UPDATE=always cargo test -p vramfit --test snapshots` (or
//! `cargo insta review`). Under CI (`CI=true`) a mismatch fails and nothing
//! is written.

use std::process::Command;

/// The command's standard output (its error output when it fails, marked so).
fn run(args: &[&str]) -> String {
    let output = Command::new(env!("CARGO_BIN_EXE_vramfit"))
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/../.."))
        .env("NO_COLOR", "1")
        .env("HF_HUB_OFFLINE", "1")
        .env("COLUMNS", "120")
        .output()
        .expect("the binary runs");
    let stdout = String::from_utf8(output.stdout).expect("UTF-8 output");
    if output.status.success() {
        stdout
    } else {
        format!("exit {:?}\n{}", output.status.code(), String::from_utf8_lossy(&output.stderr))
    }
}

const GGUF: &str = "crates/vramfit-sources/tests/fixtures/headers/tiny-llama.gguf";

/// `(snapshot name, arguments)`: each is pinned as a table and as JSON.
const CASES: &[(&str, &[&str])] = &[
    (
        "train_lora_llama31_8b_4090",
        &["train", "llama-3.1-8b", "--method", "lora", "--grad-ckpt", "--gpu", "rtx-4090"],
    ),
    (
        "train_full_zero3_70b",
        &[
            "train",
            "llama-3.1-70b",
            "--grad-ckpt",
            "--gpus",
            "32",
            "--nodes",
            "4",
            "--strategy",
            "zero3",
            "--gpu",
            "h100-80gb",
        ],
    ),
    (
        "train_qlora_qwen25_7b",
        &[
            "train",
            "qwen2.5-7b",
            "--method",
            "qlora",
            "--grad-ckpt",
            "--seq-len",
            "4096",
            "--gpu",
            "a10g",
        ],
    ),
    (
        "infer_nf4_mistral_7b_l4",
        &[
            "infer",
            "mistral-7b",
            "--dtype",
            "nf4",
            "--batch-size",
            "8",
            "--prompt-len",
            "4096",
            "--gen-len",
            "512",
            "--gpu",
            "l4",
        ],
    ),
    (
        "infer_vllm_llama31_8b_tp2",
        &["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "h100-80gb", "--tp", "2"],
    ),
    (
        "infer_sglang_llama31_8b",
        &["infer", "llama-3.1-8b", "--engine", "sglang", "--gpu", "h100-80gb"],
    ),
    ("infer_llamacpp_gguf", &["infer", GGUF, "--gpu", "rtx-4090"]),
    (
        "params_lora_llama31_8b",
        &["params", "llama-3.1-8b", "--lora-r", "16", "--lora-targets", "all-linear"],
    ),
    ("params_gemma3_4b", &["params", "gemma-3-4b-pt"]),
    (
        "fit_lora_llama31_70b",
        &[
            "fit",
            "llama-3.1-70b",
            "--method",
            "lora",
            "--grad-ckpt",
            "--vendor",
            "nvidia",
            "--min-memory",
            "40GiB",
        ],
    ),
    ("fit_infer_llama31_8b_l4", &["fit", "llama-3.1-8b", "--mode", "infer", "--gpu", "l4"]),
    ("fit_vllm_llama31_8b", &["fit", "llama-3.1-8b", "--mode", "infer", "--engine", "vllm"]),
    ("rules_llama2_7b_a100", &["rules", "llama-2-7b", "--mode", "train", "--gpu", "a100-80gb"]),
    ("inspect_gguf", &["inspect", GGUF]),
    ("gpus", &["gpus"]),
];

#[test]
fn tables_and_json_are_pinned() {
    for (name, args) in CASES {
        insta::assert_snapshot!(format!("{name}.table"), run(args), &args.join(" "));
        let mut json = args.to_vec();
        json.push("--json");
        insta::assert_snapshot!(format!("{name}.json"), run(&json), &json.join(" "));
    }
}
