//! `vramfit infer` and `vramfit train`: flags → workload → estimate → table or JSON.

use anyhow::{Context as _, Result, bail};
use vramfit_core::dtype::{FloatType, WeightFormat};
use vramfit_core::lora::LoraConfig;
use vramfit_core::memory::runtime::{Kernels, MIB, Runtime};
use vramfit_core::memory::{MemoryEstimate, estimate};
use vramfit_core::solve::{
    Cluster, DEFAULT_GPUS_PER_NODE, DEFAULT_MAX_GPUS, fewest_gpus, fits, layer_split_gpus,
};
use vramfit_core::spec::ModelSpec;
use vramfit_core::workload::{
    AttentionImpl, Inference, KvCacheType, Method, Optimizer, OptimizerImpl, Precision, Training,
    Workload,
};
use vramfit_report::{EstimateDocument, GpuVerdict};
use vramfit_sources::ResolvedModel;
use vramfit_sources::gpus::{Gpu, find_gpu};

use vramfit_core::parallel::{Layout, Offload, Strategy};

use crate::cli::{
    AttnArg, CommonArgs, DtypeArg, EngineArg, InferArgs, InferFlags, KernelsArg, KvDtypeArg,
    LayoutArgs, LoraArgs, MethodArg, OffloadArg, OptimizerArg, OptimizerImplArg, PrecisionArg,
    RuntimeArgs, StrategyArg, TrainArgs, TrainFlags,
};
use crate::commands::params::lora_config;
use crate::commands::serve;
use crate::render::{gb, gib, table};

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
    Inference {
        weights,
        kv_cache,
        batch_size: common.batch_size,
        prompt_len: flags.prompt_len,
        gen_len: flags.gen_len,
        attention: attention(common.attn),
    }
}

pub(crate) fn layout(args: &LayoutArgs) -> Layout {
    Layout {
        gpus: args.gpus,
        nodes: args.nodes,
        strategy: match args.strategy {
            StrategyArg::Ddp => Strategy::Ddp,
            StrategyArg::Zero1 => Strategy::Zero1,
            StrategyArg::Zero2 => Strategy::Zero2,
            StrategyArg::Zero3 => Strategy::Zero3,
            StrategyArg::Fsdp => Strategy::Fsdp,
            StrategyArg::FsdpShardGradOp => Strategy::FsdpShardGradOp,
            StrategyArg::Hybrid => Strategy::Hybrid,
        },
        tp: args.tp,
        pp: args.pp,
        offload: match args.offload {
            OffloadArg::None => Offload::None,
            OffloadArg::Optimizer => Offload::Optimizer,
            OffloadArg::Params => Offload::Params,
        },
    }
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
    Ok(Training {
        method,
        precision: match flags.precision {
            PrecisionArg::Fp32 => Precision::Fp32,
            PrecisionArg::Bf16 => Precision::Bf16,
            PrecisionArg::Fp16 => Precision::Fp16,
            PrecisionArg::Bf16Mixed => Precision::Bf16Mixed,
            PrecisionArg::Fp16Mixed => Precision::Fp16Mixed,
        },
        optimizer: match flags.optimizer {
            OptimizerArg::Adamw => Optimizer::Adamw,
            OptimizerArg::Adamw8bit => Optimizer::Adamw8bit,
            OptimizerArg::PagedAdamw8bit => Optimizer::PagedAdamw8bit,
            OptimizerArg::Adafactor => Optimizer::Adafactor,
            OptimizerArg::Sgd => Optimizer::Sgd,
            OptimizerArg::SgdMomentum => Optimizer::SgdMomentum,
            OptimizerArg::Lion => Optimizer::Lion,
        },
        optimizer_impl: match flags.optimizer_impl {
            OptimizerImplArg::Foreach => OptimizerImpl::Foreach,
            OptimizerImplArg::Fused => OptimizerImpl::Fused,
            OptimizerImplArg::Forloop => OptimizerImpl::Forloop,
        },
        batch_size: common.batch_size,
        seq_len: flags.seq_len,
        grad_accum: flags.grad_accum,
        grad_checkpointing: flags.grad_ckpt,
        attention: attention(common.attn),
        lora: adapters,
        layout: Layout::SINGLE,
    })
}

