/*!
The architecture of a model, as the framework instantiates it.

A [`ModelSpec`] lists every parameter tensor a Hugging Face transformers model
creates for a config, grouped the way memory formulas need them: token
embeddings, decoder layers (attention, feed-forward, norms), the final norm,
the output head, and extra modules such as vision towers. Linear layers are
kept as [`Linear`] (in/out features, bias) because adapters (LoRA, DoRA) and
quantization act on them; everything else is a plain [`Tensor`] of `numel`
elements.

Module names are the ones transformers uses (`q_proj`, `c_attn`,
`dense_h_to_4h`, ...), because PEFT selects LoRA targets by name.

The spec is built by `vramfit-sources` from a `config.json`; this crate never
reads files. Shapes come from the builders in this module so that the
parameter formula of, say, a gated MLP lives in one place.
*/

use serde::{Deserialize, Serialize};

/// Where a parameter belongs, for the per-component breakdown.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Component {
    /// Token embeddings, learned position embeddings, embedding norms.
    Embeddings,
    /// Self-attention projections and their norms (q/k norms), sinks.
    Attention,
    /// Dense feed-forward blocks (including dense layers of MoE models).
    Mlp,
    /// Routed experts of mixture-of-experts layers.
    Experts,
    /// Experts every token passes through (DeepSeek, Qwen2-MoE), and their gates.
    SharedExperts,
    /// The router (gate) that picks experts.
    Router,
    /// Layer norms around attention and feed-forward blocks, and the final norm.
    Norms,
    /// The output projection to the vocabulary (zero when tied to the embeddings).
    LmHead,
    /// Vision towers, perceiver resamplers and multimodal projectors.
    Vision,
    /// Gated cross-attention blocks that feed vision features into the decoder.
    CrossAttention,
}

impl Component {
    /// Every component, in display order.
    pub const ALL: [Component; 10] = [
        Component::Embeddings,
        Component::Attention,
        Component::Mlp,
        Component::Experts,
        Component::SharedExperts,
        Component::Router,
        Component::Norms,
        Component::LmHead,
        Component::Vision,
        Component::CrossAttention,
    ];

    /// The user-facing name (also the JSON key).
    pub fn name(self) -> &'static str {
        match self {
            Component::Embeddings => "embeddings",
            Component::Attention => "attention",
            Component::Mlp => "mlp",
            Component::Experts => "experts",
            Component::SharedExperts => "shared_experts",
            Component::Router => "router",
            Component::Norms => "norms",
            Component::LmHead => "lm_head",
            Component::Vision => "vision",
            Component::CrossAttention => "cross_attention",
        }
    }
}

/// A linear (or GPT-2 style `Conv1D`) layer: `out_features × in_features`
/// weights plus an optional bias of `out_features`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Linear {
    /// The module's name in transformers, e.g. `q_proj` (LoRA targets match on it).
    pub name: String,
    /// Input features (columns of the weight).
    pub in_features: u64,
    /// Output features (rows of the weight).
    pub out_features: u64,
    /// Whether the layer has a bias vector.
    pub bias: bool,
    /// Identical copies in one layer (experts kept as a list of linears); usually 1.
    pub copies: u64,
}

impl Linear {
    /// A single linear layer.
    pub fn new(name: &str, in_features: u64, out_features: u64, bias: bool) -> Self {
        Linear { name: name.to_owned(), in_features, out_features, bias, copies: 1 }
    }

    /// The same layer repeated `copies` times (e.g. one per expert).
    #[must_use]
    pub fn times(mut self, copies: u64) -> Self {
        self.copies = copies;
        self
    }
}

/// A parameter tensor that is not a linear layer's weight: a norm's scale, an
/// embedding table, an expert bank stored as one 3-D parameter, attention sinks.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Tensor {
    /// The parameter's name in transformers (e.g. `input_layernorm.weight`).
    pub name: String,
    /// Number of elements.
    pub numel: u64,
}

impl Tensor {
    /// A tensor of `numel` elements.
    pub fn new(name: &str, numel: u64) -> Self {
        Tensor { name: name.to_owned(), numel }
    }
}

