//! No silent guess: the default config of every causal-LM `model_type` that
//! transformers ships is either counted exactly or refused with an error that
//! names the key vramfit did not understand.
//!
//! `tests/fixtures/transformers-default-configs.jsonl` is written by
//! `validation/default_configs.py`: each line holds a type's default config as
//! `save_pretrained` writes it and the parameter count of the model transformers
//! builds from it (on the meta device), or the error transformers itself raised.
//! The counts come from transformers, never from vramfit.
//!
//! The same holds for the real `config.json` files of the models of 2025–26
//! gathered in `validation/configs-2025` (each with its source in
//! `sources.toml`), counted by `validation/param_counts.py`.

use std::path::{Path, PathBuf};

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
        // Real files differ from the defaults in ways that must not change the
        // answer: token ids as one number or a list, the class in `architectures`.
        let mut variants = vec![single_token_ids(config)];
        if let Some(class) = record["class"].as_str() {
            let mut named = config.clone();
            named["architectures"] = serde_json::json!([class]);
            variants.push(named);
        }
        for variant in &variants {
            if let Err(failure) =
                judge(parse_config_value(variant, &origin), variant, &origin, expected)
            {
                failures.push(format!("{failure} (a variant of the default)"));
            }
        }
        match judge(parse_config_value(config, &origin), config, &origin, expected) {
            Ok(true) => exact += 1,
            Ok(false) if expected.is_some() => {
                refused += 1;
                refused_types.push(model_type);
            }
            Ok(false) => unbuildable += 1,
            Err(failure) => failures.push(failure),
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

/// `config` with every `*_token_id` list replaced by its first id.
fn single_token_ids(config: &Value) -> Value {
    let mut config = config.clone();
    if let Some(object) = config.as_object_mut() {
        for (key, value) in object.iter_mut() {
            if key.ends_with("_token_id")
                && let Some(first) = value.as_array().and_then(|ids| ids.first()).cloned()
            {
                *value = first;
            }
        }
    }
    config
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// How vramfit answers one config with transformers' count beside it: `Ok`
/// when it counts exactly or refuses naming a key the config holds.
fn judge(
    parsed: Result<vramfit_sources::ParsedConfig, SourceError>,
    config: &Value,
    origin: &str,
    expected: Option<u64>,
) -> Result<bool, String> {
    match parsed {
        Ok(parsed) => {
            let total = count_params(&parsed.spec).expect("a parsed spec counts").total;
            match expected {
                Some(expected) if expected == total => Ok(true),
                Some(expected) => {
                    Err(format!("{origin}: vramfit counts {total}, transformers {expected}"))
                }
                None => Err(format!("{origin}: accepted, but transformers cannot build it")),
            }
        }
        Err(error) => match named_keys(&error) {
            Some(keys)
                if !keys.is_empty()
                    && keys.iter().all(|k| {
                        key_in(config, k) || matches!(error, SourceError::MissingFields { .. })
                    }) =>
            {
                Ok(false)
            }
            _ => Err(format!("{origin}: refused without naming a key: {error}")),
        },
    }
}

#[test]
fn every_2025_config_is_counted_exactly_or_refused_by_key() {
    let counts = std::fs::read_to_string(
        repo_root().join("validation/configs-2025/transformers-counts.jsonl"),
    )
    .expect("the 2025 counts are committed");
    let mut failures = Vec::new();
    let mut judged = 0;
    for line in counts.lines().filter(|l| !l.trim().is_empty()) {
        let record: Value = serde_json::from_str(line).expect("valid JSON line");
        let path = record["config"].as_str().expect("config path");
        let text = std::fs::read_to_string(repo_root().join(path)).expect("config file exists");
        // Python writes `Infinity` where JSON has nothing (Nemotron-H): vramfit reads
        // the text as it is; the key lookup here sees such values as null.
        let plain = text.replace("-Infinity", "null").replace("Infinity", "null");
        let config: Value = serde_json::from_str(&plain).expect("the config is JSON");
        // Remote-code types transformers cannot build have no count: refusal only.
        let expected = (record["status"] == "ok").then(|| record["total"].as_u64().expect("total"));
        let parsed = vramfit_sources::parse_config_str(&text, path);
        if let Err(failure) = judge(parsed, &config, path, expected) {
            failures.push(failure);
        }
        judged += 1;
    }
    assert!(judged >= 28, "{judged} configs");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}
