//! `vramfit inspect`: checkpoints measured from their headers, checked against
//! what the real writers recorded (`expected.json`, from the safetensors and
//! gguf Python packages) and against vramfit's count from a config.json.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::{Value, json};

fn vramfit(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_vramfit"))
        .args(args)
        .env("NO_COLOR", "1")
        .env("HF_HUB_OFFLINE", "1")
        .output()
        .expect("the binary runs")
}

fn inspect(path: &Path) -> Value {
    let output = vramfit(&["inspect", path.to_str().unwrap(), "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    serde_json::from_slice(&output.stdout).unwrap()
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vramfit-sources/tests/fixtures/headers")
}

fn expected() -> Value {
    serde_json::from_str(&std::fs::read_to_string(fixtures().join("expected.json")).unwrap())
        .unwrap()
}

/// Sums of `n_elements` and `n_bytes` over GGUF tensors as the gguf package read them.
fn gguf_sums(tensors: &Value) -> (u64, u64) {
    tensors.as_array().unwrap().iter().fold((0, 0), |(e, b), t| {
        (e + t["n_elements"].as_u64().unwrap(), b + t["n_bytes"].as_u64().unwrap())
    })
}

#[test]
fn gguf_files_and_splits_match_the_gguf_reader() {
    let expected = expected();
    let tiny = inspect(&fixtures().join("tiny-llama.gguf"));
    let (elements, bytes) = gguf_sums(&expected["gguf"]["tiny-llama.gguf"]["tensors"]);
    assert_eq!(tiny["format"], "gguf");
    assert_eq!(tiny["logical_parameters"].as_u64(), Some(elements));
    assert_eq!(tiny["stored_bytes"].as_u64(), Some(bytes));
    assert_eq!(tiny["metadata"]["general.architecture"], "llama");
    assert_eq!(tiny["metadata"]["llama.block_count"], "1");
    // A split model is read whole from any of its files.
    let files = &expected["gguf"]["split"]["files"];
    let (e1, b1) = gguf_sums(&files["split-00001-of-00002.gguf"]["tensors"]);
    let (e2, b2) = gguf_sums(&files["split-00002-of-00002.gguf"]["tensors"]);
    for name in ["split-00001-of-00002.gguf", "split-00002-of-00002.gguf"] {
        let split = inspect(&fixtures().join(name));
        assert_eq!(split["files"].as_array().unwrap().len(), 2);
        assert_eq!(split["logical_parameters"].as_u64(), Some(e1 + e2));
        assert_eq!(split["stored_bytes"].as_u64(), Some(b1 + b2));
        assert_eq!(split["tensors"], 12);
    }
}

#[test]
fn safetensors_bytes_match_the_writer() {
    let expected = expected();
    for name in ["dtypes.safetensors", "gptq.safetensors", "fp8.safetensors", "bnb4.safetensors"] {
        let document = inspect(&fixtures().join(name));
        let tensors = expected["safetensors"][name]["tensors"].as_object().unwrap();
        let bytes: u64 = tensors
            .values()
            .map(|t| {
                t["data_offsets"][1].as_u64().unwrap() - t["data_offsets"][0].as_u64().unwrap()
            })
            .sum();
        assert_eq!(document["stored_bytes"].as_u64(), Some(bytes), "{name}");
        assert_eq!(document["tensors"].as_u64(), Some(tensors.len() as u64), "{name}");
    }
    let gptq = inspect(&fixtures().join("gptq.safetensors"));
    assert!(gptq["by_format"]["gptq/awq"]["logical_parameters"].as_u64().unwrap() > 0);
}

/// A tiny Llama: the config, and the tensors transformers saves for it.
fn tiny_llama(folder: &Path, drop: Option<&str>) {
    let (vocab, hidden, inter, layers, heads, kv, head_dim) = (1000u64, 64u64, 176u64, 2, 4, 2, 16);
    let config = json!({
        "model_type": "llama", "architectures": ["LlamaForCausalLM"],
        "vocab_size": vocab, "hidden_size": hidden, "intermediate_size": inter,
        "num_hidden_layers": layers, "num_attention_heads": heads, "num_key_value_heads": kv,
        "max_position_embeddings": 2048, "rms_norm_eps": 1e-5, "tie_word_embeddings": false,
        "torch_dtype": "bfloat16",
    });
    std::fs::write(folder.join("config.json"), config.to_string()).unwrap();
    let mut tensors: Vec<(String, Vec<u64>)> = vec![
        ("model.embed_tokens.weight".into(), vec![vocab, hidden]),
        ("model.norm.weight".into(), vec![hidden]),
        ("lm_head.weight".into(), vec![vocab, hidden]),
    ];
    for layer in 0..layers {
        let p = format!("model.layers.{layer}");
        tensors.extend([
            (format!("{p}.self_attn.q_proj.weight"), vec![heads * head_dim, hidden]),
            (format!("{p}.self_attn.k_proj.weight"), vec![kv * head_dim, hidden]),
            (format!("{p}.self_attn.v_proj.weight"), vec![kv * head_dim, hidden]),
            (format!("{p}.self_attn.o_proj.weight"), vec![hidden, heads * head_dim]),
            (format!("{p}.mlp.gate_proj.weight"), vec![inter, hidden]),
            (format!("{p}.mlp.up_proj.weight"), vec![inter, hidden]),
            (format!("{p}.mlp.down_proj.weight"), vec![hidden, inter]),
            (format!("{p}.input_layernorm.weight"), vec![hidden]),
            (format!("{p}.post_attention_layernorm.weight"), vec![hidden]),
        ]);
    }
    tensors.retain(|(name, _)| Some(name.as_str()) != drop);
    // The safetensors layout: u64 header length, JSON header, data (bf16).
    let mut header = serde_json::Map::new();
    let mut offset = 0u64;
    for (name, shape) in &tensors {
        let bytes = shape.iter().product::<u64>() * 2;
        header.insert(
            name.clone(),
            json!({"dtype": "BF16", "shape": shape, "data_offsets": [offset, offset + bytes]}),
        );
        offset += bytes;
    }
    let header = Value::Object(header).to_string();
    let mut file = (header.len() as u64).to_le_bytes().to_vec();
    file.extend_from_slice(header.as_bytes());
    let path = folder.join("model.safetensors");
    std::fs::write(&path, &file).unwrap();
    // Only the header is read: the data can be a hole.
    let handle = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
    handle.set_len(file.len() as u64 + offset).unwrap();
}

#[test]
fn a_model_folder_is_checked_against_its_config() {
    let folder = tempfile::tempdir().unwrap();
    tiny_llama(folder.path(), None);
    let document = inspect(folder.path());
    // 1000 × 64 × 2 + 64 + 2 × (4·64·16·2 + 2·64·32 + 3·64·176 + 2·64)
    let by_hand = 1000 * 64 * 2 + 64 + 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 176 + 2 * 64);
    assert_eq!(document["logical_parameters"].as_u64(), Some(by_hand));
    assert_eq!(document["stored_bytes"].as_u64(), Some(2 * by_hand));
    assert_eq!(document["config"]["params_total"].as_u64(), Some(by_hand));
    assert_eq!(document["config"]["matches"], true);
    // A bare file name, run from the model's folder, finds the config beside it.
    let output = Command::new(env!("CARGO_BIN_EXE_vramfit"))
        .args(["inspect", "model.safetensors", "--json"])
        .current_dir(folder.path())
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let document: Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(document["config"]["matches"], true);
    // A PEFT adapter saved beside the base is not counted with it.
    std::fs::copy(
        folder.path().join("model.safetensors"),
        folder.path().join("adapter_model.safetensors"),
    )
    .unwrap();
    assert_eq!(inspect(folder.path())["logical_parameters"].as_u64(), Some(by_hand));
    // A checkpoint missing a tensor is reported as differing.
    let partial = tempfile::tempdir().unwrap();
    tiny_llama(partial.path(), Some("model.layers.1.mlp.down_proj.weight"));
    let output = vramfit(&["inspect", partial.path().to_str().unwrap()]);
    let text = String::from_utf8(output.stdout).unwrap();
    assert!(text.contains(&format!("{:+}", -(64 * 176))), "{text}");
}

#[test]
fn bad_checkpoints_name_the_file() {
    let empty = tempfile::tempdir().unwrap();
    let output = vramfit(&["inspect", empty.path().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("no .safetensors or .gguf files"));
    // The fixture index names shards that are not there.
    let output = vramfit(&["inspect", fixtures().to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("model-00001-of-00002.safetensors"));
    // A truncated file: the header promises more bytes than there are.
    let folder = tempfile::tempdir().unwrap();
    let path = folder.path().join("cut.safetensors");
    std::fs::write(&path, [200u8, 0, 0, 0, 0, 0, 0, 0, b'{']).unwrap();
    let output = vramfit(&["inspect", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("cut.safetensors"));
}
