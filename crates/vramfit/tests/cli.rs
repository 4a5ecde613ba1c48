//! The `vramfit` binary end to end: output, JSON contract, errors and exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn vramfit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vramfit"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the binary runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).expect("UTF-8 output")
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).expect("UTF-8 errors")
}

fn json(args: &[&str]) -> serde_json::Value {
    let output = vramfit(args);
    assert!(output.status.success(), "{args:?}: {}", stderr(&output));
    serde_json::from_slice(&output.stdout).expect("valid JSON")
}

#[test]
fn params_json_is_versioned_with_integer_counts() {
    let document = json(&["params", "llama-3.1-8b", "--json"]);
    assert_eq!(document["schema_version"], 1);
    // Meta-Llama-3.1-8B's published count.
    assert_eq!(document["params"]["total"].as_u64(), Some(8_030_261_248));
    assert_eq!(document["params"]["trainable"].as_u64(), Some(8_030_261_248));
    assert_eq!(document["model"]["model_type"], "llama");
    assert_eq!(document["model"]["source"], "catalog:meta-llama/Llama-3.1-8B");
    let components = document["params"]["by_component"].as_object().unwrap();
    let sum: u64 = components.values().map(|v| v.as_u64().unwrap()).sum();
    assert_eq!(sum, 8_030_261_248, "the breakdown adds up to the total");
}

#[test]
fn repo_ids_and_aliases_name_the_same_model() {
    let by_id = json(&["params", "meta-llama/Llama-3.1-8B", "--json"]);
    let by_alias = json(&["params", "LLAMA-3.1-8B", "--json"]);
    assert_eq!(by_id["params"], by_alias["params"]);
}

#[test]
fn lora_flags_report_trainable_adapters() {
    // PEFT on Llama-3.1-8B, r=16, all-linear prints "trainable params: 41,943,040 ||
    // all params: 8,072,204,288" (also in validation/data/transformers-param-counts.jsonl).
    let document = json(&[
        "params",
        "llama-3.1-8b",
        "--lora-r",
        "16",
        "--lora-targets",
        "all-linear",
        "--json",
    ]);
    assert_eq!(document["params"]["trainable"].as_u64(), Some(41_943_040));
    assert_eq!(document["params"]["total"].as_u64(), Some(8_072_204_288));
    assert_eq!(document["lora"]["targets"], "all-linear");
    // q_proj,v_proj at r=8: 32 layers × 8 × ((4096 + 4096) + (4096 + 1024)).
    let document = json(&[
        "params",
        "llama-3.1-8b",
        "--lora-r",
        "8",
        "--lora-targets",
        "q_proj,v_proj",
        "--json",
    ]);
    assert_eq!(document["params"]["trainable"].as_u64(), Some(32 * 8 * (8192 + 5120)));
    // DoRA adds one magnitude per output feature of each adapted layer.
    let document = json(&[
        "params",
        "llama-3.1-8b",
        "--lora-r",
        "8",
        "--lora-targets",
        "q_proj,v_proj",
        "--dora",
        "--json",
    ]);
    assert_eq!(
        document["params"]["trainable"].as_u64(),
        Some(32 * (8 * (8192 + 5120) + 4096 + 1024))
    );
}

#[test]
fn table_output_shows_the_breakdown() {
    let output = vramfit(&["params", "gpt2"]);
    assert!(output.status.success());
    let text = stdout(&output);
    for expected in ["embeddings", "attention", "mlp", "norms", "124,439,808", "tied embeddings"] {
        assert!(text.contains(expected), "missing {expected:?} in\n{text}");
    }
    assert!(!text.contains('\u{1b}'), "NO_COLOR output has no escape codes");
}

#[test]
fn models_lists_the_catalog_with_counts() {
    let document = json(&["models", "--json"]);
    let models = document["models"].as_array().unwrap();
    assert!(models.len() >= 40);
    let mixtral =
        models.iter().find(|m| m["id"] == "mistralai/Mixtral-8x7B-v0.1").expect("Mixtral listed");
    assert_eq!(mixtral["params_total"].as_u64(), Some(46_702_792_704));
    let table = stdout(&vramfit(&["models"]));
    assert!(table.contains("deepseek-ai/DeepSeek-V3") && table.contains("671.03 B"), "{table}");
}