/// The kind of normalisation, which decides its parameter count.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NormKind {
    /// RMSNorm: one scale vector (`torch.nn.RMSNorm`, `LlamaRMSNorm`, Gemma's `1 + w` variant).
    Rms,
    /// LayerNorm with scale and bias (`torch.nn.LayerNorm`, `elementwise_affine=True`).
    Layer,
    /// LayerNorm with a scale and no bias (OLMo, some GPT-NeoX variants with `bias=False`).
    LayerNoBias,
}

/// Parameters of a norm over `dim` features: one vector for RMSNorm, two for
/// LayerNorm (weight and bias). Source: `torch.nn.LayerNorm`,
/// `transformers.models.llama.modeling_llama.LlamaRMSNorm`.
pub fn norm(name: &str, kind: NormKind, dim: u64) -> Tensor {
    let vectors = match kind {
        NormKind::Rms | NormKind::LayerNoBias => 1,
        NormKind::Layer => 2,
    };
    Tensor::new(name, vectors * dim)
}

/// How self-attention computes its keys and values.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AttentionKind {
    /// Multi-head, grouped-query or multi-query attention: each token caches
    /// `num_kv_heads × head_dim` keys and as many values per layer.
    Standard,
    /// DeepSeek's multi-head latent attention (arXiv 2405.04434 §2.1): keys and
    /// values are projected through a `kv_lora_rank` latent, with a shared
    /// rotary key of `qk_rope_head_dim`.
    Latent(LatentDims),
    /// Gated `DeltaNet` linear attention (Yang et al. 2024, arXiv 2412.06464), as
    /// Qwen3.5 and Qwen3-Next build it (`Qwen3_5GatedDeltaNet` in transformers
    /// 5.24): a short causal convolution over the projected queries, keys and
    /// values, then a recurrent state of `value_heads × key_head_dim ×
    /// value_head_dim` per sequence instead of a KV cache.
    GatedDeltaNet(DeltaNetDims),
    /// A gated short convolution in place of attention (LFM2's `Lfm2ShortConv`,
    /// transformers 5.24): `in_proj` to three hidden-size streams, a depthwise
    /// causal convolution of `kernel` taps, `out_proj`; a state of `kernel`
    /// inputs per sequence instead of a KV cache.
    ShortConv {
        /// Taps of the depthwise convolution (`conv_L_cache`).
        kernel: u64,
    },
}

/// The dimensions of a gated `DeltaNet` layer (Qwen3.5 / Qwen3-Next config keys
/// `linear_num_key_heads`, `linear_num_value_heads`, `linear_key_head_dim`,
/// `linear_value_head_dim`, `linear_conv_kernel_dim`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeltaNetDims {
    /// Query/key heads.
    pub key_heads: u64,
    /// Value heads (a multiple of the key heads; each key head serves several).
    pub value_heads: u64,
    /// Dimension of one query/key head.
    pub key_head_dim: u64,
    /// Dimension of one value head.
    pub value_head_dim: u64,
    /// Width of the causal depthwise convolution.
    pub conv_kernel: u64,
}

impl DeltaNetDims {
    /// Channels of the convolution: queries, keys and values side by side.
    pub fn conv_dim(&self) -> u64 {
        2 * self.key_heads * self.key_head_dim + self.value_heads * self.value_head_dim
    }
}

