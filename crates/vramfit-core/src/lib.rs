/*!
The pure core of vramfit: model architecture in, exact counts and bytes out.

This crate does no I/O and prints nothing; `vramfit-sources` turns files into
a [`ModelSpec`], and the `vramfit` CLI renders results.

```
use vramfit_core::spec::*;
use vramfit_core::params::count_params;

// A one-layer, Llama-shaped toy model.
let hidden = 64;
let attention = Attention {
    kind: AttentionKind::Standard,
    num_heads: 4,
    num_kv_heads: 2,
    head_dim: 16,
    sliding_window: None,
    projections: standard_attention_projections(
        QkvNames::Separate("o_proj"), hidden, 4, 2, 16, AttentionBias::default()),
    tensors: vec![],
};
let layer = Layer {
    attention,
    feed_forward: FeedForward::Dense {
        intermediate_size: 176,
        gated: true,
        linears: dense_mlp(MlpNames::GateUpDown, hidden, 176, false),
    },
    norms: vec![norm("input_layernorm.weight", NormKind::Rms, hidden),
                norm("post_attention_layernorm.weight", NormKind::Rms, hidden)],
    block: BlockStyle::PreNorm,
};
let spec = ModelSpec {
    model_type: "llama".into(),
    vocab_size: 1000,
    hidden_size: hidden,
    embeddings: vec![Tensor::new("embed_tokens.weight", 1000 * hidden)],
    layers: vec![LayerGroup { count: 1, layer }],
    final_norm: vec![norm("norm.weight", NormKind::Rms, hidden)],
    lm_head: LmHead { linear: Linear::new("lm_head", hidden, 1000, false), additional: None, tied: false },
    extra_modules: vec![],
    max_position_embeddings: Some(2048),
    torch_dtype: None,
    norm_style: NormStyle::RmsCastBeforeWeight,
    positions: PositionEncoding::Rotary,
    activation: Activation::Silu,
    dropout: Dropout::default(),
    softcapping: Softcapping::default(),
};
let counts = count_params(&spec).unwrap();
// embeddings + q,o (64·64 each) + k,v (64·32 each) + 3·64·176 + 2 norms + final norm + head
assert_eq!(counts.total, 64_000 + 2 * 4096 + 2 * 2048 + 3 * 11_264 + 3 * 64 + 64_000);
```
*/

pub mod dtype;
pub mod error;
pub mod lora;
pub mod memory;
pub mod parallel;
pub mod params;
pub mod rules;
pub mod serving;
pub mod solve;
pub mod spec;
pub mod workload;

pub use error::CoreError;
pub use spec::ModelSpec;

#[cfg(test)]
pub(crate) mod toy;
