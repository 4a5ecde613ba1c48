//! No silent guess: the default config of every causal-LM `model_type` that
//! transformers ships is either counted exactly or refused with an error that
//! names the key vramfit did not understand.
//!
//! `tests/fixtures/transformers-default-configs.jsonl` is written by
//! `validation/default_configs.py`: each line holds a type's default config as
//! `save_pretrained` writes it and the parameter count of the model transformers
//! builds from it (on the meta device), or the error transformers itself raised.
//! The counts come from transformers, never from vramfit.

use std::path::Path;

use serde_json::Value;
use vramfit_core::params::count_params;
use vramfit_sources::{SourceError, parse_config_value};

fn records() -> Vec<Value> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transformers-default-configs.jsonl");
    let text = std::fs::read_to_string(&path).expect("the default configs are committed");
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| serde_json::from_str(l).expect("valid JSON line"))
        .collect()
}

/// The config keys an error names (`None` for an error that names none).
fn named_keys(error: &SourceError) -> Option<Vec<String>> {
    match error {
        SourceError::InvalidField { key, .. } => Some(vec![key.clone()]),
        SourceError::MissingFields { fields, .. } => Some(fields.clone()),
        SourceError::Unsupported { keys, .. } => Some(keys.clone()),
        _ => None,
    }
}

/// Whether `key` (dotted for nested keys) is present in `config`.
fn key_in(config: &Value, key: &str) -> bool {
    let mut node = config;
    for part in key.split('.') {
        match node.get(part) {
            Some(next) => node = next,
            None => return false,
        }
    }
    true
}

#[test]
fn every_default_config_is_counted_exactly_or_refused_by_key() {
    let records = records();
    assert!(records.len() >= 190, "one record per causal-LM model_type of transformers 5.24");
    let (mut exact, mut refused, mut unbuildable) = (0, 0, 0);
    let mut failures = Vec::new();
    let mut refused_types = Vec::new();
    for record in &records {
        let model_type = record["model_type"].as_str().expect("model_type");
        let config = &record["config"];
        if config.is_null() {
            // transformers' config class refused its own defaults: nothing to feed.
            unbuildable += 1;
            continue;
        }
        let origin = format!("default {model_type} config");
        let expected = record["total"].as_u64();
        match parse_config_value(config, &origin) {
            Ok(parsed) => {
                let total = count_params(&parsed.spec).expect("a parsed spec counts").total;
                match expected {
                    Some(expected) if expected == total => exact += 1,
                    Some(expected) => failures.push(format!(
                        "{model_type}: vramfit counts {total}, transformers {expected} ({:+.1} %)",
                        (total as f64 / expected as f64 - 1.0) * 100.0
                    )),
                    // transformers cannot build its own default: no count to stand behind.
                    None => failures.push(format!(
                        "{model_type}: accepted, but transformers cannot build it ({})",
                        record["error"].as_str().unwrap_or("?")
                    )),
                }
            }
            Err(error) => match named_keys(&error) {
                Some(keys)
                    if !keys.is_empty()
                        && keys.iter().all(|k| {
                            key_in(config, k) || matches!(error, SourceError::MissingFields { .. })
                        }) =>
                {
                    if expected.is_some() {
                        refused += 1;
                        refused_types.push(model_type);
                    } else {
                        unbuildable += 1;
                    }
                }
                _ => failures.push(format!("{model_type}: refused without naming a key: {error}")),
            },
        }
    }
    assert!(
        failures.is_empty(),
        "{} of {} default configs got a wrong number or an unnamed error:\n{}",
        failures.len(),
        records.len(),
        failures.join("\n")
    );
    // The families vramfit knows count their own defaults; they are not refused,
    // save where the default leaves a key unset that the model cannot run
    // without (`DeepseekV2Config` leaves `num_experts_per_tok` None, so
    // `DeepseekV2Moe` cannot route; real checkpoints state it).
    let known_refused: Vec<&str> = refused_types
        .iter()
        .copied()
        .filter(|t| vramfit_sources::config::KNOWN_MODEL_TYPES.contains(t))
        .filter(|t| *t != "deepseek_v2")
        .collect();
    assert!(known_refused.is_empty(), "known families refused: {known_refused:?}");
    assert!(exact >= 29, "{exact} exact, {refused} refused by key, {unbuildable} unbuildable");
}
