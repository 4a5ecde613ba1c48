//! `vramfit params MODEL`: exact parameter counts, and LoRA/DoRA adapters.

use anyhow::{Context as _, Result};
use vramfit_core::lora::{LoraConfig, LoraParams, LoraTargets, lora_params};
use vramfit_core::params::{ParamCounts, count_params};
use vramfit_core::spec::Component;
use vramfit_report::ParamsDocument;
use vramfit_sources::ResolvedModel;

use crate::cli::ParamsArgs;
use crate::render::{grouped, human_count, percent, table};
use crate::settings::lora_config;

/// What `params` computes, shared by the table and the JSON.
struct Report {
    model: ResolvedModel,
    counts: ParamCounts,
    lora: Option<(LoraConfig, LoraParams)>,
    alpha: Option<f64>,
}

impl Report {
    fn total(&self) -> u64 {
        self.counts.total + self.lora.as_ref().map_or(0, |(_, p)| p.trainable)
    }
}

pub(crate) fn run(args: &ParamsArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let lora = lora_config(&args.lora)?;
    let model = crate::commands::resolve(&args.model)?;
    let spec = &model.parsed.spec;
    let counts = count_params(spec)
        .with_context(|| format!("counting the parameters of `{}`", args.model))?;
    let lora = match lora {
        Some(config) => {
            let params = lora_params(spec, &config).context("--lora-targets")?;
            Some((config, params))
        }
        None => None,
    };
    let report = Report { model, counts, lora, alpha: args.lora.alpha };
    if args.json {
        crate::render::write_json(out, &to_json(&report))?;
    } else {
        write_table(&report, out)?;
    }
    Ok(())
}

fn to_json(report: &Report) -> ParamsDocument {
    ParamsDocument::new(
        &report.model,
        &report.counts,
        report.lora.as_ref().map(|(config, params)| (config, params, report.alpha)),
    )
}

fn write_table(report: &Report, out: &mut dyn std::io::Write) -> Result<()> {
    let spec = &report.model.parsed.spec;
    for warning in &report.model.parsed.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    writeln!(
        out,
        "{}  ({}, {} layers, hidden {}, vocab {}{})",
        report.model.origin.describe(),
        spec.model_type,
        spec.num_layers(),
        spec.hidden_size,
        spec.vocab_size,
        if spec.lm_head.tied { ", tied embeddings" } else { "" }
    )?;
    let mut rows = table(&["component", "parameters", "", "share"], &[1, 2, 3]);
    let base = report.counts.total;
    for component in Component::ALL {
        if let Some(count) = report.counts.by_component.get(&component) {
            rows.add_row(vec![
                component.name().to_owned(),
                grouped(*count),
                human_count(*count),
                percent(*count, base),
            ]);
        }
    }
    rows.add_row(vec!["total".to_owned(), grouped(base), human_count(base), percent(base, base)]);
    writeln!(out, "{rows}")?;
    match &report.lora {
        None => writeln!(
            out,
            "trainable (full fine-tuning): {} ({})",
            grouped(base),
            human_count(base)
        )?,
        Some((config, params)) => {
            let targets = match &config.targets {
                LoraTargets::AllLinear => "all-linear".to_owned(),
                LoraTargets::Modules(names) => names.join(","),
            };
            writeln!(
                out,
                "{} r={} on {targets}: {} adapted layers, trainable {} ({}) = {} of {} total",
                if config.dora { "DoRA" } else { "LoRA" },
                config.rank,
                params.adapted_layers,
                grouped(params.trainable),
                human_count(params.trainable),
                percent(params.trainable, report.total()),
                grouped(report.total()),
            )?;
            if !params.unmatched_targets.is_empty() {
                writeln!(
                    out,
                    "warning: target(s) {} match no module of this model",
                    params.unmatched_targets.join(", ")
                )?;
            }
        }
    }
    Ok(())
}
