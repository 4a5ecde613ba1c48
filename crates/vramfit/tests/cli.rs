//! The `vramfit` binary end to end: output, JSON contract, errors and exit codes.

use std::path::Path;
use std::process::{Command, Output};

fn vramfit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vramfit"))
        .args(args)
        .env("NO_COLOR", "1")
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
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("--lora-r"));
    let output = vramfit(&["params", "gpt2", "--lora-r", "-3"]);
    assert_eq!(output.status.code(), Some(2), "clap rejects a negative rank");
    let output = vramfit(&["params", "gpt2", "--lora-targets", "q_proj"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(stderr(&output).contains("q_proj"), "GPT-2 has no q_proj: {}", stderr(&output));
    let output = vramfit(&["frobnicate"]);
    assert_eq!(output.status.code(), Some(2));
}
