/*!
Hugging Face `config.json` → [`ModelSpec`].

One function per architecture family maps the config's keys to the modules
transformers 5 instantiates for it (the `__init__` of each model's attention,
MLP and decoder-layer classes). Where a key is absent, the default is the one
of that model's `*Config` class in transformers, not a guess: for example
`tie_word_embeddings` defaults to `false` for Llama but `true` for Gemma.

Every integer is range-checked against limits far above any real model, so an
absurd or hostile config gets an error naming the key instead of an overflow
or a huge allocation.
*/

use serde_json::{Map, Value};
use vramfit_core::spec::{
    Activation, Attention, AttentionBias, AttentionKind, BlockStyle, Component, DeltaNetDims,
    Dropout, ExtraModule, FeedForward, LatentDims, Layer, LayerGroup, Linear, LmHead, MlpNames,
    ModelSpec, Moe, NormKind, NormStyle, PeftMoeNames, PositionEncoding, QkvNames, Softcapping,
    Tensor, dense_mlp, gated_delta_net, latent_attention, mlp_is_gated, norm,
    standard_attention_projections,
};

use crate::error::SourceError;

/// A parsed config: the spec and what the user should know about how it was read.
#[derive(Clone, Debug)]
pub struct ParsedConfig {
    /// The architecture.
    pub spec: ModelSpec,
    /// Non-fatal remarks (unknown `model_type` read as a generic decoder, ...).
    pub warnings: Vec<String>,
}

/// Upper bounds that no real model reaches; beyond them a value is treated as corrupt.
pub(crate) const MAX_LAYERS: u64 = 10_000;
/// Largest `config.json` read, in bytes: real ones are a few KiB (multimodal
/// configs up to ~100 KiB, the largest label maps about 1 MiB).
pub const MAX_CONFIG_BYTES: u64 = 4 * 1024 * 1024;

/// Most keys and values a `config.json` may hold: real ones hold hundreds, a
/// 21,843-label classifier about 44,000. A JSON tree costs about 160 bytes a
/// value (measured, `tests/memory_bounds.rs`), so a hostile file of short keys
/// is refused before it is built.
pub const MAX_CONFIG_VALUES: usize = 100_000;

/// The values a JSON text holds, counted without parsing it: one for the
/// top level and one per comma and opening bracket outside strings. It never
/// undercounts a well-formed document; it overcounts by one per empty
/// container.
pub(crate) fn json_values(text: &[u8]) -> usize {
    let (mut count, mut in_string, mut escaped) = (1, false, false);
    for &byte in text {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
        } else {
            match byte {
                b'"' => in_string = true,
                b',' | b'[' | b'{' => count += 1,
                _ => {}
            }
        }
    }
    count
}
const MAX_DIM: u64 = 1 << 24;
const MAX_VOCAB: u64 = 1 << 26;
const MAX_HEADS: u64 = 1 << 16;
const MAX_EXPERTS: u64 = 1 << 16;
const MAX_POSITIONS: u64 = 1 << 40;

/// Parses the text of a `config.json`. `origin` names it in errors.
///
/// Python's `json` module, which writes these files, writes the floats
/// `NaN`, `Infinity` and `-Infinity` as bare words that JSON does not have
/// (Nemotron-H's `time_step_limit` is `[0.0, Infinity]`); they are read as
/// the strings `"NaN"`, `"Infinity"` and `"-Infinity"`, so a key vramfit
/// reads as a number still gets an error naming it.
pub fn parse_config_str(text: &str, origin: &str) -> Result<ParsedConfig, SourceError> {
    if text.len() as u64 > MAX_CONFIG_BYTES {
        return Err(SourceError::InvalidField {
            origin: origin.to_owned(),
            key: "(file)".into(),
            reason: format!("is larger than {MAX_CONFIG_BYTES} bytes; not a config.json"),
        });
    }
    let values = json_values(text.as_bytes());
    if values > MAX_CONFIG_VALUES {
        return Err(SourceError::InvalidField {
            origin: origin.to_owned(),
            key: "(file)".into(),
            reason: format!(
                "holds about {values} keys and values, more than {MAX_CONFIG_VALUES}; not a config.json"
            ),
        });
    }
    let json_error = |error: serde_json::Error| SourceError::Json {
        origin: origin.to_owned(),
        message: error.to_string(),
        line: error.line(),
        column: error.column(),
    };
    let value: Value = match serde_json::from_str(text) {
        Ok(value) => value,
        Err(error) => match quote_python_floats(text) {
            Some(quoted) => serde_json::from_str(&quoted).map_err(|_| json_error(error))?,
            None => return Err(json_error(error)),
        },
    };
    parse_config_value(&value, origin)
}

/// `text` with Python's bare `NaN`, `Infinity` and `-Infinity` outside
/// strings quoted, or `None` when it holds none.
fn quote_python_floats(text: &str) -> Option<String> {
    const WORDS: [&str; 3] = ["-Infinity", "Infinity", "NaN"];
    let bytes = text.as_bytes();
    let mut out = String::with_capacity(text.len() + 16);
    let (mut in_string, mut escaped, mut found) = (false, false, false);
    let mut copied = 0;
    let mut index = 0;
    while index < bytes.len() {
        let byte = bytes[index];
        if in_string {
            match (escaped, byte) {
                (true, _) => escaped = false,
                (false, b'\\') => escaped = true,
                (false, b'"') => in_string = false,
                _ => {}
            }
            index += 1;
            continue;
        }
        if byte == b'"' {
            in_string = true;
            index += 1;
            continue;
        }
        let rest = &bytes[index..];
        if let Some(word) = WORDS.iter().find(|word| rest.starts_with(word.as_bytes())) {
            let end = index + word.len();
            let boundary = bytes.get(end).is_none_or(|b| !b.is_ascii_alphanumeric());
            if boundary {
                out.push_str(&text[copied..index]);
                out.push('"');
                out.push_str(word);
                out.push('"');
                copied = end;
                found = true;
                index = end;
                continue;
            }
        }
        index += 1;
    }
    found.then(|| {
        out.push_str(&text[copied..]);
        out
    })
}

/// Parses an already decoded `config.json`.
pub fn parse_config_value(value: &Value, origin: &str) -> Result<ParsedConfig, SourceError> {
    let Some(object) = value.as_object() else {
        return Err(SourceError::InvalidField {
            origin: origin.to_owned(),
            key: "(top level)".into(),
            reason: "must be a JSON object".into(),
        });
    };
    let plain = Cfg { object, origin, prefix: String::new(), defaults: &[] };
    let model_type = plain.string("model_type")?.unwrap_or_default();
    let cfg = Cfg { defaults: family_defaults(&model_type), ..plain };
    foreign_signals(&cfg, &model_type)?;
    let mut warnings = Vec::new();
    let spec = match model_type.as_str() {
        "llama" | "mistral" | "mixtral" | "qwen2" | "qwen2_moe" | "qwen3" | "qwen3_moe"
        | "gemma" | "gemma2" | "gemma3_text" | "olmo2" | "olmo3" | "starcoder2" | "gpt_oss"
        | "smollm3" | "ministral3" | "minimax_m2" => llama_like(&cfg, &model_type)?,
        "gemma3" => gemma3_multimodal(&cfg)?,
        "qwen3_5" | "qwen3_5_moe" => qwen3_5_multimodal(&cfg, &model_type)?,
        "qwen3_5_text" | "qwen3_5_moe_text" | "qwen3_next" => qwen3_5_text(&cfg, &model_type)?,
        "llama4" => llama4_multimodal(&cfg)?,
        "lfm2" => lfm2(&cfg)?,
        "mistral3" => mistral3_multimodal(&cfg)?,
        "llama4_text" => llama4_text(&cfg)?,
        "deepseek_v2" | "deepseek_v3" | "deepseek_v32" | "glm_moe_dsa" => {
            deepseek(&cfg, &model_type)?
        }
        "kimi_k2" => {
            warnings.push(kimi_k2_reading(&cfg)?);
            deepseek(&cfg, "deepseek_v3")?
        }
        "phi" => phi(&cfg)?,
        "phi3" => phi3(&cfg)?,
        "gpt2" => gpt2(&cfg)?,
        "gpt_neox" => gpt_neox(&cfg)?,
        "gptj" => gptj(&cfg)?,
        "falcon" => falcon(&cfg)?,
        "xglm" => xglm(&cfg)?,
        "qwen" => qwen_v1(&cfg)?,
        "llama_moe" => llama_moe(&cfg)?,
        "idefics" => idefics(&cfg)?,
        other => {
            let shown = if other.is_empty() { "(none)" } else { other };
            generic_guard(&cfg, shown)?;
            warnings.push(format!(
                "model_type `{shown}` is not one vramfit knows; every key of its config is one the \
                 Llama-style reading understands (gated MLP, RMSNorm, separate q/k/v/o \
                 projections), so it is read as one: a figure that holds only if the model \
                 really is built like Llama"
            ));
            let mut spec = llama_like(&cfg, "generic").map_err(|error| match error {
                SourceError::MissingFields { origin, fields, .. } => {
                    SourceError::MissingFields { origin, model_type: shown.to_owned(), fields }
                }
                other => other,
            })?;
            spec.model_type = if other.is_empty() { "unknown".into() } else { other.to_owned() };
            spec
        }
    };
    // Multi-token-prediction layers ship in the checkpoint but transformers 5.24
    // does not build them: say so, as a published count may include them.
    let text_cfg = cfg.nested("text_config")?;
    for (holder, key) in [
        (Some(&cfg), "num_mtp_modules"),
        (Some(&cfg), "num_nextn_predict_layers"),
        (Some(&cfg), "mtp_num_hidden_layers"),
        (text_cfg.as_ref(), "mtp_num_hidden_layers"),
    ] {
        if let Some(holder) = holder
            && let Some(layers) = holder.int(&[key], MAX_LAYERS, true)?.filter(|n| *n > 0)
        {
            warnings.push(format!(
                "the checkpoint's {layers} multi-token-prediction layer(s) (`{}{key}`) are not \
                 built by transformers 5.24 and not counted",
                holder.prefix
            ));
        }
    }
    let mut spec = spec;
    let details = match model_type.as_str() {
        "gemma3" => cfg
            .nested("text_config")?
            .map_or(Ok((Activation::Gelu, Dropout::default())), |text| {
                forward_details(&text, "gemma3_text")
            })?,
        "mistral3" => cfg
            .nested("text_config")?
            .map_or(Ok((Activation::Silu, Dropout::default())), |text| {
                forward_details(&text, "ministral3")
            })?,
        "qwen3_5" | "qwen3_5_moe" => cfg
            .nested("text_config")?
            .map_or(Ok((Activation::Silu, Dropout::default())), |text| {
                forward_details(&text, "qwen3_5_text")
            })?,
        family => forward_details(&cfg, family)?,
    };
    (spec.activation, spec.dropout) = details;
    let capped =
        |key: &str| cfg.object.get(key).and_then(Value::as_f64).is_some_and(|cap| cap > 0.0);
    let text = cfg.object.get("text_config").and_then(Value::as_object);
    let capped_text = |key: &str| {
        text.and_then(|t| t.get(key)).and_then(Value::as_f64).is_some_and(|cap| cap > 0.0)
    };
    spec.softcapping = Softcapping {
        attention: capped("attn_logit_softcapping") || capped_text("attn_logit_softcapping"),
        logits: capped("final_logit_softcapping") || capped_text("final_logit_softcapping"),
    };
    vramfit_core::params::count_params(&spec)
        .map_err(|source| SourceError::Core { origin: origin.to_owned(), source })?;
    Ok(ParsedConfig { spec, warnings })
}

/// The `model_type`s with a reading of their own (the generic Llama-style
/// reading is not among them).
pub const KNOWN_MODEL_TYPES: &[&str] = &[
    "deepseek_v2",
    "deepseek_v3",
    "deepseek_v32",
    "falcon",
    "gemma",
    "gemma2",
    "gemma3",
    "gemma3_text",
    "glm_moe_dsa",
    "gpt2",
    "gpt_neox",
    "gpt_oss",
    "gptj",
    "idefics",
    "kimi_k2",
    "lfm2",
    "llama",
    "llama4",
    "llama4_text",
    "llama_moe",
    "minimax_m2",
    "ministral3",
    "mistral",
    "mistral3",
    "mixtral",
    "olmo2",
    "olmo3",
    "phi",
    "phi3",
    "qwen",
    "qwen2",
    "qwen2_moe",
    "qwen3",
    "qwen3_5",
    "qwen3_5_moe",
    "qwen3_5_moe_text",
    "qwen3_5_text",
    "qwen3_moe",
    "qwen3_next",
    "smollm3",
    "starcoder2",
    "xglm",
];

/// Keys of a config of unknown `model_type` that the Llama-style reading
/// understands, or that change neither the parameter count nor the memory:
/// `LlamaConfig`'s own keys and `PreTrainedConfig`'s (transformers 5.24), plus
/// the spellings older files use. Any other key makes the config an error.
const GENERIC_KEYS: &[&str] = &[
    // PreTrainedConfig (transformers 5.24 `configuration_utils.py`).
    "_name_or_path",
    "architectures",
    "dtype",
    "id2label",
    "label2id",
    "model_type",
    "output_attentions",
    "output_hidden_states",
    "problem_type",
    "return_dict",
    "torch_dtype",
    "transformers_version",
    "tokenizer_class",
    // LlamaConfig (transformers 5.24 `configuration_llama.py`).
    "attention_bias",
    "attention_dropout",
    "bos_token_id",
    "eos_token_id",
    "head_dim",
    "hidden_act",
    "hidden_size",
    "initializer_range",
    "intermediate_size",
    "max_position_embeddings",
    "mlp_bias",
    "num_attention_heads",
    "num_hidden_layers",
    "num_key_value_heads",
    "pad_token_id",
    "pretraining_tp",
    "rms_norm_eps",
    "rope_parameters",
    "rope_scaling",
    "rope_theta",
    "tie_word_embeddings",
    "use_cache",
    "vocab_size",
    // Read by the shared steps (`layer_types` entries are checked there).
    "layer_types",
    // Weight storage of a pre-quantized checkpoint: the logical count is unchanged.
    "quantization_config",
];

/// Keys that the generic reading accepts only at the value that means "off":
/// a feed-forward chunk size changes the activations, an encoder-decoder is
/// another kind of model, a window's placement is each family's own rule
/// (unless `layer_types` places it).
fn generic_key_is_off(cfg: &Cfg<'_>, key: &str, value: &Value) -> bool {
    match key {
        "chunk_size_feed_forward" => value.is_null() || value.as_u64() == Some(0),
        "is_encoder_decoder" | "is_decoder" | "add_cross_attention" => {
            value.is_null() || value == &Value::Bool(false) || key == "is_decoder"
        }
        "sliding_window" => {
            value.is_null() || value.as_u64() == Some(0) || cfg.object.contains_key("layer_types")
        }
        _ => false,
    }
}

/// The classes a config of unknown `model_type` may name in `architectures`
/// and still be read as Llama: any other class is another architecture.
const LLAMA_CLASSES: &[&str] = &["LlamaForCausalLM", "LlamaModel", "MistralForCausalLM"];

/// Whether the generic reading understands `key`'s value, not only its name:
/// `attention_bias: true` means q/k/v/o biases in Llama but q/k/v only in
/// Qwen2 and GLM; a partial rotary factor changes what attention keeps; an
/// `architectures` class other than Llama's is another model.
fn generic_value_is_read(key: &str, value: &Value) -> bool {
    match key {
        "attention_bias" => value.is_null() || value == &Value::Bool(false),
        "rope_parameters" | "rope_scaling" => {
            let partial = |v: &Value| {
                v.get("partial_rotary_factor")
                    .and_then(Value::as_f64)
                    .is_some_and(|f| (f - 1.0).abs() > f64::EPSILON)
            };
            // Per layer type (`{"full_attention": {...}}`) or one block.
            !(partial(value) || value.as_object().is_some_and(|m| m.values().any(partial)))
        }
        "architectures" => {
            value.is_null()
                || value.as_array().is_some_and(|classes| {
                    classes.iter().all(|c| c.as_str().is_some_and(|c| LLAMA_CLASSES.contains(&c)))
                })
        }
        _ => true,
    }
}

/// What a key vramfit does not understand signals, for the error message.
fn key_signal(key: &str, value: &Value) -> &'static str {
    let has = |parts: &[&str]| parts.iter().any(|part| key.contains(part));
    if key == "auto_map" {
        "custom modelling code"
    } else if key == "architectures" {
        "a model class other than Llama's"
    } else if key == "attention_bias" {
        "biases whose placement differs between families"
    } else if key == "rope_parameters" || key == "rope_scaling" {
        "a partial rotary factor"
    } else if has(&["expert", "moe", "router", "routed", "topk", "top_k", "sparse"]) {
        "experts"
    } else if has(&["linear_", "mamba", "ssm", "conv", "hybrid", "state_size", "time_step", "rwkv"])
    {
        "layers that are not softmax attention"
    } else if has(&["per_layer"]) {
        "per-layer embeddings"
    } else if has(&["kv_shared", "shared_kv", "kv_sharing", "cross_layer"]) {
        "KV shared between layers"
    } else if value.is_array() {
        "a per-layer list"
    } else if value.is_object() {
        "a nested config"
    } else {
        "a key the Llama-style reading does not use"
    }
}

