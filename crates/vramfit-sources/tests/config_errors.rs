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

/// Each key class the issue names makes an unknown `model_type` an error that
/// names the key and what it signals, never a Llama-shaped guess.
#[test]
fn unknown_model_type_with_keys_it_does_not_understand_is_refused_by_key() {
    let cases = [
        ("num_experts", json!(8), "experts"),
        ("n_routed_experts", json!(64), "experts"),
        ("num_local_experts", json!(8), "experts"),
        ("moe_intermediate_size", json!(128), "experts"),
        ("linear_num_value_heads", json!(32), "not softmax attention"),
        ("mamba_d_state", json!(128), "not softmax attention"),
        ("ssm_state_size", json!(128), "not softmax attention"),
        ("conv_kernel", json!(4), "not softmax attention"),
        ("hybrid_override_pattern", json!("M-M*"), "not softmax attention"),
        ("hidden_size_per_layer_input", json!(256), "per-layer embeddings"),
        ("num_kv_shared_layers", json!(10), "KV shared"),
        ("text_config", json!({"hidden_size": 64}), "nested config"),
        ("auto_map", json!({"AutoModelForCausalLM": "m.M"}), "custom modelling code"),
        ("sliding_window", json!(4096), "does not use"),
        ("clip_qkv", json!(8.0), "does not use"),
        ("chunk_size_feed_forward", json!(64), "does not use"),
    ];
    for (key, value, signal) in cases {
        let mut config = llama_like();
        config["model_type"] = json!("my_new_arch");
        config[key] = value;
        let error = parse(&config).expect_err(key);
        let message = error.to_string();
        let SourceError::Unsupported { keys, .. } = &error else {
            panic!("{key}: not an Unsupported error: {message}");
        };
        assert_eq!(keys, &vec![key.to_owned()], "{message}");
        assert!(message.contains(&format!("`{key}`")) && message.contains(signal), "{message}");
        assert!(message.contains("my_new_arch") && message.contains("qwen3_moe"), "{message}");
    }
    // An intermediate size per layer is a list where one number is understood.
    let mut config = llama_like();
    config["model_type"] = json!("my_new_arch");
    config["intermediate_size"] = json!([176, 352]);
    let message = parse(&config).unwrap_err().to_string();
    assert!(message.contains("`intermediate_size`") && message.contains("per-layer"), "{message}");
    // Keys at their "off" value, and harmless ones, are accepted.
    let mut config = llama_like();
    config["model_type"] = json!("my_new_arch");
    config["sliding_window"] = json!(null);
    config["chunk_size_feed_forward"] = json!(0);
    config["rope_parameters"] = json!({"rope_theta": 10000.0, "rope_type": "default"});
    config["layer_types"] = json!(["full_attention", "full_attention"]);
    parse(&config).expect("all keys understood");
}

/// `layer_types` entries other than full and sliding attention are refused in
/// every family, known or not: they are layers vramfit does not model.
#[test]
fn layer_types_other_than_softmax_attention_are_refused() {
    for model_type in ["llama", "qwen3", "my_new_arch"] {
        let mut config = llama_like();
        config["model_type"] = json!(model_type);
        config["layer_types"] = json!(["linear_attention", "full_attention"]);
        let error = parse(&config).unwrap_err();
        let message = error.to_string();
        assert!(
            matches!(&error, SourceError::Unsupported { keys, .. } if keys == &vec!["layer_types".to_owned()]),
            "{model_type}: {message}"
        );
        assert!(message.contains("linear_attention"), "{message}");
    }
}

