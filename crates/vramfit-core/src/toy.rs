//! Small hand-checkable models for unit tests.

use crate::spec::{
    Activation, Attention, AttentionBias, AttentionKind, BlockStyle, Dropout, FeedForward, Layer,
    LayerGroup, Linear, LmHead, MlpNames, ModelSpec, Moe, NormKind, NormStyle, PeftMoeNames,
    PositionEncoding, QkvNames, Softcapping, Tensor, dense_mlp, norm,
    standard_attention_projections,
};

/// Vocabulary 1000, hidden 64, 4 heads of 16 with 2 KV heads, MLP 176, untied head.
pub(crate) const V: u64 = 1000;
pub(crate) const H: u64 = 64;
pub(crate) const I: u64 = 176;

fn attention() -> Attention {
    Attention {
        kind: AttentionKind::Standard,
        num_heads: 4,
        num_kv_heads: 2,
        head_dim: 16,
        sliding_window: None,
        rope: true,
        output_gate: false,
        scaled_queries: false,
        projections: standard_attention_projections(
            QkvNames::Separate("o_proj"),
            H,
            4,
            2,
            16,
            AttentionBias::default(),
        ),
        tensors: vec![],
    }
}

fn spec(layers: Vec<LayerGroup>) -> ModelSpec {
    ModelSpec {
        model_type: "llama".into(),
        vocab_size: V,
        hidden_size: H,
        embeddings: vec![Tensor::new("embed_tokens.weight", V * H)],
        layers,
        final_norm: vec![norm("norm.weight", NormKind::Rms, H)],
        lm_head: LmHead {
            linear: Linear::new("lm_head", H, V, false),
            additional: None,
            tied: false,
        },
        extra_modules: vec![],
        max_position_embeddings: Some(4096),
        torch_dtype: Some("bfloat16".into()),
        norm_style: NormStyle::RmsCastBeforeWeight,
        positions: PositionEncoding::Rotary,
        activation: Activation::Silu,
        dropout: Dropout::default(),
        softcapping: Softcapping::default(),
    }
}

fn norms() -> Vec<Tensor> {
    vec![
        norm("input_layernorm.weight", NormKind::Rms, H),
        norm("post_attention_layernorm.weight", NormKind::Rms, H),
    ]
}

/// A two-layer Llama.
pub(crate) fn llama() -> ModelSpec {
    let layer = Layer {
        attention: attention(),
        feed_forward: FeedForward::Dense {
            intermediate_size: I,
            gated: true,
            linears: dense_mlp(MlpNames::GateUpDown, H, I, false),
        },
        norms: norms(),
        block: BlockStyle::PreNorm,
    };
    spec(vec![LayerGroup { count: 2, layer }])
}

/// A one-layer Mixtral with 4 experts of 32 (transformers 5 fused experts).
pub(crate) fn mixtral() -> ModelSpec {
    let (experts, size) = (4, 32);
    let layer = Layer {
        attention: attention(),
        feed_forward: FeedForward::Moe(Moe {
            num_experts: experts,
            experts_per_token: 2,
            expert_intermediate_size: size,
            gated: true,
            expert_linears: vec![],
            expert_tensors: vec![
                Tensor::new("experts.gate_up_proj", experts * 2 * size * H),
                Tensor::new("experts.down_proj", experts * size * H),
            ],
            router_linears: vec![],
            router_tensors: vec![Tensor::new("gate.weight", experts * H)],
            shared: vec![],
            shared_intermediate_size: 0,
            peft_names: Some(PeftMoeNames::Mixtral),
        }),
        norms: norms(),
        block: BlockStyle::PreNorm,
    };
    spec(vec![LayerGroup { count: 1, layer }])
}

/// A Llama-3-8B-shaped model (hidden 4096, 32 layers, 32 heads of 128 with 8
/// KV heads, MLP 14336, vocabulary 128256, untied): large enough that the
/// multi-GPU overheads do not dominate.
pub(crate) fn llama_8b() -> ModelSpec {
    let (hidden, heads, kv, head_dim, inter, vocab) = (4096, 32, 8, 128, 14336, 128_256);
    let layer = Layer {
        attention: Attention {
            kind: AttentionKind::Standard,
            num_heads: heads,
            num_kv_heads: kv,
            head_dim,
            sliding_window: None,
            rope: true,
            output_gate: false,
            scaled_queries: false,
            projections: standard_attention_projections(
                QkvNames::Separate("o_proj"),
                hidden,
                heads,
                kv,
                head_dim,
                AttentionBias::default(),
            ),
            tensors: vec![],
        },
        feed_forward: FeedForward::Dense {
            intermediate_size: inter,
            gated: true,
            linears: dense_mlp(MlpNames::GateUpDown, hidden, inter, false),
        },
        norms: vec![
            norm("input_layernorm.weight", NormKind::Rms, hidden),
            norm("post_attention_layernorm.weight", NormKind::Rms, hidden),
        ],
        block: BlockStyle::PreNorm,
    };
    ModelSpec {
        vocab_size: vocab,
        hidden_size: hidden,
        embeddings: vec![Tensor::new("embed_tokens.weight", vocab * hidden)],
        final_norm: vec![norm("norm.weight", NormKind::Rms, hidden)],
        lm_head: LmHead {
            linear: Linear::new("lm_head", hidden, vocab, false),
            additional: None,
            tied: false,
        },
        max_position_embeddings: Some(131_072),
        ..spec(vec![LayerGroup { count: 32, layer }])
    }
}
