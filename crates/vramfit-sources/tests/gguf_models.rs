//! GGUF headers → `ModelSpec`, checked against transformers.
//!
//! The fixtures in `fixtures/gguf-arch/` are header-only GGUF files written by
//! `gen.py`, which replays llama.cpp's `convert_hf_to_gguf.py` (the commit is in
//! `expected.json`) with the `gguf` package's own writer on tiny transformers 5
//! models. `expected.json` records what transformers counted for each config
//! (`model.num_parameters()`), never what vramfit computed.

use std::path::PathBuf;

use serde_json::Value;
use vramfit_sources::gguf;
use vramfit_sources::gguf_model::model_from_headers;

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/gguf-arch")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(dir().join("expected.json")).unwrap()).unwrap()
}

fn header(name: &str) -> gguf::GgufHeader {
    let bytes = std::fs::read(dir().join(name)).unwrap();
    // Header-only files: no file length, so the missing data is not checked.
    gguf::read_header(&bytes[..], name, None).unwrap()
}

#[test]
fn every_architecture_counts_what_transformers_instantiates() {
    let exp = expected();
    let files = exp["files"].as_object().unwrap();
    assert!(files.len() >= 17, "fixtures missing: {}", files.len());
    for (name, case) in files {
        let header = header(name);
        let model = model_from_headers(std::slice::from_ref(&header), name)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let counted = vramfit_core::params::count_params(&model.parsed.spec).unwrap().total;
        assert_eq!(
            counted,
            case["transformers_params"].as_u64().unwrap(),
            "{name}: parameters of model_type {}",
            model.parsed.spec.model_type
        );
        // llama.cpp writes Mistral as `llama`: the GGUF cannot tell them apart (nor
        // need it: the shapes are the same).
        let model_type = match case["model_type"].as_str().unwrap() {
            "mistral" => "llama",
            other => other,
        };
        assert_eq!(model.parsed.spec.model_type, model_type, "{name}");
        assert!(model.parsed.warnings.is_empty(), "{name}: {:?}", model.parsed.warnings);
        assert_eq!(model.tensor_elements, case["gguf_tensor_elements"].as_u64().unwrap(), "{name}");
        // Every stored byte is placed somewhere, and layers get theirs.
        assert_eq!(model.weights.total(), header.known_bytes, "{name}");
        assert_eq!(model.weights.layer_bytes.len() as u64, header.block_count().unwrap());
        assert!(model.weights.layer_bytes.iter().all(|b| *b > 0), "{name}");
        assert!(model.weights.token_embd_bytes > 0, "{name}");
        let tied = case["hf_config"]["tie_word_embeddings"].as_bool().unwrap_or(false);
        assert_eq!(model.weights.output_bytes == 0, tied, "{name}: tied head");
    }
}

#[test]
fn sliding_windows_and_latent_attention_come_through() {
    use vramfit_core::spec::AttentionKind;
    let spec = |name: &str| model_from_headers(&[header(name)], name).unwrap().parsed.spec;
    let windows = |name: &str| -> Vec<Option<u64>> {
        spec(name)
            .layers
            .iter()
            .flat_map(|g| {
                std::iter::repeat_n(
                    g.layer.attention.sliding_window,
                    usize::try_from(g.count).unwrap(),
                )
            })
            .collect()
    };
    // gemma2.attention.sliding_window = 64, local layers even (Gemma2Config.layer_types).
    assert_eq!(windows("gemma2.gguf")[..2], [Some(64), None]);
    // gpt-oss alternates from a sliding first layer.
    assert_eq!(windows("gpt-oss.gguf")[..2], [Some(64), None]);
    let deepseek = spec("deepseek2.gguf");
    let cfg = &expected()["files"]["deepseek2.gguf"]["hf_config"];
    let layer = &deepseek.layers.last().unwrap().layer;
    let AttentionKind::Latent(dims) = layer.attention.kind else { panic!("MLA expected") };
    assert_eq!(dims.kv_lora_rank, cfg["kv_lora_rank"].as_u64().unwrap());
    assert_eq!(dims.qk_rope_head_dim, cfg["qk_rope_head_dim"].as_u64().unwrap());
    assert_eq!(dims.qk_nope_head_dim, cfg["qk_nope_head_dim"].as_u64().unwrap());
    assert_eq!(dims.v_head_dim, cfg["v_head_dim"].as_u64().unwrap());
    assert_eq!(deepseek.model_type, "deepseek_v3");
}

