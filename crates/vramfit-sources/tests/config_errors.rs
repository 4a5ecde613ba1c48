//! Bad or unusual configs: every error names the file and the key, and
//! unknown architectures are read as a generic decoder with a warning.

use serde_json::json;
use vramfit_core::params::count_params;
use vramfit_core::spec::FeedForward;
use vramfit_sources::{SourceError, parse_config_str};

fn llama_like() -> serde_json::Value {
    json!({
        "model_type": "llama",
        "vocab_size": 1000,
        "hidden_size": 64,
        "intermediate_size": 176,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2
    })
}

fn parse(value: &serde_json::Value) -> Result<vramfit_sources::ParsedConfig, SourceError> {
    parse_config_str(&value.to_string(), "test/config.json")
}

#[test]
fn missing_fields_are_all_named() {
    let config = json!({ "model_type": "llama", "vocab_size": 1000, "hidden_size": 64 });
    let error = parse(&config).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SourceError::MissingFields { .. }), "{message}");
    for key in ["num_hidden_layers", "num_attention_heads", "intermediate_size"] {
        assert!(message.contains(key), "{message} should name {key}");
    }
    assert!(message.contains("test/config.json"), "{message}");
}

#[test]
fn unknown_model_type_with_standard_fields_is_a_generic_decoder() {
    let mut config = llama_like();
    config["model_type"] = json!("my_new_arch");
    let parsed = parse(&config).expect("standard fields suffice");
    assert_eq!(parsed.spec.model_type, "my_new_arch");
    assert_eq!(parsed.warnings.len(), 1);
    assert!(parsed.warnings[0].contains("my_new_arch"));
    // Same count as the Llama it resembles.
    let llama = parse(&llama_like()).unwrap();
    assert_eq!(count_params(&parsed.spec).unwrap(), count_params(&llama.spec).unwrap());
}

#[test]
fn unknown_model_type_without_standard_fields_is_an_error() {
    let error = parse(&json!({ "model_type": "mystery", "hidden_size": 8 })).unwrap_err();
    let message = error.to_string();
    assert!(message.contains("mystery") && message.contains("vocab_size"), "{message}");
}

#[test]
fn wrong_types_and_absurd_values_name_the_key() {
    let cases = [
        ("hidden_size", json!("4096"), "hidden_size"),
        ("hidden_size", json!(-1), "hidden_size"),
        ("hidden_size", json!(1.5), "hidden_size"),
        ("num_hidden_layers", json!(1_000_000_000_u64), "above the sanity limit"),
        ("vocab_size", json!(u64::MAX), "above the sanity limit"),
        ("num_attention_heads", json!(0), "at least 1"),
        ("tie_word_embeddings", json!("yes"), "true or false"),
        ("num_key_value_heads", json!(3), "must divide"),
    ];
    for (key, value, expected) in cases {
        let mut config = llama_like();
        config[key] = value.clone();
        let message = parse(&config).map(|_| ()).unwrap_err().to_string();
        assert!(message.contains(key), "{key}={value}: {message}");
        assert!(message.contains(expected), "{key}={value}: {message}");
    }
}

#[test]
fn floats_that_are_whole_numbers_are_accepted() {
    let mut config = llama_like();
    config["hidden_size"] = json!(64.0);
    assert_eq!(parse(&config).unwrap().spec.hidden_size, 64);
}

#[test]
fn malformed_json_reports_line_and_column() {
    let error =
        parse_config_str("{\n  \"model_type\": \"llama\",\n  oops\n}", "broken.json").unwrap_err();
    let message = error.to_string();
    assert!(message.contains("broken.json") && message.contains("line 3"), "{message}");
    let error = parse_config_str("[1, 2]", "list.json").unwrap_err();
    assert!(error.to_string().contains("JSON object"));
}

#[test]
fn layer_types_must_match_the_layer_count() {
    let mut config = llama_like();
    config["layer_types"] = json!(["full_attention"]);
    let message = parse(&config).unwrap_err().to_string();
    assert!(message.contains("layer_types"), "{message}");
}

#[test]
fn sliding_windows_follow_each_family() {
    // Gemma 2 alternates local (even) and global layers.
    let mut gemma2 = llama_like();
    gemma2["model_type"] = json!("gemma2");
    gemma2["num_hidden_layers"] = json!(4);
    gemma2["sliding_window"] = json!(4096);
    let spec = parse(&gemma2).unwrap().spec;
    let windows: Vec<_> = spec
        .layers
        .iter()
        .flat_map(|g| {
            std::iter::repeat_n(g.layer.attention.sliding_window, usize::try_from(g.count).unwrap())
        })
        .collect();
    assert_eq!(windows, [Some(4096), None, Some(4096), None]);
    // Qwen2 ignores the window unless use_sliding_window is set.
    let mut qwen2 = llama_like();
    qwen2["model_type"] = json!("qwen2");
    qwen2["sliding_window"] = json!(4096);
    let spec = parse(&qwen2).unwrap().spec;
    assert!(spec.layers.iter().all(|g| g.layer.attention.sliding_window.is_none()));
    // layer_types, when present, decide.
    let mut listed = llama_like();
    listed["sliding_window"] = json!(128);
    listed["layer_types"] = json!(["sliding_attention", "full_attention"]);
    let spec = parse(&listed).unwrap().spec;
    assert_eq!(spec.layers[0].layer.attention.sliding_window, Some(128));
    assert_eq!(spec.layers[1].layer.attention.sliding_window, None);
}

#[test]
fn qwen3_moe_dense_and_sparse_layers() {
    let config = json!({
        "model_type": "qwen3_moe",
        "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 200,
        "num_hidden_layers": 4, "num_attention_heads": 4, "num_key_value_heads": 2, "head_dim": 16,
        "num_experts": 8, "num_experts_per_tok": 2, "moe_intermediate_size": 32,
        "decoder_sparse_step": 2, "mlp_only_layers": [3]
    });
    let spec = parse(&config).unwrap().spec;
    let kinds: Vec<bool> = spec
        .layers
        .iter()
        .flat_map(|g| {
            std::iter::repeat_n(
                matches!(g.layer.feed_forward, FeedForward::Moe(_)),
                usize::try_from(g.count).unwrap(),
            )
        })
        .collect();
    // Sparse where (index + 1) % step == 0, except mlp_only_layers.
    assert_eq!(kinds, [false, true, false, false]);
}
