//! Between clap and the library: the flags turned into the core's settings
//! (workloads, layouts, runtimes, adapters), and each [`Setting`] a core
//! error names shown as the flag that sets it. Every command reads its
//! settings here, so none imports another.

use anyhow::{Context as _, Result, bail};
use vramfit_core::dtype::{FloatType, WeightFormat};
use vramfit_core::lora::{LoraConfig, LoraTargets};
use vramfit_core::memory::runtime::{Kernels, MIB, Runtime};
use vramfit_core::parallel::{Layout, Offload, Strategy};
use vramfit_core::workload::{
    AttentionImpl, Inference, KvCacheType, Method, Optimizer, OptimizerImpl, Precision, Training,
};
use vramfit_core::{CoreError, Setting};
use vramfit_sources::gpus::{Gpu, find_gpu};

use crate::cli::{
    AttnArg, CommonArgs, DtypeArg, InferFlags, KernelsArg, KvDtypeArg, LayoutArgs, LoraArgs,
    MethodArg, OffloadArg, OptimizerArg, OptimizerImplArg, PrecisionArg, RuntimeArgs, StrategyArg,
    TrainFlags,
};

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
        Setting::TensorSplit => "--tensor-split",
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

/// Turns the LoRA flags into a core setting; `None` when no LoRA flag is given.
pub(crate) fn lora_config(args: &LoraArgs) -> Result<Option<LoraConfig>> {
    let requested =
        args.rank.is_some() || args.targets.is_some() || args.dora || args.alpha.is_some();
    if !requested {
        return Ok(None);
    }
    let rank = args.rank.unwrap_or(LoraConfig::default().rank);
    if rank == 0 {
        bail!("--lora-r must be at least 1");
    }
    if let Some(alpha) = args.alpha
        && !(alpha.is_finite() && alpha > 0.0)
    {
        bail!("--lora-alpha must be a positive number, got {alpha}");
    }
    let targets = match args.targets.as_deref().map(str::trim) {
        None | Some("all-linear") => LoraTargets::AllLinear,
        Some(list) => {
            let names: Vec<String> = list
                .split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned)
                .collect();
            if names.is_empty() {
                bail!("--lora-targets needs module names (q_proj,v_proj) or `all-linear`");
            }
            if names.iter().any(|n| n == "all-linear") {
                bail!("--lora-targets: `all-linear` cannot be combined with module names");
            }
            LoraTargets::Modules(names)
        }
    };
    Ok(Some(LoraConfig::new(rank, targets).with(|c| c.dora = args.dora)))
}

pub(crate) fn attention(arg: AttnArg) -> AttentionImpl {
    match arg {
        AttnArg::Eager => AttentionImpl::Eager,
        AttnArg::Sdpa => AttentionImpl::Sdpa,
        AttnArg::Flash => AttentionImpl::Flash,
    }
}

pub(crate) fn inference_workload(common: &CommonArgs, flags: &InferFlags) -> Inference {
    let weights = match flags.dtype {
        DtypeArg::Fp32 => WeightFormat::Float(FloatType::F32),
        DtypeArg::Bf16 => WeightFormat::Float(FloatType::Bf16),
        DtypeArg::Fp16 => WeightFormat::Float(FloatType::F16),
        DtypeArg::Fp8 => WeightFormat::Fp8,
        DtypeArg::Int8 => WeightFormat::Int8,
        DtypeArg::Int4 => WeightFormat::Int4,
        DtypeArg::Nf4 => WeightFormat::Nf4,
    };
    let kv_cache = match flags.kv_dtype {
        None => KvCacheType::Float(weights.compute_type()),
        Some(KvDtypeArg::Fp32) => KvCacheType::Float(FloatType::F32),
        Some(KvDtypeArg::Bf16) => KvCacheType::Float(FloatType::Bf16),
        Some(KvDtypeArg::Fp16) => KvCacheType::Float(FloatType::F16),
        Some(KvDtypeArg::Fp8 | KvDtypeArg::Int8) => KvCacheType::OneByte,
    };
    Inference::default().with(|i| {
        i.weights = weights;
        i.kv_cache = kv_cache;
        i.batch_size = common.batch_size;
        i.prompt_len = flags.prompt_len;
        i.gen_len = flags.gen_len;
        i.attention = attention(common.attn);
    })
}