/// A gated `DeltaNet` layer's parameters as `Qwen3_5GatedDeltaNet.__init__`
/// (transformers 5.24) creates them: `in_proj_qkv`, `in_proj_z`, `in_proj_b`,
/// `in_proj_a` and `out_proj` without biases, a depthwise `conv1d` of
/// `conv_dim × kernel` weights (no bias), `dt_bias` and `A_log` of one value
/// per value head, and a gated RMSNorm over one value head. With `fused`,
/// Qwen3-Next's layout (`Qwen3NextGatedDeltaNet`): the same weights as
/// `in_proj_qkvz` and `in_proj_ba`.
pub fn gated_delta_net(hidden: u64, dims: DeltaNetDims, fused: bool) -> Attention {
    let key_dim = dims.key_heads * dims.key_head_dim;
    let value_dim = dims.value_heads * dims.value_head_dim;
    Attention {
        kind: AttentionKind::GatedDeltaNet(dims),
        num_heads: dims.value_heads,
        num_kv_heads: dims.key_heads,
        head_dim: dims.value_head_dim,
        sliding_window: None,
        rope: false,
        output_gate: false,
        scaled_queries: false,
        projections: if fused {
            vec![
                Linear::new(FUSED_DELTA_NET_PROJECTION, hidden, 2 * key_dim + 2 * value_dim, false),
                Linear::new("in_proj_ba", hidden, 2 * dims.value_heads, false),
                Linear::new("out_proj", value_dim, hidden, false),
            ]
        } else {
            vec![
                Linear::new("in_proj_qkv", hidden, 2 * key_dim + value_dim, false),
                Linear::new("in_proj_z", hidden, value_dim, false),
                Linear::new("in_proj_b", hidden, dims.value_heads, false),
                Linear::new("in_proj_a", hidden, dims.value_heads, false),
                Linear::new("out_proj", value_dim, hidden, false),
            ]
        },
        tensors: vec![
            Tensor::new("conv1d.weight", dims.conv_dim() * dims.conv_kernel),
            Tensor::new("dt_bias", dims.value_heads),
            Tensor::new("A_log", dims.value_heads),
            Tensor::new("norm.weight", dims.value_head_dim),
        ],
    }
}

/// The dimensions of multi-head latent attention (DeepSeek-V2/V3 config keys).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LatentDims {
    /// Rank of the query compression, `None` when queries use a full projection.
    pub q_lora_rank: Option<u64>,
    /// Rank of the joint key/value compression (the cached latent).
    pub kv_lora_rank: u64,
    /// Per-head query/key dimension without rotary embedding.
    pub qk_nope_head_dim: u64,
    /// Per-head rotary query/key dimension (the key part is shared by all heads).
    pub qk_rope_head_dim: u64,
    /// Per-head value dimension.
    pub v_head_dim: u64,
}

/// One decoder layer's self-attention.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Attention {
    /// Standard or latent attention.
    pub kind: AttentionKind,
    /// Query heads.
    pub num_heads: u64,
    /// Key/value heads (equal to `num_heads` without GQA, 1 for MQA).
    pub num_kv_heads: u64,
    /// Dimension of one query/key head (for latent attention, nope + rope).
    pub head_dim: u64,
    /// Tokens a sliding-window layer attends to, `None` for full attention.
    pub sliding_window: Option<u64>,
    /// Whether the layer rotates its queries and keys when the model's
    /// positions are rotary; `false` for the layers that take no positions at
    /// all (the `smollm3` and Llama 4 layers whose `no_rope_layers` entry is 0,
    /// `use_rope` in transformers 5.24) and for layers that are not attention
    /// (gated `DeltaNet`, short convolutions). Meaningless for learned or
    /// sinusoidal positions.
    #[serde(default = "rotary_by_default")]
    pub rope: bool,
    /// Whether the attention output is multiplied by a sigmoid gate that the
    /// query projection computes beside the queries (`q_proj` twice as wide;
    /// Qwen3.5 and Qwen3-Next `attn_output_gate`).
    #[serde(default)]
    pub output_gate: bool,
    /// Whether the rotated queries are multiplied by a position-dependent
    /// temperature (Ministral 3's `get_llama_4_attn_scale`, transformers 5.24):
    /// one more query-sized tensor in the forward.
    #[serde(default)]
    pub scaled_queries: bool,
    /// The projections, as transformers names them.
    pub projections: Vec<Linear>,
    /// Other parameters: q/k norms, latent norms, attention sinks.
    pub tensors: Vec<Tensor>,
}

fn rotary_by_default() -> bool {
    true
}

/// The name of Qwen3-Next's fused gated `DeltaNet` input projection, whose
/// forward (`fix_query_key_value_ordering`) is not the one vramfit measured.
pub const FUSED_DELTA_NET_PROJECTION: &str = "in_proj_qkvz";

