//! `vramfit fit MODEL`: the estimate inverted — how many GPUs, the largest
//! batch, the longest sequence, on one GPU kind or across the GPU catalog.

use anyhow::{Result, bail};
use vramfit_core::memory::{MemoryEstimate, estimate};
use vramfit_core::parallel::Layout;
use vramfit_core::solve::{
    Cluster, MAX_GPUS, Plan, fewest_gpus, largest_batch, layer_split_gpus, longest_sequence,
};
use vramfit_core::workload::Workload;
use vramfit_report::{FitAnswer, FitDocument, FitSearch, ModelName, SCHEMA_VERSION};
use vramfit_sources::gpus::Gpu;

use crate::cli::{EngineArg, FitArgs, ModeArg};
use crate::commands::estimate::describe;
use crate::render::{gib, table};
use crate::settings::{inference_workload, overrides, runtime, training_workload};

/// What the solvers found for one GPU kind.
struct Answer {
    gpu: Gpu,
    /// Training: the fewest GPUs and their layout. Inference: GPUs for a
    /// layer-by-layer split, with the one-GPU estimate.
    plan: Option<Plan>,
    /// Largest batch on the plan's layout (training) or on one GPU (inference).
    batch: Option<(u64, MemoryEstimate)>,
    /// Longest sequence (training) or prompt (inference), same layout.
    sequence: Option<(u64, MemoryEstimate)>,
}

fn solve(
    spec: &vramfit_core::spec::ModelSpec,
    workload: &Workload,
    gpu: Gpu,
    args: &FitArgs,
) -> Result<Answer> {
    let runtime = overrides(gpu.runtime(), &args.workload.runtime)?;
    let capacity = gpu.memory_bytes();
    // Several devices work together over NCCL (CUDA), RCCL (ROCm) or HCCL (Gaudi).
    let several = gpu.works_with_others();
    match workload {
        Workload::Training(training) => {
            let cluster = Cluster {
                capacity,
                max_gpus: if several { args.max_gpus } else { 1 },
                gpus_per_node: if several { args.gpus_per_node } else { 1 },
            };
            let plan = fewest_gpus(spec, training, &runtime, &cluster)?;
            let (batch, sequence) = match &plan {
                Some(plan) => {
                    let on_plan =
                        Workload::Training(training.clone().with(|t| t.layout = plan.layout));
                    (
                        largest_batch(spec, &on_plan, &runtime, capacity)?,
                        longest_sequence(spec, &on_plan, &runtime, capacity)?,
                    )
                }
                None => (None, None),
            };
            Ok(Answer { gpu, plan, batch, sequence })
        }
        Workload::Inference(_) => {
            let one = estimate(spec, workload, &runtime)?;
            let plan = layer_split_gpus(&one, spec, capacity)
                .filter(|gpus| several || *gpus == 1)
                .map(|gpus| Plan::new(Layout::SINGLE.with(|l| l.gpus = gpus), one));
            Ok(Answer {
                gpu,
                plan,
                batch: largest_batch(spec, workload, &runtime, capacity)?,
                sequence: longest_sequence(spec, workload, &runtime, capacity)?,
            })
        }
    }
}

/// The same groups for the JSON document.
fn sweep_groups(pairs: &[(String, String)]) -> Vec<vramfit_report::SweepGroup> {
    by_reason(pairs)
        .into_iter()
        .map(|(why, names)| vramfit_report::SweepGroup {
            reason: why.to_owned(),
            gpus: names.into_iter().map(str::to_owned).collect(),
        })
        .collect()
}

/// `(device, reason)` pairs grouped by reason, in first-seen order.
fn by_reason(pairs: &[(String, String)]) -> Vec<(&str, Vec<&str>)> {
    let mut groups: Vec<(&str, Vec<&str>)> = Vec::new();
    for (name, why) in pairs {
        match groups.iter_mut().find(|(w, _)| *w == why) {
            Some((_, names)) => names.push(name),
            None => groups.push((why, vec![name])),
        }
    }
    groups
}