#[test]
fn quantized_files_store_fewer_bytes_for_the_same_parameters() {
    let f16 = model_from_headers(&[header("llama-gqa.gguf")], "a").unwrap();
    let q4 = model_from_headers(&[header("llama-gqa-q4_k_m.gguf")], "b").unwrap();
    assert_eq!(f16.tensor_elements, q4.tensor_elements);
    assert!(q4.weights.total() * 3 < f16.weights.total());
}

#[test]
fn unknown_architectures_and_missing_keys_are_named() {
    let mut h = header("llama-gqa.gguf");
    for (key, value) in &mut h.metadata {
        if key == "general.architecture" {
            *value = gguf::GgufValue::String("mamba".into());
        }
    }
    let e = model_from_headers(&[h], "m.gguf").unwrap_err().to_string();
    assert!(
        e.contains("general.architecture") && e.contains("mamba") && e.contains("known"),
        "{e}"
    );
    let mut h = header("llama-gqa.gguf");
    h.metadata.retain(|(k, _)| k != "llama.embedding_length");
    let e = model_from_headers(&[h], "m.gguf").unwrap_err().to_string();
    assert!(e.contains("llama.embedding_length") && e.contains("missing"), "{e}");
    // A zero count is named by its GGUF key, not by the config key it becomes.
    let mut h = header("llama-gqa.gguf");
    for (key, value) in &mut h.metadata {
        if key == "llama.block_count" {
            *value = gguf::GgufValue::U32(0);
        }
    }
    let e = model_from_headers(&[h], "m.gguf").unwrap_err().to_string();
    assert!(e.contains("llama.block_count") && !e.contains("num_hidden_layers"), "{e}");
    // An architecture of the wrong type is called wrong-typed, not missing.
    let mut h = header("llama-gqa.gguf");
    for (key, value) in &mut h.metadata {
        if key == "general.architecture" {
            *value = gguf::GgufValue::U32(7);
        }
    }
    let e = model_from_headers(&[h], "m.gguf").unwrap_err().to_string();
    assert!(e.contains("general.architecture") && e.contains("wrong type"), "{e}");
    assert!(!e.contains("missing"), "{e}");
}

#[test]
fn llama_cpp_storage_types_match_the_gguf_type_table() {
    use vramfit_core::serving::llamacpp::GgmlStorage;
    // The core cannot read the sources crate's table, so the few types the llama.cpp
    // profile sizes are written there too; they must agree with the reader's table
    // (itself checked against the gguf package's GGML_QUANT_SIZES).
    for storage in GgmlStorage::ALL {
        let entry = gguf::GGML_TYPES
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(storage.name()))
            .unwrap_or_else(|| panic!("{} is not in GGML_TYPES", storage.name()));
        assert_eq!(storage.block(), (entry.block_size, entry.type_size), "{}", storage.name());
    }
}

#[test]
fn weights_derived_from_a_config_match_what_the_converter_stores() {
    use vramfit_core::serving::llamacpp::{GgmlStorage, stored_weights_from_spec};
    // `convert_hf_to_gguf.py --outtype f16` writes matrices in F16 and vectors in F32:
    // the rule llama.cpp's profile uses for a model known only by its config.
    let exp = expected();
    let mut checked = 0;
    for (name, case) in exp["files"].as_object().unwrap() {
        if case["outtype"] != "f16" || !case["variant"].is_null() {
            continue;
        }
        let header = header(name);
        let model = model_from_headers(std::slice::from_ref(&header), name).unwrap();
        let derived = stored_weights_from_spec(&model.parsed.spec, GgmlStorage::F16);
        // Less what the spec does not hold: rotary factors and DeepSeek's routing
        // bias are buffers in transformers.
        let buffers: u64 = header
            .tensors
            .iter()
            .filter(|t| t.name.contains("rope_freqs") || t.name.contains("exp_probs_b"))
            .map(|t| t.byte_len.unwrap())
            .sum();
        assert_eq!(derived.total(), header.known_bytes - buffers, "{name}");
        // Placed as the file places them: layer by layer, embeddings, head.
        assert_eq!(derived.token_embd_bytes, model.weights.token_embd_bytes, "{name}");
        assert_eq!(derived.output_bytes, model.weights.output_bytes, "{name}");
        checked += 1;
    }
    assert!(checked > 10);
}
