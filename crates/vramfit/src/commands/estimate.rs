//! `vramfit infer` and `vramfit train`: flags → workload → estimate → table or JSON.

use anyhow::{Result, bail};
use vramfit_core::dtype::{FloatType, WeightFormat};
use vramfit_core::memory::runtime::{MIB, Runtime};
use vramfit_core::memory::{MemoryEstimate, estimate};
use vramfit_core::solve::{
    Cluster, DEFAULT_GPUS_PER_NODE, DEFAULT_MAX_GPUS, fewest_gpus, fits, layer_split_gpus,
};
use vramfit_core::spec::ModelSpec;
use vramfit_core::workload::{AttentionImpl, KvCacheType, Method, Precision, Workload};
use vramfit_report::{EstimateDocument, GpuVerdict};
use vramfit_sources::ResolvedModel;
use vramfit_sources::gpus::{Gpu, Platform};

use vramfit_core::parallel::Layout;

use crate::cli::{EngineArg, InferArgs, TrainArgs};
use crate::commands::serve;
use crate::render::{gb, gib, table};
use crate::settings::{inference_workload, layout, runtime, training_workload};

/// The device features a job uses: `(feature, its support on gpu, why it is needed)`.
fn features(gpu: &Gpu, workload: &Workload) -> [(bool, Option<bool>, &'static str); 3] {
    let (attention, uses_fp8, uses_bnb) = match workload {
        Workload::Inference(i) => (
            i.attention,
            i.weights == WeightFormat::Fp8,
            matches!(i.weights, WeightFormat::Int8 | WeightFormat::Nf4),
        ),
        Workload::Training(t) => (t.attention, false, t.method == Method::Qlora),
    };
    [
        (
            uses_fp8,
            gpu.fp8,
            "--dtype fp8 needs FP8 units (NVIDIA Ada, Hopper and Blackwell; AMD CDNA3 and later)",
        ),
        (
            attention == AttentionImpl::Flash,
            gpu.flash_attention_2,
            "--attn flash needs FlashAttention-2 kernels (NVIDIA Ampere and later; AMD through ROCm's CK backend; none for Metal, Intel or Gaudi)",
        ),
        (
            uses_bnb,
            gpu.bitsandbytes,
            "bitsandbytes (int8, nf4, QLoRA) needs a backend for the device",
        ),
    ]
}

/// Why `gpu` cannot run `workload`, in words that do not name the device (so
/// that a sweep can group the devices left out for one reason): the first
/// feature the job uses that the catalog's source says the device lacks.
pub(crate) fn refusal(gpu: &Gpu, workload: &Workload) -> Option<&'static str> {
    features(gpu, workload)
        .into_iter()
        .find(|(used, support, _)| *used && *support == Some(false))
        .map(|(_, _, why)| why)
}

/// The features a job uses whose support on `gpu` no source states.
pub(crate) fn unknown_support(gpu: &Gpu, workload: &Workload) -> Vec<&'static str> {
    if gpu.memory_from == vramfit_sources::gpus::MemoryFrom::Given {
        return Vec::new();
    }
    features(gpu, workload)
        .into_iter()
        .filter(|(used, support, _)| *used && support.is_none())
        .map(|(_, _, why)| why.split(" needs ").next().unwrap_or(why))
        .collect()
}

/// What the chosen accelerator cannot run, from the catalog's sourced support
/// flags (see [`refusal`]): an error where the catalog says no, a warning where
/// it does not know. No native bf16 is a warning: PyTorch emulates it slowly.
/// Then what is modelled but not measured on the device's platform.
pub(crate) fn check_gpu(gpu: Option<&Gpu>, workload: &Workload) -> Result<Vec<String>> {
    let Some(gpu) = gpu else { return Ok(Vec::new()) };
    let uses_bf16 = match workload {
        Workload::Inference(i) => {
            i.weights.compute_type() == FloatType::Bf16
                || i.kv_cache == KvCacheType::Float(FloatType::Bf16)
        }
        Workload::Training(t) => {
            matches!(t.precision, Precision::Bf16 | Precision::Bf16Mixed)
                || t.method == Method::Qlora
        }
    };
    let capability = gpu
        .compute_capability
        .as_ref()
        .map(|c| format!(" (compute capability {c})"))
        .unwrap_or_default();
    if let Some(why) = refusal(gpu, workload) {
        bail!("{why}; the {}{capability} is not among them", gpu.display);
    }
    let mut warnings: Vec<String> = unknown_support(gpu, workload)
        .into_iter()
        .map(|what| {
            format!(
                "{what}: whether {} runs it is not known (no source found); the estimate assumes it does",
                gpu.name
            )
        })
        .collect();
    if uses_bf16 && gpu.bf16 == Some(false) {
        warnings.push(format!(
            "{}{capability} has no native bf16; PyTorch emulates it slowly — fp16 is the usual choice there",
            gpu.name
        ));
    }
    warnings.extend(gpu.platform_notes());
    if gpu.limit().is_some_and(|l| gpu.unified_memory && l == gpu.total_bytes()) {
        warnings.push(format!(
            "--gpu-limit gives the GPU all of {}'s memory: the system and other programs need some of it",
            gpu.name
        ));
    }
    warnings.extend(gpu.limit_note());
    Ok(warnings)
}