fn layout_text(layout: &Layout, training: bool) -> String {
    if !training {
        return if layout.gpus == 1 {
            "one GPU".to_owned()
        } else {
            "layers split over them (device_map=\"auto\")".to_owned()
        };
    }
    if layout.gpus == 1 {
        return "one GPU".to_owned();
    }
    let mut parts = vec![format!("{}", layout.strategy.name())];
    if layout.tp > 1 {
        parts.push(format!("tp {}", layout.tp));
    }
    if layout.pp > 1 {
        parts.push(format!("pp {}", layout.pp));
    }
    if layout.nodes > 1 {
        parts.push(format!("{} nodes", layout.nodes));
    }
    parts.join(", ")
}

pub(crate) fn run(args: &FitArgs, out: &mut dyn std::io::Write) -> Result<()> {
    if !(1..=MAX_GPUS).contains(&args.max_gpus) {
        bail!("--max-gpus must be between 1 and {MAX_GPUS}, got {}", args.max_gpus);
    }
    if !(1..=MAX_GPUS).contains(&args.gpus_per_node) {
        bail!("--gpus-per-node must be between 1 and {MAX_GPUS}, got {}", args.gpus_per_node);
    }
    if args.workload.engine.tensor_split.is_some() {
        bail!(
            "--tensor-split divides llama.cpp's layers over several GPUs, which fit does not search: use `vramfit infer --engine llama.cpp --gpu a,b --tensor-split …`"
        );
    }
    if args.workload.runtime.gpu.as_deref().is_some_and(|g| g.contains(',')) {
        bail!(
            "--gpu: fit searches one GPU kind (or, without --gpu, the whole catalog); for llama.cpp over several different GPUs use `vramfit infer --engine llama.cpp --gpu a,b`"
        );
    }
    // Validates the runtime flags and the GPU name.
    let (_, chosen) = runtime(&args.workload.runtime)?;
    if chosen.is_some() && (args.filter.vendor.is_some() || args.filter.min_memory.is_some()) {
        bail!("--vendor/--min-memory filter the catalog sweep: drop them, or drop --gpu");
    }
    let mut model = crate::commands::resolve(&args.workload.model)?;
    let engine = crate::commands::serve::engine_for(&args.workload.engine, &model);
    crate::commands::serve::validate(&args.workload.engine, engine)?;
    if engine != EngineArg::Transformers {
        if args.workload.mode != ModeArg::Infer {
            if args.workload.engine.engine.is_none() {
                bail!(
                    "`{}` is a GGUF model, estimated as llama.cpp serves it: use --mode infer (training estimates need the model's config.json)",
                    args.workload.model
                );
            }
            bail!("--engine describes serving: use it with --mode infer");
        }
        if args.workload.engine.tp.is_some() {
            bail!("--tp: fit searches the tensor-parallel size itself (up to --max-gpus)");
        }
        return crate::commands::serve::fit(args, engine, &model, chosen, out);
    }
    let workload = match args.workload.mode {
        ModeArg::Infer => {
            Workload::Inference(inference_workload(&args.workload.common, &args.workload.infer))
        }
        ModeArg::Train => Workload::Training(training_workload(
            &args.workload.common,
            &args.workload.train,
            &args.workload.lora,
        )?),
    };
    crate::commands::check_context(&mut model, &workload)?;
    let spec = &model.parsed.spec;
    // Settings the solvers cannot repair (LoRA flags with full fine-tuning,
    // positions beyond the model's) are errors before any search.
    estimate(
        spec,
        &workload,
        &overrides(vramfit_core::memory::runtime::Runtime::HOPPER, &args.workload.runtime)?,
    )?;
    let training = matches!(workload, Workload::Training(_));
    let targets: Vec<Gpu> = match chosen {
        Some(gpu) => vec![gpu],
        None => crate::commands::gpus::filtered(&args.filter)?,
    };
    let sweep = targets.len() > 1;
    let mut progress = crate::render::Progress::new(targets.len());
    let mut answers: Vec<Answer> = Vec::with_capacity(targets.len());
    let mut cannot: Vec<(String, String)> = Vec::new();
    let mut unknown: Vec<(String, String)> = Vec::new();
    for gpu in targets {
        // What the accelerator cannot run (FP8, FlashAttention-2, bitsandbytes)
        // is an error for a chosen GPU and leaves it out of a sweep.
        if sweep {
            if let Some(why) = crate::commands::estimate::refusal(&gpu, &workload) {
                cannot.push((gpu.name.clone(), why.to_owned()));
            } else {
                for what in crate::commands::estimate::unknown_support(&gpu, &workload) {
                    unknown.push((gpu.name.clone(), what.to_owned()));
                }
                answers.push(solve(spec, &workload, gpu, args)?);
            }
        } else {
            crate::commands::estimate::check_gpu(Some(&gpu), &workload)?;
            answers.push(solve(spec, &workload, gpu, args)?);
        }
        progress.step(answers.len() + cannot.len());
    }
    drop(progress);

    if args.workload.runtime.json {
        let document = FitDocument {
            schema_version: SCHEMA_VERSION,
            model: ModelName::new(&model),
            workload: workload.clone(),
            search: FitSearch { max_gpus: args.max_gpus, gpus_per_node: args.gpus_per_node },
            answers: answers
                .iter()
                .map(|a| {
                    FitAnswer::new(
                        &a.gpu,
                        a.plan.as_ref(),
                        a.batch.as_ref(),
                        a.sequence.as_ref(),
                        training,
                        vramfit_core::solve::context_limit(spec, &workload),
                    )
                })
                .collect(),
            context_window: spec.max_position_embeddings,
            warnings: model.parsed.warnings.clone(),
            left_out: sweep_groups(&cannot),
            unchecked: sweep_groups(&unknown),
        };
        crate::render::write_json(out, &document)?;
        return Ok(());
    }
    for warning in &model.parsed.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    let what = describe(&workload, "micro-batch");
    let (batch_word, seq_word) = if training {
        ("largest micro-batch", "longest sequence")
    } else {
        ("concurrent sequences", "longest prompt")
    };
    writeln!(out, "{} — {what}", model.origin.describe())?;
    if answers.len() == 1 {
        let answer = &answers[0];
        let gpu = &answer.gpu;
        match &answer.plan {
            Some(plan) if training || plan.layout.gpus == 1 => writeln!(
                out,
                "GPUs needed: {} × {} ({}): {} GiB of {} GiB per GPU",
                plan.layout.gpus,
                gpu.name,
                layout_text(&plan.layout, training),
                gib(plan.estimate.device_total_bytes),
                gib(gpu.memory_bytes())
            )?,
            Some(plan) => writeln!(
                out,
                "GPUs needed: {} × {}, {}; {} GiB on one",
                plan.layout.gpus,
                gpu.name,
                layout_text(&plan.layout, training),
                gib(plan.estimate.device_total_bytes)
            )?,
            None if !training => writeln!(
                out,
                "GPUs needed: does not fit on {}, even split layer by layer: one decoder layer's weights and KV cache with a CUDA context exceed one GPU (shorten the prompt, batch fewer sequences, or quantize)",
                gpu.name
            )?,
            None => {
                let mut tries = Vec::new();
                if let Workload::Training(t) = &workload {
                    if !t.grad_checkpointing {
                        tries.push("--grad-ckpt");
                    }
                    tries.push("a shorter --seq-len");
                    if t.method == vramfit_core::workload::Method::Full {
                        tries.push("LoRA/QLoRA");
                    }
                }
                tries.push("a larger --max-gpus");
                writeln!(
                    out,
                    "GPUs needed: more than {} × {} (no layout of up to {} GPUs fits: data parallelism leaves each GPU one micro-batch's activations; try {})",
                    args.max_gpus,
                    gpu.name,
                    args.max_gpus,
                    tries.join(", ")
                )?;
            }
        }
        let on = if training { "on that layout" } else { "on one GPU" };
        match &answer.batch {
            Some((b, e)) => {
                writeln!(
                    out,
                    "{batch_word} {on}: {b} ({} GiB per GPU)",
                    gib(e.device_total_bytes)
                )?;
            }
            None => writeln!(out, "{batch_word} {on}: none fits")?,
        }
        match &answer.sequence {
            Some((s, e)) => writeln!(
                out,
                "{seq_word} {on}: {s} tokens ({} GiB per GPU){}",
                gib(e.device_total_bytes),
                if Some(*s) == vramfit_core::solve::context_limit(spec, &workload) {
                    " — capped at the model's context window"
                } else {
                    ""
                }
            )?,
            None => writeln!(out, "{seq_word} {on}: none fits")?,
        }
    } else {
        let limit = vramfit_core::solve::context_limit(spec, &workload);
        for vendor in vramfit_sources::gpus::Vendor::ALL {
            let group: Vec<&Answer> = answers.iter().filter(|a| a.gpu.vendor == vendor).collect();
            if group.is_empty() {
                continue;
            }
            let mut platforms: Vec<&str> = group.iter().map(|a| a.gpu.platform.name()).collect();
            platforms.dedup();
            writeln!(out, "{} ({})", vendor.name().to_uppercase(), platforms.join(", "))?;
            let mut rows = table(
                &["GPU", "GiB", "GPUs needed", "layout", "GiB per GPU", batch_word, seq_word],
                &[1, 2, 4, 5, 6],
            );
            for answer in group {
                let (count, layout, per_gpu) = match &answer.plan {
                    Some(plan) => (
                        plan.layout.gpus.to_string(),
                        layout_text(&plan.layout, training),
                        if training || plan.layout.gpus == 1 {
                            gib(plan.estimate.device_total_bytes)
                        } else {
                            "—".to_owned()
                        },
                    ),
                    None if !answer.gpu.works_with_others() => {
                        ("> 1 (alone)".to_owned(), "—".to_owned(), "—".to_owned())
                    }
                    None if !training => ("no split".to_owned(), "—".to_owned(), "—".to_owned()),
                    None => (format!("> {}", args.max_gpus), "—".to_owned(), "—".to_owned()),
                };
                rows.add_row(vec![
                    answer.gpu.name.clone(),
                    gib(answer.gpu.memory_bytes()),
                    count,
                    layout,
                    per_gpu,
                    answer.batch.as_ref().map_or("—".to_owned(), |(b, _)| b.to_string()),
                    answer.sequence.as_ref().map_or("—".to_owned(), |(s, _)| {
                        if Some(*s) == limit { format!("{s} *") } else { s.to_string() }
                    }),
                ]);
            }
            writeln!(out, "{rows}")?;
        }
        if answers.iter().any(|a| a.sequence.as_ref().is_some_and(|(s, _)| Some(*s) == limit)) {
            writeln!(
                out,
                "* capped at the model's context window ({} tokens{}), not by memory",
                spec.max_position_embeddings.unwrap_or_default(),
                if training { "" } else { " with the generated tokens" }
            )?;
        }
    }
    if training {
        writeln!(
            out,
            "note: the micro-batch is per GPU; layouts tried simplest first (DDP, ZeRO-1/2, FSDP, ZeRO-3, then tensor and pipeline parallelism), up to --max-gpus {} in machines of {}; no host offload",
            args.max_gpus, args.gpus_per_node
        )?;
    } else {
        writeln!(
            out,
            "note: transformers generate(); several GPUs split the layers (device_map=\"auto\"); batch and prompt are searched on one GPU"
        )?;
    }
    writeln!(
        out,
        "note: fits = device total (reserved, plus the CUDA context where there is one) within the memory a job may use"
    )?;
    if answers.iter().any(|a| !a.gpu.works_with_others()) {
        writeln!(
            out,
            "note: Apple and Intel GPUs work alone here (\"> 1 (alone)\": one does not hold the job); Apple's GiB is Metal's working set, not the RAM"
        )?;
    }
    // What is modelled but not measured on the listed platforms, once each.
    let mut said: Vec<String> = Vec::new();
    for answer in &answers {
        let notes = answer.gpu.pytorch_note().map(str::to_owned).into_iter();
        for note in notes.chain(answer.gpu.unified_note()) {
            if !said.contains(&note) {
                writeln!(out, "note: {note}")?;
                said.push(note);
            }
        }
    }
    // Devices left out, or listed unchecked, for the same reason: one line each.
    for (why, names) in by_reason(&cannot) {
        writeln!(out, "not listed: {} ({why})", names.join(", "))?;
    }
    for (what, names) in by_reason(&unknown) {
        writeln!(out, "listed, though no source says they run {what}: {}", names.join(", "))?;
    }
    Ok(())
}