pub(crate) fn layout(args: &LayoutArgs) -> Layout {
    Layout::SINGLE.with(|l| {
        l.gpus = args.gpus;
        l.nodes = args.nodes;
        l.strategy = match args.strategy {
            StrategyArg::Ddp => Strategy::Ddp,
            StrategyArg::Zero1 => Strategy::Zero1,
            StrategyArg::Zero2 => Strategy::Zero2,
            StrategyArg::Zero3 => Strategy::Zero3,
            StrategyArg::Fsdp => Strategy::Fsdp,
            StrategyArg::FsdpShardGradOp => Strategy::FsdpShardGradOp,
            StrategyArg::Hybrid => Strategy::Hybrid,
        };
        l.tp = args.tp;
        l.pp = args.pp;
        l.offload = match args.offload {
            OffloadArg::None => Offload::None,
            OffloadArg::Optimizer => Offload::Optimizer,
            OffloadArg::Params => Offload::Params,
        };
    })
}

pub(crate) fn training_workload(
    common: &CommonArgs,
    flags: &TrainFlags,
    lora: &LoraArgs,
) -> Result<Training> {
    let method = match flags.method {
        MethodArg::Full => Method::Full,
        MethodArg::Lora => Method::Lora,
        MethodArg::Qlora => Method::Qlora,
    };
    let mut adapters = lora_config(lora)?;
    if method == Method::Full && adapters.is_some() {
        bail!("--lora-* flags need --method lora or --method qlora");
    }
    if method != Method::Full && adapters.is_none() {
        // The core's default adapters: PEFT's default rank on every linear layer.
        adapters = Some(LoraConfig::default());
    }
    Ok(Training::default().with(|t| {
        t.method = method;
        t.precision = match flags.precision {
            PrecisionArg::Fp32 => Precision::Fp32,
            PrecisionArg::Bf16 => Precision::Bf16,
            PrecisionArg::Fp16 => Precision::Fp16,
            PrecisionArg::Bf16Mixed => Precision::Bf16Mixed,
            PrecisionArg::Fp16Mixed => Precision::Fp16Mixed,
        };
        t.optimizer = match flags.optimizer {
            OptimizerArg::Adamw => Optimizer::Adamw,
            OptimizerArg::Adamw8bit => Optimizer::Adamw8bit,
            OptimizerArg::PagedAdamw8bit => Optimizer::PagedAdamw8bit,
            OptimizerArg::Adafactor => Optimizer::Adafactor,
            OptimizerArg::Sgd => Optimizer::Sgd,
            OptimizerArg::SgdMomentum => Optimizer::SgdMomentum,
            OptimizerArg::Lion => Optimizer::Lion,
        };
        t.optimizer_impl = match flags.optimizer_impl {
            OptimizerImplArg::Foreach => OptimizerImpl::Foreach,
            OptimizerImplArg::Fused => OptimizerImpl::Fused,
            OptimizerImplArg::Forloop => OptimizerImpl::Forloop,
        };
        t.batch_size = common.batch_size;
        t.seq_len = flags.seq_len;
        t.grad_accum = flags.grad_accum;
        t.grad_checkpointing = flags.grad_ckpt;
        t.attention = attention(common.attn);
        t.lora = adapters;
        t.layout = Layout::SINGLE;
    }))
}

/// The runtime for the chosen accelerator (or Hopper defaults), with overrides.
pub(crate) fn runtime(args: &RuntimeArgs) -> Result<(Runtime, Option<Gpu>)> {
    runtime_for(args, gpu_list(args)?)
}

/// `runtime` for GPUs already read with [`gpu_list`]: one at most.
pub(crate) fn runtime_for(
    args: &RuntimeArgs,
    mut gpus: Vec<Gpu>,
) -> Result<(Runtime, Option<Gpu>)> {
    if gpus.len() > 1 {
        bail!(
            "--gpu {}: several GPUs in one list are modelled for llama.cpp only (--engine llama.cpp, with --tensor-split); training shards over identical GPUs (--gpus N), and vLLM and SGLang split each layer evenly over identical GPUs (--tp N) — give one --gpu",
            args.gpu.as_deref().unwrap_or_default()
        );
    }
    let gpu = gpus.pop();
    let runtime = overrides(gpu.as_ref().map_or(Runtime::HOPPER, Gpu::runtime), args)?;
    Ok((runtime, gpu))
}

