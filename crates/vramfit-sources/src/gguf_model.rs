/*!
A GGUF header → [`ModelSpec`](vramfit_core::ModelSpec) and the bytes of its stored tensors.

llama.cpp's converter (`convert_hf_to_gguf.py`) writes a Hugging Face
config's shape into `{arch}.*` keys (`llama.block_count`,
`llama.attention.head_count_kv`, …; the key names are the `gguf` package's
`Keys` constants). This module maps them back onto the `config.json` keys of
the matching transformers `model_type` and runs the same config parser, so a
GGUF model gets the spec (and parameter counts) its Hugging Face original
has. Which attention projections carry biases, and whether the head is tied,
is read from the tensors present (`blk.0.attn_q.bias`, `output.weight`), as
llama.cpp's loader does.

The stored bytes are taken per tensor from the header, grouped as llama.cpp
places them: the repeating layers (`blk.N.*`), the input layer (token and
position embeddings), the output head and the rest (`output_norm`, `rope_freqs`).
*/

use std::path::Path;

use serde_json::{Map, Value, json};
use vramfit_core::serving::StoredWeights;

use crate::config::{MAX_LAYERS, ParsedConfig, parse_config_value};
use crate::error::SourceError;
use crate::gguf::{self, GgufHeader};

/// The GGUF architectures read, with the transformers `model_type` each maps to.
pub const ARCHITECTURES: [(&str, &str); 14] = [
    ("llama", "llama (mixtral when it has experts)"),
    ("qwen2", "qwen2"),
    ("qwen2moe", "qwen2_moe"),
    ("qwen3", "qwen3"),
    ("qwen3moe", "qwen3_moe"),
    ("gemma", "gemma"),
    ("gemma2", "gemma2"),
    ("gemma3", "gemma3_text"),
    ("phi3", "phi3"),
    ("starcoder2", "starcoder2"),
    ("deepseek2", "deepseek_v2 (deepseek_v3 with sigmoid gating)"),
    ("gpt-oss", "gpt_oss"),
    ("olmo2", "olmo2"),
    ("gpt2", "gpt2"),
];

/// A model read from GGUF headers.
#[derive(Clone, Debug)]
pub struct GgufModel {
    /// The architecture, from the `{arch}.*` keys, and any warnings.
    pub parsed: ParsedConfig,
    /// `general.architecture`.
    pub architecture: String,
    /// The stored tensor bytes, grouped by where llama.cpp puts them.
    pub weights: StoredWeights,
    /// Elements of all tensors (what the file holds, for comparison with the spec's count).
    pub tensor_elements: u64,
    /// `{arch}.context_length`: the context the model was trained for.
    pub context_length: Option<u64>,
}

/// Reads the GGUF model at `path` (a file, or any file of a split model).
///
/// # Errors
/// An unreadable or invalid header, a split with a missing part, an
/// architecture this build does not map, or shape keys that are missing or absurd.
pub fn read_gguf_model(path: &Path) -> Result<GgufModel, SourceError> {
    let files = gguf::sibling_shard_paths(path).unwrap_or_else(|| vec![path.to_path_buf()]);
    let headers: Vec<GgufHeader> = files
        .iter()
        .map(|file| gguf::read_path(file))
        .collect::<Result<_, _>>()
        .map_err(|source| SourceError::Gguf { source: Box::new(source) })?;
    model_from_headers(&headers, &path.display().to_string())
}

/// The model described by the headers of a GGUF file or of every part of a
/// split (the metadata is read from the first). `origin` names it in errors.
///
/// # Errors
/// See [`read_gguf_model`].
pub fn model_from_headers(headers: &[GgufHeader], origin: &str) -> Result<GgufModel, SourceError> {
    let origin = format!("{origin} (GGUF metadata)");
    let invalid = |key: &str, reason: &str| SourceError::InvalidField {
        origin: origin.clone(),
        key: key.to_owned(),
        reason: reason.to_owned(),
    };
    let Some(first) = headers.first() else {
        return Err(invalid("(file)", "holds no GGUF header"));
    };
    let architecture = match (first.architecture(), first.get("general.architecture")) {
        (Some(name), _) => name.to_owned(),
        (None, Some(_)) => {
            return Err(invalid("general.architecture", "has the wrong type (must be a string)"));
        }
        (None, None) => return Err(invalid("general.architecture", "is missing")),
    };
    let has = |name: &str| headers.iter().any(|h| h.tensor(name).is_some());
    let config = config_for(first, &architecture, &has, &invalid)?;
    let mut parsed = parse_config_value(&Value::Object(config), &origin)?;
    let weights = stored_weights(headers, &invalid)?;
    let tensor_elements =
        headers.iter().fold(0u64, |sum, header| sum.saturating_add(header.total_elements));
    let counted = vramfit_core::params::count_params(&parsed.spec)
        .map_err(|source| SourceError::Core { origin: origin.clone(), source })?
        .total;
    // Tensors llama.cpp stores that transformers keeps as buffers, not
    // parameters: rotary frequency factors (`rope_freqs`, Llama 3.1 scaling) and
    // DeepSeek-V3's routing bias (`exp_probs_b`, `e_score_correction_bias`).
    // Anything else that differs is reported: the spec follows the keys, the
    // bytes the tensors.
    let extra: u64 = headers
        .iter()
        .flat_map(|h| &h.tensors)
        .filter(|t| t.name.contains("rope_freqs") || t.name.contains(".exp_probs_b"))
        .map(|t| t.elements)
        .sum();
    let stored = tensor_elements.saturating_sub(extra);
    if stored != counted {
        parsed.warnings.push(format!(
            "the GGUF tensors hold {stored} parameters but the `{architecture}.*` keys describe \
             {counted}: memory uses the stored bytes, counts follow the keys"
        ));
    }
    Ok(GgufModel {
        parsed,
        architecture,
        weights,
        tensor_elements,
        context_length: first.context_length(),
    })
}