/// The name of DeepSeek Sparse Attention's indexer key norm
/// (`self_attn.indexer.k_norm`, a LayerNorm), which marks a layer with an
/// indexer (DeepSeek-V3.2, GLM-5).
pub const DSA_INDEXER_NORM: &str = "indexer.k_norm.weight+bias";

/// The name of gpt-oss's per-head attention-sink logits (`GptOssAttention.sinks`).
pub const SINKS: &str = "sinks";

impl Attention {
    /// Whether the softmax has learned sink logits (gpt-oss): one extra
    /// column per row, the softmax in the logits' own type.
    pub fn has_sinks(&self) -> bool {
        self.tensors.iter().any(|t| t.name == SINKS)
    }

    /// Whether transformers passes this layer an explicit mask under SDPA for
    /// `keys` keys: a sliding window the keys reach cannot be left to SDPA's
    /// `is_causal` (`masking_utils._ignore_causal_mask_sdpa` keeps the mask when
    /// `kv_length >= local_attention_size`).
    pub fn window_needs_sdpa_mask(&self, keys: u128) -> bool {
        self.sliding_window.is_some_and(|window| keys >= u128::from(window))
    }

    /// Elements one token caches in this layer, as `(keys, values)`. Standard
    /// attention: `num_kv_heads × head_dim` each. Latent attention caches the
    /// compressed latent and the shared rotary key (`kv_lora_rank` and
    /// `qk_rope_head_dim`), as transformers 5's DeepSeek cache, vLLM's
    /// `MLAAttentionSpec` and llama.cpp's MLA K cache all do (the engines store
    /// the two side by side as one entry).
    pub fn kv_cache_widths(&self) -> (u64, u64) {
        match self.kind {
            AttentionKind::Standard => {
                let width = self.num_kv_heads * self.head_dim;
                (width, width)
            }
            AttentionKind::Latent(dims) => (dims.kv_lora_rank, dims.qk_rope_head_dim),
            // A recurrent or convolution state per sequence, not per token.
            AttentionKind::GatedDeltaNet(_) | AttentionKind::ShortConv { .. } => (0, 0),
        }
    }
}

/// Names of the three linears of a gated (SwiGLU/GeGLU) MLP or the two of a plain one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MlpNames {
    /// `gate_proj`, `up_proj`, `down_proj` (Llama and most modern decoders).
    GateUpDown,
    /// `gate_up_proj` fused, `down_proj` (Phi-3).
    FusedGateUpDown,
    /// `w1`, `w2` (gate and up), `c_proj` (original Qwen).
    QwenW1W2,
    /// `fc1`, `fc2` (Phi-2, XGLM, CLIP).
    Fc1Fc2,
    /// `c_fc`, `c_proj` (GPT-2, StarCoder2).
    CfcCproj,
    /// `dense_h_to_4h`, `dense_4h_to_h` (GPT-NeoX, Falcon).
    DenseH4h,
    /// `fc_in`, `fc_out` (GPT-J).
    FcInOut,
    /// `w1` (gate), `w3` (up), `w2` (down) (LFM2).
    W1W3W2,
}

/// A dense feed-forward block of `hidden → intermediate → hidden`.
///
/// Gated blocks (SwiGLU, Shazeer 2020 arXiv 2002.05202) have two input
/// projections of `hidden × intermediate` and one output projection; plain
/// blocks have one of each. Source: the MLP classes of each transformers model.
pub fn dense_mlp(names: MlpNames, hidden: u64, intermediate: u64, bias: bool) -> Vec<Linear> {
    let pair = |up: &str, down: &str| {
        vec![
            Linear::new(up, hidden, intermediate, bias),
            Linear::new(down, intermediate, hidden, bias),
        ]
    };
    match names {
        MlpNames::GateUpDown => vec![
            Linear::new("gate_proj", hidden, intermediate, bias),
            Linear::new("up_proj", hidden, intermediate, bias),
            Linear::new("down_proj", intermediate, hidden, bias),
        ],
        MlpNames::FusedGateUpDown => vec![
            Linear::new("gate_up_proj", hidden, 2 * intermediate, bias),
            Linear::new("down_proj", intermediate, hidden, bias),
        ],
        MlpNames::QwenW1W2 => vec![
            Linear::new("w1", hidden, intermediate, bias),
            Linear::new("w2", hidden, intermediate, bias),
            Linear::new("c_proj", intermediate, hidden, bias),
        ],
        MlpNames::Fc1Fc2 => pair("fc1", "fc2"),
        MlpNames::CfcCproj => pair("c_fc", "c_proj"),
        MlpNames::DenseH4h => pair("dense_h_to_4h", "dense_4h_to_h"),
        MlpNames::FcInOut => pair("fc_in", "fc_out"),
        MlpNames::W1W3W2 => vec![
            Linear::new("w1", hidden, intermediate, bias),
            Linear::new("w3", hidden, intermediate, bias),
            Linear::new("w2", intermediate, hidden, bias),
        ],
    }
}