/// Keys that make a model another architecture whatever its `model_type`
/// says: DeepSeek-V3.2's sparse-attention indexer (`index_*`), linear
/// attention, state-space layers, per-layer embeddings, KV shared between
/// layers. A known `model_type` holding one that its own reading does not
/// read ([`read_by_family`]: Qwen3.5's gated `DeltaNet` keys, the DeepSeek
/// Sparse Attention keys of DeepSeek-V3.2 and GLM-5) is an error: a fine-tune
/// relabelled, or a new model reusing an old type.
fn foreign_signals(cfg: &Cfg<'_>, model_type: &str) -> Result<(), SourceError> {
    let signal = |key: &str| {
        ["index_", "linear_", "mamba", "ssm_", "hybrid_override", "time_step"]
            .iter()
            .any(|prefix| key.starts_with(prefix))
            || matches!(
                key,
                "num_kv_shared_layers"
                    | "hidden_size_per_layer_input"
                    | "vocab_size_per_layer_input"
            )
    };
    let off = |value: &Value| {
        value.is_null() || value == &Value::Bool(false) || value.as_u64() == Some(0)
    };
    let keys: Vec<String> = cfg
        .object
        .iter()
        .filter(|(key, value)| signal(key) && !off(value) && !read_by_family(model_type, key))
        .map(|(key, _)| key.clone())
        .collect();
    if keys.is_empty() || !KNOWN_MODEL_TYPES.contains(&model_type) {
        return Ok(());
    }
    let named = keys.iter().map(|k| format!("`{k}`")).collect::<Vec<_>>().join(", ");
    Err(SourceError::Unsupported {
        origin: cfg.origin.to_owned(),
        model_type: model_type.to_owned(),
        keys,
        reason: format!(
            "the config holds {named}, which no `{model_type}` model has: it describes another \
             architecture (a sparse-attention indexer, linear-attention or state-space layers, \
             per-layer embeddings or shared KV) that this reading does not model"
        ),
    })
}

/// The keys of [`foreign_signals`]' classes that a family's own reading
/// reads: Qwen3.5's gated `DeltaNet` dimensions, DeepSeek Sparse Attention's indexer.
fn read_by_family(model_type: &str, key: &str) -> bool {
    let dsa = matches!(model_type, "deepseek_v32" | "glm_moe_dsa")
        && matches!(
            key,
            "index_n_heads"
                | "index_head_dim"
                | "index_topk"
                | "index_topk_freq"
                | "index_skip_topk_offset"
                | "index_topk_pattern"
        );
    // Qwen3.5's `mamba_ssm_dtype` names the recurrent state's type for vLLM;
    // transformers 5.24 keeps it fp32 whatever the key says (and so does vramfit).
    dsa || matches!(model_type, "qwen3_5_text" | "qwen3_5_moe_text" | "qwen3_next")
        && matches!(
            key,
            "linear_num_key_heads"
                | "linear_num_value_heads"
                | "linear_key_head_dim"
                | "linear_value_head_dim"
                | "linear_conv_kernel_dim"
                | "mamba_ssm_dtype"
        )
}

/// The gate of the generic reading: a config of unknown `model_type` is read
/// as a Llama-style decoder only when every key it holds is one that reading
/// understands (or is at its "off" value). Anything else — experts, linear
/// attention or state-space layers, per-layer arrays or embeddings, shared KV,
/// a nested config — is an error naming the keys, never a guessed count.
fn generic_guard(cfg: &Cfg<'_>, shown: &str) -> Result<(), SourceError> {
    let mut keys = Vec::new();
    let mut signals: Vec<(&'static str, Vec<String>)> = Vec::new();
    for (key, value) in cfg.object {
        let list_allowed =
            matches!(key.as_str(), "layer_types" | "architectures") || key.ends_with("_token_id");
        let understood = GENERIC_KEYS.contains(&key.as_str())
            && (!value.is_array() || list_allowed)
            && generic_value_is_read(key, value)
            || generic_key_is_off(cfg, key, value);
        if understood {
            continue;
        }
        keys.push(key.clone());
        let signal = key_signal(key, value);
        match signals.iter_mut().find(|(name, _)| *name == signal) {
            Some((_, named)) => named.push(format!("`{key}`")),
            None => signals.push((signal, vec![format!("`{key}`")])),
        }
    }
    if keys.is_empty() {
        return Ok(());
    }
    let listed = signals
        .iter()
        .map(|(signal, named)| format!("{signal}: {}", named.join(", ")))
        .collect::<Vec<_>>()
        .join("; ");
    Err(SourceError::Unsupported {
        origin: cfg.origin.to_owned(),
        model_type: shown.to_owned(),
        keys,
        reason: format!(
            "this model_type has no reading of its own, and its config holds keys the \
             Llama-style reading does not understand ({listed})"
        ),
    })
}

/// The MLP activation (`hidden_act` and its per-family aliases) and the
/// dropouts active in training, with each family's `*Config` defaults
/// (GPT-2 and XGLM default to 0.1 dropout; the others to none).
fn forward_details(cfg: &Cfg<'_>, model_type: &str) -> Result<(Activation, Dropout), SourceError> {
    let default_act = match model_type {
        "gpt2" | "gptj" | "phi" => "gelu_new",
        "gpt_neox" | "falcon" | "xglm" => "gelu",
        "gemma" | "gemma2" | "gemma3_text" | "starcoder2" => "gelu_pytorch_tanh",
        _ => "silu",
    };
    let mut name = None;
    for key in ["hidden_activation", "hidden_act", "activation_function", "activation"] {
        if let Some(value) = cfg.string(key)? {
            name = Some((key, value));
            break;
        }
    }
    let (key, name) = name.unwrap_or(("hidden_act", default_act.to_owned()));
    // transformers' `ACT2FN` names whose saved tensors the trace models.
    let activation = match name.as_str() {
        "gelu_new" | "gelu_fast" | "gelu_accurate" => Activation::GeluNew,
        "gelu" | "gelu_pytorch_tanh" | "gelu_python" | "gelu_10" => Activation::Gelu,
        "relu" => Activation::Relu,
        "silu" | "swish" => Activation::Silu,
        other => {
            return Err(SourceError::Unsupported {
                origin: cfg.origin.to_owned(),
                model_type: model_type.to_owned(),
                keys: vec![format!("{}{key}", cfg.prefix)],
                reason: format!(
                    "`{key}` is `{other}`, an activation whose memory vramfit does not model \
                     (it knows silu, swish, gelu, gelu_new, gelu_fast, gelu_accurate, \
                     gelu_pytorch_tanh, gelu_python, gelu_10 and relu)"
                ),
            });
        }
    };
    let probability = |keys: &[&str], default: f64| -> Result<f64, SourceError> {
        for key in keys {
            match cfg.object.get(*key) {
                None | Some(Value::Null) => {}
                Some(value) => {
                    return value.as_f64().filter(|p| (0.0..=1.0).contains(p)).ok_or_else(|| {
                        cfg.invalid(
                            key,
                            &format!("must be a probability between 0 and 1, found {value}"),
                        )
                    });
                }
            }
        }
        Ok(default)
    };
    let default_p = if matches!(model_type, "gpt2" | "xglm") { 0.1 } else { 0.0 };
    let dropout = Dropout {
        attention: probability(
            &["attention_dropout", "attn_pdrop", "attention_probs_dropout_prob"],
            default_p,
        )? > 0.0,
        residual: probability(
            &["resid_pdrop", "hidden_dropout", "residual_dropout", "dropout"],
            default_p,
        )? > 0.0
            && matches!(
                model_type,
                "gpt2" | "gptj" | "phi" | "gpt_neox" | "falcon" | "starcoder2" | "xglm"
            ),
        embedding: probability(&["embd_pdrop", "embedding_dropout", "dropout"], default_p)? > 0.0
            && matches!(model_type, "gpt2" | "gptj" | "phi" | "starcoder2" | "xglm"),
    };
    Ok((activation, dropout))
}

/// Read access to one JSON object of a config, with errors that name the key.
struct Cfg<'a> {
    object: &'a Map<String, Value>,
    origin: &'a str,
    /// Dotted path of this object inside the file (`text_config.`), for messages.
    prefix: String,
    /// Values transformers' config class uses when a key is absent (for nested
    /// configs that rely on them, such as Gemma 3's `text_config`).
    defaults: &'static [(&'static str, u64)],
}

/// The values a family's config class uses for keys a file may leave out,
/// where they differ from what the readings assume (transformers 5.24:
/// `Ministral3Config.head_dim` and `MiniMaxM2Config.head_dim` are 128, not
/// `hidden_size / num_attention_heads`).
fn family_defaults(model_type: &str) -> &'static [(&'static str, u64)] {
    match model_type {
        "ministral3" | "minimax_m2" => &[("head_dim", 128)],
        "qwen3_5_text" | "qwen3_5_moe_text" | "qwen3_next" => QWEN3_5_TEXT_DEFAULTS,
        _ => &[],
    }
}

/// Kimi-K2 (`model_type` `kimi_k2`, remote code) is DeepSeek-V3's
/// architecture under another name: its `architectures` names
/// `DeepseekV3ForCausalLM`, which vLLM and SGLang serve it as. Read as
/// transformers 5.24's `deepseek_v3`; anything else under that name is refused.
fn kimi_k2_reading(cfg: &Cfg<'_>) -> Result<String, SourceError> {
    let classes = cfg.string_list("architectures")?.unwrap_or_default();
    if classes.iter().any(|class| class == "DeepseekV3ForCausalLM") {
        Ok("model_type `kimi_k2` is remote code naming `DeepseekV3ForCausalLM`: it is read as \
            transformers 5.24's `deepseek_v3` (as vLLM and SGLang serve it); the repository's \
            own remote code keeps each expert as a module and the routing bias as a parameter \
            (one per expert and MoE layer, not counted here)"
            .to_owned())
    } else {
        Err(SourceError::Unsupported {
            origin: cfg.origin.to_owned(),
            model_type: "kimi_k2".into(),
            keys: vec!["architectures".into()],
            reason: format!(
                "a `kimi_k2` config is read as DeepSeek-V3 only when `architectures` names \
                 `DeepseekV3ForCausalLM`; this one names {}",
                if classes.is_empty() { "no class".to_owned() } else { format!("{classes:?}") }
            ),
        })
    }
}

/// The nested `key` (`text_config`, `vision_config`) of a multimodal config
/// of `model_type`, or an error naming it.
fn nested_required<'a>(cfg: &Cfg<'a>, key: &str, model_type: &str) -> Result<Cfg<'a>, SourceError> {
    cfg.nested(key)?.ok_or_else(|| SourceError::MissingFields {
        origin: cfg.origin.to_owned(),
        model_type: model_type.to_owned(),
        fields: vec![key.to_owned()],
    })
}

/// What a multimodal model's outer config says of the text model read from
/// its `text_config`: its own `model_type`, the checkpoint's dtype where the
/// text config states none, and whether the head is tied
/// (`tie_word_embeddings` at the top level wins).
fn adopt_outer(spec: &mut ModelSpec, cfg: &Cfg<'_>, model_type: &str) -> Result<(), SourceError> {
    model_type.clone_into(&mut spec.model_type);
    if spec.torch_dtype.is_none() {
        spec.torch_dtype = cfg.torch_dtype()?;
    }
    spec.lm_head.tied = cfg.boolean("tie_word_embeddings", spec.lm_head.tied)?;
    Ok(())
}

/// `Gemma3TextConfig.__init__` defaults (transformers 5): Gemma 3's
/// multimodal configs state only what differs from them.
const GEMMA3_TEXT_DEFAULTS: &[(&str, u64)] = &[
    ("vocab_size", 262_208),
    ("hidden_size", 2304),
    ("intermediate_size", 9216),
    ("num_hidden_layers", 26),
    ("num_attention_heads", 8),
    ("num_key_value_heads", 4),
    ("head_dim", 256),
    ("max_position_embeddings", 131_072),
    ("sliding_window", 4096),
    ("sliding_window_pattern", 6),
];

impl<'a> Cfg<'a> {
    fn nested(&self, key: &str) -> Result<Option<Cfg<'a>>, SourceError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Object(object)) => Ok(Some(Cfg {
                object,
                origin: self.origin,
                prefix: format!("{}{key}.", self.prefix),
                defaults: &[],
            })),
            Some(_) => Err(self.invalid(key, "must be an object")),
        }
    }

    fn invalid(&self, key: &str, reason: &str) -> SourceError {
        SourceError::InvalidField {
            origin: self.origin.to_owned(),
            key: format!("{}{key}", self.prefix),
            reason: reason.to_owned(),
        }
    }

    /// The first of `keys` that is present and not null, as an integer in `1..=max`
    /// (`0` allowed where `allow_zero`).
    fn int(&self, keys: &[&str], max: u64, allow_zero: bool) -> Result<Option<u64>, SourceError> {
        for key in keys {
            match self.object.get(*key) {
                None | Some(Value::Null) => {}
                Some(value) => {
                    let number = value
                        .as_u64()
                        .or_else(|| {
                            // Some configs write integers as floats (`4096.0`).
                            value.as_f64().and_then(whole_number)
                        })
                        .ok_or_else(|| {
                            self.invalid(
                                key,
                                &format!("must be a non-negative integer, found {value}"),
                            )
                        })?;
                    if number > max {
                        return Err(self.invalid(
                            key,
                            &format!(
                                "is {number}, above the sanity limit {max}: the config is corrupt"
                            ),
                        ));
                    }
                    if number == 0 && !allow_zero {
                        return Err(self.invalid(key, "must be at least 1"));
                    }
                    return Ok(Some(number));
                }
            }
        }
        Ok(keys
            .first()
            .and_then(|key| self.defaults.iter().find(|(name, _)| name == key))
            .map(|(_, value)| *value))
    }

    fn float_or(&self, key: &str, default: f64) -> Result<f64, SourceError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(value) => value
                .as_f64()
                .filter(|f| f.is_finite())
                .ok_or_else(|| self.invalid(key, &format!("must be a number, found {value}"))),
        }
    }

    fn boolean(&self, key: &str, default: bool) -> Result<bool, SourceError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(default),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.invalid(key, &format!("must be true or false, found {other}"))),
        }
    }

    fn string(&self, key: &str) -> Result<Option<String>, SourceError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(other) => Err(self.invalid(key, &format!("must be a string, found {other}"))),
        }
    }

    fn int_list(&self, key: &str, max: u64) -> Result<Vec<u64>, SourceError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(Vec::new()),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_u64().filter(|n| *n <= max).ok_or_else(|| {
                        self.invalid(key, &format!("must list integers up to {max}, found {item}"))
                    })
                })
                .collect(),
            Some(other) => Err(self.invalid(key, &format!("must be a list, found {other}"))),
        }
    }

    fn string_list(&self, key: &str) -> Result<Option<Vec<String>>, SourceError> {
        match self.object.get(key) {
            None | Some(Value::Null) => Ok(None),
            Some(Value::Array(items)) => items
                .iter()
                .map(|item| {
                    item.as_str().map(str::to_owned).ok_or_else(|| {
                        self.invalid(key, &format!("must list strings, found {item}"))
                    })
                })
                .collect::<Result<Vec<_>, _>>()
                .map(Some),
            Some(other) => Err(self.invalid(key, &format!("must be a list, found {other}"))),
        }
    }

    /// The model's context window, in tokens: the first of `keys` (its
    /// `max_position_embeddings`), extended by a `rope_scaling` (or
    /// transformers 5's `rope_parameters`) block the way vLLM derives
    /// `max_model_len` (vllm/config/model.py `_get_and_verify_max_len`, v0.11):
    /// a `factor` multiplies it, from `original_max_position_embeddings` for
    /// `YaRN`; `llama3`, `longrope`/`su` and Gemma 3's per-layer-type blocks
    /// already state the extended window in `max_position_embeddings`, as
    /// Gemma's linear factor (global layers only) does: vLLM skips it too.
    fn context_window(&self, keys: &[&str]) -> Result<Option<u64>, SourceError> {
        let Some(window) = self.int(keys, MAX_POSITIONS, false)? else {
            return Ok(None);
        };
        let block = ["rope_scaling", "rope_parameters"]
            .iter()
            .find_map(|key| self.object.get(*key).and_then(Value::as_object).map(|b| (*key, b)));
        let gemma = self
            .object
            .get("model_type")
            .and_then(Value::as_str)
            .is_some_and(|t| t.starts_with("gemma"));
        let Some((key, block)) = block.filter(|_| !gemma) else {
            return Ok(Some(window));
        };
        let rope_type = ["rope_type", "type"]
            .iter()
            .find_map(|k| block.get(*k).and_then(Value::as_str))
            .unwrap_or("default");
        if matches!(rope_type, "llama3" | "longrope" | "su" | "default" | "mrope") {
            return Ok(Some(window));
        }
        let Some(factor) = block.get("factor").and_then(Value::as_f64) else {
            return Ok(Some(window));
        };
        if !factor.is_finite() || !(1.0..=1024.0).contains(&factor) {
            return Err(self.invalid(
                &format!("{key}.factor"),
                &format!("is {factor}, outside 1..=1024: the config is corrupt"),
            ));
        }
        let base = match block.get("original_max_position_embeddings") {
            Some(value) if rope_type == "yarn" => {
                value.as_u64().filter(|&v| (1..=MAX_POSITIONS).contains(&v)).ok_or_else(|| {
                    self.invalid(
                        &format!("{key}.original_max_position_embeddings"),
                        &format!("must be an integer in 1..={MAX_POSITIONS}, found {value}"),
                    )
                })?
            }
            _ => window,
        };
        // Exact in f64: both are far below 2^53.
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let scaled = (base as f64 * factor) as u64;
        Ok(Some(scaled.max(window)))
    }

    fn torch_dtype(&self) -> Result<Option<String>, SourceError> {
        Ok(self.string("torch_dtype")?.or(self.string("dtype")?))
    }
}