/// The `config.json` of the transformers model the GGUF was converted from,
/// as far as its shape goes.
fn config_for(
    header: &GgufHeader,
    arch: &str,
    has: &dyn Fn(&str) -> bool,
    invalid: &dyn Fn(&str, &str) -> SourceError,
) -> Result<Map<String, Value>, SourceError> {
    let key = |suffix: &str| format!("{arch}.{suffix}");
    // Per-layer arrays (OpenELM, Gemma 3n, hybrid models) have no single-value config.
    let scalar = |suffix: &str| -> Result<Option<u64>, SourceError> {
        let full = key(suffix);
        match header.get(&full) {
            None => Ok(None),
            Some(value) => value.as_u64().map(Some).ok_or_else(|| {
                invalid(
                    &full,
                    "must be one non-negative integer (per-layer values are not supported)",
                )
            }),
        }
    };
    // Every required shape key counts something: zero is named here, by its
    // GGUF key, not later by the config key it becomes.
    let required = |suffix: &str| -> Result<u64, SourceError> {
        match scalar(suffix)? {
            None => Err(invalid(&key(suffix), "is missing")),
            Some(0) => Err(invalid(&key(suffix), "must be at least 1")),
            Some(value) => Ok(value),
        }
    };
    let experts = scalar("expert_count")?.unwrap_or(0);
    let model_type = match arch {
        "llama" if experts > 0 => "mixtral",
        "llama" | "qwen2" | "qwen3" | "gemma" | "gemma2" | "phi3" | "starcoder2" | "olmo2"
        | "gpt2" => arch,
        "qwen2moe" => "qwen2_moe",
        "qwen3moe" => "qwen3_moe",
        "gemma3" => "gemma3_text",
        "gpt-oss" => "gpt_oss",
        // DeepSeek-V3 routes with sigmoid scores (`expert_gating_func` 2 = sigmoid).
        "deepseek2" if scalar("expert_gating_func")? == Some(2) => "deepseek_v3",
        "deepseek2" => "deepseek_v2",
        other => {
            let known: Vec<&str> = ARCHITECTURES.iter().map(|(a, _)| *a).collect();
            return Err(invalid(
                "general.architecture",
                &format!(
                    "is `{other}`, which vramfit does not map to a transformers model yet \
                     (known: {})",
                    known.join(", ")
                ),
            ));
        }
    };
    let hidden = required("embedding_length")?;
    let layers = required("block_count")?;
    // Bounded before anything is sized by it (the config parser's limit).
    if layers > MAX_LAYERS {
        return Err(invalid(
            &key("block_count"),
            &format!("is {layers}, beyond any real model ({MAX_LAYERS} layers at most)"),
        ));
    }
    let heads = required("attention.head_count")?;
    let kv_heads = scalar("attention.head_count_kv")?.unwrap_or(heads);
    let vocab = header
        .vocab_size()
        .ok_or_else(|| invalid("tokenizer.ggml.tokens", "is missing (and no vocab_size key)"))?;
    let mut config = Map::new();
    let mut set = |name: &str, value: Value| {
        config.insert(name.to_owned(), value);
    };
    set("model_type", json!(model_type));
    set("vocab_size", json!(vocab));
    set("hidden_size", json!(hidden));
    set("num_hidden_layers", json!(layers));
    set("num_attention_heads", json!(heads));
    set("num_key_value_heads", json!(kv_heads));
    set("tie_word_embeddings", json!(!has("output.weight")));
    if let Some(context) = scalar("context_length")? {
        set("max_position_embeddings", json!(context));
        set("n_positions", json!(context));
    }
    if let Some(ffn) = scalar("feed_forward_length")? {
        set("intermediate_size", json!(ffn));
    }
    // The head size, when it is not hidden / heads (Gemma, Qwen3, gpt-oss).
    let key_length = scalar("attention.key_length")?;
    if let Some(head_dim) = key_length
        && model_type != "deepseek_v2"
        && model_type != "deepseek_v3"
    {
        set("head_dim", json!(head_dim));
    }
    if let Some(window) = scalar("attention.sliding_window")?.filter(|w| *w > 0) {
        set("sliding_window", json!(window));
        if let Some(pattern) = scalar("attention.sliding_window_pattern")? {
            set("sliding_window_pattern", json!(pattern));
        }
    }
    for (suffix, name) in [
        ("attn_logit_softcapping", "attn_logit_softcapping"),
        ("final_logit_softcapping", "final_logit_softcapping"),
    ] {
        if let Some(cap) = header.get_f64(&key(suffix)) {
            set(name, json!(cap));
        }
    }
    let bias = has("blk.0.attn_q.bias");
    match model_type {
        "llama" | "mixtral" | "olmo2" => {
            set("attention_bias", json!(bias));
            set("mlp_bias", json!(has("blk.0.ffn_up.bias")));
        }
        "starcoder2" => set("use_bias", json!(bias)),
        _ => {}
    }
    if experts > 0 {
        let used = required("expert_used_count")?;
        set("num_local_experts", json!(experts));
        set("num_experts", json!(experts));
        set("n_routed_experts", json!(experts));
        set("num_experts_per_tok", json!(used));
        match model_type {
            // Mixtral and gpt-oss call the expert size `intermediate_size`.
            "mixtral" | "gpt_oss" => {
                if let Some(size) = scalar("expert_feed_forward_length")? {
                    set("intermediate_size", json!(size));
                }
            }
            _ => {
                let size = required("expert_feed_forward_length")?;
                set("moe_intermediate_size", json!(size));
            }
        }
        if model_type == "qwen2_moe" {
            let shared = scalar("expert_shared_feed_forward_length")?.unwrap_or(0);
            set("shared_expert_intermediate_size", json!(shared));
        }
    }
    if model_type == "gpt_oss" {
        // gpt-oss alternates sliding and full attention, starting with a sliding layer
        // (`GptOssConfig.layer_types`); llama.cpp hard-codes the same pattern.
        let types: Vec<&str> = (0..layers)
            .map(|i| if i % 2 == 0 { "sliding_attention" } else { "full_attention" })
            .collect();
        set("layer_types", json!(types));
    }
    if model_type.starts_with("deepseek") {
        let rope = required("rope.dimension_count")?;
        // Converters since mid-2025 store the absorbed-MLA form: key/value lengths of the
        // latent, with the per-head sizes under `*_mla`.
        let (key_len, value_len) = match scalar("attention.key_length_mla")? {
            Some(k) => (k, required("attention.value_length_mla")?),
            None => (
                key_length.ok_or_else(|| invalid(&key("attention.key_length"), "is missing"))?,
                required("attention.value_length")?,
            ),
        };
        let nope = key_len
            .checked_sub(rope)
            .ok_or_else(|| invalid(&key("rope.dimension_count"), "exceeds the key length"))?;
        set("qk_rope_head_dim", json!(rope));
        set("qk_nope_head_dim", json!(nope));
        set("v_head_dim", json!(value_len));
        set("kv_lora_rank", json!(required("attention.kv_lora_rank")?));
        if let Some(rank) = scalar("attention.q_lora_rank")?.filter(|r| *r > 0) {
            set("q_lora_rank", json!(rank));
        }
        set("first_k_dense_replace", json!(scalar("leading_dense_block_count")?.unwrap_or(0)));
        set("n_shared_experts", json!(scalar("expert_shared_count")?.unwrap_or(0)));
    }
    Ok(config)
}

