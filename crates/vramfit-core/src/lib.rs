/*!
The pure core of vramfit: model architecture in, exact counts and bytes out.

This crate does no I/O and prints nothing; `vramfit-sources` turns files into
a [`ModelSpec`] (its crate docs open with a catalog model's LoRA estimate),
and the `vramfit` CLI renders results. The settings carry the frameworks'
defaults ([`workload::Training::default`], [`workload::Training::lora`],
[`workload::Inference::default`], [`lora::LoraConfig::default`]); an invalid
one is a [`CoreError::InvalidWorkload`] naming the [`Setting`].

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
    rope: true,
    output_gate: false,
    scaled_queries: false,
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

// One LoRA step on it: the frozen weights, the adapters and what the step keeps.
use vramfit_core::memory::{estimate, runtime::Runtime};
use vramfit_core::workload::{Training, Workload};
let memory = estimate(&spec, &Workload::Training(Training::lora()), &Runtime::HOPPER).unwrap();
assert!(memory.peak_allocated_bytes > 2 * counts.total); // at least the bf16 base
assert_eq!(memory.params_trainable, 8 * (64 + 64) * 2 + 8 * (64 + 32) * 2 + 8 * (64 + 176) * 3);

// A zero batch is refused, naming the setting.
let zero = Training::lora().with(|t| t.batch_size = 0);
let error = estimate(&spec, &Workload::Training(zero), &Runtime::HOPPER).unwrap_err();
assert!(matches!(error,
    vramfit_core::CoreError::InvalidWorkload { setting: vramfit_core::Setting::BatchSize, .. }));
```
*/

/// `with(|x| x.field = value)`: a setting changed in one expression. The
/// settings are `#[non_exhaustive]` (they grow as frameworks do), so they are
/// built from their defaults and changed, never spelled out whole.
macro_rules! with_method {
    ($($ty:ty),+ $(,)?) => {$(
        impl $ty {
            /// This value with `change` applied.
            #[must_use]
            pub fn with(mut self, change: impl FnOnce(&mut Self)) -> Self {
                change(&mut self);
                self
            }
        }
    )+};
}

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

pub use error::{CoreError, Setting};

with_method!(
    workload::Training,
    workload::Inference,
    lora::LoraConfig,
    parallel::Layout,
    memory::runtime::Runtime,
    serving::paged::PagedSettings,
    serving::llamacpp::LlamaCppSettings,
);
pub use spec::ModelSpec;

#[cfg(test)]
pub(crate) mod toy;