/// `4096.0` → 4096; `None` for fractions, negatives and values beyond 2⁵³
/// (where an `f64` no longer holds every integer).
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "the value is checked to be a non-negative whole number below 2^53 first"
)]
fn whole_number(value: f64) -> Option<u64> {
    const LIMIT: f64 = 9_007_199_254_740_992.0; // 2^53
    (value.fract() == 0.0 && (0.0..LIMIT).contains(&value)).then_some(value as u64)
}

/// The product of `factors`, or an error naming `key` when it does not fit
/// 64 bits (each factor is capped, but products of several caps are not).
fn product(cfg: &Cfg<'_>, key: &str, factors: &[u64]) -> Result<u64, SourceError> {
    factors
        .iter()
        .try_fold(1u64, |acc, f| acc.checked_mul(*f))
        .ok_or_else(|| cfg.invalid(key, "gives a tensor of more than 2^64 elements"))
}

/// Rotary or partial-rotary positions.
fn partial(is_partial: bool) -> PositionEncoding {
    if is_partial { PositionEncoding::PartialRotary } else { PositionEncoding::Rotary }
}

/// Collects required keys that are missing, so one error lists all of them.
struct Required<'c, 'a> {
    cfg: &'c Cfg<'a>,
    model_type: String,
    missing: Vec<String>,
}

impl<'c, 'a> Required<'c, 'a> {
    fn new(cfg: &'c Cfg<'a>, model_type: &str) -> Self {
        Required { cfg, model_type: model_type.to_owned(), missing: Vec::new() }
    }

    /// A required integer under any of `keys` (the first is the name reported).
    fn int(&mut self, keys: &[&str], max: u64) -> Result<u64, SourceError> {
        match self.cfg.int(keys, max, false)? {
            Some(value) => Ok(value),
            None => {
                self.missing.push(format!("{}{}", self.cfg.prefix, keys[0]));
                Ok(1)
            }
        }
    }

    fn finish(self) -> Result<(), SourceError> {
        if self.missing.is_empty() {
            Ok(())
        } else {
            Err(SourceError::MissingFields {
                origin: self.cfg.origin.to_owned(),
                model_type: if self.model_type.is_empty() {
                    "unknown".into()
                } else {
                    self.model_type
                },
                fields: self.missing,
            })
        }
    }
}

/// The dimensions every decoder config states.
struct Core {
    vocab: u64,
    hidden: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    intermediate: u64,
}

/// Reads the standard Llama-style keys. `intermediate` may be absent for
/// families that derive it (the caller passes a default).
fn core_dims(
    cfg: &Cfg<'_>,
    model_type: &str,
    intermediate_default: Option<u64>,
) -> Result<Core, SourceError> {
    let mut required = Required::new(cfg, model_type);
    let vocab = required.int(&["vocab_size"], MAX_VOCAB)?;
    let hidden = required.int(&["hidden_size", "n_embd", "d_model"], MAX_DIM)?;
    let layers = required.int(&["num_hidden_layers", "n_layer", "num_layers"], MAX_LAYERS)?;
    let heads = required.int(&["num_attention_heads", "n_head", "attention_heads"], MAX_HEADS)?;
    let intermediate = match intermediate_default {
        Some(default) => cfg
            .int(&["intermediate_size", "n_inner", "ffn_dim"], MAX_DIM, false)?
            .unwrap_or(default),
        None => required.int(&["intermediate_size"], MAX_DIM)?,
    };
    required.finish()?;
    let kv_heads = cfg.int(&["num_key_value_heads"], MAX_HEADS, false)?.unwrap_or(heads);
    let head_dim = match cfg.int(&["head_dim"], MAX_DIM, false)? {
        Some(dim) => dim,
        None => {
            if hidden % heads != 0 {
                return Err(cfg.invalid(
                    "num_attention_heads",
                    &format!(
                        "({heads}) does not divide hidden_size ({hidden}) and no head_dim is given"
                    ),
                ));
            }
            hidden / heads
        }
    };
    if heads % kv_heads != 0 {
        return Err(cfg.invalid(
            "num_key_value_heads",
            &format!("({kv_heads}) must divide num_attention_heads ({heads})"),
        ));
    }
    Ok(Core { vocab, hidden, layers, heads, kv_heads, head_dim, intermediate })
}

/// A per-layer list of strings under `key` (`layer_types`, `mlp_layer_types`,
/// `indexer_types`), one value per layer as `kind` reads each entry, or `None`
/// when the config has no such list. A list of another length than the model
/// has layers names the key; an entry `kind` does not know is `unknown`'s error.
fn per_layer<T>(
    cfg: &Cfg<'_>,
    key: &str,
    layers: u64,
    kind: impl Fn(&str) -> Option<T>,
    unknown: impl Fn(&str) -> SourceError,
) -> Result<Option<Vec<T>>, SourceError> {
    let Some(entries) = cfg.string_list(key)? else { return Ok(None) };
    if entries.len() != usize::try_from(layers).unwrap_or(usize::MAX) {
        return Err(cfg.invalid(
            key,
            &format!("lists {} layers but num_hidden_layers is {layers}", entries.len()),
        ));
    }
    entries
        .iter()
        .map(|entry| kind(entry).ok_or_else(|| unknown(entry)))
        .collect::<Result<_, _>>()
        .map(Some)
}

/// What distinguishes one Llama-shaped decoder's frame from another's.
struct DecoderFrame {
    vocab: u64,
    hidden: u64,
    /// The norm after the last layer.
    final_norm: Tensor,
    /// Whether the head shares the token embeddings.
    tied: bool,
    norm_style: NormStyle,
    positions: PositionEncoding,
}

impl DecoderFrame {
    /// Llama's own frame: an RMS `norm.weight` after the last layer, the head
    /// tied only when `tie_word_embeddings` says so (default untied), the norm
    /// casting to the weight's type, rotary positions.
    fn llama(cfg: &Cfg<'_>, vocab: u64, hidden: u64) -> Result<Self, SourceError> {
        Ok(DecoderFrame {
            vocab,
            hidden,
            final_norm: norm("norm.weight", NormKind::Rms, hidden),
            tied: cfg.boolean("tie_word_embeddings", false)?,
            norm_style: NormStyle::RmsCastBeforeWeight,
            positions: PositionEncoding::Rotary,
        })
    }
}

/// The frame the Llama-shaped readings share around their `layers`: token
/// embeddings `embed_tokens` (vocab × hidden), the layers grouped, the final
/// norm, an `lm_head` (hidden → vocab, no bias) tied or not, the context window
/// and the checkpoint dtype; `SiLU`, no dropout and no soft-capping until
/// [`parse_config_value`] reads them.
fn decoder_spec(
    cfg: &Cfg<'_>,
    model_type: &str,
    layers: Vec<Layer>,
    frame: DecoderFrame,
) -> Result<ModelSpec, SourceError> {
    let DecoderFrame { vocab, hidden, final_norm, tied, norm_style, positions } = frame;
    Ok(ModelSpec {
        model_type: model_type.to_owned(),
        vocab_size: vocab,
        hidden_size: hidden,
        embeddings: vec![Tensor::new("embed_tokens.weight", vocab * hidden)],
        layers: group_layers(layers),
        final_norm: vec![final_norm],
        lm_head: LmHead {
            linear: Linear::new("lm_head", hidden, vocab, false),
            additional: None,
            tied,
        },
        extra_modules: Vec::new(),
        max_position_embeddings: cfg.context_window(&["max_position_embeddings"])?,
        torch_dtype: cfg.torch_dtype()?,
        norm_style,
        positions,
        activation: Activation::Silu,
        dropout: Dropout::default(),
        softcapping: Softcapping::default(),
    })
}

/// Run-length groups of identical consecutive layers.
fn group_layers(layers: Vec<Layer>) -> Vec<LayerGroup> {
    let mut groups: Vec<LayerGroup> = Vec::new();
    for layer in layers {
        match groups.last_mut() {
            Some(last) if last.layer == layer => last.count += 1,
            _ => groups.push(LayerGroup { count: 1, layer }),
        }
    }
    groups
}

/// The sliding window of each layer: from `layer_types` when the config lists
/// them (transformers ≥ 4.53 writes it for Gemma, gpt-oss, Qwen), else from
/// each family's rule.
fn sliding_windows(
    cfg: &Cfg<'_>,
    model_type: &str,
    layers: u64,
) -> Result<Vec<Option<u64>>, SourceError> {
    // Qwen2-MoE's default writes `sliding_window: 0` beside `use_sliding_window: false`:
    // a window of no tokens is no window.
    let window = cfg.int(&["sliding_window"], MAX_POSITIONS, true)?.filter(|w| *w > 0);
    let count = usize::try_from(layers).unwrap_or(usize::MAX);
    let listed = per_layer(
        cfg,
        "layer_types",
        layers,
        |kind| match kind {
            "sliding_attention" => Some(window),
            "full_attention" => Some(None),
            _ => None,
        },
        |other| SourceError::Unsupported {
            origin: cfg.origin.to_owned(),
            model_type: model_type.to_owned(),
            keys: vec![format!("{}layer_types", cfg.prefix)],
            reason: format!(
                "`layer_types` lists `{other}` layers, which are not softmax attention with or \
                 without a sliding window, and which this reading does not model"
            ),
        },
    )?;
    if let Some(windows) = listed {
        return Ok(windows);
    }
    let Some(window) = window else { return Ok(vec![None; count]) };
    let windows = match model_type {
        // Mistral v0.1 and Starcoder2 apply the window on every layer.
        "mistral" | "mixtral" | "starcoder2" | "ministral3" => vec![Some(window); count],
        // Qwen2/Qwen3 use it only with use_sliding_window, from max_window_layers on.
        "qwen2" | "qwen2_moe" | "qwen3" | "qwen3_moe" => {
            if cfg.boolean("use_sliding_window", false)? {
                let from = cfg.int(&["max_window_layers"], MAX_LAYERS, true)?.unwrap_or(0);
                (0..layers).map(|i| if i >= from { Some(window) } else { None }).collect()
            } else {
                vec![None; count]
            }
        }
        // SmolLM3 without `layer_types`: with `use_sliding_window`, the layers
        // without rotary positions are windowed (`SmolLM3Config.__post_init__`).
        "smollm3" => {
            if cfg.boolean("use_sliding_window", false)? {
                rope_layers(cfg, model_type, layers)?
                    .into_iter()
                    .map(|rope| if rope { None } else { Some(window) })
                    .collect()
            } else {
                vec![None; count]
            }
        }
        // Gemma 2 alternates local (even layers) and global attention.
        "gemma2" => (0..layers).map(|i| if i % 2 == 0 { Some(window) } else { None }).collect(),
        // Gemma 3: every `sliding_window_pattern`-th layer is global (default 6).
        "gemma3_text" => {
            let pattern = cfg.int(&["sliding_window_pattern"], MAX_LAYERS, false)?.unwrap_or(6);
            (0..layers).map(|i| if (i + 1) % pattern == 0 { None } else { Some(window) }).collect()
        }
        _ => vec![None; count],
    };
    Ok(windows)
}

/// Llama and the decoders built like it (Mistral, Mixtral, Qwen2/3 dense and
/// MoE, Gemma 1/2/3, OLMo 2/3, StarCoder2, gpt-oss, `SmolLM3`, Ministral 3,
/// MiniMax-M2, and unknown model types).
fn llama_like(cfg: &Cfg<'_>, model_type: &str) -> Result<ModelSpec, SourceError> {
    let is_moe =
        matches!(model_type, "mixtral" | "qwen2_moe" | "qwen3_moe" | "gpt_oss" | "minimax_m2");
    if model_type == "minimax_m2" {
        minimax_m2_guard(cfg)?;
    }
    // MoE configs may omit the dense intermediate size (gpt-oss has none).
    let dims = core_dims(cfg, model_type, if is_moe { Some(0) } else { None })?;
    let Core { vocab, hidden, layers, heads, kv_heads, head_dim, intermediate } = dims;

    // Biases of the attention projections (each family's Attention class).
    let attention_bias = cfg.boolean("attention_bias", model_type == "gpt_oss")?;
    let bias = match model_type {
        "qwen2" | "qwen2_moe" => AttentionBias { qkv: true, output: false },
        // `Ministral3Attention` and `MiniMaxM2Attention` build every projection
        // without a bias, whatever the config says.
        "ministral3" | "minimax_m2" => AttentionBias::default(),
        "starcoder2" => {
            let use_bias = cfg.boolean("use_bias", true)?;
            AttentionBias { qkv: use_bias, output: use_bias }
        }
        _ => AttentionBias { qkv: attention_bias, output: attention_bias },
    };

    // q/k norms: per head (Qwen3, Gemma 3) or over all heads (OLMo 2).
    let mut attention_tensors = match model_type {
        "qwen3" | "qwen3_moe" | "gemma3_text" => vec![
            norm("q_norm.weight", NormKind::Rms, head_dim),
            norm("k_norm.weight", NormKind::Rms, head_dim),
        ],
        "olmo2" | "olmo3" | "minimax_m2" => vec![
            norm("q_norm.weight", NormKind::Rms, heads * head_dim),
            norm("k_norm.weight", NormKind::Rms, kv_heads * head_dim),
        ],
        _ => Vec::new(),
    };
    if model_type == "gpt_oss" {
        // One learned attention-sink logit per head (`GptOssAttention.sinks`).
        attention_tensors.push(Tensor::new(vramfit_core::spec::SINKS, heads));
    }

    let (norm_kind, final_norm_name) = match model_type {
        "starcoder2" => (NormKind::Layer, "norm.weight"),
        _ => (NormKind::Rms, "norm.weight"),
    };
    let layer_norm_names: &[&str] = match model_type {
        "gemma2" | "gemma3_text" => &[
            "input_layernorm",
            "post_attention_layernorm",
            "pre_feedforward_layernorm",
            "post_feedforward_layernorm",
        ],
        "olmo2" | "olmo3" => &["post_attention_layernorm", "post_feedforward_layernorm"],
        _ => &["input_layernorm", "post_attention_layernorm"],
    };
    let norms: Vec<Tensor> = layer_norm_names
        .iter()
        .map(|name| norm(&format!("{name}.weight"), norm_kind, hidden))
        .collect();

    let dense = |size: u64| -> Result<FeedForward, SourceError> {
        Ok(match model_type {
            "starcoder2" => FeedForward::Dense {
                intermediate_size: size,
                gated: false,
                linears: dense_mlp(MlpNames::CfcCproj, hidden, size, bias.qkv),
            },
            _ => FeedForward::Dense {
                intermediate_size: size,
                gated: true,
                linears: dense_mlp(
                    MlpNames::GateUpDown,
                    hidden,
                    size,
                    cfg.boolean("mlp_bias", false)?,
                ),
            },
        })
    };
    let block = match model_type {
        "gemma2" | "gemma3_text" => BlockStyle::Sandwich,
        "olmo2" | "olmo3" => BlockStyle::PostNorm,
        _ => BlockStyle::PreNorm,
    };
    let windows = sliding_windows(cfg, model_type, layers)?;
    let rope = rope_layers(cfg, model_type, layers)?;
    let moe = if is_moe { Some(moe_block(cfg, model_type, hidden)?) } else { None };
    // Qwen2-MoE / Qwen3-MoE: dense layers listed in mlp_only_layers, and
    // sparse layers every decoder_sparse_step (`Qwen3MoeDecoderLayer`).
    let mlp_only = cfg.int_list("mlp_only_layers", MAX_LAYERS)?;
    let sparse_step = cfg.int(&["decoder_sparse_step"], MAX_LAYERS, false)?.unwrap_or(1);

    let mut all = Vec::new();
    for ((index, window), rope) in (0..layers).zip(windows).zip(rope) {
        let feed_forward = match &moe {
            Some(block) if !mlp_only.contains(&index) && (index + 1) % sparse_step == 0 => {
                FeedForward::Moe(block.clone())
            }
            Some(_) => {
                if intermediate == 0 {
                    return Err(cfg.invalid("intermediate_size", "is needed for the dense layers"));
                }
                dense(intermediate)?
            }
            None => dense(intermediate)?,
        };
        all.push(Layer {
            attention: Attention {
                kind: AttentionKind::Standard,
                num_heads: heads,
                num_kv_heads: kv_heads,
                head_dim,
                sliding_window: window,
                rope,
                output_gate: false,
                scaled_queries: model_type == "ministral3",
                projections: standard_attention_projections(
                    QkvNames::Separate("o_proj"),
                    hidden,
                    heads,
                    kv_heads,
                    head_dim,
                    bias,
                ),
                tensors: attention_tensors.clone(),
            },
            feed_forward,
            norms: norms.clone(),
            block,
        });
    }

    let tied_default =
        matches!(model_type, "gemma" | "gemma2" | "gemma3_text" | "starcoder2" | "smollm3");
    let tied = cfg.boolean("tie_word_embeddings", tied_default)?;
    decoder_spec(
        cfg,
        model_type,
        all,
        DecoderFrame {
            vocab,
            hidden,
            final_norm: norm(final_norm_name, norm_kind, hidden),
            tied,
            norm_style: match model_type {
                "gemma" | "gemma2" | "gemma3_text" | "olmo2" | "olmo3" | "gpt_oss" => {
                    NormStyle::RmsFp32Weight
                }
                "starcoder2" => NormStyle::LayerNorm,
                _ => NormStyle::RmsCastBeforeWeight,
            },
            positions: partial(rotary_fraction(cfg, model_type, head_dim)? < head_dim),
        },
    )
}