/// An activation the trace does not model is an error, not silu.
#[test]
fn unknown_activation_is_refused_by_key() {
    let mut config = llama_like();
    config["hidden_act"] = json!("relu2");
    let message = parse(&config).unwrap_err().to_string();
    assert!(message.contains("`hidden_act`") && message.contains("relu2"), "{message}");
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

/// Python's `json` writes `NaN` and `Infinity` as bare words (real Nemotron-H
/// configs hold `"time_step_limit": [0.0, Infinity]`): the file is read, and a
/// key vramfit reads as a number names itself when it holds one.
#[test]
fn python_float_words_are_read_and_named_where_they_matter() {
    let text = r#"{"model_type": "llama", "vocab_size": 1000, "hidden_size": 64,
        "intermediate_size": 176, "num_hidden_layers": 2, "num_attention_heads": 4,
        "num_key_value_heads": 2, "rope_parameters": {"rope_theta": 10000.0},
        "initializer_range": NaN, "eos_token_id": [-Infinity, 2],
        "_name_or_path": "a NaN and Infinity in a string"}"#;
    let parsed = parse_config_str(text, "test/config.json").expect("Python's floats are read");
    let plain = parse(&llama_like()).unwrap();
    assert_eq!(count_params(&parsed.spec).unwrap(), count_params(&plain.spec).unwrap());
    let text = text.replace(r#""hidden_size": 64"#, r#""hidden_size": Infinity"#);
    let message = parse_config_str(&text, "test/config.json").unwrap_err().to_string();
    assert!(message.contains("`hidden_size`") && message.contains("Infinity"), "{message}");
    // Not JSON at all stays a JSON error with its place.
    let message = parse_config_str("{\"a\": Infinityx}", "t.json").unwrap_err().to_string();
    assert!(message.contains("not valid JSON"), "{message}");
}

/// Bytes outside ASCII before or between tokens (a byte-order mark, a curly
/// quote) are a JSON error, never a panic.
#[test]
fn non_ascii_bytes_outside_strings_are_errors_not_panics() {
    let text = llama_like().to_string();
    for bad in [format!("\u{feff}{text}"), text.replace("\"llama\"", "\u{201c}llama\u{201d}")] {
        let error = parse_config_str(&bad, "test/config.json").unwrap_err();
        assert!(error.to_string().contains("not valid JSON"), "{error}");
    }
}

/// An unknown `model_type` whose keys are all Llama's but whose class, bias
/// placement or rotary width is not is refused by that key (GLM-4 would
/// otherwise be counted as Llama, 16 K parameters off).
#[test]
fn llama_keys_with_another_meaning_are_refused() {
    let cases = [
        ("architectures", json!(["Glm4ForCausalLM"])),
        ("attention_bias", json!(true)),
        ("rope_parameters", json!({"rope_theta": 10000.0, "partial_rotary_factor": 0.5})),
    ];
    for (key, value) in cases {
        let mut config = llama_like();
        config["model_type"] = json!("my_new_arch");
        config[key] = value;
        let error = parse(&config).unwrap_err();
        assert!(
            matches!(&error, SourceError::Unsupported { keys, .. } if keys == &vec![key.to_owned()]),
            "{key}: {error}"
        );
    }
    let mut config = llama_like();
    config["model_type"] = json!("my_new_arch");
    config["architectures"] = json!(["LlamaForCausalLM"]);
    config["eos_token_id"] = json!([128_001, 128_008, 128_009]);
    config["attention_bias"] = json!(false);
    parse(&config).expect("a Llama clone with a list of end tokens is read");
}

/// A known `model_type` carrying another architecture's keys (DeepSeek-V3.2's
/// indexer relabelled as `deepseek_v3`) is refused by those keys.
#[test]
fn known_types_with_foreign_architecture_keys_are_refused() {
    let mut config = llama_like();
    config["index_topk"] = json!(2048);
    config["index_n_heads"] = json!(64);
    let error = parse(&config).unwrap_err();
    let message = error.to_string();
    assert!(matches!(error, SourceError::Unsupported { .. }), "{message}");
    assert!(message.contains("`index_topk`") && message.contains("`index_n_heads`"), "{message}");
}

/// The flags a config gives each layer for rotary positions.
fn rope_flags(config: &serde_json::Value) -> Vec<bool> {
    let spec = parse(config).expect("parses").spec;
    spec.layers
        .iter()
        .flat_map(|g| {
            std::iter::repeat_n(g.layer.attention.rope, usize::try_from(g.count).unwrap())
        })
        .collect()
}

/// The `smollm3` layers without positions: listed in `no_rope_layers`, or every
/// `no_rope_layer_interval`-th layer (default 4) as `SmolLM3Config` derives them;
/// with `use_sliding_window` those layers are the windowed ones.
#[test]
fn smollm3_layers_without_positions_follow_the_config() {
    let mut config = llama_like();
    config["model_type"] = json!("smollm3");
    config["num_hidden_layers"] = json!(8);
    let every_fourth = [true, true, true, false, true, true, true, false];
    assert_eq!(rope_flags(&config), every_fourth);
    config["no_rope_layer_interval"] = json!(2);
    assert_eq!(rope_flags(&config), [true, false, true, false, true, false, true, false]);
    config["no_rope_layers"] = json!([0, 1, 1, 1, 1, 1, 1, 0]);
    assert_eq!(rope_flags(&config), [false, true, true, true, true, true, true, false]);
    config["no_rope_layers"] = json!([1, 1, 0]);
    let error = parse(&config).unwrap_err();
    assert!(error.to_string().contains("no_rope_layers"), "{error}");

    let mut windowed = llama_like();
    windowed["model_type"] = json!("smollm3");
    windowed["num_hidden_layers"] = json!(4);
    windowed["use_sliding_window"] = json!(true);
    windowed["sliding_window"] = json!(512);
    let spec = parse(&windowed).unwrap().spec;
    let windows: Vec<Option<u64>> = spec
        .layers
        .iter()
        .flat_map(|g| {
            std::iter::repeat_n(g.layer.attention.sliding_window, usize::try_from(g.count).unwrap())
        })
        .collect();
    assert_eq!(windows, [None, None, None, Some(512)]);
    // Same parameters as the Llama it is built like (tied by default).
    let mut llama = llama_like();
    llama["tie_word_embeddings"] = json!(true);
    assert_eq!(
        count_params(&spec).unwrap().total,
        count_params(
            &parse(&{
                let mut l = llama.clone();
                l["num_hidden_layers"] = json!(4);
                l
            })
            .unwrap()
            .spec
        )
        .unwrap()
        .total
    );
}

/// What MiniMax-M2's code does not build is refused by key, not dropped.
#[test]
fn minimax_m2_refuses_lightning_layers_and_shared_experts() {
    let minimax = || {
        let mut config = llama_like();
        config["model_type"] = json!("minimax_m2");
        config["num_local_experts"] = json!(8);
        config["num_experts_per_tok"] = json!(2);
        config["attn_type_list"] = json!([1, 1]);
        config["rotary_dim"] = json!(8);
        config
    };
    let parsed = parse(&minimax()).expect("a full-attention MiniMax-M2 parses");
    assert_eq!(parsed.spec.positions, vramfit_core::spec::PositionEncoding::PartialRotary);
    // head_dim defaults to 128 in MiniMaxM2Config, not hidden / heads.
    assert_eq!(parsed.spec.layers[0].layer.attention.head_dim, 128);
    for (key, value) in [("attn_type_list", json!([0, 1])), ("shared_intermediate_size", json!(64))]
    {
        let mut config = minimax();
        config[key] = value;
        match parse(&config) {
            Err(SourceError::Unsupported { keys, .. }) => assert_eq!(keys, [key]),
            other => panic!("{key}: {other:?}"),
        }
    }
    let mut config = minimax();
    config["rotary_dim"] = json!(256);
    assert!(parse(&config).unwrap_err().to_string().contains("rotary_dim"));
}

/// Kimi-K2 is read as DeepSeek-V3 only when its `architectures` says so.
#[test]
fn kimi_k2_is_read_as_deepseek_v3_by_its_architecture() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../validation/configs-2025/moonshotai/Kimi-K2-Instruct/config.json");
    let text = std::fs::read_to_string(path).expect("the real config is committed");
    let text = text.as_str();
    let parsed = parse_config_str(text, "kimi/config.json").expect("reads");
    assert_eq!(parsed.spec.model_type, "deepseek_v3");
    assert!(parsed.warnings.iter().any(|w| w.contains("DeepseekV3ForCausalLM")));
    let mut config: serde_json::Value = serde_json::from_str(text).unwrap();
    config["architectures"] = json!(["KimiLinearForCausalLM"]);
    match parse(&config) {
        Err(SourceError::Unsupported { keys, .. }) => assert_eq!(keys, ["architectures"]),
        other => panic!("{other:?}"),
    }
}

