//! Errors of the pure core.

/// Why the core could not compute something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A count or byte total does not fit in 64 bits: the input is absurd.
    #[error("{what} overflows 64 bits: the model or workload is too large to be real")]
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
    /// The architecture has parts whose memory vramfit does not model yet
    /// ([`crate::spec::ModelSpec::unmodelled_memory`]): its parameters are
    /// counted, but a memory figure would be a guess.
    #[error(
        "the memory of {what} in {context} is not modelled yet: vramfit counts this model's \
         parameters (`vramfit params`) but gives no memory figure it cannot stand behind"
    )]
    NotModelled {
        /// The parts not modelled.
        what: &'static str,
        /// Where: training, or an engine.
        context: &'static str,
    },
    /// A workload setting that cannot be run, naming the setting.
    #[error("invalid {setting}: {reason}")]
    InvalidWorkload {
        /// The setting at fault (front ends name it in their own words: the
        /// CLI by its flag).
        setting: Setting,
        /// What is wrong.
        reason: String,
    },
    /// A LoRA setting that PEFT would reject.
    #[error("invalid LoRA setting: {reason}")]
    InvalidLora {
        /// What is wrong, in the user's terms.
        reason: String,
    },
}

/// A setting of a workload, a layout or a serving engine, as the core names it
/// in [`CoreError::InvalidWorkload`]. Front ends map it to their own
/// vocabulary (the CLI to its flags, the web page to its form fields).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Setting {
    /// Sequences per step or per generation batch.
    BatchSize,
    /// Tokens per training sequence.
    SeqLen,
    /// Micro-batches per optimizer step.
    GradAccum,
    /// Tokens of one training step: batch size × sequence length.
    TrainingTokens,
    /// Prompt tokens per sequence.
    PromptLen,
    /// Tokens of one request: prompt plus generated tokens.
    RequestTokens,
    /// Tokens of one generation batch: batch size × (prompt + generated tokens).
    InferenceTokens,
    /// Full fine-tuning, LoRA or QLoRA.
    Method,
    /// The modules LoRA adapts.
    LoraTargets,
    /// The training precision.
    Precision,
    /// GPUs in all.
    Gpus,
    /// Nodes the GPUs are spread over.
    Nodes,
    /// Pipeline-parallel stages.
    PipelineParallel,
    /// Tensor-parallel ranks.
    TensorParallel,
    /// The data-parallel sharding strategy.
    Strategy,
    /// What is offloaded to the host.
    Offload,
    /// The serving engine.
    Engine,
    /// The element type of the KV cache.
    KvCacheType,
    /// llama.cpp's K and V cache types.
    CacheTypes,
    /// llama.cpp's V cache type.
    CacheTypeV,
    /// vLLM's share of the GPU.
    GpuMemoryUtilization,
    /// vLLM's tokens per KV block.
    BlockSize,
    /// vLLM's longest request.
    MaxModelLen,
    /// vLLM's most concurrent sequences.
    MaxNumSeqs,
    /// vLLM's most tokens in one scheduler step.
    MaxNumBatchedTokens,
    /// SGLang's static share of the GPU.
    MemFractionStatic,
    /// SGLang's tokens per KV page.
    PageSize,
    /// SGLang's longest request.
    ContextLength,
    /// llama.cpp's KV cells (`n_ctx`).
    ContextCells,
    /// llama.cpp's logical batch (`n_batch`).
    LogicalBatch,
    /// llama.cpp's physical batch (`n_ubatch`).
    PhysicalBatch,
    /// llama.cpp's shares of the layers per GPU (`--tensor-split`).
    TensorSplit,
}

impl Setting {
    /// The setting in words (`batch size`).
    pub fn describe(self) -> &'static str {
        match self {
            Setting::BatchSize => "batch size",
            Setting::SeqLen => "sequence length",
            Setting::GradAccum => "gradient accumulation steps",
            Setting::TrainingTokens => "batch size × sequence length",
            Setting::PromptLen => "prompt length",
            Setting::RequestTokens => "prompt + generated tokens",
            Setting::InferenceTokens => "batch size × (prompt + generated tokens)",
            Setting::Method => "training method",
            Setting::LoraTargets => "LoRA targets",
            Setting::Precision => "precision",
            Setting::Gpus => "GPU count",
            Setting::Nodes => "node count",
            Setting::PipelineParallel => "pipeline-parallel size",
            Setting::TensorParallel => "tensor-parallel size",
            Setting::Strategy => "sharding strategy",
            Setting::Offload => "host offload",
            Setting::Engine => "serving engine",
            Setting::KvCacheType => "KV-cache type",
            Setting::CacheTypes => "K and V cache types",
            Setting::CacheTypeV => "V cache type",
            Setting::GpuMemoryUtilization => "GPU memory utilization",
            Setting::BlockSize => "KV block size",
            Setting::MaxModelLen => "maximum model length",
            Setting::MaxNumSeqs => "maximum concurrent sequences",
            Setting::MaxNumBatchedTokens => "maximum batched tokens",
            Setting::MemFractionStatic => "static memory fraction",
            Setting::PageSize => "KV page size",
            Setting::ContextLength => "context length",
            Setting::ContextCells => "context cells",
            Setting::LogicalBatch => "logical batch",
            Setting::PhysicalBatch => "physical batch",
            Setting::TensorSplit => "tensor split",
        }
    }
}

impl std::fmt::Display for Setting {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.describe())
    }
}