/// The width of each head that rotary embeddings rotate (a width, not a
/// fraction, whatever the name): MiniMax-M2 states
/// it as `rotary_dim` (`MiniMaxM2Config.convert_rope_params_to_dict` turns it
/// into `partial_rotary_factor`), others as `partial_rotary_factor` at the top
/// level or in `rope_parameters` (`modeling_rope_utils`: `int(head_dim ×
/// factor)`). The Llama-style families without either rotate the whole head.
fn rotary_fraction(cfg: &Cfg<'_>, model_type: &str, head_dim: u64) -> Result<u64, SourceError> {
    if model_type == "minimax_m2"
        && let Some(dim) = cfg.int(&["rotary_dim"], MAX_DIM, false)?
    {
        if dim > head_dim {
            return Err(
                cfg.invalid("rotary_dim", &format!("({dim}) exceeds head_dim ({head_dim})"))
            );
        }
        return Ok(dim);
    }
    if !matches!(model_type, "minimax_m2") {
        return Ok(head_dim);
    }
    let factor = match cfg.nested("rope_parameters")? {
        Some(rope) if rope.object.contains_key("partial_rotary_factor") => {
            rope.float_or("partial_rotary_factor", 1.0)?
        }
        _ => cfg.float_or("partial_rotary_factor", 1.0)?,
    };
    if !(factor > 0.0 && factor <= 1.0) {
        return Err(cfg.invalid("partial_rotary_factor", "must be in (0, 1]"));
    }
    // `int(head_dim * factor)` in transformers; head_dim is far below 2^53.
    #[allow(clippy::cast_precision_loss, clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let dim = (head_dim as f64 * factor) as u64;
    Ok(dim)
}

/// Whether each layer rotates its queries and keys. `SmolLM3` and Llama 4
/// list `no_rope_layers` (1 = rotary, 0 = no positions), or derive it from
/// `no_rope_layer_interval` (default 4: every fourth layer has none), as
/// `SmolLM3Config.__post_init__` and `Llama4TextConfig.__post_init__` do in
/// transformers 5.24; Llama 4 also derives it for an empty list.
fn rope_layers(cfg: &Cfg<'_>, model_type: &str, layers: u64) -> Result<Vec<bool>, SourceError> {
    let count = usize::try_from(layers).unwrap_or(usize::MAX);
    if !matches!(model_type, "smollm3" | "llama4_text") {
        return Ok(vec![true; count]);
    }
    let listed = cfg.object.get("no_rope_layers").is_some_and(|v| !v.is_null());
    let flags = if listed { cfg.int_list("no_rope_layers", 1)? } else { Vec::new() };
    if listed && !(flags.is_empty() && model_type == "llama4_text") {
        if flags.len() != count {
            return Err(cfg.invalid(
                "no_rope_layers",
                &format!("lists {} layers but num_hidden_layers is {layers}", flags.len()),
            ));
        }
        return Ok(flags.iter().map(|flag| *flag == 1).collect());
    }
    let interval = cfg.int(&["no_rope_layer_interval"], MAX_LAYERS, false)?.unwrap_or(4);
    Ok((0..layers).map(|i| (i + 1) % interval != 0).collect())
}

/// What transformers 5.24's `MiniMaxM2` does not build, refused rather than
/// dropped: layers of another attention type than full softmax attention
/// (`attn_type_list` entries other than 1: MiniMax-01's lightning attention)
/// and a shared expert (`shared_intermediate_size` above 0).
fn minimax_m2_guard(cfg: &Cfg<'_>) -> Result<(), SourceError> {
    let refuse = |key: &str, reason: String| SourceError::Unsupported {
        origin: cfg.origin.to_owned(),
        model_type: "minimax_m2".into(),
        keys: vec![key.to_owned()],
        reason,
    };
    if cfg.int_list("attn_type_list", MAX_LAYERS)?.iter().any(|kind| *kind != 1) {
        return Err(refuse(
            "attn_type_list",
            "lists layers of another attention type than 1 (softmax attention; 0 is \
             linear \"lightning\" attention), which MiniMax-M2's code does not build"
                .into(),
        ));
    }
    if !cfg.boolean("use_qk_norm", true)? {
        return Err(refuse(
            "use_qk_norm",
            "is false, but transformers 5.24's MiniMax-M2 always builds its q/k norms".into(),
        ));
    }
    if let Some(kind) = cfg.string("qk_norm_type")?
        && kind != "per_layer"
    {
        return Err(refuse(
            "qk_norm_type",
            format!("is `{kind}`; transformers 5.24's MiniMax-M2 builds `per_layer` norms only"),
        ));
    }
    if cfg.int(&["shared_intermediate_size"], MAX_DIM, true)?.unwrap_or(0) > 0 {
        return Err(refuse(
            "shared_intermediate_size",
            "names a shared expert, which transformers 5.24's MiniMax-M2 does not build".into(),
        ));
    }
    Ok(())
}

/// The sparse block of Mixtral, Qwen2-MoE, Qwen3-MoE and gpt-oss, as
/// transformers 5 builds it: experts fused into 3-D parameters
/// (`gate_up_proj: [E, 2I, H]`, `down_proj: [E, H, I]`; gpt-oss adds their
/// biases) and a router weight `[E, H]` (plus a bias in gpt-oss).
fn moe_block(cfg: &Cfg<'_>, model_type: &str, hidden: u64) -> Result<Moe, SourceError> {
    let mut required = Required::new(cfg, model_type);
    let experts = required.int(&["num_local_experts", "num_experts"], MAX_EXPERTS)?;
    let per_token = required.int(&["num_experts_per_tok", "experts_per_token"], MAX_EXPERTS)?;
    let expert_size = match model_type {
        "mixtral" | "gpt_oss" | "minimax_m2" => required.int(&["intermediate_size"], MAX_DIM)?,
        _ => required.int(&["moe_intermediate_size"], MAX_DIM)?,
    };
    required.finish()?;
    if per_token > experts {
        return Err(cfg.invalid(
            "num_experts_per_tok",
            &format!("({per_token}) exceeds the number of experts ({experts})"),
        ));
    }
    let mut expert_tensors = vec![
        Tensor::new(
            "experts.gate_up_proj",
            product(cfg, "num_experts", &[experts, 2, expert_size, hidden])?,
        ),
        Tensor::new(
            "experts.down_proj",
            product(cfg, "num_experts", &[experts, expert_size, hidden])?,
        ),
    ];
    let mut router_tensors = vec![Tensor::new("gate.weight", experts * hidden)];
    if model_type == "gpt_oss" {
        expert_tensors.push(Tensor::new("experts.gate_up_proj_bias", experts * 2 * expert_size));
        expert_tensors.push(Tensor::new("experts.down_proj_bias", experts * hidden));
        router_tensors.push(Tensor::new("router.bias", experts));
    }
    let (shared, shared_size) = if model_type == "qwen2_moe" {
        let size = cfg.int(&["shared_expert_intermediate_size"], MAX_DIM, true)?.unwrap_or(0);
        if size == 0 {
            (Vec::new(), 0)
        } else {
            let mut linears = dense_mlp(MlpNames::GateUpDown, hidden, size, false);
            linears.push(Linear::new("shared_expert_gate", hidden, 1, false));
            (linears, size)
        }
    } else {
        (Vec::new(), 0)
    };
    Ok(Moe {
        num_experts: experts,
        experts_per_token: per_token,
        expert_intermediate_size: expert_size,
        gated: true,
        expert_linears: Vec::new(),
        expert_tensors,
        router_linears: Vec::new(),
        router_tensors,
        shared,
        shared_intermediate_size: shared_size,
        peft_names: peft_moe_names(model_type),
    })
}

/// The MoE model types whose LoRA targets PEFT 0.21 remaps onto fused expert
/// parameters: those transformers 5 lists under the `mixtral` or `qwen2_moe`
/// conversion patterns, plus `mixtral` itself (PEFT adds it). `qwen2_moe`
/// itself is not a key of that table, so PEFT does not convert it.
fn peft_moe_names(model_type: &str) -> Option<PeftMoeNames> {
    match model_type {
        "mixtral" | "minimax" | "minimax_m2" => Some(PeftMoeNames::Mixtral),
        "deepseek_v2" | "deepseek_v3" | "deepseek_v32" | "glm_moe_dsa" | "qwen3_moe" | "olmoe"
        | "glm4_moe" | "dots1" | "ernie4_5_moe" | "hunyuan_v1_moe" | "flex_olmo" | "qwen3_next" => {
            Some(PeftMoeNames::Qwen2Moe)
        }
        _ => None,
    }
}

/// Which layers run DeepSeek Sparse Attention's indexer: every layer of
/// DeepSeek-V3.2 (`DeepseekV32Attention`); GLM-MoE-DSA's `indexer_types`
/// (`full` runs one, `shared` reuses the previous layer's), or as
/// `GlmMoeDsaConfig.__post_init__` derives them (transformers 5.24) from
/// `index_topk_pattern` or `index_topk_freq` and `index_skip_topk_offset`.
fn dsa_indexer_layers(
    cfg: &Cfg<'_>,
    model_type: &str,
    layers: u64,
) -> Result<Vec<bool>, SourceError> {
    let count = usize::try_from(layers).unwrap_or(usize::MAX);
    match model_type {
        "deepseek_v32" => Ok(vec![true; count]),
        "glm_moe_dsa" => {
            let mut source = "indexer_types";
            let kinds: Vec<String> = if let Some(kinds) = cfg.string_list("indexer_types")? {
                kinds
            } else if let Some(pattern) = cfg.string("index_topk_pattern")? {
                source = "index_topk_pattern";
                pattern
                    .chars()
                    .map(|c| match c {
                        'F' => Ok("full".to_owned()),
                        'S' => Ok("shared".to_owned()),
                        other => Err(cfg.invalid(
                            "index_topk_pattern",
                            &format!("holds `{other}`; only F (full) and S (shared) are known"),
                        )),
                    })
                    .collect::<Result<_, _>>()?
            } else {
                let freq = cfg.int(&["index_topk_freq"], MAX_LAYERS, false)?.unwrap_or(1);
                let offset = cfg.int(&["index_skip_topk_offset"], MAX_LAYERS, true)?.unwrap_or(2);
                (0..layers)
                    .map(|i| {
                        let full = (i + 1).saturating_sub(offset) % freq == 0;
                        if full { "full" } else { "shared" }.to_owned()
                    })
                    .collect()
            };
            if kinds.len() != count {
                return Err(cfg.invalid(
                    source,
                    &format!("lists {} layers but num_hidden_layers is {layers}", kinds.len()),
                ));
            }
            kinds
                .iter()
                .map(|kind| match kind.as_str() {
                    "full" => Ok(true),
                    "shared" => Ok(false),
                    other => Err(cfg.invalid(
                        "indexer_types",
                        &format!("lists `{other}`; only `full` and `shared` are known"),
                    )),
                })
                .collect()
        }
        _ => Ok(vec![false; count]),
    }
}

/// DeepSeek Sparse Attention's indexer (`DeepseekV32Indexer`,
/// `GlmMoeDsaIndexer`, transformers 5.24): `wq_b` from the query latent to
/// `index_n_heads × index_head_dim`, `wk` to one `index_head_dim` key, a
/// LayerNorm over it (`k_norm`, weight and bias) and `weights_proj` to one
/// weight per index head, all without biases.
fn add_dsa_indexer(
    cfg: &Cfg<'_>,
    model_type: &str,
    hidden: u64,
    attention: &mut Attention,
) -> Result<(), SourceError> {
    let mut required = Required::new(cfg, model_type);
    let heads = required.int(&["index_n_heads"], MAX_HEADS)?;
    let head_dim = required.int(&["index_head_dim"], MAX_DIM)?;
    let rank = required.int(&["q_lora_rank"], MAX_DIM)?;
    required.finish()?;
    attention.projections.push(Linear::new("wq_b", rank, heads * head_dim, false));
    attention.projections.push(Linear::new("wk", hidden, head_dim, false));
    attention.projections.push(Linear::new("weights_proj", hidden, heads, false));
    attention.tensors.push(norm(vramfit_core::spec::DSA_INDEXER_NORM, NormKind::Layer, head_dim));
    Ok(())
}