/// Whether an MLP multiplies a gate into its up projection (3 matrices) or not (2).
pub fn mlp_is_gated(names: MlpNames) -> bool {
    matches!(
        names,
        MlpNames::GateUpDown | MlpNames::FusedGateUpDown | MlpNames::QwenW1W2 | MlpNames::W1W3W2
    )
}

/// A mixture-of-experts feed-forward block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Moe {
    /// Routed experts.
    pub num_experts: u64,
    /// Experts each token is sent to.
    pub experts_per_token: u64,
    /// Intermediate size of one routed expert.
    pub expert_intermediate_size: u64,
    /// Whether experts are gated (3 matrices) or plain (2).
    pub gated: bool,
    /// Experts stored as linears (one module per expert) ...
    pub expert_linears: Vec<Linear>,
    /// ... or as stacked 3-D parameters (transformers 5 keeps experts fused).
    pub expert_tensors: Vec<Tensor>,
    /// Router parameters that are linear layers (`gate` in older code).
    pub router_linears: Vec<Linear>,
    /// Router parameters kept as plain tensors (transformers 5 routers).
    pub router_tensors: Vec<Tensor>,
    /// Shared experts (a dense MLP every token passes through), if any.
    pub shared: Vec<Linear>,
    /// Intermediate size of the shared expert block (0 when none).
    pub shared_intermediate_size: u64,
    /// How PEFT maps LoRA target names onto fused expert parameters, for the
    /// model types it converts (see [`PeftMoeNames`]); `None` when PEFT
    /// adapts only the linear layers of this block.
    pub peft_names: Option<PeftMoeNames>,
}

/// The transformers-4 module names that PEFT 0.21 redirects onto the fused
/// 3-D expert parameters of transformers 5
/// (`peft.utils.transformers_weight_conversion._MOE_TARGET_MODULE_MAPPING`,
/// applied to the model types transformers maps to these two patterns in
/// `conversion_mapping._MODEL_TO_CONVERSION_PATTERN`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PeftMoeNames {
    /// Mixtral: `gate` → router weight, `w1` + `w3` → `gate_up_proj`, `w2` → `down_proj`.
    Mixtral,
    /// Qwen2-MoE pattern (Qwen3-MoE, DeepSeek-V2/V3, OLMoE, ...): `gate` → router
    /// weight, `gate_proj` + `up_proj` → `gate_up_proj`, `down_proj` → `down_proj`.
    Qwen2Moe,
}

impl PeftMoeNames {
    /// The old names of the router, the two fused input halves, and the output projection.
    pub fn names(self) -> (&'static str, [&'static str; 2], &'static str) {
        match self {
            PeftMoeNames::Mixtral => ("gate", ["w1", "w3"], "w2"),
            PeftMoeNames::Qwen2Moe => ("gate", ["gate_proj", "up_proj"], "down_proj"),
        }
    }
}

/// A layer's feed-forward block.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum FeedForward {
    /// A dense MLP.
    Dense {
        /// Intermediate (hidden) size.
        intermediate_size: u64,
        /// Whether the MLP is gated (3 matrices).
        gated: bool,
        /// Its linears.
        linears: Vec<Linear>,
    },
    /// A mixture of experts.
    Moe(Moe),
}