/// The accelerators `--gpu` names (a comma-separated list for llama.cpp),
/// with `--gpu-limit` applied.
pub(crate) fn gpu_list(args: &RuntimeArgs) -> Result<Vec<Gpu>> {
    let Some(list) = &args.gpu else { return Ok(Vec::new()) };
    let names: Vec<&str> = list.split(',').map(str::trim).collect();
    if names.iter().any(|n| n.is_empty()) {
        bail!("--gpu {list}: an empty name in the list");
    }
    if names.len() > 16 {
        bail!("--gpu: at most 16 GPUs in one list, got {}", names.len());
    }
    if names.len() > 1 && args.gpu_limit.is_some() {
        bail!("--gpu-limit applies to one --gpu; with a list, give each GPU as a size (24GiB)");
    }
    let mut gpus = Vec::with_capacity(names.len());
    for text in names {
        let gpu = resolve_gpu(text)?;
        gpus.push(match &args.gpu_limit {
            None => gpu,
            Some(limit) => {
                let bytes = vramfit_sources::gpus::parse_size(limit).with_context(|| {
                    format!(
                        "--gpu-limit: `{limit}` is not a size; give it with its unit: 24GiB, 100GB"
                    )
                })?;
                if bytes == 0 || bytes > gpu.total_bytes() {
                    bail!(
                        "--gpu-limit {limit} must be above zero and at most {}'s {} GiB",
                        gpu.name,
                        crate::render::gib(gpu.total_bytes())
                    );
                }
                gpu.with_limit(bytes)
            }
        });
    }
    if let Some(other) = gpus.iter().find(|g| g.platform != gpus[0].platform) {
        bail!(
            "--gpu {list}: {} ({}) and {} ({}) are driven by different platforms; llama.cpp splits a model over GPUs of one backend here",
            gpus[0].name,
            gpus[0].platform.name(),
            other.name,
            other.platform.name()
        );
    }
    Ok(gpus)
}

/// The smallest and largest accelerator memory `--gpu SIZE` takes: 1 GiB to 64 TiB.
const SIZE_RANGE: std::ops::RangeInclusive<u64> = (1 << 30)..=(64 << 40);

/// The accelerator `--gpu` names: `local`, a memory size, or a catalog name.
pub(crate) fn resolve_gpu(text: &str) -> Result<Gpu> {
    if text.trim().eq_ignore_ascii_case("local") {
        let mut found = crate::local::detect();
        if found.gpus.is_empty() {
            bail!(
                "--gpu local: no accelerator found on this machine ({}); name one (see `vramfit gpus`) or give its memory (--gpu 24GiB)",
                found.tried.join("; ")
            );
        }
        let count = found.gpus.len();
        let mut first = found.gpus.swap_remove(0);
        if count > 1 {
            first.display = format!("{} (the first of {count} on this machine)", first.display);
        }
        return Ok(first);
    }
    if let Some(bytes) = vramfit_sources::gpus::parse_size(text) {
        if !SIZE_RANGE.contains(&bytes) {
            bail!("--gpu {text}: a GPU's memory must be between 1 GiB and 64 TiB");
        }
        return Ok(Gpu::of_size(bytes, text));
    }
    let trimmed = text.trim();
    let digits = trimmed.trim_end_matches(|c: char| c.is_ascii_alphabetic()).trim();
    if !digits.is_empty()
        && digits.chars().all(|c| c.is_ascii_digit() || c == '.')
        && vramfit_sources::gpus::parse_size(&format!("1{}", &trimmed[digits.len()..])).is_some()
    {
        bail!("--gpu {text}: a GPU's memory must be between 1 GiB and 64 TiB");
    }
    if trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        bail!(
            "--gpu {text}: give a memory size with its unit (24GiB, 80GB; GB = 10^9 bytes, GiB = 2^30), or a name from `vramfit gpus`"
        );
    }
    find_gpu(text).cloned().map_err(|close| {
        if close.len() < vramfit_sources::gpus::gpus().len() {
            let close: Vec<String> = close.iter().map(|n| format!("`{n}`")).collect();
            anyhow::anyhow!(
                "--gpu: unknown GPU `{text}`; did you mean {}? (`vramfit gpus` lists them all; a size such as 24GiB also works)",
                close.join(" or ")
            )
        } else {
            anyhow::anyhow!(
                "--gpu: unknown GPU `{text}` (see `vramfit gpus`; a size such as 24GiB also works)"
            )
        }
    })
}