/// DeepSeek-V2 and V3: multi-head latent attention, the first
/// `first_k_dense_replace` layers dense, the rest MoE (every
/// `moe_layer_freq`-th) with `n_shared_experts` shared experts fused into one
/// MLP of `n_shared_experts × moe_intermediate_size`.
/// `DeepseekV3TopkRouter.e_score_correction_bias` is a buffer, not a parameter.
fn deepseek(cfg: &Cfg<'_>, model_type: &str) -> Result<ModelSpec, SourceError> {
    let mut required = Required::new(cfg, model_type);
    let vocab = required.int(&["vocab_size"], MAX_VOCAB)?;
    let hidden = required.int(&["hidden_size"], MAX_DIM)?;
    let layers = required.int(&["num_hidden_layers"], MAX_LAYERS)?;
    let heads = required.int(&["num_attention_heads"], MAX_HEADS)?;
    let intermediate = required.int(&["intermediate_size"], MAX_DIM)?;
    let kv_lora_rank = required.int(&["kv_lora_rank"], MAX_DIM)?;
    let qk_nope = required.int(&["qk_nope_head_dim"], MAX_DIM)?;
    let qk_rope = required.int(&["qk_rope_head_dim"], MAX_DIM)?;
    let v_head_dim = required.int(&["v_head_dim"], MAX_DIM)?;
    required.finish()?;
    let q_lora_rank = cfg.int(&["q_lora_rank"], MAX_DIM, false)?;
    let bias = cfg.boolean("attention_bias", false)?;
    let experts = cfg.int(&["n_routed_experts"], MAX_EXPERTS, true)?.unwrap_or(0);
    let dims = LatentDims {
        q_lora_rank,
        kv_lora_rank,
        qk_nope_head_dim: qk_nope,
        qk_rope_head_dim: qk_rope,
        v_head_dim,
    };
    let attention = latent_attention(hidden, heads, dims, bias);
    let norms = vec![
        norm("input_layernorm.weight", NormKind::Rms, hidden),
        norm("post_attention_layernorm.weight", NormKind::Rms, hidden),
    ];
    let dense = FeedForward::Dense {
        intermediate_size: intermediate,
        gated: true,
        linears: dense_mlp(MlpNames::GateUpDown, hidden, intermediate, false),
    };
    let moe = if experts > 0 {
        let mut required = Required::new(cfg, model_type);
        let expert_size = required.int(&["moe_intermediate_size"], MAX_DIM)?;
        let per_token = required.int(&["num_experts_per_tok"], MAX_EXPERTS)?;
        required.finish()?;
        if per_token > experts {
            return Err(cfg.invalid(
                "num_experts_per_tok",
                &format!("({per_token}) exceeds n_routed_experts ({experts})"),
            ));
        }
        let shared_count = cfg.int(&["n_shared_experts"], MAX_EXPERTS, true)?.unwrap_or(0);
        let shared_size = shared_count * expert_size;
        Some(FeedForward::Moe(Moe {
            num_experts: experts,
            experts_per_token: per_token,
            expert_intermediate_size: expert_size,
            gated: true,
            expert_linears: Vec::new(),
            expert_tensors: vec![
                Tensor::new(
                    "experts.gate_up_proj",
                    product(cfg, "n_routed_experts", &[experts, 2, expert_size, hidden])?,
                ),
                Tensor::new(
                    "experts.down_proj",
                    product(cfg, "n_routed_experts", &[experts, expert_size, hidden])?,
                ),
            ],
            router_linears: Vec::new(),
            router_tensors: vec![Tensor::new("gate.weight", experts * hidden)],
            shared: if shared_size > 0 {
                dense_mlp(MlpNames::GateUpDown, hidden, shared_size, false)
            } else {
                Vec::new()
            },
            shared_intermediate_size: shared_size,
            peft_names: peft_moe_names(model_type),
        }))
    } else {
        None
    };
    let first_dense = cfg.int(&["first_k_dense_replace"], MAX_LAYERS, true)?.unwrap_or(0);
    let frequency = cfg.int(&["moe_layer_freq"], MAX_LAYERS, false)?.unwrap_or(1);
    let listed = if model_type == "glm_moe_dsa" {
        per_layer(
            cfg,
            "mlp_layer_types",
            layers,
            |kind| match kind {
                "sparse" => Some(true),
                "dense" => Some(false),
                _ => None,
            },
            |other| {
                cfg.invalid(
                    "mlp_layer_types",
                    &format!("lists `{other}`; only `dense` and `sparse` are known"),
                )
            },
        )?
    } else {
        None
    };
    let sparse: Vec<bool> = match (model_type, listed) {
        // GLM-MoE-DSA lists them, or makes the first `first_k_dense_replace` dense.
        (_, Some(sparse)) => sparse,
        ("glm_moe_dsa", None) => (0..layers).map(|index| index >= first_dense).collect(),
        _ => (0..layers).map(|index| index >= first_dense && index % frequency == 0).collect(),
    };
    let indexed = dsa_indexer_layers(cfg, model_type, layers)?;
    let mut indexed_attention = attention.clone();
    if indexed.iter().any(|i| *i) {
        add_dsa_indexer(cfg, model_type, hidden, &mut indexed_attention)?;
    }
    let all = (0..layers)
        .zip(sparse)
        .zip(indexed)
        .map(|((_, sparse), indexed)| Layer {
            attention: if indexed { indexed_attention.clone() } else { attention.clone() },
            feed_forward: match &moe {
                Some(block) if sparse => block.clone(),
                _ => dense.clone(),
            },
            norms: norms.clone(),
            block: BlockStyle::PreNorm,
        })
        .collect();
    decoder_spec(cfg, model_type, all, DecoderFrame::llama(cfg, vocab, hidden)?)
}

/// Shared shape of the classic "one block, LayerNorms, biases" families
/// (GPT-2, GPT-NeoX, GPT-J, Falcon, Phi-2, XGLM, original Qwen).
struct ClassicLayout {
    model_type: &'static str,
    vocab: u64,
    hidden: u64,
    layers: u64,
    heads: u64,
    kv_heads: u64,
    head_dim: u64,
    qkv: QkvNames,
    attention_bias: AttentionBias,
    attention_tensors: Vec<Tensor>,
    mlp: MlpNames,
    intermediate: u64,
    mlp_bias: bool,
    layer_norms: Vec<Tensor>,
    embeddings: Vec<Tensor>,
    final_norm: Vec<Tensor>,
    head_name: &'static str,
    head_bias: bool,
    tied: bool,
    block: BlockStyle,
    norm_style: NormStyle,
    positions: PositionEncoding,
}

impl ClassicLayout {
    fn build(self, cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
        // Phi-3 applies `sliding_window` on every layer when the config sets it
        // (`Phi3Model` builds `create_sliding_window_causal_mask`, `Phi3Attention`
        // passes the window): Phi-3-mini/medium-4k have 2047, Phi-4 none.
        let sliding_window = if self.model_type == "phi3" {
            cfg.int(&["sliding_window"], MAX_POSITIONS, false)?.filter(|w| *w > 0)
        } else {
            None
        };
        let layer = Layer {
            attention: Attention {
                kind: AttentionKind::Standard,
                num_heads: self.heads,
                num_kv_heads: self.kv_heads,
                head_dim: self.head_dim,
                sliding_window,
                rope: true,
                output_gate: false,
                scaled_queries: false,
                projections: standard_attention_projections(
                    self.qkv,
                    self.hidden,
                    self.heads,
                    self.kv_heads,
                    self.head_dim,
                    self.attention_bias,
                ),
                tensors: self.attention_tensors,
            },
            feed_forward: FeedForward::Dense {
                intermediate_size: self.intermediate,
                gated: mlp_is_gated(self.mlp),
                linears: dense_mlp(self.mlp, self.hidden, self.intermediate, self.mlp_bias),
            },
            norms: self.layer_norms,
            block: self.block,
        };
        Ok(ModelSpec {
            model_type: self.model_type.to_owned(),
            vocab_size: self.vocab,
            hidden_size: self.hidden,
            embeddings: self.embeddings,
            layers: vec![LayerGroup { count: self.layers, layer }],
            final_norm: self.final_norm,
            lm_head: LmHead {
                linear: Linear::new(self.head_name, self.hidden, self.vocab, self.head_bias),
                additional: None,
                tied: self.tied,
            },
            extra_modules: Vec::new(),
            max_position_embeddings: cfg.context_window(&[
                "max_position_embeddings",
                "n_positions",
                "seq_length",
            ])?,
            torch_dtype: cfg.torch_dtype()?,
            norm_style: self.norm_style,
            positions: self.positions,
            activation: Activation::Silu,
            dropout: Dropout::default(),
            softcapping: Softcapping::default(),
        })
    }
}

fn layer_norm_pair(first: &str, second: &str, hidden: u64) -> Vec<Tensor> {
    vec![
        norm(&format!("{first}.weight+bias"), NormKind::Layer, hidden),
        norm(&format!("{second}.weight+bias"), NormKind::Layer, hidden),
    ]
}

/// GPT-2 (`GPT2LMHeadModel`): learned positions (`wpe`, `n_positions` rows),
/// fused `c_attn` Conv1D with bias, `c_fc`/`c_proj` MLP of `n_inner` (default
/// 4·hidden), LayerNorms, head tied by default.
fn gpt2(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let mut required = Required::new(cfg, "gpt2");
    let vocab = required.int(&["vocab_size"], MAX_VOCAB)?;
    let hidden = required.int(&["n_embd", "hidden_size"], MAX_DIM)?;
    let layers = required.int(&["n_layer", "num_hidden_layers"], MAX_LAYERS)?;
    let heads = required.int(&["n_head", "num_attention_heads"], MAX_HEADS)?;
    let positions = required.int(&["n_positions", "max_position_embeddings"], MAX_POSITIONS)?;
    required.finish()?;
    let intermediate = cfg.int(&["n_inner"], MAX_DIM, false)?.unwrap_or(4 * hidden);
    ClassicLayout {
        model_type: "gpt2",
        vocab,
        hidden,
        layers,
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        qkv: QkvNames::Fused("c_attn", "c_proj"),
        attention_bias: AttentionBias { qkv: true, output: true },
        attention_tensors: Vec::new(),
        mlp: MlpNames::CfcCproj,
        intermediate,
        mlp_bias: true,
        layer_norms: layer_norm_pair("ln_1", "ln_2", hidden),
        embeddings: vec![
            Tensor::new("wte.weight", vocab * hidden),
            Tensor::new("wpe.weight", positions * hidden),
        ],
        final_norm: vec![norm("ln_f.weight+bias", NormKind::Layer, hidden)],
        head_name: "lm_head",
        head_bias: false,
        tied: cfg.boolean("tie_word_embeddings", true)?,
        block: BlockStyle::PreNorm,
        norm_style: NormStyle::LayerNorm,
        positions: PositionEncoding::Learned,
    }
    .build(cfg)
}

/// GPT-NeoX / Pythia (`GPTNeoXForCausalLM`): fused `query_key_value` and
/// `dense` with bias (`attention_bias`, default true), MLP
/// `dense_h_to_4h`/`dense_4h_to_h` with bias, two LayerNorms per layer,
/// untied `embed_out`.
fn gpt_neox(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let Core { vocab, hidden, layers, heads, head_dim, intermediate, .. } =
        core_dims(cfg, "gpt_neox", None)?;
    let bias = cfg.boolean("attention_bias", true)?;
    ClassicLayout {
        model_type: "gpt_neox",
        vocab,
        hidden,
        layers,
        heads,
        kv_heads: heads,
        head_dim,
        qkv: QkvNames::Fused("query_key_value", "dense"),
        attention_bias: AttentionBias { qkv: bias, output: bias },
        attention_tensors: Vec::new(),
        mlp: MlpNames::DenseH4h,
        intermediate,
        mlp_bias: true,
        layer_norms: layer_norm_pair("input_layernorm", "post_attention_layernorm", hidden),
        embeddings: vec![Tensor::new("embed_in.weight", vocab * hidden)],
        final_norm: vec![norm("final_layer_norm.weight+bias", NormKind::Layer, hidden)],
        head_name: "embed_out",
        head_bias: false,
        tied: cfg.boolean("tie_word_embeddings", false)?,
        block: if cfg.boolean("use_parallel_residual", true)? {
            BlockStyle::ParallelTwoNorms
        } else {
            BlockStyle::PreNorm
        },
        norm_style: NormStyle::LayerNorm,
        positions: partial(cfg.float_or("rotary_pct", 0.25)? < 1.0),
    }
    .build(cfg)
}

/// GPT-J (`GPTJForCausalLM`): separate q/k/v/out projections without bias,
/// `fc_in`/`fc_out` with bias (`n_inner`, default 4·hidden), one LayerNorm
/// per layer (attention and MLP in parallel), untied head with a bias.
fn gptj(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let mut required = Required::new(cfg, "gptj");
    let vocab = required.int(&["vocab_size"], MAX_VOCAB)?;
    let hidden = required.int(&["n_embd", "hidden_size"], MAX_DIM)?;
    let layers = required.int(&["n_layer", "num_hidden_layers"], MAX_LAYERS)?;
    let heads = required.int(&["n_head", "num_attention_heads"], MAX_HEADS)?;
    required.finish()?;
    let intermediate = cfg.int(&["n_inner"], MAX_DIM, false)?.unwrap_or(4 * hidden);
    ClassicLayout {
        model_type: "gptj",
        vocab,
        hidden,
        layers,
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        qkv: QkvNames::Separate("out_proj"),
        attention_bias: AttentionBias::default(),
        attention_tensors: Vec::new(),
        mlp: MlpNames::FcInOut,
        intermediate,
        mlp_bias: true,
        layer_norms: vec![norm("ln_1.weight+bias", NormKind::Layer, hidden)],
        embeddings: vec![Tensor::new("wte.weight", vocab * hidden)],
        final_norm: vec![norm("ln_f.weight+bias", NormKind::Layer, hidden)],
        head_name: "lm_head",
        head_bias: true,
        tied: cfg.boolean("tie_word_embeddings", false)?,
        block: BlockStyle::Parallel,
        norm_style: NormStyle::LayerNorm,
        positions: partial(
            cfg.int(&["rotary_dim"], MAX_DIM, false)?.is_some_and(|d| d < hidden / heads),
        ),
    }
    .build(cfg)
}

/// Falcon (`FalconForCausalLM`): fused `query_key_value` whose width depends
/// on the variant (`new_decoder_architecture`: heads + 2·`num_kv_heads`;
/// `multi_query`: heads + 2; else 3·heads, each of `head_dim`), `dense`, MLP
/// `dense_h_to_4h` of `ffn_hidden_size` (default 4·hidden), biases per
/// `bias`; LayerNorms: `ln_attn` + `ln_mlp` (new architecture), or
/// `input_layernorm` (+ `post_attention_layernorm` without `parallel_attn`).
fn falcon(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let mut required = Required::new(cfg, "falcon");
    let vocab = required.int(&["vocab_size"], MAX_VOCAB)?;
    let hidden = required.int(&["hidden_size", "n_embd"], MAX_DIM)?;
    let layers = required.int(&["num_hidden_layers", "n_layer"], MAX_LAYERS)?;
    let heads = required.int(&["num_attention_heads", "n_head"], MAX_HEADS)?;
    required.finish()?;
    let new_arch = cfg.boolean("new_decoder_architecture", false)?;
    let multi_query = cfg.boolean("multi_query", true)?;
    let parallel = cfg.boolean("parallel_attn", true)?;
    let bias = cfg.boolean("bias", false)?;
    let kv_heads = if new_arch {
        cfg.int(&["num_kv_heads", "n_head_kv"], MAX_HEADS, false)?.unwrap_or(heads)
    } else if multi_query {
        1
    } else {
        heads
    };
    let intermediate = cfg.int(&["ffn_hidden_size"], MAX_DIM, false)?.unwrap_or(4 * hidden);
    let (layer_norms, block) = if new_arch {
        match cfg.int(&["num_ln_in_parallel_attn"], 2, false)?.unwrap_or(2) {
            1 => (
                vec![norm("input_layernorm.weight+bias", NormKind::Layer, hidden)],
                BlockStyle::Parallel,
            ),
            _ => (layer_norm_pair("ln_attn", "ln_mlp", hidden), BlockStyle::ParallelTwoNorms),
        }
    } else if parallel {
        (vec![norm("input_layernorm.weight+bias", NormKind::Layer, hidden)], BlockStyle::Parallel)
    } else {
        (
            layer_norm_pair("input_layernorm", "post_attention_layernorm", hidden),
            BlockStyle::PreNorm,
        )
    };
    ClassicLayout {
        model_type: "falcon",
        vocab,
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim: hidden / heads,
        qkv: QkvNames::Fused("query_key_value", "dense"),
        attention_bias: AttentionBias { qkv: bias, output: bias },
        attention_tensors: Vec::new(),
        mlp: MlpNames::DenseH4h,
        intermediate,
        mlp_bias: bias,
        layer_norms,
        embeddings: vec![Tensor::new("word_embeddings.weight", vocab * hidden)],
        final_norm: vec![norm("ln_f.weight+bias", NormKind::Layer, hidden)],
        head_name: "lm_head",
        head_bias: false,
        tied: cfg.boolean("tie_word_embeddings", true)?,
        block,
        norm_style: NormStyle::LayerNorm,
        positions: PositionEncoding::Rotary,
    }
    .build(cfg)
}

/// Phi-1/1.5/2 (`PhiForCausalLM`): q/k/v/`dense` with bias, optional
/// per-head LayerNorms on q and k (`qk_layernorm`), MLP `fc1`/`fc2` with
/// bias, one LayerNorm per layer (parallel attention and MLP), final
/// LayerNorm, untied head with a bias.
fn phi(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let Core { vocab, hidden, layers, heads, kv_heads, head_dim, intermediate } =
        core_dims(cfg, "phi", None)?;
    let attention_tensors = if cfg.boolean("qk_layernorm", false)? {
        vec![
            norm("q_layernorm.weight+bias", NormKind::Layer, head_dim),
            norm("k_layernorm.weight+bias", NormKind::Layer, head_dim),
        ]
    } else {
        Vec::new()
    };
    ClassicLayout {
        model_type: "phi",
        vocab,
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim,
        qkv: QkvNames::Separate("dense"),
        attention_bias: AttentionBias { qkv: true, output: true },
        attention_tensors,
        mlp: MlpNames::Fc1Fc2,
        intermediate,
        mlp_bias: true,
        layer_norms: vec![norm("input_layernorm.weight+bias", NormKind::Layer, hidden)],
        embeddings: vec![Tensor::new("embed_tokens.weight", vocab * hidden)],
        final_norm: vec![norm("final_layernorm.weight+bias", NormKind::Layer, hidden)],
        head_name: "lm_head",
        head_bias: true,
        tied: cfg.boolean("tie_word_embeddings", false)?,
        block: BlockStyle::Parallel,
        norm_style: NormStyle::LayerNorm,
        positions: partial(cfg.float_or("partial_rotary_factor", 0.5)? < 1.0),
    }
    .build(cfg)
}