fn real_config(path: &str) -> serde_json::Value {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../validation/configs-2025")
        .join(path);
    serde_json::from_str(&std::fs::read_to_string(path).expect("committed")).expect("JSON")
}

/// A text-only Qwen3.5 save (`qwen3_5_text`) holds `mamba_ssm_dtype` like the
/// multimodal one's `text_config`: read, and counted as the multimodal model
/// without its vision tower (transformers' breakdown of the 27B: 27,356,728,560
/// in all, 460,730,096 of them vision).
#[test]
fn a_text_only_qwen3_5_config_is_read() {
    let mut text = real_config("Qwen/Qwen3.5-27B/config.json")["text_config"].clone();
    assert!(text.get("mamba_ssm_dtype").is_some());
    text["model_type"] = json!("qwen3_5_text");
    let spec = parse(&text).expect("a text-only Qwen3.5 config").spec;
    assert_eq!(count_params(&spec).unwrap().total, 27_356_728_560 - 460_730_096);
    // A model ending in a gated DeltaNet layer is refused by generate(), whose
    // attention point is taken in the last layer.
    let mut ends_linear = text.clone();
    let mut types: Vec<serde_json::Value> = ends_linear["layer_types"].as_array().unwrap().clone();
    *types.last_mut().unwrap() = json!("linear_attention");
    ends_linear["layer_types"] = json!(types);
    let spec = parse(&ends_linear).unwrap().spec;
    assert_eq!(spec.unmodelled_memory(true), Some("a gated DeltaNet layer as the last layer"));
    assert_eq!(parse(&text).unwrap().spec.unmodelled_memory(true), None);
}