/// How a decoder layer arranges its norms and residual connections, which
/// decides which activations exist (the parameters are in [`Layer::norms`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum BlockStyle {
    /// `x + attn(norm(x))`, then `x + mlp(norm(x))` (Llama, Mistral, Qwen, GPT-2, ...).
    PreNorm,
    /// Pre- and post-norms around both blocks (Gemma 2 and 3).
    Sandwich,
    /// Norms after each block, before the residual add (OLMo 2).
    PostNorm,
    /// `x + attn(norm(x)) + mlp(norm(x))` with one shared norm (GPT-J, Phi-2, Falcon-7B).
    Parallel,
    /// `x + attn(norm1(x)) + mlp(norm2(x))` (GPT-NeoX, Falcon-40B).
    ParallelTwoNorms,
}

/// How token positions enter the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum PositionEncoding {
    /// Rotary embeddings applied to queries and keys in every layer (new q/k tensors).
    Rotary,
    /// Rotary embeddings on part of each head, the rest concatenated back
    /// (GPT-NeoX `rotary_pct`, Phi-2 `partial_rotary_factor`, GPT-J `rotary_dim`):
    /// the queries come out contiguous per head, so SDPA's output must be copied
    /// by `transpose(1, 2).contiguous()`.
    PartialRotary,
    /// A learned position table added to the token embeddings (GPT-2).
    Learned,
    /// Fixed sinusoidal positions added to the embeddings (XGLM).
    Sinusoidal,
}

/// An MLP activation function, as transformers' `ACT2FN` implements it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// `silu`/`swish` (`torch.nn.functional.silu`): backward keeps the input.
    Silu,
    /// `gelu` (exact) or `gelu_pytorch_tanh` (`F.gelu(approximate="tanh")`): keeps the input.
    Gelu,
    /// `gelu_new`/`gelu_fast` (`NewGELUActivation`, a Python tanh formula):
    /// keeps the input, the tanh, `1 + tanh` and `0.5·x` — four tensors.
    GeluNew,
    /// `relu`: keeps the output.
    Relu,
}

/// The dropouts a model applies in training (those with a probability above zero).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Dropout {
    /// On the attention probabilities (`attention_dropout`, `attn_pdrop`).
    pub attention: bool,
    /// On each block's output before the residual add (`resid_pdrop`, `hidden_dropout`).
    pub residual: bool,
    /// On the embeddings (`embd_pdrop`, `embedding_dropout`).
    pub embedding: bool,
}

/// Soft-capping (`cap · tanh(x / cap)`), whose `tanh` keeps its output for backward.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Softcapping {
    /// On attention scores (`attn_logit_softcapping`), in eager attention.
    pub attention: bool,
    /// On the output logits (`final_logit_softcapping`).
    pub logits: bool,
}

/// How a family's norm computes, which decides what autograd keeps.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum NormStyle {
    /// `LlamaRMSNorm`: upcast to fp32, normalize, cast back, then multiply by the weight.
    RmsCastBeforeWeight,
    /// Gemma/OLMo 2/gpt-oss RMSNorm: the weight is applied in fp32, then cast back.
    RmsFp32Weight,
    /// `torch.nn.LayerNorm` (`native_layer_norm`).
    LayerNorm,
}

/// One decoder layer.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct Layer {
    /// Self-attention.
    pub attention: Attention,
    /// Feed-forward block.
    pub feed_forward: FeedForward,
    /// Norms of the layer outside attention (input, post-attention, pre/post feed-forward).
    pub norms: Vec<Tensor>,
    /// Arrangement of norms and residuals.
    pub block: BlockStyle,
}

/// `count` consecutive identical layers.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LayerGroup {
    /// How many layers share this shape.
    pub count: u64,
    /// The shape.
    pub layer: Layer,
}

/// A module outside the decoder stack (vision tower, perceiver, cross-attention blocks).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ExtraModule {
    /// Name in transformers (`vision_model`, `perceiver_resampler`, ...).
    pub name: String,
    /// Component it is reported under.
    pub component: Component,
    /// Its linear layers, each with the number of times it occurs in the module.
    pub linears: Vec<(Linear, u64)>,
    /// Its other tensors, each with the number of times it occurs.
    pub tensors: Vec<(Tensor, u64)>,
}

