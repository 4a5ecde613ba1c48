/*!
What the GPU is asked to do: a Hugging Face `generate()` run, or one training
step as the Hugging Face Trainer runs it. Each starts from its defaults
([`Training::default`], [`Training::lora`], [`Inference::default`]) and is
changed with `with`; the estimate checks it, and a zero batch or an
impossible combination is a [`CoreError::InvalidWorkload`](crate::CoreError::InvalidWorkload) naming the
[`Setting`](crate::Setting) at fault.
*/

use serde::{Deserialize, Serialize};

use crate::dtype::{FloatType, WeightFormat};
use crate::lora::LoraConfig;
use crate::parallel::Layout;

/// How attention is computed, which decides whether `batch × heads × seq²`
/// scores are materialized.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum AttentionImpl {
    /// `attn_implementation="eager"`: explicit scores and softmax probabilities.
    Eager,
    /// `attn_implementation="sdpa"` (transformers' default): PyTorch's fused
    /// kernels (flash or memory-efficient) keep only the output and the logsumexp.
    Sdpa,
    /// `attn_implementation="flash_attention_2"`: the same saved tensors as SDPA's flash kernel.
    Flash,
}

/// A text-generation run.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct Inference {
    /// How weights are stored.
    pub weights: WeightFormat,
    /// The type of the KV cache (defaults to the compute type).
    pub kv_cache: KvCacheType,
    /// Sequences generated at once.
    pub batch_size: u64,
    /// Prompt tokens per sequence.
    pub prompt_len: u64,
    /// New tokens per sequence; 0 means one forward pass returning full logits.
    pub gen_len: u64,
    /// Attention implementation.
    pub attention: AttentionImpl,
}

/// The element type of the KV cache.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum KvCacheType {
    /// A float type (the compute type unless chosen).
    Float(FloatType),
    /// One byte per element (FP8 E4M3/E5M2 or int8 quantized caches).
    OneByte,
}

impl KvCacheType {
    /// Bytes per cached element.
    pub fn bytes(self) -> u64 {
        match self {
            KvCacheType::Float(float) => float.bytes(),
            KvCacheType::OneByte => 1,
        }
    }
}

/// Fine-tuning method.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Method {
    /// Every parameter is trained.
    Full,
    /// LoRA adapters on a frozen base in the training precision.
    Lora,
    /// LoRA adapters on a frozen NF4 base (bitsandbytes), computing in bf16/fp16.
    Qlora,
}

/// Numeric precision of training.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Precision {
    /// Weights, gradients, states and activations in fp32.
    Fp32,
    /// Everything in bf16 ("pure" / "bf16-true").
    Bf16,
    /// Everything in fp16.
    Fp16,
    /// Forward under `torch.autocast(bf16)` (HF Trainer's `bf16=True`): for full
    /// fine-tuning, fp32 master weights, gradients and states; for LoRA/QLoRA, a
    /// bf16 frozen base with fp32 adapters.
    Bf16Mixed,
    /// The same with fp16 autocast.
    Fp16Mixed,
}

impl Method {
    /// The CLI's name (`full`, `lora`, `qlora`).
    pub fn name(self) -> &'static str {
        match self {
            Method::Full => "full",
            Method::Lora => "lora",
            Method::Qlora => "qlora",
        }
    }
}

impl Optimizer {
    /// The CLI's name (`adamw`, `adamw-8bit`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Optimizer::Adamw => "adamw",
            Optimizer::Adamw8bit => "adamw-8bit",
            Optimizer::PagedAdamw8bit => "paged-adamw-8bit",
            Optimizer::Adafactor => "adafactor",
            Optimizer::Sgd => "sgd",
            Optimizer::SgdMomentum => "sgd-momentum",
            Optimizer::Lion => "lion",
        }
    }
}

impl Precision {
    /// The CLI's name (`bf16-mixed`, ...).
    pub fn name(self) -> &'static str {
        match self {
            Precision::Fp32 => "fp32",
            Precision::Bf16 => "bf16",
            Precision::Fp16 => "fp16",
            Precision::Bf16Mixed => "bf16-mixed",
            Precision::Fp16Mixed => "fp16-mixed",
        }
    }

    /// The dtype parameters (and so gradients and optimizer states) are stored in.
    pub fn param_type(self) -> FloatType {
        match self {
            Precision::Fp32 | Precision::Bf16Mixed | Precision::Fp16Mixed => FloatType::F32,
            Precision::Bf16 => FloatType::Bf16,
            Precision::Fp16 => FloatType::F16,
        }
    }

    /// The half type autocast computes matmuls in, for mixed precision.
    pub fn autocast_type(self) -> Option<FloatType> {
        match self {
            Precision::Bf16Mixed => Some(FloatType::Bf16),
            Precision::Fp16Mixed => Some(FloatType::F16),
            _ => None,
        }
    }
}