/// Phi-3 / Phi-4 (`Phi3ForCausalLM`): fused `qkv_proj` and `gate_up_proj`
/// without biases, RMSNorms, untied head.
fn phi3(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let Core { vocab, hidden, layers, heads, kv_heads, head_dim, intermediate } =
        core_dims(cfg, "phi3", None)?;
    ClassicLayout {
        model_type: "phi3",
        vocab,
        hidden,
        layers,
        heads,
        kv_heads,
        head_dim,
        qkv: QkvNames::Fused("qkv_proj", "o_proj"),
        attention_bias: AttentionBias::default(),
        attention_tensors: Vec::new(),
        mlp: MlpNames::FusedGateUpDown,
        intermediate,
        mlp_bias: false,
        layer_norms: vec![
            norm("input_layernorm.weight", NormKind::Rms, hidden),
            norm("post_attention_layernorm.weight", NormKind::Rms, hidden),
        ],
        embeddings: vec![Tensor::new("embed_tokens.weight", vocab * hidden)],
        final_norm: vec![norm("norm.weight", NormKind::Rms, hidden)],
        head_name: "lm_head",
        head_bias: false,
        tied: cfg.boolean("tie_word_embeddings", false)?,
        block: BlockStyle::PreNorm,
        norm_style: NormStyle::RmsCastBeforeWeight,
        positions: PositionEncoding::Rotary,
    }
    .build(cfg)
}

/// XGLM (`XGLMForCausalLM`): sinusoidal positions (a buffer, no parameters),
/// q/k/v/`out_proj` and `fc1`/`fc2` with biases, LayerNorms before attention
/// and MLP, a final LayerNorm, head tied to the embeddings.
fn xglm(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let mut required = Required::new(cfg, "xglm");
    let vocab = required.int(&["vocab_size"], MAX_VOCAB)?;
    let hidden = required.int(&["d_model", "hidden_size"], MAX_DIM)?;
    let layers = required.int(&["num_layers", "num_hidden_layers"], MAX_LAYERS)?;
    let heads = required.int(&["attention_heads", "num_attention_heads"], MAX_HEADS)?;
    let intermediate = required.int(&["ffn_dim", "intermediate_size"], MAX_DIM)?;
    required.finish()?;
    ClassicLayout {
        model_type: "xglm",
        vocab,
        hidden,
        layers,
        heads,
        kv_heads: heads,
        head_dim: hidden / heads,
        qkv: QkvNames::Separate("out_proj"),
        attention_bias: AttentionBias { qkv: true, output: true },
        attention_tensors: Vec::new(),
        mlp: MlpNames::Fc1Fc2,
        intermediate,
        mlp_bias: true,
        layer_norms: layer_norm_pair("self_attn_layer_norm", "final_layer_norm", hidden),
        embeddings: vec![Tensor::new("embed_tokens.weight", vocab * hidden)],
        final_norm: vec![norm("layer_norm.weight+bias", NormKind::Layer, hidden)],
        head_name: "lm_head",
        head_bias: false,
        tied: cfg.boolean("tie_word_embeddings", true)?,
        block: BlockStyle::PreNorm,
        norm_style: NormStyle::LayerNorm,
        positions: PositionEncoding::Sinusoidal,
    }
    .build(cfg)
}

/// The original Qwen (remote code `modeling_qwen.py`, `QWenLMHeadModel`):
/// fused `c_attn` with bias, `c_proj` without (`no_bias`), RMSNorms, and an
/// MLP of `w1`, `w2` (each `hidden → intermediate_size / 2`) and `c_proj`;
/// untied head.
fn qwen_v1(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let Core { vocab, hidden, layers, heads, head_dim, intermediate, .. } =
        core_dims(cfg, "qwen", None)?;
    let head_dim = cfg.int(&["kv_channels"], MAX_DIM, false)?.unwrap_or(head_dim);
    let no_bias = cfg.boolean("no_bias", true)?;
    ClassicLayout {
        model_type: "qwen",
        vocab,
        hidden,
        layers,
        heads,
        kv_heads: heads,
        head_dim,
        qkv: QkvNames::Fused("c_attn", "c_proj"),
        attention_bias: AttentionBias { qkv: true, output: !no_bias },
        attention_tensors: Vec::new(),
        mlp: MlpNames::QwenW1W2,
        intermediate: intermediate / 2,
        mlp_bias: !no_bias,
        layer_norms: vec![
            norm("ln_1.weight", NormKind::Rms, hidden),
            norm("ln_2.weight", NormKind::Rms, hidden),
        ],
        embeddings: vec![Tensor::new("wte.weight", vocab * hidden)],
        final_norm: vec![norm("ln_f.weight", NormKind::Rms, hidden)],
        head_name: "lm_head",
        head_bias: false,
        tied: cfg.boolean("tie_word_embeddings", false)?,
        block: BlockStyle::PreNorm,
        norm_style: NormStyle::RmsCastBeforeWeight,
        positions: PositionEncoding::Rotary,
    }
    .build(cfg)
}