/// The stored bytes grouped as llama.cpp places them.
fn stored_weights(
    headers: &[GgufHeader],
    invalid: &dyn Fn(&str, &str) -> SourceError,
) -> Result<StoredWeights, SourceError> {
    let layers = headers
        .first()
        .and_then(GgufHeader::block_count)
        .and_then(|n| usize::try_from(n).ok())
        .unwrap_or(0);
    let mut weights = StoredWeights { layer_bytes: vec![0; layers], ..StoredWeights::default() };
    for tensor in headers.iter().flat_map(|h| &h.tensors) {
        let Some(bytes) = tensor.byte_len else {
            return Err(invalid(
                &tensor.name,
                &format!("has ggml type {} that this build cannot size", tensor.ggml_type.name()),
            ));
        };
        let layer = tensor
            .name
            .strip_prefix("blk.")
            .and_then(|rest| rest.split_once('.'))
            .and_then(|(index, _)| index.parse::<usize>().ok());
        let slot = match layer {
            Some(index) => weights.layer_bytes.get_mut(index).ok_or_else(|| {
                invalid(&tensor.name, &format!("names a layer beyond block_count ({layers})"))
            })?,
            // llama.cpp's input layer (`LLM_TENSOR_LAYER_INPUT`), kept on the host.
            None if matches!(
                tensor.name.as_str(),
                "token_embd.weight" | "position_embd.weight"
            ) =>
            {
                &mut weights.token_embd_bytes
            }
            None if tensor.name.starts_with("output.") => &mut weights.output_bytes,
            None => &mut weights.other_bytes,
        };
        *slot = slot.saturating_add(bytes);
    }
    Ok(weights)
}
