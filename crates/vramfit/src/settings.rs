//! The core's settings in the CLI's words: each [`Setting`] a core error names
//! is shown as the flag that sets it.

use vramfit_core::{CoreError, Setting};

/// The flag (or flags) that set `setting`.
pub(crate) fn flag(setting: Setting) -> &'static str {
    match setting {
        Setting::BatchSize => "--batch-size",
        Setting::SeqLen => "--seq-len",
        Setting::GradAccum => "--grad-accum",
        Setting::TrainingTokens => "--batch-size × --seq-len",
        Setting::PromptLen => "--prompt-len",
        Setting::RequestTokens => "--prompt-len + --gen-len",
        Setting::InferenceTokens => "--batch-size × (--prompt-len + --gen-len)",
        Setting::Method => "--method",
        Setting::LoraTargets => "--lora-targets",
        Setting::Precision => "--precision",
        Setting::Gpus => "--gpus",
        Setting::Nodes => "--nodes",
        Setting::PipelineParallel => "--pp",
        Setting::TensorParallel => "--tp",
        Setting::Strategy => "--strategy",
        Setting::Offload => "--offload",
        Setting::Engine => "--engine",
        Setting::KvCacheType => "--kv-dtype",
        Setting::CacheTypes => "--cache-type-k/--cache-type-v",
        Setting::CacheTypeV => "--cache-type-v",
        Setting::GpuMemoryUtilization => "--gpu-memory-utilization",
        Setting::BlockSize => "--block-size",
        Setting::MaxModelLen => "--max-model-len",
        Setting::MaxNumSeqs => "--max-num-seqs",
        Setting::MaxNumBatchedTokens => "--max-num-batched-tokens",
        Setting::MemFractionStatic => "--mem-fraction-static",
        Setting::PageSize => "--page-size",
        Setting::ContextLength => "--context-length",
        Setting::ContextCells => "--ctx-size",
        Setting::LogicalBatch => "--n-batch",
        Setting::PhysicalBatch => "--n-ubatch",
        // A setting added to the core later is named in the core's words.
        _ => setting.describe(),
    }
}

/// `error`'s message in the CLI's words: a setting the core names is shown
/// as its flag.
pub(crate) fn message(error: &(dyn std::error::Error + 'static)) -> String {
    match error.downcast_ref::<CoreError>() {
        Some(CoreError::InvalidWorkload { setting, reason }) => {
            format!("invalid {}: {reason}", flag(*setting))
        }
        _ => error.to_string(),
    }
}
