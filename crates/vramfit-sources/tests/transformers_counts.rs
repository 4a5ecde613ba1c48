//! Parameter and LoRA counts checked against what transformers 5 and PEFT 0.21
//! really instantiate.
//!
//! `validation/data/transformers-param-counts.jsonl` is written by
//! `validation/param_counts.py`, which builds each config with
//! `AutoModelForCausalLM.from_config` on the meta device and counts
//! `model.parameters()` (and `get_peft_model(...)`'s trainable parameters).
//! It is produced by the real libraries, never by vramfit, so it is an
//! independent check of every formula here.

use std::path::{Path, PathBuf};

use serde_json::Value;
use vramfit_core::lora::{LoraConfig, LoraTargets, lora_params};
use vramfit_core::params::count_params;
use vramfit_sources::parse_config_str;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn records() -> Vec<Value> {
    let path = repo_root().join("validation/data/transformers-param-counts.jsonl");
    let text = std::fs::read_to_string(&path).expect("the measured counts are committed");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

fn lora_settings() -> [(&'static str, LoraConfig); 3] {
    [
        (
            "r8_q_v",
            LoraConfig::new(8, LoraTargets::Modules(vec!["q_proj".into(), "v_proj".into()])),
        ),
        ("r16_all_linear", LoraConfig::new(16, LoraTargets::AllLinear)),
        ("r8_all_linear_dora", LoraConfig::new(8, LoraTargets::AllLinear).with(|c| c.dora = true)),
    ]
}

#[test]
fn totals_and_lora_match_transformers_and_peft() {
    let records = records();
    let mut checked = 0;
    let mut failures = Vec::new();
    for record in &records {
        if record["status"] != "ok" {
            continue;
        }
        let config = record["config"].as_str().expect("config path");
        let text = std::fs::read_to_string(repo_root().join(config)).expect("config file exists");
        let parsed = parse_config_str(&text, config).unwrap_or_else(|e| panic!("{config}: {e}"));
        let total = count_params(&parsed.spec).expect("counts").total;
        let expected = record["total"].as_u64().expect("total");
        if total != expected {
            failures.push(format!("{config}: total {total}, transformers {expected}"));
        }
        for (key, setting) in lora_settings() {
            let measured = &record["lora"][key];
            let ours = lora_params(&parsed.spec, &setting);
            match (measured.get("trainable").and_then(Value::as_u64), ours) {
                (Some(want), Ok(got)) if got.trainable == want => {}
                (Some(want), Ok(got)) => {
                    failures
                        .push(format!("{config} {key}: trainable {}, PEFT {want}", got.trainable));
                }
                (Some(want), Err(e)) => {
                    failures.push(format!("{config} {key}: error `{e}`, PEFT {want}"));
                }
                (None, Ok(got)) => failures.push(format!(
                    "{config} {key}: {} trainable, but PEFT raised: {}",
                    got.trainable, measured["error"]
                )),
                (None, Err(_)) => {}
            }
        }
        checked += 1;
    }
    assert!(failures.is_empty(), "{} mismatches:\n{}", failures.len(), failures.join("\n"));
    assert!(checked >= 40, "only {checked} configs were checked");
}