#[test]
fn models_filter_by_family_and_release() {
    let ids = |args: &[&str]| -> Vec<String> {
        let mut full = vec!["models", "--json"];
        full.extend_from_slice(args);
        json(&full)["models"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["id"].as_str().unwrap().to_owned())
            .collect()
    };
    // A model_type prefix: Qwen3 dense and MoE and Qwen3.5 (`qwen3_5`), not Qwen2.5.
    let qwen3 = ids(&["--family", "QWEN3"]);
    assert_eq!(qwen3.len(), 10, "{qwen3:?}");
    assert!(qwen3.iter().all(|id| id.starts_with("Qwen/Qwen3")), "{qwen3:?}");
    let qwen3_5 = ids(&["--family", "qwen3.5"]);
    assert_eq!(qwen3_5.len(), 5, "{qwen3_5:?}");
    // What vramfit estimates for each model.
    let all = json(&["models", "--json"]);
    let memory = |id: &str| {
        all["models"].as_array().unwrap().iter().find(|m| m["id"] == id).unwrap()["memory"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(memory("meta-llama/Llama-3.1-8B"), "all");
    assert_eq!(memory("Qwen/Qwen3.5-27B"), "generate");
    assert_eq!(memory("zai-org/GLM-5"), "none");
    let listing = stdout(&vramfit(&["models", "--family", "qwen3.5"]));
    assert!(listing.contains("qwen3.5-27b ¹") && listing.contains("¹ memory of"), "{listing}");
    // Part of the repository id, for a family read under another model_type.
    assert_eq!(ids(&["--family", "kimi"]), ["moonshotai/Kimi-K2-Instruct"]);
    // Released in or after a month, and both filters at once.
    let recent = json(&["models", "--json", "--since", "2025-12"]);
    let recent = recent["models"].as_array().unwrap();
    assert!(
        recent.len() >= 3 && recent.iter().all(|m| m["release"].as_str().unwrap() >= "2025-12")
    );
    assert_eq!(
        ids(&["--family", "mistral", "--since", "2025"]),
        [
            "mistralai/Devstral-Small-2507",
            "mistralai/Devstral-2-123B-Instruct-2512",
            "mistralai/Devstral-Small-2-24B-Instruct-2512"
        ]
    );
    // The table says what it filtered; nothing matching is not an error.
    let table = stdout(&vramfit(&["models", "--since", "2026"]));
    assert!(table.contains("2026-04") && table.contains("(of "), "{table}");
    let none = vramfit(&["models", "--family", "no-such-family"]);
    assert!(none.status.success() && stdout(&none).contains("No catalog model matches"));
    let bad = vramfit(&["models", "--since", "2025-13"]);
    assert_eq!(bad.status.code(), Some(2));
    assert!(stderr(&bad).contains("not a year"), "{}", stderr(&bad));
}

/// Qwen3.5: parameters exact, `generate()` modelled (recurrent state beside the
/// KV cache of the attention layers alone), training and the serving engines
/// refused by name until they are modelled: none guesses.
#[test]
fn qwen3_5_generate_is_modelled_and_the_rest_refused() {
    let document = json(&["params", "qwen3.5-27b", "--json"]);
    assert_eq!(document["params"]["total"].as_u64(), Some(27_356_728_560));
    let document = json(&["infer", "qwen3.5-27b", "--prompt-len", "4096", "--json"]);
    let components = document["memory"]["components"].as_array().unwrap();
    let bytes = |name: &str| {
        components.iter().find(|c| c["name"] == name).and_then(|c| c["bytes"].as_u64())
    };
    // The 47 gated DeltaNet layers before the last one (48 of 64; every fourth is full
    // attention): conv state 10240 × 4 × 2 B (81,920) and fp32 recurrent state
    // 48 × 128 × 128 × 4 B (3,145,728) each, rounded to 512 B.
    assert_eq!(bytes("recurrent state"), Some(47 * (81_920 + 3_145_728)));
    // The KV cache of the 15 full-attention layers before it: 4 KV heads × 256 × 4096 × 2 B.
    assert_eq!(bytes("kv cache"), Some(15 * 2 * 4 * 256 * 4096 * 2));
    assert_eq!(document["memory"]["peak_phase"], "prefill.delta_net");
    for args in [
        &["infer", "qwen3.5-27b", "--engine", "vllm", "--gpu", "h100-80gb"][..],
        &["infer", "qwen3.5-35b-a3b", "--engine", "sglang", "--gpu", "h100-80gb"],
        &["train", "qwen3.5-35b-a3b", "--method", "lora"],
        &["fit", "qwen3.5-27b", "--method", "lora"],
    ] {
        assert_not_modelled(args, "gated DeltaNet");
    }
}

/// `args` fails as an error about the model (1), not bad usage (2), saying
/// that `part`'s memory is not modelled.
fn assert_not_modelled(args: &[&str], part: &str) {
    let output = vramfit(args);
    assert_eq!(output.status.code(), Some(1), "{args:?}");
    let message = stderr(&output);
    assert!(message.contains(part) && message.contains("not modelled"), "{message}");
}

/// DeepSeek Sparse Attention (DeepSeek-V3.2, GLM-5) and Llama 4: parameters
/// exact, every memory command refused by name until their parts are modelled.
#[test]
fn sparse_attention_models_are_counted_and_their_memory_refused() {
    let document = json(&["params", "llama-4-scout", "--json"]);
    assert_eq!(document["params"]["total"].as_u64(), Some(108_641_793_536));
    assert_not_modelled(&["infer", "llama-4-scout"], "Llama 4's chunked attention");
    // LFM2's published count is a safetensors total.
    let document = json(&["params", "lfm2-1.2b", "--json"]);
    assert_eq!(document["params"]["total"].as_u64(), Some(1_170_340_608));
    assert_not_modelled(&["train", "lfm2-1.2b", "--method", "lora"], "short-convolution");
    let document = json(&["params", "deepseek-v3.2", "--json"]);
    assert_eq!(document["params"]["total"].as_u64(), Some(671_877_929_216));
    let document = json(&["params", "glm-5", "--json"]);
    assert_eq!(document["params"]["total"].as_u64(), Some(743_911_199_232));
    for args in [
        &["infer", "glm-5"][..],
        &["infer", "deepseek-v3.2", "--engine", "vllm", "--gpu", "h200", "--tp", "8"],
        &["train", "glm-5", "--method", "lora"],
    ] {
        assert_not_modelled(args, "Sparse Attention");
    }
}

#[test]
fn config_files_and_folders_are_read() {
    let folder = tempfile::tempdir().unwrap();
    let config = r#"{"model_type": "llama", "vocab_size": 1000, "hidden_size": 64,
        "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2}"#;
    std::fs::write(folder.path().join("config.json"), config).unwrap();
    // embeddings + head 2·64,000; per layer 2·4096 + 2·2048 + 3·11,264 + 128 norms; final norm 64.
    let expected = 2 * 64_000 + 2 * (2 * 4096 + 2 * 2048 + 3 * 11_264 + 128) + 64;
    for arg in [folder.path().to_path_buf(), folder.path().join("config.json")] {
        let document = json(&["params", arg.to_str().unwrap(), "--json"]);
        assert_eq!(document["params"]["total"].as_u64(), Some(expected), "{}", arg.display());
    }
}

#[test]
fn unknown_models_fail_with_a_suggestion() {
    let output = vramfit(&["params", "lama-3.1-8b"]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("unknown model `lama-3.1-8b`"), "{message}");
    assert!(message.contains("llama-3.1-8b"), "suggests the close name: {message}");
    assert!(output.stdout.is_empty());
}

#[test]
fn malformed_files_name_the_file_and_key() {
    let folder = tempfile::tempdir().unwrap();
    let broken = folder.path().join("config.json");
    std::fs::write(&broken, r#"{"model_type": "llama", "hidden_size": "big"}"#).unwrap();
    let output = vramfit(&["params", broken.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    let message = stderr(&output);
    assert!(message.contains("config.json") && message.contains("hidden_size"), "{message}");

    std::fs::write(&broken, "{ not json").unwrap();
    let message = stderr(&vramfit(&["params", broken.to_str().unwrap()]));
    assert!(message.contains("not valid JSON") && message.contains("line 1"), "{message}");

    let empty = tempfile::tempdir().unwrap();
    let message = stderr(&vramfit(&["params", empty.path().to_str().unwrap()]));
    assert!(message.contains("has no `config.json`"), "{message}");

    let missing = Path::new("./no/such/config.json");
    let output = vramfit(&["params", missing.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("no such file"), "{}", stderr(&output));
}

#[test]
fn bad_flags_are_usage_errors() {
    let output = vramfit(&["params", "gpt2", "--lora-r", "0"]);
    assert_eq!(output.status.code(), Some(2), "an invalid value is bad usage");
    assert!(stderr(&output).contains("--lora-r"));
    let output = vramfit(&["params", "gpt2", "--lora-r", "-3"]);
    assert_eq!(output.status.code(), Some(2), "clap rejects a negative rank");
    let output = vramfit(&["params", "gpt2", "--lora-targets", "q_proj"]);
    assert_eq!(output.status.code(), Some(2), "a target the model lacks is a setting error");
    assert!(stderr(&output).contains("q_proj"), "GPT-2 has no q_proj: {}", stderr(&output));
    let output = vramfit(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}

#[test]
fn train_json_has_the_contract_fields() {
    let document = json(&[
        "train",
        "llama-3.1-8b",
        "--method",
        "lora",
        "--precision",
        "bf16",
        "--lora-r",
        "16",
        "--lora-targets",
        "all-linear",
        "--batch-size",
        "1",
        "--seq-len",
        "2048",
        "--json",
    ]);
    assert_eq!(document["schema_version"], 1);
    assert_eq!(document["params"]["trainable"].as_u64(), Some(41_943_040));
    assert_eq!(document["params"]["total"].as_u64(), Some(8_072_204_288));
    let memory = &document["memory"];
    let allocated = memory["peak_allocated_bytes"].as_u64().unwrap();
    let reserved = memory["peak_reserved_bytes"].as_u64().unwrap();
    let device = memory["device_total_bytes"].as_u64().unwrap();
    assert!(allocated < reserved && reserved < device, "{allocated} {reserved} {device}");
    assert!(memory["peak_phase"].is_string());
    let components = memory["components"].as_array().unwrap();
    let sum: u64 = components.iter().map(|c| c["bytes"].as_u64().unwrap()).sum();
    assert_eq!(sum, allocated, "the components add up to the allocated peak");
    for component in components {
        assert!(component["name"].is_string() && component["formula"].is_string());
    }
    // bf16 weights of Llama-3.1-8B: 8,030,261,248 × 2 B, each of 291 tensors rounded to 512 B.
    let weights =
        components.iter().find(|c| c["name"] == "weights").unwrap()["bytes"].as_u64().unwrap();
    assert!((16_060_522_496..16_060_522_496 + 291 * 512).contains(&weights), "{weights}");
}

#[test]
fn infer_json_and_gpu_verdict() {
    let document = json(&[
        "infer",
        "llama-3.1-8b",
        "--prompt-len",
        "1024",
        "--gen-len",
        "8192",
        "--gpu",
        "rtx-4090",
        "--json",
    ]);
    let memory = &document["memory"];
    assert_eq!(memory["peak_phase"], "decode");
    let kv =
        memory["components"].as_array().unwrap().iter().find(|c| c["name"] == "kv cache").unwrap();
    // 2 × 32 layers × 8 KV heads × 128 × 9,215 tokens × 2 B (the last generated token is not cached).
    assert_eq!(kv["bytes"].as_u64(), Some(2 * 32 * 8 * 128 * 9215 * 2));
    let gpu = &document["gpu"];
    assert_eq!(gpu["name"], "rtx-4090");
    assert_eq!(gpu["fits"], true);
    assert!(gpu["headroom_bytes"].as_i64().unwrap() > 0);
    // 405B in bf16 cannot fit on one H100; the simplest split needs at least 10.
    let document = json(&["infer", "llama-3.1-405b", "--gpu", "h100-80gb", "--json"]);
    assert_eq!(document["gpu"]["fits"], false);
    assert!(document["gpu"]["gpus_needed"].as_u64().unwrap() >= 10);
}

#[test]
fn quantized_weights_shrink_the_estimate() {
    let bytes = |dtype: &str| {
        let document = json(&["infer", "mistral-7b", "--dtype", dtype, "--json"]);
        let components = document["memory"]["components"].as_array().unwrap().clone();
        components.iter().find(|c| c["name"] == "weights").unwrap()["bytes"].as_u64().unwrap()
    };
    let (bf16, int8, nf4) = (bytes("bf16"), bytes("int8"), bytes("nf4"));
    assert!(nf4 < int8 && int8 < bf16);
    // NF4 linears at ≈4.13 bits; embeddings and lm_head (2 × 32000 × 4096) stay bf16.
    let embeddings_and_head = 2 * 32_000 * 4096 * 2;
    assert!(
        nf4 > embeddings_and_head + 3_300_000_000 && nf4 < embeddings_and_head + 3_700_000_000,
        "{nf4}"
    );
}

#[test]
fn absurd_workloads_are_errors_naming_the_flag() {
    for (args, flag) in [
        (vec!["train", "gpt2", "--batch-size", "0"], "--batch-size"),
        (vec!["train", "gpt2", "--seq-len", "0"], "--seq-len"),
        (vec!["infer", "gpt2", "--prompt-len", "0"], "--prompt-len"),
        (
            vec!["infer", "gpt2", "--batch-size", "4294967296", "--prompt-len", "4294967296"],
            "--batch-size",
        ),
        (vec!["train", "llama-3.2-1b", "--method", "qlora", "--precision", "fp32"], "--precision"),
        (vec!["train", "gpt2", "--lora-r", "8"], "--method"),
        (vec!["infer", "gpt2", "--gpu", "h1000"], "--gpu"),
        (vec!["infer", "gpt2", "--reserved-overhead", "20"], "--reserved-overhead"),
        (
            vec![
                "infer",
                "llama-3.1-8b",
                "--batch-size",
                "18446744073709551615",
                "--prompt-len",
                "18446744073709551615",
                "--gen-len",
                "18446744073709551615",
            ],
            "--batch-size",
        ),
        (vec!["infer", "gpt2", "--prompt-len", "2000"], "--prompt-len"),
        (vec!["train", "gpt2", "--seq-len", "2048"], "--seq-len"),
        (vec!["infer", "gpt2", "--dtype", "fp8", "--gpu", "t4"], "--dtype"),
        (
            vec!["train", "gpt2", "--seq-len", "512", "--attn", "flash", "--gpu", "v100-32gb"],
            "--attn",
        ),
        (vec!["params", "gpt2", "--lora-targets", "h.0.attn.c_attn"], "module path"),
    ] {
        let output = vramfit(&args);
        assert_eq!(
            output.status.code(),
            Some(2),
            "{args:?}: a setting that cannot run is bad usage"
        );
        assert!(stderr(&output).contains(flag), "{args:?}: {}", stderr(&output));
    }
    let output = vramfit(&["infer", "gpt2", "--prompt-len", "99999999999999999999999"]);
    assert_eq!(output.status.code(), Some(2), "beyond u64: clap rejects it");
}

#[test]
fn rules_show_the_rules_of_thumb_beside_vramfit() {
    let output = vramfit(&["rules", "llama-2-7b", "--mode", "train", "--gpu", "a100-80gb"]);
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    for expected in [
        "vramfit (device total)",
        "params × 18 B × 1.25",
        "Anatomy of model training",
        "GPUs (ceil)",
    ] {
        assert!(text.contains(expected), "missing {expected:?}:\n{text}");
    }
    let document = json(&["rules", "llama-2-7b", "--mode", "infer", "--json"]);
    let rules = document["rules"].as_array().unwrap();
    // params × 2 B for Llama-2-7B.
    assert!(rules.iter().any(|r| r["bytes"].as_u64() == Some(2 * 6_738_415_616)));
}

#[test]
fn gpus_lists_the_catalog() {
    let document = json(&["gpus", "--json"]);
    let gpus = document["gpus"].as_array().unwrap();
    assert!(gpus.iter().any(|g| g["name"] == "h100-80gb" && g["memory_mib"] == 81559));
}

/// Measured cases the model misses by more than 5 %, found by the harness
/// after the model was written; listed here and in the README until explained.
/// (Empty: the last three, checkpointed LoRA on wide layers, were an adapted
/// linear's forward temporaries coming back in the recompute, now traced.)
const KNOWN_MISSES: [&str; 0] = [];

#[test]
fn accuracy_report_reads_the_measured_data() {
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../validation/data");
    let document = json(&["accuracy", data.to_str().unwrap(), "--json"]);
    assert!(document["summary"]["cases"].as_u64().unwrap() >= 200);
    // Issue 3's targets: median within 2 %, every case within 5 % — except the
    // misses the project's harness found after the model was written, listed
    // here (and in the README) until they are explained. A listed case that
    // comes within 1 % must leave the list.
    assert!(document["summary"]["median_abs_error"].as_f64().unwrap() <= 0.02);
    let cases = document["cases"].as_array().unwrap();
    for case in cases {
        let id = case["id"].as_str().unwrap();
        let error = case["error"].as_f64().unwrap().abs();
        if KNOWN_MISSES.contains(&id) {
            assert!(error > 0.01, "{id} is within 1 % now: take it off the known misses");
        } else {
            // Tighter than the issue's 5 %, by mode, so that a regression shows: every
            // inference and full fine-tuning case is within 1 %, and the adapters' within
            // 3 % (their peaks fall inside layers on the wide cases).
            let bound = match case["mode"].as_str().unwrap() {
                "inference" | "full" => 0.01,
                _ => 0.03,
            };
            assert!(error <= bound, "{id}: {:.2} % off", error * 100.0);
        }
    }
    assert!(document["summary"]["p90_abs_error"].as_f64().unwrap() <= 0.01);
    for id in KNOWN_MISSES {
        assert!(cases.iter().any(|c| c["id"] == id), "{id} is no longer measured");
    }
}

#[test]
fn an_installed_binary_carries_the_measured_data() {
    // Run from a folder with no `validation/`: the binary's own copy answers,
    // the same cases as the repository's files.
    let elsewhere = tempfile::tempdir().unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_vramfit"))
        .args(["accuracy", "--json"])
        .current_dir(elsewhere.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let embedded: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    let data = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../validation/data");
    let files = json(&["accuracy", data.to_str().unwrap(), "--json"]);
    assert_eq!(embedded, files);
    // A file far larger than any measurement file is refused unread, not read whole.
    let huge = elsewhere.path().join("huge.jsonl");
    std::fs::File::create(&huge).unwrap().set_len(1 << 30).unwrap();
    let refused = vramfit(&["accuracy", huge.to_str().unwrap()]);
    assert_eq!(refused.status.code(), Some(1));
    assert!(stderr(&refused).contains("larger than 33554432 bytes"), "{}", stderr(&refused));
    // A path that is not there is named.
    let missing = vramfit(&["accuracy", "no/such/folder"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(stderr(&missing).contains("`no/such/folder` is neither a file nor a folder"));
}

#[test]
fn committed_accuracy_report_is_current() {
    // docs/accuracy.md is generated; regenerate with
    // `cargo run --release -- accuracy --markdown > docs/accuracy.md` from the repository root.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(env!("CARGO_BIN_EXE_vramfit"))
        .args(["accuracy", "--markdown"])
        .current_dir(&root)
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", stderr(&output));
    let committed = std::fs::read_to_string(root.join("docs/accuracy.md"))
        .expect("docs/accuracy.md is committed");
    assert!(committed == stdout(&output), "docs/accuracy.md is stale: regenerate it");
}

/// `train` on the layout and batch `fit` answered, with `extra` flags.
fn train_fits(layout: &serde_json::Value, batch: u64, extra: &[&str]) -> bool {
    let gpus = layout["gpus"].to_string();
    let nodes = layout["nodes"].to_string();
    let tp = layout["tp"].to_string();
    let pp = layout["pp"].to_string();
    let strategy = layout["strategy"].as_str().unwrap().to_owned();
    let batch = batch.to_string();
    let mut args = vec![
        "train",
        "llama-3.1-8b",
        "--gpu",
        "h100-80gb",
        "--gpus",
        &gpus,
        "--nodes",
        &nodes,
        "--tp",
        &tp,
        "--pp",
        &pp,
        "--strategy",
        &strategy,
        "--batch-size",
        &batch,
        "--json",
    ];
    args.extend_from_slice(extra);
    json(&args)["gpu"]["fits"].as_bool().unwrap()
}

#[test]
fn fit_answers_are_tight_for_training() {
    let document =
        json(&["fit", "llama-3.1-8b", "--gpu", "h100-80gb", "--seq-len", "1024", "--json"]);
    let answer = &document["answers"][0];
    assert_eq!(answer["gpu"], "h100-80gb");
    let layout = &answer["gpus_needed"]["layout"];
    let gpus = layout["gpus"].as_u64().unwrap();
    // Full fine-tuning of 8B with AdamW: 16 B/param is 128 GB, more than one 80 GB GPU.
    assert!(gpus >= 2, "{answer}");
    let batch = answer["largest_batch"]["batch_size"].as_u64().unwrap();
    // `train` agrees: the answer fits, one more sequence per GPU does not.
    assert!(train_fits(layout, batch, &["--seq-len", "1024"]));
    assert!(!train_fits(layout, batch + 1, &["--seq-len", "1024"]));
    // One GPU fewer does not fit under the plain strategies either.
    for strategy in ["ddp", "zero2", "zero3", "fsdp"] {
        let fewer = serde_json::json!({
            "gpus": gpus - 1, "nodes": 1, "tp": 1, "pp": 1, "strategy": strategy
        });
        assert!(!train_fits(&fewer, 1, &["--seq-len", "1024"]), "{strategy} on {} GPUs", gpus - 1);
    }
    // The longest sequence fits and one more token does not.
    let seq = answer["longest_sequence"]["tokens"].as_u64().unwrap();
    assert!(train_fits(layout, 1, &["--seq-len", &seq.to_string()]));
    assert!(!train_fits(layout, 1, &["--seq-len", &(seq + 1).to_string()]));
}

#[test]
fn fit_answers_are_tight_for_inference() {
    let document = json(&["fit", "llama-3.1-8b", "--mode", "infer", "--gpu", "rtx-4090", "--json"]);
    let answer = &document["answers"][0];
    assert_eq!(answer["gpus_needed"]["gpus"], 1);
    let infer_fits = |flag: &str, value: u64| {
        json(&["infer", "llama-3.1-8b", "--gpu", "rtx-4090", flag, &value.to_string(), "--json"])
            ["gpu"]["fits"]
            .as_bool()
            .unwrap()
    };
    let batch = answer["largest_batch"]["batch_size"].as_u64().unwrap();
    assert!(batch > 1);
    assert!(infer_fits("--batch-size", batch) && !infer_fits("--batch-size", batch + 1));
    let prompt = answer["longest_sequence"]["tokens"].as_u64().unwrap();
    assert!(infer_fits("--prompt-len", prompt) && !infer_fits("--prompt-len", prompt + 1));
    // 70B in bf16 does not fit on one 24 GB card: a split over several, no batch on one.
    let document =
        json(&["fit", "llama-3.1-70b", "--mode", "infer", "--gpu", "rtx-4090", "--json"]);
    let answer = &document["answers"][0];
    assert!(answer["gpus_needed"]["gpus"].as_u64().unwrap() >= 6);
    assert!(answer["largest_batch"].is_null());
}

#[test]
fn fit_without_a_gpu_sweeps_the_catalog() {
    let catalog = json(&["gpus", "--json"]);
    let count =
        catalog.as_array().map_or_else(|| catalog["gpus"].as_array().unwrap().len(), Vec::len);
    let document = json(&["fit", "llama-3.1-8b", "--method", "lora", "--grad-ckpt", "--json"]);
    let answers = document["answers"].as_array().unwrap();
    assert_eq!(answers.len(), count);
    let h100 = answers.iter().find(|a| a["gpu"] == "h100-80gb").unwrap();
    let a10g = answers.iter().find(|a| a["gpu"] == "a10g").unwrap();
    assert_eq!(h100["gpus_needed"]["gpus"], 1);
    // More memory, a larger batch.
    assert!(
        h100["largest_batch"]["batch_size"].as_u64() > a10g["largest_batch"]["batch_size"].as_u64()
    );
    let table = stdout(&vramfit(&["fit", "llama-3.1-8b", "--method", "lora"]));
    assert!(table.contains("h100-80gb") && table.contains("largest micro-batch"), "{table}");
    // Bad search bounds are errors naming the flag.
    for (flag, value) in
        [("--max-gpus", "0"), ("--max-gpus", "9223372036854775807"), ("--gpus-per-node", "0")]
    {
        let output = vramfit(&["fit", "llama-3.1-8b", flag, value]);
        assert_eq!(output.status.code(), Some(2));
        assert!(stderr(&output).contains(flag), "{flag} {value}: {}", stderr(&output));
    }
}

/// `--check` turns a verdict that does not fit into exit code 3, for CI and
/// scripts; a fitting one, or no `--gpu`, stays 0.
#[test]
fn check_exits_3_when_the_job_does_not_fit() {
    let status = |args: &[&str]| vramfit(args).status.code();
    assert_eq!(status(&["train", "llama-3.1-70b", "--gpu", "rtx-4090", "--check"]), Some(3));
    assert_eq!(status(&["train", "llama-3.1-70b", "--gpu", "rtx-4090"]), Some(0));
    assert_eq!(status(&["train", "llama-3.2-1b", "--gpu", "h100-80gb", "--check"]), Some(0));
    assert_eq!(status(&["train", "llama-3.1-70b", "--check"]), Some(0), "no verdict without --gpu");
    assert_eq!(
        status(&["infer", "llama-3.1-70b", "--engine", "vllm", "--gpu", "l4", "--check", "--json"]),
        Some(3)
    );
    assert_eq!(status(&["infer", "llama-3.2-1b", "--gpu", "l4", "--check"]), Some(0));
}

/// A `.safetensors` file given as MODEL is pointed to `inspect` and to the
/// config beside it, never called invalid JSON.
#[test]
fn a_safetensors_file_as_model_points_to_inspect() {
    let file = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../vramfit-sources/tests/fixtures/headers/bnb4.safetensors"
    );
    for command in ["params", "train", "infer"] {
        let output = vramfit(&[command, file]);
        assert_eq!(output.status.code(), Some(1), "{command}");
        let message = stderr(&output);
        assert!(
            message.contains("vramfit inspect") && message.contains("config.json"),
            "{message}"
        );
        assert!(!message.contains("not valid JSON"), "{message}");
    }
}

/// Runs vramfit online against a closed local endpoint with `env`, killing it
/// after 20 s (a FIFO read would block forever).
#[cfg(unix)]
fn online(env: &[(&str, &str)], args: &[&str]) -> (Option<i32>, String) {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vramfit"));
    command
        .args(args)
        .env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_TOKEN")
        .env("NO_COLOR", "1")
        .env("HF_ENDPOINT", "http://127.0.0.1:9")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped());
    for (key, value) in env {
        command.env(key, value);
    }
    let mut child = command.spawn().expect("the binary runs");
    let start = std::time::Instant::now();
    while child.try_wait().expect("waits").is_none() {
        if start.elapsed() > std::time::Duration::from_secs(20) {
            child.kill().ok();
            panic!("{args:?} hung");
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let output = child.wait_with_output().expect("output");
    (output.status.code(), String::from_utf8_lossy(&output.stderr).into_owned())
}

/// A FIFO as the token file never blocks a run: a catalog model needs no
/// token, and a Hub model gets an error naming the file; a token a header
/// cannot carry is named as a token problem.
#[cfg(unix)]
#[test]
fn special_token_files_and_bad_tokens_are_named_never_hang() {
    let home = tempfile::tempdir().unwrap();
    let fifo = home.path().join("token");
    let made = Command::new("mkfifo").arg(&fifo).status();
    if made.is_ok_and(|s| s.success()) {
        let env = [("HF_HOME", home.path().to_str().unwrap())];
        assert_eq!(online(&env, &["params", "llama-3.1-8b"]).0, Some(0));
        let (code, message) = online(&env, &["params", "org/model"]);
        assert_eq!(code, Some(1));
        assert!(message.contains("token") && message.contains("FIFO"), "{message}");
        assert!(message.contains(fifo.to_str().unwrap()), "{message}");
    }
    let (code, message) = online(&[("HF_TOKEN", "abc\ndef")], &["params", "org/model"]);
    assert_eq!(code, Some(1));
    assert!(message.contains("HF_TOKEN") && !message.contains("cannot reach"), "{message}");
    let (_, message) = online(&[("HF_TOKEN", "jeton-\u{e9}t\u{e9}")], &["params", "org/model"]);
    assert!(message.contains("HF_TOKEN"), "{message}");
}

/// A FIFO or a device given as MODEL is an error naming it, never a read.
#[cfg(unix)]
#[test]
fn special_files_as_model_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fifo = dir.path().join("config.json");
    if Command::new("mkfifo").arg(&fifo).status().is_ok_and(|s| s.success()) {
        let (code, message) = online(&[], &["params", fifo.to_str().unwrap()]);
        assert_eq!(code, Some(1));
        assert!(message.contains("FIFO"), "{message}");
        let (code, message) = online(&[], &["params", dir.path().to_str().unwrap()]);
        assert_eq!(code, Some(1), "a folder whose config.json is a FIFO: {message}");
    }
    let (code, message) = online(&[], &["params", "/dev/zero"]);
    assert_eq!(code, Some(1));
    assert!(message.contains("not a regular file"), "{message}");
}

/// A symbolic-link loop as MODEL, or as a folder's config.json, is reported
/// as a loop.
#[cfg(unix)]
#[test]
fn symlink_loops_are_reported_as_loops() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    std::os::unix::fs::symlink(&a, &b).unwrap();
    std::os::unix::fs::symlink(&b, &a).unwrap();
    let output = vramfit(&["params", a.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("loop"), "{}", stderr(&output));
    let model = dir.path().join("model");
    std::fs::create_dir(&model).unwrap();
    std::os::unix::fs::symlink(model.join("config.json"), model.join("config.json")).unwrap();
    let output = vramfit(&["params", model.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("loop"), "{}", stderr(&output));
}

/// A password inside `HF_ENDPOINT` never reaches an error or `--verbose`.
#[cfg(unix)]
#[test]
fn endpoint_passwords_are_never_printed() {
    for args in
        [&["params", "org/model"][..], &["-v", "params", "org/model"], &["inspect", "org/model"]]
    {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vramfit"));
        let output = command
            .args(args)
            .env_remove("HF_HUB_OFFLINE")
            .env_remove("HF_TOKEN")
            .env("HF_HOME", "/nonexistent-vramfit-home")
            .env("HF_ENDPOINT", "http://user:s3cr3t@127.0.0.1:9")
            .output()
            .unwrap();
        let all = format!("{}{}", stdout(&output), stderr(&output));
        assert_eq!(output.status.code(), Some(1), "{all}");
        assert!(!all.contains("s3cr3t") && all.contains("***@127.0.0.1:9"), "{args:?}: {all}");
    }
}

/// Completion scripts for each shell and a man page, from the same command
/// definition; a closed pipe is not an error.
#[test]
fn completions_and_man_page() {
    for shell in ["bash", "zsh", "fish", "powershell", "elvish"] {
        let output = vramfit(&["completions", shell]);
        assert!(output.status.success(), "{shell}");
        let script = stdout(&output);
        assert!(script.contains("vramfit") && script.contains("grad-ckpt"), "{shell}");
    }
    assert_eq!(vramfit(&["completions", "tcsh"]).status.code(), Some(2));
    let man = stdout(&vramfit(&["man"]));
    assert!(man.starts_with(".ie") && man.contains(".TH vramfit 1"), "{}", &man[..200]);
    #[cfg(unix)]
    {
        let closed = Command::new("sh")
            .arg("-c")
            .arg(format!("{} completions bash | head -1", env!("CARGO_BIN_EXE_vramfit")))
            .output()
            .unwrap();
        assert!(!String::from_utf8_lossy(&closed.stderr).contains("panicked"));
    }
}

/// `fit --mode infer` never answers with a layer split that cannot exist: when
/// one decoder layer's weights and KV cache exceed a GPU, it does not fit.
#[test]
fn an_impossible_layer_split_is_not_an_answer() {
    let args = ["fit", "llama-3.1-8b", "--mode", "infer", "--gpu", "l4", "--batch-size", "256"];
    let mut json = args.to_vec();
    json.extend(["--prompt-len", "32768", "--json"]);
    let document = serde_json::from_slice::<serde_json::Value>(&vramfit(&json).stdout).unwrap();
    assert!(document["answers"][0]["gpus_needed"].is_null(), "{document}");
    let mut table = args.to_vec();
    table.extend(["--prompt-len", "32768"]);
    let text = stdout(&vramfit(&table));
    assert!(text.contains("does not fit") && text.contains("one decoder layer"), "{text}");
    // The train/infer verdict says the same.
    let verdict = stdout(&vramfit(&[
        "infer",
        "llama-3.1-8b",
        "--gpu",
        "l4",
        "--batch-size",
        "256",
        "--prompt-len",
        "32768",
    ]));
    assert!(verdict.contains("no layer-by-layer split fits"), "{verdict}");
}

/// An unknown `--gpu` suggests the nearest names.
#[test]
fn unknown_gpus_suggest_the_nearest_name() {
    for (typed, meant) in [("rtx4090", "rtx-4090"), ("RTX-4900", "rtx-4090"), ("a100", "a100-80gb")]
    {
        let message = stderr(&vramfit(&["train", "gpt2", "--gpu", typed]));
        assert!(
            message.contains("did you mean `") && message.contains(&format!("`{meant}`")),
            "{typed}: {message}"
        );
    }
    let message = stderr(&vramfit(&["train", "gpt2", "--gpu", "zzz"]));
    assert!(message.contains("unknown GPU `zzz`") && message.contains("vramfit gpus"), "{message}");
    // A number without its unit is not taken for a name or guessed at.
    let message = stderr(&vramfit(&["train", "gpt2", "--gpu", "24"]));
    assert!(message.contains("give a memory size with its unit"), "{message}");
}

/// The verdict is green or red on a terminal (forced here with
/// `CLICOLOR_FORCE`), plain when piped or with `NO_COLOR`.
#[test]
fn the_verdict_is_coloured_only_where_colour_belongs() {
    let run = |env: &[(&str, &str)], model: &str| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_vramfit"));
        command.args(["train", model, "--method", "lora", "--gpu", "rtx-4090"]);
        command.env("HF_HUB_OFFLINE", "1");
        command.env_remove("NO_COLOR").env_remove("CLICOLOR_FORCE");
        for (key, value) in env {
            command.env(key, value);
        }
        String::from_utf8(command.output().unwrap().stdout).unwrap()
    };
    assert!(!run(&[], "llama-3.1-70b").contains('\u{1b}'), "piped: no colour");
    let red = run(&[("CLICOLOR_FORCE", "1")], "llama-3.1-70b");
    assert!(red.contains("\u{1b}[31mdoes NOT fit"), "{red}");
    let green = run(&[("CLICOLOR_FORCE", "1")], "llama-3.2-1b");
    assert!(green.contains("\u{1b}[32mfits"), "{green}");
    assert!(!run(&[("CLICOLOR_FORCE", "1"), ("NO_COLOR", "1")], "llama-3.2-1b").contains('\u{1b}'));
}

#[test]
fn a_workload_past_the_context_window_is_a_warning_or_with_strict_an_error() {
    // Llama 3.1's window is 131072 tokens: the prompt and the generated tokens share it.
    let inside = json(&["infer", "llama-3.1-8b", "--prompt-len", "130816", "--json"]);
    assert_eq!(inside["warnings"], serde_json::json!([]));
    let past = json(&["infer", "llama-3.1-8b", "--prompt-len", "130817", "--json"]);
    let warnings = past["warnings"].to_string();
    assert!(warnings.contains("131073 tokens") && warnings.contains("131072"), "{warnings}");
    let table = vramfit(&["infer", "llama-3.1-8b", "--prompt-len", "130817"]);
    assert!(stdout(&table).starts_with("warning: --prompt-len 130817"), "{}", stdout(&table));
    let train = json(&["train", "llama-3.1-8b", "--seq-len", "131073", "--json"]);
    assert!(train["warnings"].to_string().contains("--seq-len 131073"), "{train}");
    let strict = vramfit(&["train", "llama-3.1-8b", "--seq-len", "131073", "--strict"]);
    assert_eq!(strict.status.code(), Some(2), "{}", stderr(&strict));
    assert!(stderr(&strict).starts_with("error: --seq-len 131073"), "{}", stderr(&strict));
    let strict_ok = vramfit(&["train", "llama-3.1-8b", "--seq-len", "131072", "--strict"]);
    assert!(strict_ok.status.success(), "{}", stderr(&strict_ok));
}

#[test]
fn fit_caps_the_longest_sequence_at_the_context_window_and_says_so() {
    // Memory allows more than Qwen3-0.6B's 40960 tokens on an H200.
    let doc =
        json(&["fit", "qwen3-0.6b", "--mode", "train", "--grad-ckpt", "--gpu", "h200", "--json"]);
    assert_eq!(doc["context_window"], 40_960);
    let sequence = &doc["answers"][0]["longest_sequence"];
    assert_eq!(sequence["tokens"], 40_960);
    assert_eq!(sequence["at_context_window"], true);
    let table =
        stdout(&vramfit(&["fit", "qwen3-0.6b", "--mode", "train", "--grad-ckpt", "--gpu", "h200"]));
    assert!(
        table.contains("40960 tokens") && table.contains("capped at the model's context window"),
        "{table}"
    );
    // Generation: the generated tokens come out of the window.
    let doc = json(&["fit", "llama-3.2-1b", "--mode", "infer", "--gpu", "h200", "--json"]);
    assert_eq!(doc["answers"][0]["longest_sequence"]["tokens"], 131_072 - 256);
    // A small GPU's memory stops it first: not marked.
    let doc = json(&["fit", "llama-3.2-1b", "--mode", "train", "--gpu", "t4", "--json"]);
    assert_eq!(doc["answers"][0]["longest_sequence"]["at_context_window"], false);
    // Across the catalog, capped cells carry a mark and a footnote.
    let table = stdout(&vramfit(&["fit", "llama-3.2-1b", "--mode", "infer"]));
    assert!(
        table.contains("130816 *")
            && table.contains("* capped at the model's context window (131072"),
        "{table}"
    );
}

/// Tables wrap to the terminal's real width (not `COLUMNS`, which shells do
/// not export): run under a pseudo-terminal of 72 columns (util-linux
/// `script`, in every Debian install).
#[cfg(target_os = "linux")]
#[test]
fn tables_fit_the_terminal_width() {
    let command = format!(
        "stty rows 40 cols 72; {} fit llama-3.1-8b --mode infer",
        env!("CARGO_BIN_EXE_vramfit")
    );
    let output = Command::new("script")
        .args(["-q", "-e", "-c", &command, "/dev/null"])
        .env_remove("COLUMNS")
        .env("NO_COLOR", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("util-linux `script` runs");
    assert!(output.status.success(), "{}", stderr(&output));
    let text = stdout(&output);
    let rows: Vec<&str> = text
        .lines()
        .map(|line| line.trim_end_matches('\r'))
        .filter(|line| line.starts_with(['┌', '│', '╞', '├', '└']))
        .collect();
    assert!(rows.len() > 10, "{text}");
    for row in rows {
        assert!(row.chars().count() <= 72, "wider than the terminal: {row}");
    }
    // Piped, the same table keeps its 120-column layout.
    let piped = stdout(&vramfit(&["fit", "llama-3.1-8b", "--mode", "infer"]));
    assert!(piped.lines().any(|line| line.chars().count() > 72), "{piped}");
}

#[test]
fn help_is_grouped_and_lists_only_flags_the_subcommand_accepts() {
    let infer = stdout(&vramfit(&["infer", "--help"]));
    let headings: Vec<&str> =
        infer.lines().filter(|line| line.ends_with(':') && !line.starts_with(' ')).collect();
    for heading in [
        "Workload:",
        "Inference:",
        "Serving engines:",
        "vLLM and SGLang:",
        "llama.cpp:",
        "GPU and runtime:",
        "Global options:",
    ] {
        assert!(headings.contains(&heading), "{heading} missing from {headings:?}");
    }
    // Each group holds its own flags: --max-num-seqs under vLLM, --ctx-size under llama.cpp.
    let is_heading = |line: &str| line.ends_with(':') && !line.starts_with(' ');
    let section = |name: &str| -> String {
        infer
            .lines()
            .skip_while(|line| *line != name)
            .skip(1)
            .take_while(|line| !is_heading(line))
            .collect::<Vec<_>>()
            .join("\n")
    };
    assert!(section("vLLM and SGLang:").contains("--max-num-seqs"));
    assert!(section("llama.cpp:").contains("--ctx-size"));
    assert!(section("Global options:").contains("--strict"));
    // `rules` refuses every serving engine; `fit` searches --tp itself.
    let rules = stdout(&vramfit(&["rules", "--help"]));
    for flag in ["--engine", "--max-model-len", "--ctx-size", "--tp"] {
        assert!(!rules.contains(flag), "rules --help lists {flag}");
    }
    let fit = stdout(&vramfit(&["fit", "--help"]));
    assert!(!fit.lines().any(|l| l.trim_start().starts_with("--tp")), "{fit}");
    assert!(fit.contains("--max-model-len"), "fit --mode infer --engine vllm takes it");
    // Hidden flags are still parsed, so the refusal names them.
    let refused =
        vramfit(&["fit", "llama-3.1-8b", "--mode", "infer", "--engine", "vllm", "--tp", "2"]);
    assert_eq!(refused.status.code(), Some(2));
    assert!(stderr(&refused).starts_with("error: --tp"), "{}", stderr(&refused));
    let refused = vramfit(&["rules", "llama-3.1-8b", "--engine", "vllm"]);
    assert!(stderr(&refused).contains("--engine vllm"), "{}", stderr(&refused));
}

/// A `fit` sweep shows progress on stderr when it runs past the delay
/// (`VRAMFIT_PROGRESS_AFTER_MS`, 0 here), on a terminal only, and wipes it.
#[cfg(target_os = "linux")]
#[test]
fn a_slow_fit_sweep_shows_progress_on_a_terminal_only() {
    for engine in ["transformers", "vllm"] {
        let command = format!(
            "stty rows 40 cols 200; {} fit llama-3.1-8b --mode infer --engine {engine}",
            env!("CARGO_BIN_EXE_vramfit")
        );
        let output = Command::new("script")
            .args(["-q", "-e", "-c", &command, "/dev/null"])
            .env("VRAMFIT_PROGRESS_AFTER_MS", "0")
            .env("NO_COLOR", "1")
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .expect("util-linux `script` runs");
        assert!(output.status.success(), "{}", stderr(&output));
        let text = stdout(&output);
        // vLLM is searched on the accelerators it runs on (CUDA and ROCm).
        let kinds = json(&["gpus", "--json"])["gpus"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|g| {
                engine == "transformers" || g["platform"] == "cuda" || g["platform"] == "rocm"
            })
            .count();
        assert!(
            text.contains(&format!("\rsearched {kinds}/{kinds} GPU kinds")),
            "{engine}: {text}"
        );
        assert!(text.contains("\r\x1b[K"), "{engine}: the progress line is wiped");
        // Piped, stderr holds no progress.
        let piped = Command::new(env!("CARGO_BIN_EXE_vramfit"))
            .args(["fit", "llama-3.1-8b", "--mode", "infer", "--engine", engine])
            .env("VRAMFIT_PROGRESS_AFTER_MS", "0")
            .env("HF_HUB_OFFLINE", "1")
            .output()
            .unwrap();
        assert!(piped.status.success());
        assert!(!stderr(&piped).contains("searched"), "{}", stderr(&piped));
    }
}