/// `runtime` with the flags' overrides applied.
pub(crate) fn overrides(mut runtime: Runtime, args: &RuntimeArgs) -> Result<Runtime> {
    runtime.kernels = match args.kernels {
        KernelsArg::Cuda => Kernels::Cuda,
        KernelsArg::Cpu => Kernels::Cpu,
        KernelsArg::FakeCpu => Kernels::FakeCpu,
    };
    if let Some(mib) = args.cuda_context_mib {
        runtime.cuda_context_bytes =
            mib.checked_mul(MIB).context("--cuda-context-mib is too large")?;
    }
    if let Some(mib) = args.cublas_workspace_mib {
        if !(0.0..=65_536.0).contains(&mib) {
            bail!("--cublas-workspace-mib must be between 0 and 65536 MiB, got {mib}");
        }
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            clippy::cast_precision_loss,
            reason = "checked to lie in 0..=2^16 MiB"
        )]
        let bytes = (mib * MIB as f64).round() as u64;
        runtime.cublas_workspace_bytes = bytes;
    }
    if let Some(overhead) = args.reserved_overhead {
        if !(0.0..=10.0).contains(&overhead) {
            bail!("--reserved-overhead must be a fraction between 0 and 10, got {overhead}");
        }
        runtime.reserved_overhead = overhead;
    }
    Ok(runtime)
}

/// The kind of `error`, from the first cause in its chain that says.
pub(crate) fn classify(error: &anyhow::Error) -> crate::ErrorKind {
    use vramfit_sources::SourceError;
    for cause in error.chain() {
        if let Some(core) = cause.downcast_ref::<CoreError>() {
            // An architecture whose memory is not modelled is about the model, not a setting.
            if matches!(core, CoreError::NotModelled { .. }) {
                return crate::ErrorKind::Other;
            }
            return crate::ErrorKind::InvalidSetting {
                setting: match core {
                    CoreError::InvalidWorkload { setting, .. } => flag(*setting).to_owned(),
                    CoreError::InvalidLora { .. } => "--lora-targets".to_owned(),
                    _ => String::new(),
                },
            };
        }
        if let Some(source) = cause.downcast_ref::<SourceError>() {
            return match source {
                SourceError::UnknownModel { .. }
                | SourceError::NotCached { .. }
                | SourceError::NoConfig { .. } => crate::ErrorKind::ModelNotFound,
                SourceError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
                    crate::ErrorKind::ModelNotFound
                }
                // A repo the Hub does not have is a model not found, like one the
                // catalog does not have.
                SourceError::Hub { cause, .. }
                    if cause.downcast_ref::<vramfit_sources::hub::HubError>().is_some_and(
                        |e| matches!(e, vramfit_sources::hub::HubError::Status { status: 404, .. }),
                    ) =>
                {
                    crate::ErrorKind::ModelNotFound
                }
                SourceError::Hub { .. } => crate::ErrorKind::Hub,
                SourceError::Gguf { .. } => crate::ErrorKind::Header,
                _ => crate::ErrorKind::Other,
            };
        }
        if cause.downcast_ref::<vramfit_sources::hub::HubError>().is_some() {
            return crate::ErrorKind::Hub;
        }
        if cause.downcast_ref::<vramfit_sources::checkpoint::CheckpointError>().is_some()
            || cause.downcast_ref::<vramfit_sources::safetensors::SafetensorsError>().is_some()
            || cause.downcast_ref::<vramfit_sources::gguf::GgufError>().is_some()
        {
            return crate::ErrorKind::Header;
        }
    }
    // The CLI's own checks of its flags start with the flag they refuse.
    let text = error.to_string();
    match text
        .strip_prefix("--")
        .map(|rest| rest.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-')).next())
    {
        Some(Some(name)) if !name.is_empty() => {
            crate::ErrorKind::InvalidSetting { setting: format!("--{name}") }
        }
        _ => crate::ErrorKind::Other,
    }
}