/// LLaMA-MoE v1 (remote code `modeling_llama_moe_hf.py`): a Llama whose MLPs
/// are split into `num_experts` experts of `size_experts[i]` channels each,
/// with a gate network per layer.
fn llama_moe(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let Core { vocab, hidden, layers, heads, kv_heads, head_dim, .. } =
        core_dims(cfg, "llama_moe", Some(0))?;
    let mut required = Required::new(cfg, "llama_moe");
    let experts = required.int(&["num_experts"], MAX_EXPERTS)?;
    let selects = required.int(&["num_selects"], MAX_EXPERTS)?;
    required.finish()?;
    // `size_experts` lists each layer's expert sizes; experts of one layer are equal
    // in the published checkpoints, and the sum is the split Llama MLP.
    let sizes = match cfg.object.get("size_experts") {
        Some(Value::Array(per_layer)) => per_layer
            .iter()
            .map(|row| {
                let row = row
                    .as_array()
                    .ok_or_else(|| cfg.invalid("size_experts", "must be a list of lists"))?;
                row.iter()
                    .map(|size| {
                        size.as_u64().filter(|s| *s <= MAX_DIM).ok_or_else(|| {
                            cfg.invalid(
                                "size_experts",
                                &format!("must hold integers up to {MAX_DIM}"),
                            )
                        })
                    })
                    .collect::<Result<Vec<u64>, _>>()
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(SourceError::MissingFields {
                origin: cfg.origin.to_owned(),
                model_type: "llama_moe".into(),
                fields: vec!["size_experts".into()],
            });
        }
    };
    if sizes.len() as u64 != layers {
        return Err(cfg.invalid("size_experts", "must have one row per layer"));
    }
    let gate_network = cfg.string("gate_network")?.unwrap_or_else(|| "mlp".into());
    let add_noise = cfg.boolean("gate_add_noise", true)?;
    let mut all = Vec::new();
    for row in sizes {
        if row.len() as u64 != experts || row.iter().any(|s| *s != row[0]) {
            return Err(cfg.invalid("size_experts", "rows must list num_experts equal sizes"));
        }
        let size = row[0];
        // `TopKBalancedNoiseGate`: the gate network is Linear(h, E) → Tanh →
        // Linear(E, E) for "mlp", one Linear(h, E) for "linear"; with noise,
        // a `weight_noise` Linear(h, E). All without bias.
        let mut router = vec![Linear::new("gate_network.0", hidden, experts, false)];
        if gate_network == "mlp" {
            router.push(Linear::new("gate_network.2", experts, experts, false));
        }
        if add_noise {
            router.push(Linear::new("weight_noise", hidden, experts, false));
        }
        all.push(Layer {
            attention: Attention {
                kind: AttentionKind::Standard,
                num_heads: heads,
                num_kv_heads: kv_heads,
                head_dim,
                sliding_window: None,
                rope: true,
                output_gate: false,
                scaled_queries: false,
                projections: standard_attention_projections(
                    QkvNames::Separate("o_proj"),
                    hidden,
                    heads,
                    kv_heads,
                    head_dim,
                    AttentionBias::default(),
                ),
                tensors: Vec::new(),
            },
            feed_forward: FeedForward::Moe(Moe {
                num_experts: experts,
                experts_per_token: selects,
                expert_intermediate_size: size,
                gated: true,
                // `LinearGLUExperts` keeps per-expert weight lists named
                // weight_gate / weight_up / weight_down.
                expert_linears: vec![
                    Linear::new("weight_gate", hidden, size, false).times(experts),
                    Linear::new("weight_up", hidden, size, false).times(experts),
                    Linear::new("weight_down", size, hidden, false).times(experts),
                ],
                expert_tensors: Vec::new(),
                router_linears: router,
                router_tensors: Vec::new(),
                shared: Vec::new(),
                shared_intermediate_size: 0,
                peft_names: None,
            }),
            norms: vec![
                norm("input_layernorm.weight", NormKind::Rms, hidden),
                norm("post_attention_layernorm.weight", NormKind::Rms, hidden),
            ],
            block: BlockStyle::PreNorm,
        });
    }
    decoder_spec(cfg, "llama_moe", all, DecoderFrame::llama(cfg, vocab, hidden)?)
}

/// A vision transformer encoder as CLIP (`CLIPVisionTransformer`) and SigLIP
/// (`SiglipVisionTransformer`) build it: a patch convolution, learned
/// positions, `layers` blocks of q/k/v/`out_proj` and `fc1`/`fc2` with
/// biases and two LayerNorms, then a post LayerNorm. CLIP adds a class token
/// and a pre LayerNorm and has no bias in its patch convolution.
/// The shape of a vision transformer tower (CLIP or SigLIP `vision_config`).
#[derive(Clone, Copy)]
struct VitShape {
    /// CLIP adds a class token and a pre-LayerNorm, and has no patch-convolution bias.
    clip_style: bool,
    width: u64,
    layers: u64,
    intermediate: u64,
    image_size: u64,
    patch_size: u64,
    channels: u64,
}

fn vit_encoder(name: &str, shape: &VitShape) -> ExtraModule {
    let VitShape { clip_style, width, layers, intermediate, image_size, patch_size, channels } =
        *shape;
    let patches = (image_size / patch_size) * (image_size / patch_size);
    let positions = if clip_style { patches + 1 } else { patches };
    let mut tensors = vec![
        (
            Tensor::new(
                "embeddings.patch_embedding.weight",
                width * channels * patch_size * patch_size,
            ),
            1,
        ),
        (Tensor::new("embeddings.position_embedding.weight", positions * width), 1),
        (norm("layer_norm1/2.weight+bias", NormKind::Layer, 2 * width), layers),
        (norm("post_layernorm.weight+bias", NormKind::Layer, width), 1),
    ];
    if clip_style {
        tensors.push((Tensor::new("embeddings.class_embedding", width), 1));
        tensors.push((norm("pre_layrnorm.weight+bias", NormKind::Layer, width), 1));
    } else {
        tensors.push((Tensor::new("embeddings.patch_embedding.bias", width), 1));
    }
    let mut linears: Vec<(Linear, u64)> = standard_attention_projections(
        QkvNames::Separate("out_proj"),
        width,
        1,
        1,
        width,
        AttentionBias { qkv: true, output: true },
    )
    .into_iter()
    .map(|linear| (linear, layers))
    .collect();
    linears.extend(
        dense_mlp(MlpNames::Fc1Fc2, width, intermediate, true).into_iter().map(|l| (l, layers)),
    );
    ExtraModule { name: name.to_owned(), component: Component::Vision, linears, tensors }
}

/// SigLIP's attention-pooling head (`SiglipMultiheadAttentionPoolingHead`,
/// transformers 5.24): a probe `[1, 1, W]`, an `nn.MultiheadAttention` (its
/// packed `in_proj` `[3W, W]` with bias, and `out_proj`, an `nn.Linear` with
/// bias), a LayerNorm, and an `fc1`/`fc2` MLP with biases:
/// `4W² + 2WI + 8W + I` parameters.
fn siglip_pooling_head(tower: &mut ExtraModule, width: u64, intermediate: u64) {
    tower.tensors.push((Tensor::new("head.probe", width), 1));
    tower
        .tensors
        .push((Tensor::new("head.attention.in_proj_weight+bias", 3 * width * (width + 1)), 1));
    tower.tensors.push((norm("head.layernorm.weight+bias", NormKind::Layer, width), 1));
    tower.linears.push((Linear::new("out_proj", width, width, true), 1));
    tower
        .linears
        .extend(dense_mlp(MlpNames::Fc1Fc2, width, intermediate, true).into_iter().map(|l| (l, 1)));
}

/// Gemma 3 with vision (`Gemma3ForConditionalGeneration`): the text model of
/// `text_config` (a `gemma3_text`), a SigLIP tower of `vision_config`, and
/// the projector (`mm_input_projection_weight: [vision, text]` and an
/// RMSNorm over the vision width).
fn gemma3_multimodal(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let mut text = nested_required(cfg, "text_config", "gemma3")?;
    text.defaults = GEMMA3_TEXT_DEFAULTS;
    let mut spec = llama_like(&text, "gemma3_text")?;
    adopt_outer(&mut spec, cfg, "gemma3")?;
    if let Some(vision) = cfg.nested("vision_config")? {
        let mut required = Required::new(&vision, "siglip_vision_model");
        let width = required.int(&["hidden_size"], MAX_DIM)?;
        let layers = required.int(&["num_hidden_layers"], MAX_LAYERS)?;
        let intermediate = required.int(&["intermediate_size"], MAX_DIM)?;
        let image = required.int(&["image_size"], MAX_DIM)?;
        let patch = required.int(&["patch_size"], MAX_DIM)?;
        required.finish()?;
        let channels = vision.int(&["num_channels"], 16, false)?.unwrap_or(3);
        let shape = VitShape {
            clip_style: false,
            width,
            layers,
            intermediate,
            image_size: image,
            patch_size: patch,
            channels,
        };
        let mut tower = vit_encoder("vision_tower", &shape);
        // `SiglipVisionConfig.vision_use_head` defaults to true; Gemma 3's
        // checkpoints set it false.
        if vision.boolean("vision_use_head", true)? {
            siglip_pooling_head(&mut tower, width, intermediate);
        }
        spec.extra_modules.push(tower);
        spec.extra_modules.push(ExtraModule {
            name: "multi_modal_projector".into(),
            component: Component::Vision,
            linears: Vec::new(),
            tensors: vec![
                (Tensor::new("mm_input_projection_weight", width * spec.hidden_size), 1),
                (norm("mm_soft_emb_norm.weight", NormKind::Rms, width), 1),
            ],
        });
    }
    Ok(spec)
}

/// IDEFICS (`IdeficsForVisionText2Text`): a Llama decoder with decoupled
/// embeddings and head (`additional_vocab_size` extra rows), a CLIP vision
/// tower, a perceiver resampler, and a gated cross-attention block every
/// `cross_layer_interval` layers.
fn idefics(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let mut spec = llama_like(cfg, "idefics")?;
    spec.model_type = "idefics".into();
    let hidden = spec.hidden_size;
    let layers = spec.num_layers();
    let additional = cfg.int(&["additional_vocab_size"], MAX_VOCAB, true)?.unwrap_or(0);
    if additional > 0 {
        spec.embeddings
            .push(Tensor::new("embed_tokens.additional_embedding.weight", additional * hidden));
        spec.lm_head.additional = Some(Linear::new("additional_fc", hidden, additional, false));
    }
    let vision = cfg.nested("vision_config")?.ok_or_else(|| SourceError::MissingFields {
        origin: cfg.origin.to_owned(),
        model_type: "idefics".into(),
        fields: vec!["vision_config".into()],
    })?;
    let mut required = Required::new(&vision, "idefics");
    let width = required.int(&["embed_dim", "hidden_size"], MAX_DIM)?;
    let vision_layers = required.int(&["num_hidden_layers"], MAX_LAYERS)?;
    let vision_intermediate = required.int(&["intermediate_size"], MAX_DIM)?;
    let image = required.int(&["image_size"], MAX_DIM)?;
    let patch = required.int(&["patch_size"], MAX_DIM)?;
    required.finish()?;
    let channels = vision.int(&["num_channels"], 16, false)?.unwrap_or(3);
    let shape = VitShape {
        clip_style: true,
        width,
        layers: vision_layers,
        intermediate: vision_intermediate,
        image_size: image,
        patch_size: patch,
        channels,
    };
    spec.extra_modules.push(vit_encoder("vision_model", &shape));

    // Perceiver resampler (`IdeficsPerceiverResampler`): latents, `depth`
    // blocks of attention (LayerNorms on context and latents, optional q/k
    // LayerNorms, q/k/v/output projections without bias) and an MLP
    // (LayerNorm, fc, c_proj without bias, 4·width), and a final LayerNorm.
    if cfg.boolean("use_resampler", false)? {
        let perceiver = cfg.nested("perceiver_config")?;
        let get = |key: &str, default: u64| -> Result<u64, SourceError> {
            match &perceiver {
                Some(p) => Ok(p.int(&[key], MAX_DIM, false)?.unwrap_or(default)),
                None => Ok(default),
            }
        };
        let depth = get("resampler_depth", 6)?;
        let n_heads = get("resampler_n_heads", 16)?;
        let head_dim = get("resampler_head_dim", 96)?;
        let latents = get("resampler_n_latents", 64)?;
        let qk_norms = match &perceiver {
            Some(p) => p.boolean("qk_layer_norms_perceiver", false)?,
            None => false,
        };
        let inner = n_heads * head_dim;
        let mut tensors = vec![
            (Tensor::new("latents", latents * width), 1),
            (norm("context_layer_norm+latents_layer_norm", NormKind::Layer, 2 * width), depth),
            (norm("mlp.ln", NormKind::Layer, width), depth),
            (norm("layer_norm", NormKind::Layer, width), 1),
        ];
        if qk_norms {
            tensors.push((norm("q_layer_norm+k_layer_norm", NormKind::Layer, 2 * head_dim), depth));
        }
        let linears = vec![
            (Linear::new("q_proj", width, inner, false), depth),
            (Linear::new("k_proj", width, inner, false), depth),
            (Linear::new("v_proj", width, inner, false), depth),
            (Linear::new("output_proj", inner, width, false), depth),
            (Linear::new("fc", width, 4 * width, false), depth),
            (Linear::new("c_proj", 4 * width, width, false), depth),
        ];
        spec.extra_modules.push(ExtraModule {
            name: "perceiver_resampler".into(),
            component: Component::Vision,
            linears,
            tensors,
        });
    }

    // Gated cross-attention (`IdeficsGatedCrossAttentionLayer`), one per
    // `cross_layer_interval` decoder layers: q from the text (hidden → hidden),
    // k/v from vision features (width → hidden), o_proj, optional per-head
    // RMSNorms on q and k (`qk_layer_norms`), a Llama MLP, two RMSNorms, and
    // the two tanh gates (`alpha_cross_attn`, `alpha_dense`: one element each
    // for `alpha_type` "float", `hidden` each for "vector").
    let interval = cfg.int(&["cross_layer_interval"], MAX_LAYERS, false)?.unwrap_or(1);
    let blocks = layers / interval;
    let heads = spec.layers[0].layer.attention.num_heads;
    let intermediate = match &spec.layers[0].layer.feed_forward {
        FeedForward::Dense { intermediate_size, .. } => *intermediate_size,
        FeedForward::Moe(moe) => moe.expert_intermediate_size,
    };
    let alpha = match cfg.string("alpha_type")?.as_deref() {
        Some("vector") => hidden,
        _ => 1,
    };
    let mut tensors = vec![
        (norm("input_layernorm+post_attention_layernorm", NormKind::Rms, 2 * hidden), blocks),
        (Tensor::new("alpha_cross_attn+alpha_dense", 2 * alpha), blocks),
    ];
    if cfg.boolean("qk_layer_norms", false)? {
        tensors
            .push((norm("q_layer_norm+k_layer_norm", NormKind::Rms, 2 * (hidden / heads)), blocks));
    }
    let mut linears = vec![
        (Linear::new("q_proj", hidden, hidden, false), blocks),
        (Linear::new("k_proj", width, hidden, false), blocks),
        (Linear::new("v_proj", width, hidden, false), blocks),
        (Linear::new("o_proj", hidden, hidden, false), blocks),
    ];
    linears.extend(
        dense_mlp(MlpNames::GateUpDown, hidden, intermediate, false)
            .into_iter()
            .map(|l| (l, blocks)),
    );
    spec.extra_modules.push(ExtraModule {
        name: "gated_cross_attn_layers".into(),
        component: Component::CrossAttention,
        linears,
        tensors,
    });
    Ok(spec)
}

/// `Qwen3_5TextConfig` defaults (transformers 5.24), shared by the MoE text
/// config: a file may leave these out.
const QWEN3_5_TEXT_DEFAULTS: &[(&str, u64)] = &[
    ("head_dim", 256),
    ("linear_conv_kernel_dim", 4),
    ("linear_key_head_dim", 128),
    ("linear_value_head_dim", 128),
    ("linear_num_key_heads", 16),
    ("linear_num_value_heads", 32),
];

/// `Qwen3_5VisionConfig` defaults (transformers 5.24).
const QWEN3_5_VISION_DEFAULTS: &[(&str, u64)] = &[
    ("depth", 27),
    ("hidden_size", 1152),
    ("intermediate_size", 4304),
    ("num_heads", 16),
    ("in_channels", 3),
    ("patch_size", 16),
    ("spatial_merge_size", 2),
    ("temporal_patch_size", 2),
    ("out_hidden_size", 3584),
    ("num_position_embeddings", 2304),
];

/// Qwen3.5 with its vision tower (`Qwen3_5ForConditionalGeneration`,
/// `Qwen3_5MoeForConditionalGeneration`): the text model of `text_config` and
/// the tower of `vision_config`; the head is tied by the outer
/// `tie_word_embeddings`.
fn qwen3_5_multimodal(cfg: &Cfg<'_>, model_type: &str) -> Result<ModelSpec, SourceError> {
    let text = nested_required(cfg, "text_config", model_type)?;
    let text_type = if model_type == "qwen3_5_moe" { "qwen3_5_moe_text" } else { "qwen3_5_text" };
    let mut spec = qwen3_5_text(&Cfg { defaults: QWEN3_5_TEXT_DEFAULTS, ..text }, text_type)?;
    adopt_outer(&mut spec, cfg, model_type)?;
    let vision = cfg.nested("vision_config")?.unwrap_or(Cfg {
        object: &EMPTY_OBJECT,
        origin: cfg.origin,
        prefix: "vision_config.".into(),
        defaults: &[],
    });
    spec.extra_modules.push(qwen3_5_vision(&Cfg { defaults: QWEN3_5_VISION_DEFAULTS, ..vision })?);
    Ok(spec)
}

/// An empty JSON object, for a nested config left out (its class's defaults apply).
static EMPTY_OBJECT: std::sync::LazyLock<Map<String, Value>> = std::sync::LazyLock::new(Map::new);

/// Qwen3.5's vision tower (`Qwen3_5VisionModel`, transformers 5.24): a
/// `Conv3d` patch embedding with bias (`in_channels × temporal_patch ×
/// patch² × hidden`), a learned position table of `num_position_embeddings`,
/// `depth` blocks (two LayerNorms, `qkv` and `proj` with biases, an MLP
/// `linear_fc1`/`linear_fc2` with biases) and the patch merger (a LayerNorm
/// over the tower width, `linear_fc1` over `hidden × merge²` and
/// `linear_fc2` to the text width, with biases).
fn qwen3_5_vision(vision: &Cfg<'_>) -> Result<ExtraModule, SourceError> {
    if !vision.int_list("deepstack_visual_indexes", MAX_LAYERS)?.is_empty() {
        return Err(SourceError::Unsupported {
            origin: vision.origin.to_owned(),
            model_type: "qwen3_5".into(),
            keys: vec![format!("{}deepstack_visual_indexes", vision.prefix)],
            reason: "lists deepstack layers, whose mergers Qwen3.5's tower does not build".into(),
        });
    }
    let mut required = Required::new(vision, "qwen3_5_vision");
    let depth = required.int(&["depth"], MAX_LAYERS)?;
    let width = required.int(&["hidden_size"], MAX_DIM)?;
    let intermediate = required.int(&["intermediate_size"], MAX_DIM)?;
    let channels = required.int(&["in_channels"], 16)?;
    let patch = required.int(&["patch_size"], MAX_DIM)?;
    let merge = required.int(&["spatial_merge_size"], 64)?;
    let temporal = required.int(&["temporal_patch_size"], 64)?;
    let out = required.int(&["out_hidden_size"], MAX_DIM)?;
    let positions = required.int(&["num_position_embeddings"], MAX_POSITIONS)?;
    required.finish()?;
    let merged = width * merge * merge;
    let blocks = |linear: Linear| (linear, depth);
    Ok(ExtraModule {
        name: "visual".into(),
        component: Component::Vision,
        linears: vec![
            blocks(Linear::new("qkv", width, 3 * width, true)),
            blocks(Linear::new("proj", width, width, true)),
            blocks(Linear::new("linear_fc1", width, intermediate, true)),
            blocks(Linear::new("linear_fc2", intermediate, width, true)),
            (Linear::new("linear_fc1", merged, merged, true), 1),
            (Linear::new("linear_fc2", merged, out, true), 1),
        ],
        tensors: vec![
            (
                Tensor::new(
                    "patch_embed.proj.weight+bias",
                    product(vision, "patch_size", &[channels, temporal, patch, patch])?
                        .checked_add(1)
                        .and_then(|n| n.checked_mul(width))
                        .ok_or_else(|| {
                            vision
                                .invalid("patch_size", "gives a tensor of more than 2^64 elements")
                        })?,
                ),
                1,
            ),
            (
                Tensor::new(
                    "pos_embed.weight",
                    product(vision, "num_position_embeddings", &[positions, width])?,
                ),
                1,
            ),
            (norm("norm1/2.weight+bias", NormKind::Layer, 2 * width), depth),
            (norm("merger.norm.weight+bias", NormKind::Layer, width), 1),
        ],
    })
}

/// Qwen3.5's text model (`qwen3_5_text`, `qwen3_5_moe_text`; transformers
/// 5.24 `Qwen3_5DecoderLayer`): `layer_types` (or every
/// `full_attention_interval`-th layer, default 4) picks full attention — with
/// an output gate (`q_proj` twice as wide), q/k norms over one head and
/// partial rotary — or a gated `DeltaNet`; each layer has a dense MLP or, in the
/// MoE model, fused experts with a shared expert and its sigmoid gate on
/// every layer. Norms are zero-centred RMSNorms (`1 + w`, in fp32).
fn qwen3_5_text(cfg: &Cfg<'_>, model_type: &str) -> Result<ModelSpec, SourceError> {
    let next = model_type == "qwen3_next";
    let moe = model_type == "qwen3_5_moe_text"
        || (next && cfg.int(&["num_experts"], MAX_EXPERTS, true)?.unwrap_or(0) > 0);
    let dims = core_dims(cfg, model_type, moe.then_some(0))?;
    let Core { vocab, hidden, layers, heads, kv_heads, head_dim, intermediate } = dims;
    let mut required = Required::new(cfg, model_type);
    let delta = DeltaNetDims {
        key_heads: required.int(&["linear_num_key_heads"], MAX_HEADS)?,
        value_heads: required.int(&["linear_num_value_heads"], MAX_HEADS)?,
        key_head_dim: required.int(&["linear_key_head_dim"], MAX_DIM)?,
        value_head_dim: required.int(&["linear_value_head_dim"], MAX_DIM)?,
        conv_kernel: required.int(&["linear_conv_kernel_dim"], 64)?,
    };
    required.finish()?;
    if !delta.value_heads.is_multiple_of(delta.key_heads) {
        return Err(cfg.invalid(
            "linear_num_value_heads",
            &format!(
                "({}) must be a multiple of linear_num_key_heads ({})",
                delta.value_heads, delta.key_heads
            ),
        ));
    }
    let refuse = |key: &str, reason: &str| SourceError::Unsupported {
        origin: cfg.origin.to_owned(),
        model_type: model_type.to_owned(),
        keys: vec![format!("{}{key}", cfg.prefix)],
        reason: reason.to_owned(),
    };
    if !cfg.boolean("attn_output_gate", true)? {
        return Err(refuse(
            "attn_output_gate",
            "is false, but transformers 5.24's Qwen3.5 attention always has the output gate",
        ));
    }
    if !next && !cfg.int_list("mlp_only_layers", MAX_LAYERS)?.is_empty() {
        return Err(refuse(
            "mlp_only_layers",
            "lists layers without experts, which transformers 5.24's Qwen3.5 does not build",
        ));
    }
    let listed = per_layer(
        cfg,
        "layer_types",
        layers,
        |kind| match kind {
            "linear_attention" => Some(true),
            "full_attention" => Some(false),
            _ => None,
        },
        |other| {
            refuse("layer_types", &format!("lists `{other}` layers, which Qwen3.5 does not build"))
        },
    )?;
    let linear_layers: Vec<bool> = match listed {
        Some(linear) => linear,
        None => {
            let interval = cfg.int(&["full_attention_interval"], MAX_LAYERS, false)?.unwrap_or(4);
            (0..layers).map(|i| (i + 1) % interval != 0).collect()
        }
    };
    let bias = cfg.boolean("attention_bias", false)?;
    let mut projections = standard_attention_projections(
        QkvNames::Separate("o_proj"),
        hidden,
        heads,
        kv_heads,
        head_dim,
        AttentionBias { qkv: bias, output: bias },
    );
    // `q_proj` computes the queries and the output gate side by side.
    projections[0].out_features *= 2;
    let full = Attention {
        kind: AttentionKind::Standard,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        sliding_window: None,
        rope: true,
        output_gate: true,
        scaled_queries: false,
        projections,
        tensors: vec![
            norm("q_norm.weight", NormKind::Rms, head_dim),
            norm("k_norm.weight", NormKind::Rms, head_dim),
        ],
    };
    let feed_forward = if moe {
        let mut block = moe_block(cfg, model_type, hidden)?;
        let shared = required_shared_expert(cfg, model_type)?;
        let mut linears = dense_mlp(MlpNames::GateUpDown, hidden, shared, false);
        linears.push(Linear::new("shared_expert_gate", hidden, 1, false));
        block.shared = linears;
        block.shared_intermediate_size = shared;
        FeedForward::Moe(block)
    } else {
        FeedForward::Dense {
            intermediate_size: intermediate,
            gated: true,
            linears: dense_mlp(MlpNames::GateUpDown, hidden, intermediate, false),
        }
    };
    let norms = vec![
        norm("input_layernorm.weight", NormKind::Rms, hidden),
        norm("post_attention_layernorm.weight", NormKind::Rms, hidden),
    ];
    // Qwen3-Next: dense layers in `mlp_only_layers` and off the
    // `decoder_sparse_step` (`Qwen3NextDecoderLayer`), or none with no experts.
    let mlp_only = if next { cfg.int_list("mlp_only_layers", MAX_LAYERS)? } else { Vec::new() };
    let step =
        if next { cfg.int(&["decoder_sparse_step"], MAX_LAYERS, false)?.unwrap_or(1) } else { 1 };
    let dense = FeedForward::Dense {
        intermediate_size: intermediate,
        gated: true,
        linears: dense_mlp(MlpNames::GateUpDown, hidden, intermediate, false),
    };
    if next && intermediate == 0 && (!mlp_only.is_empty() || step > 1) {
        return Err(cfg.invalid("intermediate_size", "is needed for the dense layers"));
    }
    let all = linear_layers
        .into_iter()
        .zip(0..layers)
        .map(|(linear, index)| Layer {
            attention: if linear {
                gated_delta_net(hidden, delta, model_type == "qwen3_next")
            } else {
                full.clone()
            },
            feed_forward: if next && (mlp_only.contains(&index) || (index + 1) % step != 0) {
                dense.clone()
            } else {
                feed_forward.clone()
            },
            norms: norms.clone(),
            block: BlockStyle::PreNorm,
        })
        .collect();
    let rotary = match cfg.nested("rope_parameters")? {
        Some(rope) if rope.object.contains_key("partial_rotary_factor") => {
            rope.float_or("partial_rotary_factor", 0.25)?
        }
        _ => cfg.float_or("partial_rotary_factor", 0.25)?,
    };
    decoder_spec(
        cfg,
        model_type,
        all,
        DecoderFrame {
            norm_style: NormStyle::RmsFp32Weight,
            positions: partial(rotary < 1.0),
            ..DecoderFrame::llama(cfg, vocab, hidden)?
        },
    )
}

/// The shared expert's width of a Qwen3.5-MoE layer (`shared_expert_intermediate_size`).
fn required_shared_expert(cfg: &Cfg<'_>, model_type: &str) -> Result<u64, SourceError> {
    let mut required = Required::new(cfg, model_type);
    let size = required.int(&["shared_expert_intermediate_size"], MAX_DIM)?;
    required.finish()?;
    Ok(size)
}

/// Llama 4's text model (`llama4_text`; transformers 5.24 `Llama4TextModel`):
/// Llama-style attention with a weightless L2 norm on queries and keys, no
/// rotary positions on the `no_rope_layers` entries of 0 (by default every
/// fourth layer); the `moe_layers` (by default every
/// `interleave_moe_layer_step`-th) hold fused experts (`gate_up_proj
/// [E, H, 2I]`, `down_proj [E, I, H]`), a router `Linear(H, E)` and a shared
/// gated MLP of `intermediate_size`; the other layers a gated MLP of
/// `intermediate_size_mlp`.
fn llama4_text(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let model_type = "llama4_text";
    let dims = core_dims(cfg, model_type, None)?;
    let Core { vocab, hidden, layers, heads, kv_heads, head_dim, intermediate } = dims;
    let mut required = Required::new(cfg, model_type);
    let experts = required.int(&["num_local_experts"], MAX_EXPERTS)?;
    let per_token = required.int(&["num_experts_per_tok"], MAX_EXPERTS)?;
    let dense_size = required.int(&["intermediate_size_mlp"], MAX_DIM)?;
    required.finish()?;
    if per_token > experts {
        return Err(cfg.invalid(
            "num_experts_per_tok",
            &format!("({per_token}) exceeds num_local_experts ({experts})"),
        ));
    }
    let rope = rope_layers(cfg, "llama4_text", layers)?;
    let moe_layers: Vec<u64> = match cfg.object.get("moe_layers") {
        Some(value) if !value.is_null() => {
            let listed = cfg.int_list("moe_layers", MAX_LAYERS)?;
            if let Some(bad) = listed.iter().find(|i| **i >= layers) {
                return Err(cfg.invalid(
                    "moe_layers",
                    &format!("names layer {bad}, but the model has {layers}"),
                ));
            }
            listed
        }
        _ => {
            let step = cfg.int(&["interleave_moe_layer_step"], MAX_LAYERS, false)?.unwrap_or(1);
            (step - 1..layers).step_by(usize::try_from(step).unwrap_or(1)).collect()
        }
    };
    let bias = cfg.boolean("attention_bias", false)?;
    let moe = Moe {
        num_experts: experts,
        experts_per_token: per_token,
        expert_intermediate_size: intermediate,
        gated: true,
        expert_linears: Vec::new(),
        expert_tensors: vec![
            Tensor::new(
                "experts.gate_up_proj",
                product(cfg, "num_local_experts", &[experts, hidden, 2, intermediate])?,
            ),
            Tensor::new(
                "experts.down_proj",
                product(cfg, "num_local_experts", &[experts, intermediate, hidden])?,
            ),
        ],
        router_linears: vec![Linear::new("router", hidden, experts, false)],
        router_tensors: Vec::new(),
        shared: dense_mlp(MlpNames::GateUpDown, hidden, intermediate, false),
        shared_intermediate_size: intermediate,
        peft_names: None,
    };
    let dense = FeedForward::Dense {
        intermediate_size: dense_size,
        gated: true,
        linears: dense_mlp(MlpNames::GateUpDown, hidden, dense_size, false),
    };
    let all = (0..layers)
        .zip(rope)
        .map(|(index, rope)| Layer {
            attention: Attention {
                kind: AttentionKind::Standard,
                num_heads: heads,
                num_kv_heads: kv_heads,
                head_dim,
                sliding_window: None,
                rope,
                output_gate: false,
                scaled_queries: false,
                projections: standard_attention_projections(
                    QkvNames::Separate("o_proj"),
                    hidden,
                    heads,
                    kv_heads,
                    head_dim,
                    AttentionBias { qkv: bias, output: bias },
                ),
                tensors: Vec::new(),
            },
            feed_forward: if moe_layers.contains(&index) {
                FeedForward::Moe(moe.clone())
            } else {
                dense.clone()
            },
            norms: vec![
                norm("input_layernorm.weight", NormKind::Rms, hidden),
                norm("post_attention_layernorm.weight", NormKind::Rms, hidden),
            ],
            block: BlockStyle::PreNorm,
        })
        .collect();
    decoder_spec(cfg, model_type, all, DecoderFrame::llama(cfg, vocab, hidden)?)
}

/// Llama 4 with its vision model (`Llama4ForConditionalGeneration`): the text
/// model of `text_config`, the vision encoder of `vision_config`
/// (`Llama4VisionModel`: an unfold-and-linear patch embedding without bias, a
/// class embedding, a learned position table of `(image / patch)² + 1`
/// rows, LayerNorms before and after, encoder layers with biased `q/k/v/o`
/// and `fc1`/`fc2` and two LayerNorms each, and the pixel-shuffle adapter's
/// `fc1`/`fc2` without bias) and the projector `linear_1` (no bias).
fn llama4_multimodal(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let mut spec = llama4_text(&nested_required(cfg, "text_config", "llama4")?)?;
    adopt_outer(&mut spec, cfg, "llama4")?;
    let vision = nested_required(cfg, "vision_config", "llama4")?;
    let mut required = Required::new(&vision, "llama4_vision_model");
    let width = required.int(&["hidden_size"], MAX_DIM)?;
    let layers = required.int(&["num_hidden_layers"], MAX_LAYERS)?;
    let vision_heads = required.int(&["num_attention_heads"], MAX_HEADS)?;
    let intermediate = required.int(&["intermediate_size"], MAX_DIM)?;
    let image = required.int(&["image_size"], MAX_DIM)?;
    let patch = required.int(&["patch_size"], MAX_DIM)?;
    let projector_in = required.int(&["projector_input_dim"], MAX_DIM)?;
    let projector_out = required.int(&["projector_output_dim"], MAX_DIM)?;
    let output = required.int(&["vision_output_dim"], MAX_DIM)?;
    required.finish()?;
    let channels = vision.int(&["num_channels"], 16, false)?.unwrap_or(3);
    if width % vision_heads != 0 {
        return Err(vision.invalid(
            "num_attention_heads",
            &format!("({vision_heads}) does not divide hidden_size ({width})"),
        ));
    }
    let side = image / patch;
    let positions = product(&vision, "image_size", &[side, side])?.saturating_add(1);
    let in_layers = |linear: Linear| (linear, layers);
    let mut linears: Vec<(Linear, u64)> = standard_attention_projections(
        QkvNames::Separate("o_proj"),
        width,
        vision_heads,
        vision_heads,
        width / vision_heads,
        AttentionBias { qkv: true, output: true },
    )
    .into_iter()
    .map(in_layers)
    .collect();
    linears
        .extend(dense_mlp(MlpNames::Fc1Fc2, width, intermediate, true).into_iter().map(in_layers));
    linears.push((Linear::new("linear", channels * patch * patch, width, false), 1));
    linears.push((Linear::new("fc1", intermediate, projector_in, false), 1));
    linears.push((Linear::new("fc2", projector_out, projector_out, false), 1));
    spec.extra_modules.push(ExtraModule {
        name: "vision_model".into(),
        component: Component::Vision,
        linears,
        tensors: vec![
            (Tensor::new("class_embedding", width), 1),
            (
                Tensor::new(
                    "positional_embedding_vlm",
                    product(&vision, "image_size", &[positions, width])?,
                ),
                1,
            ),
            (norm("layernorm_pre/post.weight+bias", NormKind::Layer, 2 * width), 1),
            (
                norm("input/post_attention_layernorm.weight+bias", NormKind::Layer, 2 * width),
                layers,
            ),
        ],
    });
    spec.extra_modules.push(ExtraModule {
        name: "multi_modal_projector".into(),
        component: Component::Vision,
        linears: vec![(Linear::new("linear_1", output, spec.hidden_size, false), 1)],
        tensors: Vec::new(),
    });
    Ok(spec)
}

/// LFM2 (`Lfm2ForCausalLM`, transformers 5.24): `layer_types` (or
/// `full_attn_idxs`) pick attention layers (q/k/v/`out_proj`, RMSNorms over
/// one head on queries and keys) among gated short-convolution layers
/// (`in_proj` to 3 × hidden, a depthwise convolution of `conv_L_cache` taps,
/// `out_proj`, biases when `conv_bias`); every layer has `operator_norm`,
/// `ffn_norm` and a SwiGLU MLP (`w1`, `w3`, `w2`) whose width `Lfm2MLP`
/// adjusts from `intermediate_size` (`block_ff_dim` in older files): two
/// thirds of it, then with `block_ffn_dim_multiplier` scaled and rounded up to
/// `block_multiple_of`. The final norm is `embedding_norm`; the head is tied
/// by default.
fn lfm2(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let model_type = "lfm2";
    let mut required = Required::new(cfg, model_type);
    let vocab = required.int(&["vocab_size"], MAX_VOCAB)?;
    let hidden = required.int(&["hidden_size"], MAX_DIM)?;
    let layers = required.int(&["num_hidden_layers"], MAX_LAYERS)?;
    let heads = required.int(&["num_attention_heads"], MAX_HEADS)?;
    let configured = required.int(&["intermediate_size", "block_ff_dim"], MAX_DIM)?;
    required.finish()?;
    let kv_heads = cfg.int(&["num_key_value_heads"], MAX_HEADS, false)?.unwrap_or(heads);
    if hidden % heads != 0 || heads % kv_heads != 0 {
        return Err(cfg.invalid(
            "num_attention_heads",
            &format!(
                "({heads}) must divide hidden_size ({hidden}) and be a multiple of \
                 num_key_value_heads ({kv_heads})"
            ),
        ));
    }
    let head_dim = hidden / heads;
    let kernel = cfg.int(&["conv_L_cache"], 64, false)?.unwrap_or(3);
    let conv_bias = cfg.boolean("conv_bias", false)?;
    let mut intermediate = configured;
    if cfg.boolean("block_auto_adjust_ff_dim", true)? {
        intermediate = 2 * intermediate / 3;
        let multiplier = match cfg.object.get("block_ffn_dim_multiplier") {
            None => Some(1.0),
            Some(Value::Null) => None,
            Some(_) => Some(cfg.float_or("block_ffn_dim_multiplier", 1.0)?),
        };
        if let Some(multiplier) = multiplier {
            if !(multiplier > 0.0 && multiplier < 1e6) {
                return Err(cfg.invalid("block_ffn_dim_multiplier", "must be a positive number"));
            }
            // `int(multiplier * size)` in transformers; both far below 2^53.
            #[allow(
                clippy::cast_precision_loss,
                clippy::cast_possible_truncation,
                clippy::cast_sign_loss
            )]
            let scaled = (multiplier * intermediate as f64) as u64;
            let multiple = cfg.int(&["block_multiple_of"], MAX_DIM, false)?.unwrap_or(256);
            intermediate = scaled.div_ceil(multiple) * multiple;
        }
    }
    if intermediate == 0 || intermediate > MAX_DIM {
        return Err(
            cfg.invalid("intermediate_size", "gives an MLP of no width or beyond any real one")
        );
    }
    let count = usize::try_from(layers).unwrap_or(usize::MAX);
    let listed = per_layer(
        cfg,
        "layer_types",
        layers,
        |kind| match kind {
            "full_attention" => Some(true),
            "conv" => Some(false),
            _ => None,
        },
        |other| {
            cfg.invalid(
                "layer_types",
                &format!("lists `{other}`; LFM2 builds `full_attention` and `conv` layers"),
            )
        },
    )?;
    let attention_layers: Vec<bool> = match listed {
        Some(attention) => attention,
        None => match cfg.object.get("full_attn_idxs") {
            Some(value) if !value.is_null() => {
                let indexes = cfg.int_list("full_attn_idxs", MAX_LAYERS)?;
                (0..layers).map(|i| indexes.contains(&i)).collect()
            }
            _ => vec![true; count],
        },
    };
    let attention = Attention {
        kind: AttentionKind::Standard,
        num_heads: heads,
        num_kv_heads: kv_heads,
        head_dim,
        sliding_window: None,
        rope: true,
        output_gate: false,
        scaled_queries: false,
        projections: standard_attention_projections(
            QkvNames::Separate("out_proj"),
            hidden,
            heads,
            kv_heads,
            head_dim,
            AttentionBias::default(),
        ),
        tensors: vec![
            norm("q_layernorm.weight", NormKind::Rms, head_dim),
            norm("k_layernorm.weight", NormKind::Rms, head_dim),
        ],
    };
    let mut conv_tensors = vec![Tensor::new("conv.weight", hidden * kernel)];
    if conv_bias {
        conv_tensors.push(Tensor::new("conv.bias", hidden));
    }
    let conv = Attention {
        kind: AttentionKind::ShortConv { kernel },
        num_heads: 1,
        num_kv_heads: 1,
        head_dim: hidden,
        sliding_window: None,
        rope: false,
        output_gate: false,
        scaled_queries: false,
        projections: vec![
            Linear::new("in_proj", hidden, 3 * hidden, conv_bias),
            Linear::new("out_proj", hidden, hidden, conv_bias),
        ],
        tensors: conv_tensors,
    };
    let all = attention_layers
        .into_iter()
        .map(|is_attention| Layer {
            attention: if is_attention { attention.clone() } else { conv.clone() },
            feed_forward: FeedForward::Dense {
                intermediate_size: intermediate,
                gated: true,
                linears: dense_mlp(MlpNames::W1W3W2, hidden, intermediate, false),
            },
            norms: vec![
                norm("operator_norm.weight", NormKind::Rms, hidden),
                norm("ffn_norm.weight", NormKind::Rms, hidden),
            ],
            block: BlockStyle::PreNorm,
        })
        .collect();
    let tied = match cfg.object.get("tie_embedding") {
        Some(value) if !value.is_null() => cfg.boolean("tie_embedding", true)?,
        _ => cfg.boolean("tie_word_embeddings", true)?,
    };
    decoder_spec(
        cfg,
        model_type,
        all,
        DecoderFrame {
            vocab,
            hidden,
            final_norm: norm("embedding_norm.weight", NormKind::Rms, hidden),
            tied,
            norm_style: NormStyle::RmsCastBeforeWeight,
            positions: PositionEncoding::Rotary,
        },
    )
}