pub(crate) fn run_infer(args: &InferArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let listed = crate::settings::gpu_list(&args.runtime)?;
    let workload = Workload::Inference(inference_workload(&args.common, &args.infer));
    let mut model = crate::commands::resolve(&args.model)?;
    crate::commands::check_context(&mut model, &workload)?;
    let engine = serve::engine_for(&args.engine, &model);
    serve::validate(&args.engine, engine)?;
    if engine == EngineArg::LlamaCpp && listed.len() > 1 {
        let (runtime, _) = crate::settings::runtime_for(&args.runtime, listed[..1].to_vec())?;
        return serve::run_split(args, &model, &runtime, &listed, out);
    }
    if args.engine.tensor_split.is_some() {
        bail!("--tensor-split divides the layers over several GPUs: name them with --gpu a,b");
    }
    let (runtime, gpu) = crate::settings::runtime_for(&args.runtime, listed)?;
    if engine != EngineArg::Transformers {
        return serve::run(args, engine, &model, &runtime, gpu.as_ref(), out);
    }
    let gpu_warnings = check_gpu(gpu.as_ref(), &workload)?;
    let mut result = estimate(&model.parsed.spec, &workload, &runtime)?;
    result.notes.extend(gpu_warnings);
    render(&model, &workload, &result, &runtime, gpu.as_ref(), args.runtime.json, out)
}

pub(crate) fn run_train(args: &TrainArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let (runtime, gpu) = runtime(&args.runtime)?;
    let mut training = training_workload(&args.common, &args.train, &args.lora)?;
    training.layout = layout(&args.layout);
    if let Some(g) = &gpu
        && training.layout.gpus > 1
        && !g.works_with_others()
    {
        bail!(
            "--gpus {}: training across several {} devices is not modelled (NCCL, RCCL or HCCL: CUDA, ROCm and Gaudi)",
            training.layout.gpus,
            g.platform.name()
        );
    }
    let workload = Workload::Training(training);
    let gpu_warnings = check_gpu(gpu.as_ref(), &workload)?;
    let mut model = crate::commands::resolve(&args.model)?;
    crate::commands::check_context(&mut model, &workload)?;
    let mut result = estimate(&model.parsed.spec, &workload, &runtime)?;
    result.notes.extend(gpu_warnings);
    render(&model, &workload, &result, &runtime, gpu.as_ref(), args.runtime.json, out)
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
        Workload::Inference(_) if !gpu.works_with_others() => (fits.then_some(1), None),
        Workload::Inference(_) => (layer_split_gpus(result, spec, capacity), None),
        Workload::Training(t) if t.layout.gpus > 1 => (None, None),
        Workload::Training(_) if fits => (Some(1), None),
        Workload::Training(_) if !gpu.works_with_others() => (None, None),
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
    if let Some((_, v)) = &verdict {
        crate::commands::record_verdict(v.fits);
    }
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
        crate::render::write_json(out, &document)?;
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
        if gpu.is_some_and(|g| g.platform != Platform::Cuda && g.platform != Platform::Rocm) {
            "+ no CUDA context: what decides OOM on the device".to_owned()
        } else {
            format!(
                "+ CUDA context {} MiB{}: what nvidia-smi shows, what decides OOM",
                result.cuda_context_bytes / MIB,
                if result.outside_allocator_bytes > 0 { " + NCCL / paged memory" } else { "" }
            )
        },
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
                "{} on {} {}: {} GiB free of {} GiB",
                crate::render::verdict_word(true, "fits"),
                if per_gpu { "each" } else { "one" },
                gpu.display,
                gib(headroom.unsigned_abs()),
                gib(gpu.memory_bytes())
            )?;
        } else if per_gpu {
            writeln!(
                out,
                "{}: each {} would need {} GiB more than its {} GiB; add GPUs, shard more (zero3/fsdp), checkpoint activations (--grad-ckpt), or offload",
                crate::render::verdict_word(false, "does NOT fit"),
                gpu.display,
                gib(headroom.unsigned_abs()),
                gib(gpu.memory_bytes())
            )?;
        } else {
            let advice = match (workload, v.gpus_needed, v.plan) {
                _ if !gpu.works_with_others() => format!(
                    "{} devices do not work on one job together here (one per machine, or not modelled): use a larger one, shorten the sequence, or quantize",
                    gpu.platform.name()
                ),
                (Workload::Inference(_), Some(n), _) => format!(
                    "split layer by layer (device_map=\"auto\"), it needs {n} × {}",
                    gpu.name
                ),
                (Workload::Inference(_), None, _) => format!(
                    "no layer-by-layer split fits either: one decoder layer's weights and KV cache with a CUDA context exceed one {}; shorten the prompt, batch fewer sequences, or quantize the weights or the cache",
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
                "{} on one {}: {} GiB over its {} GiB; {advice}",
                crate::render::verdict_word(false, "does NOT fit"),
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