/// Keys of the families of 2025–26 that change the count are read or refused,
/// never dropped.
#[test]
fn new_family_keys_are_read_or_refused_by_name() {
    let refused_by = |config: &serde_json::Value| match parse(config) {
        Err(SourceError::Unsupported { keys, .. }) => keys,
        Err(SourceError::InvalidField { key, .. }) => vec![key],
        other => panic!("{other:?}"),
    };
    let minimax = real_config("MiniMaxAI/MiniMax-M2.7/config.json");
    for (key, value) in [("use_qk_norm", json!(false)), ("qk_norm_type", json!("per_head"))] {
        let mut config = minimax.clone();
        config[key] = value;
        assert_eq!(refused_by(&config), [key]);
    }
    let glm = real_config("zai-org/GLM-5/config.json");
    let mut typo = glm.clone();
    typo["mlp_layer_types"] = json!(vec!["moe"; 78]);
    assert_eq!(refused_by(&typo), ["mlp_layer_types"]);
    let mut zero = glm.clone();
    zero["index_topk_freq"] = json!(0);
    assert_eq!(refused_by(&zero), ["index_topk_freq"]);
    // Every other layer shares the previous layer's indexer: fewer parameters.
    let all_full = count_params(&parse(&glm).unwrap().spec).unwrap().total;
    let mut shared = glm.clone();
    shared["index_topk_pattern"] = json!("FS".repeat(39));
    let fewer = count_params(&parse(&shared).unwrap().spec).unwrap().total;
    // One indexer: wq_b 2048 → 32 × 128, wk 6144 → 128, its LayerNorm, weights_proj 6144 → 32.
    let indexer = 2048 * 32 * 128 + 6144 * 128 + 2 * 128 + 6144 * 32;
    assert_eq!(all_full - fewer, 39 * indexer);
    let mut short = glm.clone();
    short["index_topk_pattern"] = json!("FS");
    assert_eq!(refused_by(&short), ["index_topk_pattern"]);
    let mut scout = real_config("meta-llama/Llama-4-Scout-17B-16E-Instruct/config.json");
    scout["text_config"]["moe_layers"] = json!([0, 48]);
    assert_eq!(refused_by(&scout), ["text_config.moe_layers"]);
}

/// Qwen3-Next (its default config, the 80B-A3B shape; counted exactly in
/// `default_configs.rs`): its fused gated `DeltaNet` projections are read, and
/// their memory, not measured, is refused even by `generate()`.
#[test]
fn qwen3_next_is_counted_and_its_memory_refused() {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/transformers-default-configs.jsonl");
    let text = std::fs::read_to_string(path).expect("committed");
    let record: serde_json::Value = text
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .find(|r| r["model_type"] == "qwen3_next")
        .expect("a qwen3_next record");
    let spec = parse(&record["config"]).expect("read").spec;
    assert_eq!(count_params(&spec).unwrap().total, record["total"].as_u64().unwrap());
    let names: Vec<&str> = spec
        .layers
        .iter()
        .flat_map(|g| g.layer.attention.projections.iter().map(|p| p.name.as_str()))
        .collect();
    assert!(names.contains(&"in_proj_qkvz") && names.contains(&"in_proj_ba"), "{names:?}");
    let refused = spec.unmodelled_memory(true).expect("refused");
    assert!(refused.contains("Qwen3-Next"), "{refused}");
    // Dense layers where the config puts them.
    let mut dense = record["config"].clone();
    dense["mlp_only_layers"] = json!([0, 1]);
    let with_dense = count_params(&parse(&dense).unwrap().spec).unwrap().total;
    assert!(with_dense < record["total"].as_u64().unwrap());
}