/// The output projection to the vocabulary.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct LmHead {
    /// The linear (`lm_head`, `embed_out`); `hidden → vocab`.
    pub linear: Linear,
    /// Extra output rows kept as a second linear (IDEFICS' decoupled head), if any.
    pub additional: Option<Linear>,
    /// Tied to the token embeddings: the weight is shared and counted once.
    /// A bias, if any, is still its own parameter.
    pub tied: bool,
}

/// Everything the estimator knows about a model's architecture.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct ModelSpec {
    /// `model_type` from the config (`llama`, `qwen3_moe`, ...).
    pub model_type: String,
    /// Vocabulary size (rows of the embedding table).
    pub vocab_size: u64,
    /// Width of the residual stream.
    pub hidden_size: u64,
    /// Token embeddings and other embedding parameters.
    pub embeddings: Vec<Tensor>,
    /// Decoder layers, grouped into runs of identical layers.
    pub layers: Vec<LayerGroup>,
    /// The final norm after the last layer.
    pub final_norm: Vec<Tensor>,
    /// The output head.
    pub lm_head: LmHead,
    /// Modules outside the decoder (vision, cross-attention).
    pub extra_modules: Vec<ExtraModule>,
    /// The model's context window in tokens: `max_position_embeddings` (or
    /// `n_positions`), rope-scaled where the config extends it (as vLLM
    /// derives `max_model_len`). Learned and sinusoidal tables, never
    /// rope-scaled, are this size. Not a default: users rarely run at it.
    pub max_position_embeddings: Option<u64>,
    /// The dtype the checkpoint is stored in (`torch_dtype`/`dtype`), if given.
    pub torch_dtype: Option<String>,
    /// How the family's norms compute.
    pub norm_style: NormStyle,
    /// How positions are encoded.
    pub positions: PositionEncoding,
    /// The MLP's activation function (`hidden_act`).
    pub activation: Activation,
    /// Which dropouts are active in training (probability above zero).
    pub dropout: Dropout,
    /// Gemma 2's tanh soft-capping of attention scores and of the final logits.
    pub softcapping: Softcapping,
}

impl ModelSpec {
    /// Total number of decoder layers.
    pub fn num_layers(&self) -> u64 {
        self.layers.iter().map(|group| group.count).sum()
    }

    /// What the memory estimates do not model yet in this architecture, if
    /// anything: its parameters are counted exactly, but a memory figure would
    /// be a guess, so the estimators refuse it naming this. `generate` asks
    /// about transformers' `generate()`, which models gated `DeltaNet` layers
    /// and output gates; training and the serving engines do not yet.
    pub fn unmodelled_memory(&self, generate: bool) -> Option<&'static str> {
        let layers = || self.layers.iter().map(|group| &group.layer.attention);
        if layers().any(|a| a.tensors.iter().any(|t| t.name == DSA_INDEXER_NORM)) {
            return Some("DeepSeek Sparse Attention's indexer (its key cache and top-k scores)");
        }
        if layers().any(|a| matches!(a.kind, AttentionKind::ShortConv { .. })) {
            return Some("short-convolution layers (LFM2)");
        }
        if matches!(self.model_type.as_str(), "llama4" | "llama4_text") {
            return Some(
                "Llama 4's chunked attention and its MoE block (transformers runs every expert on \
                 every token)",
            );
        }
        if layers().any(|a| a.projections.iter().any(|p| p.name == FUSED_DELTA_NET_PROJECTION)) {
            return Some("Qwen3-Next's gated DeltaNet layout (its fused projections)");
        }
        if generate {
            // The prefill's attention point is taken in the last layer; a model
            // ending in a gated DeltaNet layer would need it from an earlier one.
            let last = self.layers.last().map(|group| &group.layer.attention.kind);
            if matches!(last, Some(AttentionKind::GatedDeltaNet(_))) {
                return Some("a gated DeltaNet layer as the last layer");
            }
            return None;
        }
        if layers().any(|a| matches!(a.kind, AttentionKind::GatedDeltaNet(_))) {
            return Some("gated DeltaNet (linear-attention) layers");
        }
        if layers().any(|a| a.output_gate) {
            return Some("attention with an output gate (`attn_output_gate`)");
        }
        None
    }
}