/// The runtime for the chosen GPU (or Hopper defaults), with overrides.
pub(crate) fn runtime(args: &RuntimeArgs) -> Result<(Runtime, Option<&'static Gpu>)> {
    let gpu = match &args.gpu {
        None => None,
        Some(name) => Some(find_gpu(name).map_err(|close| {
            anyhow::anyhow!(
                "--gpu: unknown GPU `{name}` (known: {}; see `vramfit gpus`)",
                close.join(", ")
            )
        })?),
    };
    let runtime = overrides(gpu.map_or(Runtime::HOPPER, Gpu::runtime), args)?;
    Ok((runtime, gpu))
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

/// What the chosen GPU cannot run: FP8 needs compute capability 8.9 (Ada,
/// Hopper), FlashAttention-2 needs 8.0 (Ampere). Native bf16 also needs 8.0;
/// older GPUs emulate it slowly, which is a warning, not an error.
fn check_gpu(gpu: Option<&Gpu>, workload: &Workload) -> Result<Vec<String>> {
    let Some(gpu) = gpu else { return Ok(Vec::new()) };
    let capability = gpu.capability();
    let (attention, uses_fp8, uses_bf16) = match workload {
        Workload::Inference(i) => (
            i.attention,
            i.weights == WeightFormat::Fp8,
            i.weights.compute_type() == FloatType::Bf16
                || i.kv_cache == KvCacheType::Float(FloatType::Bf16),
        ),
        Workload::Training(t) => (
            t.attention,
            false,
            matches!(t.precision, Precision::Bf16 | Precision::Bf16Mixed)
                || t.method == Method::Qlora,
        ),
    };
    if uses_fp8 && capability < (8, 9) {
        bail!(
            "--dtype fp8 needs compute capability 8.9 (Ada or Hopper); {} has {}",
            gpu.name,
            gpu.compute_capability
        );
    }
    if attention == AttentionImpl::Flash && capability < (8, 0) {
        bail!(
            "--attn flash (FlashAttention-2) needs compute capability 8.0; {} has {}",
            gpu.name,
            gpu.compute_capability
        );
    }
    let mut warnings = Vec::new();
    if uses_bf16 && capability < (8, 0) {
        warnings.push(format!(
            "{} (compute capability {}) has no native bf16; PyTorch emulates it slowly — fp16 is the usual choice there",
            gpu.name, gpu.compute_capability
        ));
    }
    Ok(warnings)
}

pub(crate) fn run_infer(args: &InferArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let (runtime, gpu) = runtime(&args.runtime)?;
    let workload = Workload::Inference(inference_workload(&args.common, &args.infer));
    let model = crate::commands::resolve(&args.model)?;
    let engine = serve::engine_for(&args.engine, &model);
    serve::validate(&args.engine, engine)?;
    if engine != EngineArg::Transformers {
        return serve::run(args, engine, &model, &runtime, gpu, out);
    }
    let gpu_warnings = check_gpu(gpu, &workload)?;
    let mut result = estimate(&model.parsed.spec, &workload, &runtime)?;
    result.notes.extend(gpu_warnings);
    render(&model, &workload, &result, &runtime, gpu, args.runtime.json, out)
}

pub(crate) fn run_train(args: &TrainArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let (runtime, gpu) = runtime(&args.runtime)?;
    let mut training = training_workload(&args.common, &args.train, &args.lora)?;
    training.layout = layout(&args.layout);
    let workload = Workload::Training(training);
    let gpu_warnings = check_gpu(gpu, &workload)?;
    let model = crate::commands::resolve(&args.model)?;
    let mut result = estimate(&model.parsed.spec, &workload, &runtime)?;
    result.notes.extend(gpu_warnings);
    render(&model, &workload, &result, &runtime, gpu, args.runtime.json, out)
}

/// The workload in words; `batch` names the training batch ("batch", "micro-batch").
pub(crate) fn describe(workload: &Workload, batch: &str) -> String {
    match workload {
        Workload::Inference(i) => format!(
            "inference, {} weights, batch {}, prompt {}, generate {}",
            i.weights.name(),
            i.batch_size,
            i.prompt_len,
            i.gen_len
        ),
        Workload::Training(t) => format!(
            "training ({}, {}, {}), {batch} {} × seq {}{}",
            t.method.name(),
            t.precision.name(),
            t.optimizer.name(),
            t.batch_size,
            t.seq_len,
            if t.grad_checkpointing { ", gradient checkpointing" } else { "" }
        ),
    }
}

/// The fit verdict on one GPU.
pub(crate) struct Verdict {
    pub(crate) fits: bool,
    pub(crate) headroom: i128,
    /// Inference: GPUs for a layer-by-layer split. Training on one GPU: the
    /// fewest GPUs `vramfit fit` finds (None beyond its search). Training
    /// already spread over GPUs: None (the estimate is per GPU).
    pub(crate) gpus_needed: Option<u64>,
    /// The layout behind `gpus_needed` when training.
    pub(crate) plan: Option<Layout>,
}

/// Fits when the device total is within the GPU's memory.
fn verdict(
    spec: &ModelSpec,
    workload: &Workload,
    result: &MemoryEstimate,
    runtime: &Runtime,
    gpu: &Gpu,
) -> Result<Verdict> {
    let capacity = gpu.memory_bytes();
    let fits = fits(result, capacity);
    let (gpus_needed, plan) = match workload {
        Workload::Inference(_) => (Some(layer_split_gpus(result, capacity)), None),
        Workload::Training(t) if t.layout.gpus > 1 => (None, None),
        Workload::Training(_) if fits => (Some(1), None),
        Workload::Training(t) => {
            let cluster = Cluster {
                capacity,
                max_gpus: DEFAULT_MAX_GPUS,
                gpus_per_node: DEFAULT_GPUS_PER_NODE,
            };
            let plan = fewest_gpus(spec, t, runtime, &cluster)?;
            (plan.as_ref().map(|p| p.layout.gpus), plan.map(|p| p.layout))
        }
    };
    Ok(Verdict {
        fits,
        headroom: i128::from(capacity) - i128::from(result.device_total_bytes),
        gpus_needed,
        plan,
    })
}

fn render(
    model: &ResolvedModel,
    workload: &Workload,
    result: &MemoryEstimate,
    runtime: &Runtime,
    gpu: Option<&Gpu>,
    as_json: bool,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let verdict = match gpu {
        Some(g) => Some((g, verdict(&model.parsed.spec, workload, result, runtime, g)?)),
        None => None,
    };
    if as_json {
        let gpu = verdict.as_ref().map(|(g, v)| GpuVerdict {
            name: g.name.clone(),
            memory_bytes: g.memory_bytes(),
            fits: v.fits,
            headroom_bytes: v.headroom,
            gpus_needed: v.gpus_needed,
            plan: v.plan,
        });
        let document = EstimateDocument::new(model, workload, result, runtime, gpu);
        writeln!(out, "{}", serde_json::to_string_pretty(&document)?)?;
        return Ok(());
    }
    for warning in &model.parsed.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    let what = describe(workload, "batch");
    writeln!(out, "{}  ({}) — {what}", model.origin.describe(), model.parsed.spec.model_type)?;
    writeln!(
        out,
        "params: {} total, {} trainable",
        crate::render::grouped(result.params_total),
        crate::render::grouped(result.params_trainable)
    )?;
    writeln!(out, "peak in phase `{}`; per GPU", result.peak_phase)?;
    let rows = crate::render::parts_table(result.peak_parts(), result.peak_allocated_bytes);
    writeln!(out, "{rows}")?;
    let mut totals = table(&["level", "GiB", "GB", "what it is"], &[1, 2]);
    totals.add_row(vec![
        "allocated (peak)".to_owned(),
        gib(result.peak_allocated_bytes),
        gb(result.peak_allocated_bytes),
        "tensors at the peak: torch.cuda.max_memory_allocated".to_owned(),
    ]);
    totals.add_row(vec![
        "reserved".to_owned(),
        gib(result.peak_reserved_bytes),
        gb(result.peak_reserved_bytes),
        format!(
            "+ allocator cache ({:.0} %): max_memory_reserved",
            runtime.reserved_overhead * 100.0
        ),
    ]);
    totals.add_row(vec![
        "device total".to_owned(),
        gib(result.device_total_bytes),
        gb(result.device_total_bytes),
        format!(
            "+ CUDA context {} MiB{}: what nvidia-smi shows, what decides OOM",
            result.cuda_context_bytes / MIB,
            if result.outside_allocator_bytes > 0 { " + NCCL / paged memory" } else { "" }
        ),
    ]);
    writeln!(out, "{totals}")?;
    let phases: Vec<String> =
        result.phases.iter().map(|p| format!("{} {} GiB", p.name, gib(p.bytes))).collect();
    writeln!(out, "phases: {}", phases.join(" · "))?;
    if let Some((gpu, v)) = verdict {
        let headroom = i64::try_from(v.headroom).unwrap_or(i64::MAX);
        let per_gpu = result.notes.iter().any(|n| n.starts_with("per GPU of"));
        if v.fits {
            writeln!(
                out,
                "fits on {} {}: {} GiB free of {} GiB",
                if per_gpu { "each" } else { "one" },
                gpu.display,
                gib(headroom.unsigned_abs()),
                gib(gpu.memory_bytes())
            )?;
        } else if per_gpu {
            writeln!(
                out,
                "does NOT fit: each {} would need {} GiB more than its {} GiB; add GPUs, shard more (zero3/fsdp), checkpoint activations (--grad-ckpt), or offload",
                gpu.display,
                gib(headroom.unsigned_abs()),
                gib(gpu.memory_bytes())
            )?;
        } else {
            let advice = match (workload, v.gpus_needed, v.plan) {
                (Workload::Inference(_), Some(n), _) => format!(
                    "split layer by layer (device_map=\"auto\"), it needs {n} × {}",
                    gpu.name
                ),
                (_, Some(n), Some(plan)) => format!(
                    "the fewest that fit are {n} × {} with --strategy {}{}{} (see `vramfit fit`)",
                    gpu.name,
                    plan.strategy.name(),
                    if plan.tp > 1 { format!(" --tp {}", plan.tp) } else { String::new() },
                    if plan.pp > 1 { format!(" --pp {}", plan.pp) } else { String::new() },
                ),
                _ => format!(
                    "no layout of up to {DEFAULT_MAX_GPUS} GPUs fits (see `vramfit fit --max-gpus`)"
                ),
            };
            writeln!(
                out,
                "does NOT fit on one {}: {} GiB over its {} GiB; {advice}",
                gpu.display,
                gib(headroom.unsigned_abs()),
                gib(gpu.memory_bytes()),
            )?;
        }
    }
    if result.host_bytes > 0 {
        writeln!(
            out,
            "host memory for offloaded states/parameters: {} GiB per GPU process",
            gib(result.host_bytes)
        )?;
    }
    for note in &result.notes {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}
