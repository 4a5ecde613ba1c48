//! `vramfit rules MODEL`: the popular rules of thumb beside vramfit's estimate.

use anyhow::Result;
use vramfit_core::dtype::WeightFormat;
use vramfit_core::memory::estimate;
use vramfit_core::rules::{RuleInputs, gpu_count, inference_rules, training_rules};
use vramfit_core::workload::Workload;
use vramfit_report::RulesDocument;

use crate::cli::{ModeArg, RulesArgs};
use crate::render::{gb, gib, table};
use crate::settings::{inference_workload, runtime, training_workload};

fn weight_millibytes(format: WeightFormat) -> u64 {
    match format {
        WeightFormat::Float(float) => float.bytes() * 1000,
        WeightFormat::Fp8 | WeightFormat::Int8 => 1000,
        WeightFormat::Int4 | WeightFormat::Nf4 => 500,
    }
}

pub(crate) fn run(args: &RulesArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let (runtime, gpu) = runtime(&args.workload.runtime)?;
    let model = crate::commands::resolve(&args.workload.model)?;
    let engine = crate::commands::serve::engine_for(&args.workload.engine, &model);
    if engine != crate::cli::EngineArg::Transformers {
        anyhow::bail!(
            "rules compares rules of thumb with transformers' estimate; --engine {} is not one they describe",
            crate::render::flag_value(&engine)
        );
    }
    crate::commands::serve::validate(&args.workload.engine, engine)?;
    let spec = &model.parsed.spec;
    let (workload, batch, seq, millibytes) = match args.workload.mode {
        ModeArg::Infer => {
            let inference = inference_workload(&args.workload.common, &args.workload.infer);
            let (b, s, m) = (
                inference.batch_size,
                inference.prompt_len + inference.gen_len,
                weight_millibytes(inference.weights),
            );
            (Workload::Inference(inference), b, s, m)
        }
        ModeArg::Train => {
            let training = training_workload(
                &args.workload.common,
                &args.workload.train,
                &args.workload.lora,
            )?;
            let m = training.precision.param_type().bytes() * 1000;
            let (b, s) = (training.batch_size, training.seq_len);
            (Workload::Training(training), b, s, m)
        }
    };
    let result = estimate(spec, &workload, &runtime)?;
    let inputs = RuleInputs {
        params: result.params_total,
        trainable: result.params_trainable,
        weight_millibytes: millibytes,
        batch,
        seq,
        hidden: spec.hidden_size,
        layers: spec.num_layers(),
    };
    let rules = match &workload {
        Workload::Inference(_) => inference_rules(&inputs),
        Workload::Training(t) => training_rules(&inputs, t.method),
    };
    let vramfit_total = result.device_total_bytes;
    if args.workload.runtime.json {
        let document = RulesDocument::new(&model, &result, rules.clone(), gpu.as_ref());
        crate::render::write_json(out, &document)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} — rules of thumb vs vramfit ({})",
        model.origin.describe(),
        crate::render::flag_value(&args.workload.mode)
    )?;
    let mut header = vec!["rule", "formula", "GiB", "GB", "vs vramfit"];
    if gpu.is_some() {
        header.push("GPUs (ceil)");
    }
    let mut rows = table(&header, &[2, 3, 4, 5]);
    let mut push = |name: &str, formula: &str, bytes: u64| {
        let ratio = format!("{:+.0} %", (bytes as f64 / vramfit_total as f64 - 1.0) * 100.0);
        let mut row = vec![name.to_owned(), formula.to_owned(), gib(bytes), gb(bytes), ratio];
        if let Some(g) = &gpu {
            row.push(gpu_count(bytes, g.memory_bytes()).to_string());
        }
        rows.add_row(row);
    };
    push(
        "vramfit (device total)",
        "traced per component, see `vramfit infer/train`",
        vramfit_total,
    );
    for rule in &rules {
        push(rule.name, rule.formula, rule.bytes);
    }
    writeln!(out, "{rows}")?;
    for rule in &rules {
        writeln!(out, "  {}: {}", rule.name, rule.source)?;
    }
    writeln!(
        out,
        "The rules miss what vramfit counts: activations and logits, the KV cache, optimizer temporaries, the CUDA context and the allocator."
    )?;
    Ok(())
}