/// Names of a standard attention's projections.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum QkvNames {
    /// `q_proj`, `k_proj`, `v_proj` and the given output name (`o_proj`, `out_proj`, `dense`).
    Separate(&'static str),
    /// One fused projection (`qkv_proj`, `c_attn`, `query_key_value`) and the given output name.
    Fused(&'static str, &'static str),
}

/// Biases of a standard attention.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct AttentionBias {
    /// Bias on the query/key/value projections.
    pub qkv: bool,
    /// Bias on the output projection.
    pub output: bool,
}

/// The projections of multi-head / grouped-query attention: queries
/// `hidden → heads·head_dim`, keys and values `hidden → kv_heads·head_dim`
/// each, output `heads·head_dim → hidden`. Source: `LlamaAttention.__init__`
/// in transformers (and the same shapes fused in GPT-2, GPT-NeoX, Falcon, Phi-3).
pub fn standard_attention_projections(
    names: QkvNames,
    hidden: u64,
    num_heads: u64,
    num_kv_heads: u64,
    head_dim: u64,
    bias: AttentionBias,
) -> Vec<Linear> {
    let q_out = num_heads * head_dim;
    let kv_out = num_kv_heads * head_dim;
    match names {
        QkvNames::Separate(output) => vec![
            Linear::new("q_proj", hidden, q_out, bias.qkv),
            Linear::new("k_proj", hidden, kv_out, bias.qkv),
            Linear::new("v_proj", hidden, kv_out, bias.qkv),
            Linear::new(output, q_out, hidden, bias.output),
        ],
        QkvNames::Fused(fused, output) => vec![
            Linear::new(fused, hidden, q_out + 2 * kv_out, bias.qkv),
            Linear::new(output, q_out, hidden, bias.output),
        ],
    }
}

/// Multi-head latent attention's projections and norms (DeepSeek-V2/V3,
/// `DeepseekV3Attention` in transformers): queries either directly
/// (`q_proj`) or through a `q_lora_rank` bottleneck with an RMSNorm
/// (`q_a_proj`, `q_a_layernorm`, `q_b_proj`); keys/values through
/// `kv_a_proj_with_mqa` to `kv_lora_rank + qk_rope_head_dim`, an RMSNorm
/// over the latent, and `kv_b_proj` back to per-head nope-keys and values.
pub fn latent_attention(hidden: u64, num_heads: u64, dims: LatentDims, bias: bool) -> Attention {
    let qk_head_dim = dims.qk_nope_head_dim + dims.qk_rope_head_dim;
    let mut projections = Vec::new();
    let mut tensors = Vec::new();
    match dims.q_lora_rank {
        None => projections.push(Linear::new("q_proj", hidden, num_heads * qk_head_dim, false)),
        Some(rank) => {
            projections.push(Linear::new("q_a_proj", hidden, rank, bias));
            tensors.push(norm("q_a_layernorm.weight", NormKind::Rms, rank));
            projections.push(Linear::new("q_b_proj", rank, num_heads * qk_head_dim, false));
        }
    }
    projections.push(Linear::new(
        "kv_a_proj_with_mqa",
        hidden,
        dims.kv_lora_rank + dims.qk_rope_head_dim,
        bias,
    ));
    tensors.push(norm("kv_a_layernorm.weight", NormKind::Rms, dims.kv_lora_rank));
    projections.push(Linear::new(
        "kv_b_proj",
        dims.kv_lora_rank,
        num_heads * (dims.qk_nope_head_dim + dims.v_head_dim),
        false,
    ));
    projections.push(Linear::new("o_proj", num_heads * dims.v_head_dim, hidden, bias));
    Attention {
        kind: AttentionKind::Latent(dims),
        num_heads,
        num_kv_heads: num_heads,
        head_dim: qk_head_dim,
        sliding_window: None,
        rope: true,
        output_gate: false,
        scaled_queries: false,
        projections,
        tensors,
    }
}
