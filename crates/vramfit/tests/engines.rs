//! `vramfit infer --engine …`: serving engines end to end through the CLI.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

fn vramfit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vramfit"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the binary runs")
}

fn json(args: &[&str]) -> Value {
    let mut all = args.to_vec();
    all.push("--json");
    let output = vramfit(&all);
    assert!(output.status.success(), "{args:?}: {}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn failure(args: &[&str]) -> String {
    let output = vramfit(args);
    assert!(!output.status.success(), "{args:?} should fail");
    String::from_utf8_lossy(&output.stderr).into_owned()
}

fn headers() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vramfit-sources/tests/fixtures/headers")
}

fn setting(doc: &Value, flag: &str) -> String {
    doc["engine"]["settings"]
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["flag"] == flag)
        .unwrap_or_else(|| panic!("no {flag}"))["value"]
        .as_str()
        .unwrap()
        .to_owned()
}

fn part(doc: &Value, list: &str, name: &str) -> u64 {
    doc["memory"][list]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .map_or(0, |p| p["bytes"].as_u64().unwrap())
}

#[test]
fn a_gguf_file_runs_under_llama_cpp_with_its_stored_bytes() {
    let expected: Value =
        serde_json::from_str(&std::fs::read_to_string(headers().join("expected.json")).unwrap())
            .unwrap();
    // What the gguf package read: the bytes of every tensor.
    let stored: u64 = expected["gguf"]["tiny-llama.gguf"]["tensors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["n_bytes"].as_u64().unwrap())
        .sum();
    let file = headers().join("tiny-llama.gguf");
    let doc = json(&["infer", file.to_str().unwrap(), "--ctx-size", "1024"]);
    assert_eq!(doc["engine"]["name"], "llama.cpp");
    assert_eq!(setting(&doc, "-c"), "1024");
    // Untied head: every stored byte is on the GPU or the host, once.
    let gpu = part(&doc, "components", "weights");
    let host = part(&doc, "host_components", "weights");
    assert_eq!(gpu + host, stored);
    // The token embeddings stay on the host.
    assert!(host > 0);
    // A split model is read whole from its first file.
    let split = headers().join("split-00001-of-00002.gguf");
    let doc = json(&["infer", split.to_str().unwrap(), "--ctx-size", "512"]);
    assert_eq!(doc["engine"]["name"], "llama.cpp");
    // transformers can still be asked for (it dequantizes GGUF on load).
    let doc = json(&["infer", file.to_str().unwrap(), "--engine", "transformers"]);
    assert!(doc["memory"]["peak_allocated_bytes"].as_u64().unwrap() > 0);
}

#[test]
fn engine_flags_are_checked() {
    let e = failure(&["infer", "llama-3.1-8b", "--engine", "vllm"]);
    assert!(e.contains("--gpu"), "{e}");
    let e = failure(&[
        "infer",
        "llama-3.1-8b",
        "--engine",
        "vllm",
        "--gpu",
        "h100-80gb",
        "--ctx-size",
        "4096",
    ]);
    assert!(e.contains("--ctx-size") && e.contains("llama.cpp"), "{e}");
    let e = failure(&["infer", "llama-3.1-8b", "--gpu-memory-utilization", "0.8"]);
    assert!(e.contains("--gpu-memory-utilization") && e.contains("transformers"), "{e}");
    let e = failure(&["infer", "llama-3.1-8b", "--engine", "llama.cpp", "--dtype", "nf4"]);
    assert!(e.contains("llama.cpp weight type"), "{e}");
    let e = failure(&[
        "infer",
        "llama-3.1-8b",
        "--engine",
        "llama.cpp",
        "--flash-attn",
        "off",
        "--cache-type-v",
        "q8_0",
    ]);
    assert!(e.contains("flash attention"), "{e}");
    let e =
        failure(&["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "h100-80gb", "--tp", "3"]);
    assert!(e.contains("--tp") && e.contains("32 attention heads"), "{e}");
}

#[test]
fn vllm_defaults_follow_the_gpu() {
    let h100 = json(&["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "h100-80gb"]);
    assert_eq!(setting(&h100, "--gpu-memory-utilization"), "0.92");
    assert_eq!(setting(&h100, "--max-num-batched-tokens"), "8192");
    assert_eq!(setting(&h100, "--max-num-seqs"), "1024");
    assert_eq!(setting(&h100, "--max-model-len"), "131072");
    // An A100 gets the smaller defaults whatever its memory (`get_batch_defaults`).
    let a100 = json(&["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "a100-80gb"]);
    assert_eq!(setting(&a100, "--max-num-batched-tokens"), "2048");
    assert_eq!(setting(&a100, "--max-num-seqs"), "256");
    let offline =
        json(&["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "h100-80gb", "--llm-class"]);
    assert_eq!(setting(&offline, "--max-num-batched-tokens"), "16384");
    // Tensor parallelism: each rank holds about half the weights and more cache.
    let tp2 =
        json(&["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "h100-80gb", "--tp", "2"]);
    let w1 = part(&h100, "components", "weights");
    let w2 = part(&tp2, "components", "weights");
    assert!(w2 < w1 * 51 / 100 && w2 > w1 * 49 / 100, "{w1} {w2}");
    let t1 = h100["kv_cache"]["capacity_tokens"].as_u64().unwrap();
    let t2 = tp2["kv_cache"]["capacity_tokens"].as_u64().unwrap();
    assert!(t2 > 2 * t1, "{t1} {t2}");
}

#[test]
fn paged_engines_serve_exactly_as_many_requests_as_their_cache_holds() {
    for engine in ["vllm", "sglang"] {
        let base = ["infer", "llama-3.1-8b", "--engine", engine, "--gpu", "h100-80gb"];
        let long = ["--prompt-len", "60000", "--gen-len", "4000"];
        let args: Vec<&str> = base.iter().chain(long.iter()).copied().collect();
        let doc = json(&args);
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a small count"
        )]
        let at_once = doc["kv_cache"]["concurrency_at_request"].as_f64().unwrap().floor() as u64;
        assert!(at_once >= 1, "{engine}: {doc}");
        let fits = |batch: u64| {
            let batch = batch.to_string();
            let mut with: Vec<&str> = args.clone();
            with.extend(["--batch-size", batch.as_str()]);
            json(&with)["gpu"]["fits"].as_bool().unwrap()
        };
        assert!(fits(at_once), "{engine}: {at_once} requests");
        assert!(!fits(at_once + 1), "{engine}: {} requests", at_once + 1);
    }
}

#[test]
fn llama_cpp_fits_a_70b_model_on_a_24gb_card_by_offloading_layers() {
    let doc = json(&[
        "infer",
        "llama-3.1-70b",
        "--engine",
        "llama.cpp",
        "--dtype",
        "int4",
        "--gpu",
        "rtx-4090",
    ]);
    // --fit: the context shrinks to its floor, then layers leave the GPU.
    assert_eq!(setting(&doc, "-c"), "4096");
    let ngl: u64 = setting(&doc, "-ngl").parse().unwrap();
    assert!((1..81).contains(&ngl), "{ngl}");
    assert_eq!(doc["gpu"]["fits"], true);
    assert!(doc["memory"]["host_bytes"].as_u64().unwrap() > 10_000_000_000);
    // With --no-fit llama.cpp keeps every layer and the whole context, and runs out of memory.
    let doc = json(&[
        "infer",
        "llama-3.1-70b",
        "--engine",
        "llama.cpp",
        "--dtype",
        "int4",
        "--gpu",
        "rtx-4090",
        "--no-fit",
    ]);
    assert_eq!(setting(&doc, "-ngl"), "81");
    assert_eq!(doc["gpu"]["fits"], false);
}

#[test]
fn fit_finds_the_fewest_tensor_parallel_gpus_and_no_fewer_would_do() {
    let work = ["--batch-size", "32", "--prompt-len", "8000", "--gen-len", "192"];
    let mut args =
        vec!["fit", "llama-3.1-70b", "--mode", "infer", "--engine", "vllm", "--gpu", "h100-80gb"];
    args.extend(work);
    let doc = json(&args);
    let tp = doc["answers"][0]["gpus_needed"].as_u64().unwrap();
    assert!(tp >= 2, "{doc}");
    let serves = |tp: u64| {
        let tp = tp.to_string();
        let mut args =
            vec!["infer", "llama-3.1-70b", "--engine", "vllm", "--gpu", "h100-80gb", "--tp", &tp];
        args.extend(work);
        json(&args)["gpu"]["fits"].as_bool().unwrap()
    };
    assert!(serves(tp));
    assert!(!serves(tp / 2));
    // Across the catalog: one row per GPU kind.
    let mut all = vec!["fit", "llama-3.1-70b", "--mode", "infer", "--engine", "sglang"];
    all.extend(work);
    let doc = json(&all);
    assert!(doc["answers"].as_array().unwrap().len() >= 10);
    // llama.cpp: the context and layers its --fit settles on, as infer reports them.
    let fit = json(&[
        "fit",
        "llama-3.1-70b",
        "--mode",
        "infer",
        "--engine",
        "llama.cpp",
        "--dtype",
        "int4",
        "--gpu",
        "rtx-4090",
    ]);
    let infer = json(&[
        "infer",
        "llama-3.1-70b",
        "--engine",
        "llama.cpp",
        "--dtype",
        "int4",
        "--gpu",
        "rtx-4090",
    ]);
    assert_eq!(fit["answers"][0]["settings"], infer["engine"]["settings"]);
    let e = failure(&["fit", "llama-3.1-8b", "--engine", "vllm"]);
    assert!(e.contains("--mode infer"), "{e}");
}

#[test]
fn llama_cpp_serves_only_the_sequences_its_context_holds() {
    // One unified cache of -c cells: 3 × 1280 = 3840 ≤ 4096 fit, 4 × 1280 = 5120 do not.
    let run = |batch: &str| {
        json(&[
            "infer",
            "llama-3.1-8b",
            "--engine",
            "llama.cpp",
            "--ctx-size",
            "4096",
            "--batch-size",
            batch,
            "--gpu",
            "h100-80gb",
        ])
    };
    assert_eq!(run("3")["gpu"]["fits"], true);
    let four = run("4");
    assert_eq!(four["gpu"]["fits"], false);
    assert!(four["notes"].to_string().contains("5120 cells"), "{}", four["notes"]);
    // -c 0 is the training context, kept even when --fit would shrink an automatic one.
    let zero = json(&[
        "infer",
        "llama-3.1-70b",
        "--engine",
        "llama.cpp",
        "--dtype",
        "int4",
        "--ctx-size",
        "0",
        "--gpu",
        "rtx-4090",
    ]);
    assert_eq!(setting(&zero, "-c"), "131072");
    let e =
        failure(&["infer", "llama-3.1-8b", "--engine", "llama.cpp", "--ctx-size", "99999999999"]);
    assert!(e.contains("32-bit"), "{e}");
}

#[test]
fn fit_explains_gguf_training_and_refuses_a_fixed_tp() {
    let gguf = headers().join("tiny-llama.gguf");
    let e = failure(&["fit", gguf.to_str().unwrap()]);
    assert!(e.contains("--mode infer") && e.contains("config.json"), "{e}");
    let e = failure(&["fit", "llama-3.1-8b", "--mode", "infer", "--engine", "vllm", "--tp", "2"]);
    assert!(e.contains("--tp") && e.contains("itself"), "{e}");
}

#[test]
fn a_request_past_max_model_len_is_rejected_not_queued() {
    for engine in ["vllm", "sglang"] {
        let args = |prompt: &'static str| {
            [
                "infer",
                "llama-3.1-8b",
                "--engine",
                engine,
                "--gpu",
                "h100-80gb",
                "--max-model-len",
                "4096",
                "--prompt-len",
                prompt,
                "--gen-len",
                "96",
            ]
        };
        assert_eq!(json(&args("4000"))["gpu"]["fits"], true, "{engine}");
        let doc = json(&args("4001"));
        assert_eq!(doc["gpu"]["fits"], false, "{engine}");
        let notes = doc["notes"].to_string();
        assert!(notes.contains("rejects a request of 4097 tokens"), "{engine}: {notes}");
        assert!(!notes.contains("queues"), "{engine}: {notes}");
    }
}

/// vLLM and SGLang size their budgets from CUDA's own total, not nvidia-smi's:
/// an H100's is 81,105 MiB (deviceQuery, in the catalog), which vLLM logs print
/// as 79.18–79.22 GiB (`validation/engine-logs/corpus.jsonl`: PR 10511, the
/// gateway-inference-extension sample, issue 19's H100 figure).
#[test]
fn paged_engines_budget_from_cuda_total() {
    let h100 = json(&["gpus", "--min-memory", "70GiB"])["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .find(|g| g["name"] == "h100-80gb")
        .cloned()
        .unwrap();
    let cuda_gib = h100["cuda_total_mib"].as_f64().unwrap() / 1024.0;
    for logged in [79.22, 79.19, 79.18] {
        assert!((cuda_gib - logged).abs() < 0.05, "{cuda_gib} vs logged {logged}");
    }
    // The H100 estimate equals that of a generic GPU of exactly CUDA's total.
    for engine in ["vllm", "sglang"] {
        let kv = |gpu: &str| {
            let doc = json(&["infer", "llama-3.1-8b", "--engine", engine, "--gpu", gpu]);
            doc["kv_cache"]["capacity_tokens"].as_u64().unwrap()
        };
        assert_eq!(kv("h100-80gb"), kv("81105MiB"), "{engine}");
        assert!(kv("h100-80gb") < kv("81559MiB"), "{engine}: nvidia-smi's total is not the budget");
    }
    // Where no capture exists, the output says the budget may be generous.
    let doc = json(&["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "rtx-5090"]);
    assert!(format!("{}", doc["notes"]).contains("CUDA's own total"), "{doc}");
}

/// The engines against published start-up logs (`vramfit accuracy --engines`):
/// llama.cpp's KV cache and compute buffer and vLLM's weights match what the
/// engines printed, and every figure off by more than 10 % names its cause.
#[test]
fn engines_match_their_published_logs() {
    let doc = json(&["accuracy", "--engines"]);
    let cases = doc["cases"].as_array().unwrap();
    assert!(cases.len() >= 15, "{doc}");
    let error = |id: &str, figure: &str| {
        cases.iter().find(|c| c["id"] == id && c["figure"] == figure).unwrap()["error"]
            .as_f64()
            .unwrap()
    };
    // Qwen2.5-1.5B at -c 4096 on an M4: "KV self size = 112.00 MiB", "compute buffer size = 299.75 MiB".
    assert!(error("llamacpp-qwen25-1.5b-metal-4k", "kv_cache_bytes").abs() < 1e-9);
    assert!(error("llamacpp-qwen25-1.5b-metal-4k", "compute_buffer").abs() < 1e-3);
    // Llama-3.1-8B's weights: "Model loading took 14.9889 GiB".
    assert!(error("vllm-llama31-8b-l40s-32k", "weights").abs() < 0.005);
    assert!(error("vllm-llama3-8b-79gib-tp2", "weights").abs() < 0.005);
    for case in cases {
        if case["error"].as_f64().unwrap().abs() > 0.10 {
            assert!(case["explained"].is_string(), "unexplained: {case}");
        }
    }
    // A record's verdict is not the command's: --check passes.
    let checked = vramfit(&["--check", "accuracy", "--engines"]);
    assert_eq!(checked.status.code(), Some(0));
    // The committed report is this one; regenerate with
    // `cargo run --release -- accuracy --engines --markdown > docs/engine-accuracy.md`.
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..");
    let output = Command::new(env!("CARGO_BIN_EXE_vramfit"))
        .args(["accuracy", "--engines", "--markdown"])
        .current_dir(&root)
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .unwrap();
    assert!(output.status.success());
    let committed = std::fs::read_to_string(root.join("docs/engine-accuracy.md")).unwrap();
    assert!(
        committed == String::from_utf8_lossy(&output.stdout),
        "docs/engine-accuracy.md is stale"
    );
    // A record that does not parse is an error naming its line.
    let dir = tempfile::tempdir().unwrap();
    let bad = dir.path().join("bad.jsonl");
    std::fs::write(&bad, "{\"id\": 1}\n").unwrap();
    let message = failure(&["accuracy", "--engines", bad.to_str().unwrap()]);
    assert!(message.contains("line 1: not an engine-log record"), "{message}");
}