/// Mistral 3 with its vision encoder (`Mistral3ForConditionalGeneration`,
/// transformers 5.24): the text model of `text_config` (`ministral3`, or
/// `mistral` in Mistral Small 3.1's files), a Pixtral encoder (a patch
/// convolution without bias, `ln_pre`, layers of `q/k/v/o` over the width,
/// a gated MLP, `attention_norm` and `ffn_norm`, all without biases) and the
/// projector (an RMSNorm over the vision width, the patch merger's
/// `merging_layer`, `linear_1` and `linear_2`, biased with
/// `multimodal_projector_bias`).
fn mistral3_multimodal(cfg: &Cfg<'_>) -> Result<ModelSpec, SourceError> {
    let text = nested_required(cfg, "text_config", "mistral3")?;
    let text_type = text.string("model_type")?.unwrap_or_else(|| "ministral3".to_owned());
    if !matches!(text_type.as_str(), "ministral3" | "mistral") {
        return Err(SourceError::Unsupported {
            origin: cfg.origin.to_owned(),
            model_type: "mistral3".into(),
            keys: vec!["text_config.model_type".into()],
            reason: format!(
                "is `{text_type}`; Mistral 3's text model is `ministral3` or `mistral`"
            ),
        });
    }
    let text = Cfg { defaults: family_defaults(&text_type), ..text };
    let mut spec = llama_like(&text, &text_type)?;
    adopt_outer(&mut spec, cfg, "mistral3")?;
    let vision = nested_required(cfg, "vision_config", "mistral3")?;
    let mut required = Required::new(&vision, "pixtral");
    let width = required.int(&["hidden_size"], MAX_DIM)?;
    let layers = required.int(&["num_hidden_layers"], MAX_LAYERS)?;
    let intermediate = required.int(&["intermediate_size"], MAX_DIM)?;
    let patch = required.int(&["patch_size"], 4096)?;
    required.finish()?;
    let channels = vision.int(&["num_channels"], 16, false)?.unwrap_or(3);
    let merge = cfg.int(&["spatial_merge_size"], 64, false)?.unwrap_or(2);
    let feature_layers = match cfg.object.get("vision_feature_layer") {
        Some(Value::Array(layers)) => layers.len() as u64,
        _ => 1,
    };
    let bias = cfg.boolean("multimodal_projector_bias", false)?;
    let in_layers = |linear: Linear| (linear, layers);
    let mut linears: Vec<(Linear, u64)> = ["q_proj", "k_proj", "v_proj", "o_proj"]
        .iter()
        .map(|name| in_layers(Linear::new(name, width, width, false)))
        .collect();
    linears.extend(
        dense_mlp(MlpNames::GateUpDown, width, intermediate, false).into_iter().map(in_layers),
    );
    spec.extra_modules.push(ExtraModule {
        name: "vision_tower".into(),
        component: Component::Vision,
        linears,
        tensors: vec![
            (
                Tensor::new(
                    "patch_conv.weight",
                    product(&vision, "patch_size", &[channels, patch, patch, width])?,
                ),
                1,
            ),
            (norm("ln_pre.weight", NormKind::Rms, width), 1),
            (norm("attention_norm/ffn_norm.weight", NormKind::Rms, 2 * width), layers),
        ],
    });
    let text_hidden = spec.hidden_size;
    spec.extra_modules.push(ExtraModule {
        name: "multi_modal_projector".into(),
        component: Component::Vision,
        linears: vec![
            (
                Linear::new(
                    "merging_layer",
                    product(cfg, "spatial_merge_size", &[width, merge, merge])?,
                    width,
                    false,
                ),
                1,
            ),
            (Linear::new("linear_1", width * feature_layers, text_hidden, bias), 1),
            (Linear::new("linear_2", text_hidden, text_hidden, bias), 1),
        ],
        tensors: vec![(norm("norm.weight", NormKind::Rms, width), 1)],
    });
    Ok(spec)
}