/// Optimizer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Optimizer {
    /// `torch.optim.AdamW`: two states per parameter.
    Adamw,
    /// `bitsandbytes.optim.AdamW8bit`: two 8-bit block-quantized states.
    #[serde(rename = "adamw-8bit")]
    Adamw8bit,
    /// `bitsandbytes.optim.PagedAdamW8bit`: the same in paged (unified) memory.
    #[serde(rename = "paged-adamw-8bit")]
    PagedAdamw8bit,
    /// `transformers.optimization.Adafactor`: factored second moment, no momentum.
    Adafactor,
    /// `torch.optim.SGD` without momentum: no state.
    Sgd,
    /// `torch.optim.SGD(momentum>0)`: one state per parameter.
    SgdMomentum,
    /// Lion (`bitsandbytes.optim.Lion`, 32-bit): one fp32 state per parameter.
    Lion,
}

/// How a torch optimizer iterates over parameters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum OptimizerImpl {
    /// `foreach=True`, torch's default on CUDA: multi-tensor kernels over all
    /// parameters at once, with full-size temporaries.
    Foreach,
    /// `fused=True`: one fused kernel, no full-size temporary.
    Fused,
    /// `foreach=False`: one parameter at a time.
    Forloop,
}

/// One training step.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct Training {
    /// Full fine-tuning, LoRA or QLoRA.
    pub method: Method,
    /// Precision.
    pub precision: Precision,
    /// Optimizer.
    pub optimizer: Optimizer,
    /// Optimizer implementation (torch optimizers only).
    pub optimizer_impl: OptimizerImpl,
    /// Micro-batch size.
    pub batch_size: u64,
    /// Tokens per sequence.
    pub seq_len: u64,
    /// Micro-batches per optimizer step (gradients persist between them).
    pub grad_accum: u64,
    /// Activation (gradient) checkpointing of every decoder layer.
    pub grad_checkpointing: bool,
    /// Attention implementation.
    pub attention: AttentionImpl,
    /// Adapters, for LoRA and QLoRA.
    pub lora: Option<LoraConfig>,
    /// How the job is spread over GPUs ([`Layout::SINGLE`] for one).
    pub layout: Layout,
}

/// Either workload.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case", tag = "mode")]
pub enum Workload {
    /// Inference.
    Inference(Inference),
    /// Training.
    Training(Training),
}

/// vramfit's default generation run: one sequence of a 1,024-token prompt and
/// 256 new tokens, bf16 weights and cache (the dtype most checkpoints ship
/// in), SDPA attention (transformers 5's default `attn_implementation`).
impl Default for Inference {
    fn default() -> Self {
        Inference {
            weights: WeightFormat::Float(FloatType::Bf16),
            kv_cache: KvCacheType::Float(FloatType::Bf16),
            batch_size: 1,
            prompt_len: 1024,
            gen_len: 256,
            attention: AttentionImpl::Sdpa,
        }
    }
}

/// vramfit's default training step: full fine-tuning of one micro-batch of
/// one 2,048-token sequence on one GPU, as the Hugging Face Trainer runs it
/// with `bf16=True` (autocast over fp32 master weights), `torch.optim.AdamW`
/// with `foreach` (torch's default on CUDA), no accumulation, no
/// checkpointing and SDPA attention. [`Training::lora`] gives the LoRA step.
impl Default for Training {
    fn default() -> Self {
        Training {
            method: Method::Full,
            precision: Precision::Bf16Mixed,
            optimizer: Optimizer::Adamw,
            optimizer_impl: OptimizerImpl::Foreach,
            batch_size: 1,
            seq_len: 2048,
            grad_accum: 1,
            grad_checkpointing: false,
            attention: AttentionImpl::Sdpa,
            lora: None,
            layout: Layout::SINGLE,
        }
    }
}

impl Training {
    /// The default step with LoRA adapters ([`LoraConfig::default`]) on a
    /// frozen base.
    pub fn lora() -> Self {
        Training { method: Method::Lora, lora: Some(LoraConfig::default()), ..Training::default() }
    }
}
