//! The context window (`ModelSpec::max_position_embeddings`) as vLLM derives
//! `max_model_len` (vllm/config/model.py `_get_and_verify_max_len`): the
//! config's `max_position_embeddings`, times a rope `factor` except where the
//! config already states the extended window (llama3, longrope, Gemma 3).

use serde_json::json;
use vramfit_sources::{SourceError, parse_config_str};

fn window(config: &serde_json::Value) -> Result<Option<u64>, SourceError> {
    parse_config_str(&config.to_string(), "test/config.json")
        .map(|parsed| parsed.spec.max_position_embeddings)
}

fn shipped(path: &str) -> Option<u64> {
    let file = format!("{}/data/models/{path}/config.json", env!("CARGO_MANIFEST_DIR"));
    let text = std::fs::read_to_string(&file).unwrap();
    parse_config_str(&text, &file).unwrap().spec.max_position_embeddings
}

fn llama(rope: &serde_json::Value) -> serde_json::Value {
    json!({
        "model_type": "llama",
        "vocab_size": 1000,
        "hidden_size": 64,
        "intermediate_size": 176,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 32768,
        "rope_scaling": rope.clone()
    })
}

#[test]
fn shipped_configs_state_their_published_windows() {
    // Model cards: Llama 3.1/3.2 128K (llama3 scaling, already in the config),
    // DeepSeek-V3 and V2-Lite 160K (YaRN 4096 × 40), gpt-oss 128K (YaRN
    // 4096 × 32), Gemma 3 4B and 27B 128K (the linear factor 8 is already in).
    assert_eq!(shipped("meta-llama/Llama-3.1-8B"), Some(131_072));
    assert_eq!(shipped("meta-llama/Llama-3.2-1B"), Some(131_072));
    assert_eq!(shipped("deepseek-ai/DeepSeek-V3"), Some(163_840));
    assert_eq!(shipped("deepseek-ai/DeepSeek-V2-Lite"), Some(163_840));
    assert_eq!(shipped("openai/gpt-oss-20b"), Some(131_072));
    assert_eq!(shipped("google/gemma-3-27b-pt"), Some(131_072));
    assert_eq!(shipped("Qwen/Qwen3-8B"), Some(40_960));
}

#[test]
fn a_rope_factor_extends_the_window() {
    // Qwen2.5's model card: add YaRN factor 4 from 32768 for 128K.
    let yarn = json!({"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32768});
    assert_eq!(window(&llama(&yarn)).unwrap(), Some(131_072));
    // Without `original_max_position_embeddings`, from max_position_embeddings.
    let yarn = json!({"rope_type": "yarn", "factor": 2.0});
    assert_eq!(window(&llama(&yarn)).unwrap(), Some(65_536));
    let dynamic = json!({"rope_type": "dynamic", "factor": 2.0});
    assert_eq!(window(&llama(&dynamic)).unwrap(), Some(65_536));
    let linear = json!({"type": "linear", "factor": 1.5});
    assert_eq!(window(&llama(&linear)).unwrap(), Some(49_152));
    // transformers 5 writes the block as `rope_parameters`.
    let mut v5 = llama(&json!(null));
    v5["rope_parameters"] = json!({"rope_type": "yarn", "factor": 4.0, "rope_theta": 1e6});
    assert_eq!(window(&v5).unwrap(), Some(131_072));
}

#[test]
fn blocks_that_state_the_window_already_leave_it() {
    for rope in [
        json!({"rope_type": "llama3", "factor": 8.0, "original_max_position_embeddings": 8192}),
        json!({"rope_type": "longrope", "factor": 4.0}),
        json!({"rope_type": "default"}),
        json!({"type": "mrope", "mrope_section": [16, 24, 24]}),
        json!(null),
    ] {
        assert_eq!(window(&llama(&rope)).unwrap(), Some(32_768), "{rope}");
    }
}

#[test]
fn a_corrupt_factor_is_an_error_naming_it() {
    for factor in [json!(1e9), json!(0.5)] {
        let error = window(&llama(&json!({"rope_type": "yarn", "factor": factor}))).unwrap_err();
        assert!(error.to_string().contains("rope_scaling.factor"), "{error}");
    }
    let bad = json!({"rope_type": "yarn", "factor": 4.0, "original_max_position_embeddings": -1});
    let error = window(&llama(&bad)).unwrap_err();
    assert!(error.to_string().contains("original_max_position_embeddings"), "{error}");
}
