//! `vramfit accuracy`: estimates against measured peaks, per case and in summary,
//! with the rules of thumb scored on the same cases.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result, bail};
use vramfit_core::memory::estimate;
use vramfit_core::memory::runtime::{Kernels, Runtime};
use vramfit_core::rules::{RuleInputs, inference_rules, training_rules};
use vramfit_core::workload::Workload;
use vramfit_validation::{MeasuredCase, parse_measured};

use crate::cli::AccuracyArgs;
use vramfit_report::{AccuracyCase, AccuracyDocument, AccuracySummary, SCHEMA_VERSION};

/// One compared case.
struct Row {
    id: String,
    family: String,
    mode: String,
    measured: u64,
    estimated: u64,
    phase: String,
    measured_where: String,
    rules: Vec<(&'static str, u64)>,
}

impl Row {
    fn error(&self) -> f64 {
        relative(self.estimated, self.measured)
    }
}

fn relative(estimate: u64, measured: u64) -> f64 {
    (estimate as f64 - measured as f64) / measured as f64
}

/// Median, 90th percentile and maximum of |errors| (each the value at that
/// rank, not an interpolation), for every accuracy report.
pub(crate) fn summary(errors: &[f64]) -> (f64, f64, f64) {
    let mut sorted: Vec<f64> = errors.iter().map(|e| e.abs()).collect();
    sorted.sort_by(f64::total_cmp);
    if sorted.is_empty() {
        return (0.0, 0.0, 0.0);
    }
    let at = |q: f64| {
        #[expect(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "an index into a short list"
        )]
        let index = ((sorted.len() - 1) as f64 * q).round() as usize;
        sorted[index]
    };
    (at(0.5), at(0.9), sorted[sorted.len() - 1])
}

/// The measured-peak files this binary was built with (`validation/data`, by
/// `build.rs`), as `(file name, JSON lines)`; empty when built outside the
/// repository.
const EMBEDDED: &[(&str, &str)] = include!(concat!(env!("OUT_DIR"), "/measurements.rs"));

/// The measured-peak files to compare, as `(file name, JSON lines)`: those
/// `paths` name (files, or folders of `.jsonl` files), else the embedded ones.
fn inputs(paths: &[PathBuf]) -> Result<Vec<(String, String)>> {
    if paths.is_empty() {
        if EMBEDDED.is_empty() {
            bail!(
                "this binary was built without the measured data: name the files or the folder (`vramfit accuracy path/to/validation/data`)"
            );
        }
        return Ok(EMBEDDED
            .iter()
            .map(|(name, text)| ((*name).to_owned(), (*text).to_owned()))
            .collect());
    }
    let mut out = Vec::new();
    for root in paths {
        let mut found = Vec::new();
        if root.is_dir() {
            found = std::fs::read_dir(root)
                .with_context(|| format!("reading `{}`", root.display()))?
                .filter_map(Result::ok)
                .map(|e| e.path())
                .filter(|p| p.extension().is_some_and(|e| e == "jsonl") && is_measurement_file(p))
                .collect();
            found.sort();
        } else if root.is_file() {
            found.push(root.clone());
        } else {
            bail!("`{}` is neither a file nor a folder", root.display());
        }
        for file in found {
            let text = read_bounded(&file)?;
            let name =
                file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
            out.push((name, text));
        }
    }
    Ok(out)
}

/// The most a measurement file may hold: 32 MiB, a hundred times the largest
/// shipped (0.3 MB), so that a hostile file costs at most a few times that.
const MAX_FILE_BYTES: u64 = 32 << 20;

/// A regular file's text, at most [`MAX_FILE_BYTES`] (a FIFO or a device is
/// refused, never read).
pub(crate) fn read_bounded(path: &Path) -> Result<String> {
    use std::io::Read as _;
    let file = vramfit_sources::files::open_regular(path)
        .with_context(|| format!("reading `{}`", path.display()))?;
    let too_large = || {
        anyhow::anyhow!(
            "`{}` is larger than {MAX_FILE_BYTES} bytes: not a measurement file",
            path.display()
        )
    };
    if file.metadata().is_ok_and(|m| m.len() > MAX_FILE_BYTES) {
        return Err(too_large());
    }
    let mut text = String::new();
    file.take(MAX_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .with_context(|| format!("reading `{}`", path.display()))?;
    // A file that grew since its size was read.
    if text.len() as u64 > MAX_FILE_BYTES {
        return Err(too_large());
    }
    Ok(text)
}

/// Measured-peak files; parameter-count references share the folder.
fn is_measurement_file(path: &Path) -> bool {
    !path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("transformers-param-counts"))
}

/// The runtime a measured case ran on: CPU kernels for CPU and fake-tensor runs,
/// watched by a dispatch-mode tracker (every measured record is).
fn reference_runtime(case: &MeasuredCase) -> Runtime {
    let kernels = match case.backend.as_str() {
        "cuda" => Kernels::Cuda,
        "fake" => Kernels::FakeCpu,
        _ => Kernels::Cpu,
    };
    Runtime::HOPPER.with(|r| r.kernels = kernels).watched_by_dispatch_mode()
}

fn compare(case: &MeasuredCase, measured: u64) -> Result<Row> {
    let result = estimate(&case.spec, &case.workload, &reference_runtime(case))
        .with_context(|| format!("estimating {}", case.id))?;
    let (batch, seq) = match &case.workload {
        Workload::Inference(i) => (i.batch_size, i.prompt_len + i.gen_len),
        Workload::Training(t) => (t.batch_size, t.seq_len),
    };
    let millibytes = match &case.workload {
        Workload::Inference(i) => i.weights.compute_type().bytes() * 1000,
        Workload::Training(t) => t.precision.param_type().bytes() * 1000,
    };
    let inputs = RuleInputs {
        params: result.params_total,
        trainable: result.params_trainable,
        weight_millibytes: millibytes,
        batch,
        seq,
        hidden: case.spec.hidden_size,
        layers: case.spec.num_layers(),
    };
    let rules = match &case.workload {
        Workload::Inference(_) => inference_rules(&inputs),
        Workload::Training(t) => training_rules(&inputs, t.method),
    };
    Ok(Row {
        id: case.id.clone(),
        family: case.model_type.clone(),
        mode: case.mode.clone(),
        measured,
        estimated: result.tensor_peak_bytes,
        phase: result.peak_phase.clone(),
        measured_where: case.measured.peak_where.clone().unwrap_or_default(),
        rules: rules.iter().map(|r| (r.name, r.bytes)).collect(),
    })
}

pub(crate) fn run(args: &AccuracyArgs, out: &mut dyn std::io::Write) -> Result<()> {
    if args.engines {
        return crate::commands::engine_accuracy::run(args, out);
    }
    let mut rows = Vec::new();
    let mut skipped = Vec::new();
    let mut sources = Vec::new();
    for (name, text) in inputs(&args.paths)? {
        let (cases, skip) = parse_measured(&text, &name)?;
        sources.push(name);
        skipped.extend(skip.into_iter().map(|s| format!("{}: {}", s.id, s.reason)));
        for case in &cases {
            match case.measured.tensor_peak_bytes {
                Some(measured) => rows.push(compare(case, measured)?),
                None => skipped.push(format!("{}: no tracked tensor peak", case.id)),
            }
        }
    }
    if rows.is_empty() {
        bail!("no measured cases found in {}", sources.join(", "));
    }
    let errors: Vec<f64> = rows.iter().map(Row::error).collect();
    let (median, p90, worst) = summary(&errors);
    let mut groups: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for row in &rows {
        groups.entry(format!("mode {}", row.mode)).or_default().push(row.error());
        groups.entry(format!("family {}", row.family)).or_default().push(row.error());
    }
    let mut rule_errors: BTreeMap<&'static str, Vec<f64>> = BTreeMap::new();
    for row in &rows {
        for (name, bytes) in &row.rules {
            rule_errors.entry(name).or_default().push(relative(*bytes, row.measured));
        }
    }
    if args.json {
        let document = AccuracyDocument {
            schema_version: SCHEMA_VERSION,
            level: "tensor_peak_bytes vs tracked.peak_bytes_rounded512".to_owned(),
            cases: rows
                .iter()
                .map(|r| AccuracyCase {
                    id: r.id.clone(),
                    family: r.family.clone(),
                    mode: r.mode.clone(),
                    measured_bytes: r.measured,
                    estimated_bytes: r.estimated,
                    error: r.error(),
                    phase: r.phase.clone(),
                    measured_where: r.measured_where.clone(),
                })
                .collect(),
            summary: AccuracySummary {
                cases: rows.len(),
                median_abs_error: median,
                p90_abs_error: p90,
                max_abs_error: worst,
            },
            skipped: skipped.clone(),
        };
        crate::render::write_json(out, &document)?;
        return Ok(());
    }
    let pct = |e: f64| format!("{:+.2} %", e * 100.0);
    let abs = |e: f64| format!("{:.2} %", e * 100.0);
    let mib = |b: u64| format!("{:.1}", b as f64 / f64::from(1u32 << 20));
    let mut text = String::new();
    if args.markdown {
        writeln!(text, "# Accuracy: vramfit's estimates against measured peaks")?;
        writeln!(text)?;
        writeln!(
            text,
            "Generated by `vramfit accuracy --markdown` from {} (do not edit by hand).",
            sources.join(", ")
        )?;
        writeln!(text)?;
        writeln!(
            text,
            "Level compared: the peak of live tensor bytes (each storage rounded to 512 B), as the oracle's"
        )?;
        writeln!(
            text,
            "dispatch tracker measures it on a CPU or under fake tensors — `max_memory_allocated` less the cuBLAS"
        )?;
        writeln!(text, "workspace. MiB = 2^20 bytes. Error = (estimate − measured) / measured.")?;
        writeln!(text)?;
        writeln!(
            text,
            "The tracker is a `TorchDispatchMode`, and under any such mode autograd sums a tensor's two"
        )?;
        writeln!(
            text,
            "gradients into a new tensor where a real run adds into the first: the estimates here model"
        )?;
        writeln!(
            text,
            "that where it sets a peak in these data, an adapted linear's input gradients on wide layers"
        )?;
        writeln!(
            text,
            "(`Runtime::watched`); vramfit's own estimates do not. A leaf's two gradients (a tied embedding's)"
        )?;
        writeln!(text, "are summed out of place in a real run too (checked).")?;
        writeln!(text)?;
        writeln!(
            text,
            "The oracle's fake backend (`oracle-*-fake.jsonl`) also clones a tensor at every `dropout(p=0)`"
        )?;
        writeln!(
            text,
            "(FakeTensorMode's tracing decomposition), which the real kernel and the project's harness do not."
        )?;
        writeln!(
            text,
            "It sets one peak: gpt-oss's eager inference, where the clone is probabilities-sized; the harness"
        )?;
        writeln!(text, "measured that case again (`-harness` in harness-cross-fake.jsonl).")?;
        writeln!(text)?;
        writeln!(
            text,
            "**{} cases: median |error| {}, 90th percentile {}, worst {}.**",
            rows.len(),
            abs(median),
            abs(p90),
            abs(worst)
        )?;
        writeln!(text)?;
        writeln!(text, "## Summary by mode and family")?;
        writeln!(text)?;
        writeln!(text, "| group | cases | median \\|error\\| | p90 | worst |")?;
        writeln!(text, "|---|---:|---:|---:|---:|")?;
        for (group, errs) in &groups {
            let (m, p, w) = summary(errs);
            writeln!(text, "| {group} | {} | {} | {} | {} |", errs.len(), abs(m), abs(p), abs(w))?;
        }
        writeln!(text)?;
        writeln!(text, "## Rules of thumb on the same cases")?;
        writeln!(text)?;
        writeln!(text, "| estimator | cases | median \\|error\\| | worst |")?;
        writeln!(text, "|---|---:|---:|---:|")?;
        writeln!(text, "| vramfit | {} | {} | {} |", rows.len(), abs(median), abs(worst))?;
        for (name, errs) in &rule_errors {
            let (m, _, w) = summary(errs);
            writeln!(text, "| {name} | {} | {} | {} |", errs.len(), abs(m), abs(w))?;
        }
        writeln!(text)?;
        writeln!(text, "## Every case")?;
        writeln!(text)?;
        writeln!(
            text,
            "| case | family | measured MiB | vramfit MiB | error | vramfit phase | measured at |"
        )?;
        writeln!(text, "|---|---|---:|---:|---:|---|---|")?;
        for row in &rows {
            writeln!(
                text,
                "| {} | {} | {} | {} | {} | {} | {} |",
                row.id,
                row.family,
                mib(row.measured),
                mib(row.estimated),
                pct(row.error()),
                row.phase,
                row.measured_where
            )?;
        }
        if !skipped.is_empty() {
            writeln!(text)?;
            writeln!(text, "Not compared: {}.", skipped.join("; "))?;
        }
    } else {
        let mut table = crate::render::table(
            &["case", "family", "measured MiB", "vramfit MiB", "error", "phase"],
            &[2, 3, 4],
        );
        for row in &rows {
            table.add_row(vec![
                row.id.clone(),
                row.family.clone(),
                mib(row.measured),
                mib(row.estimated),
                pct(row.error()),
                row.phase.clone(),
            ]);
        }
        writeln!(text, "{table}")?;
        let mut by_group = crate::render::table(
            &["group", "cases", "median |err|", "p90", "worst"],
            &[1, 2, 3, 4],
        );
        for (group, errs) in &groups {
            let (m, p, w) = summary(errs);
            by_group.add_row(vec![group.clone(), errs.len().to_string(), abs(m), abs(p), abs(w)]);
        }
        for (name, errs) in &rule_errors {
            let (m, p, w) = summary(errs);
            by_group.add_row(vec![
                format!("rule: {name}"),
                errs.len().to_string(),
                abs(m),
                abs(p),
                abs(w),
            ]);
        }
        writeln!(text, "{by_group}")?;
        writeln!(
            text,
            "{} cases: median |error| {}, p90 {}, worst {} (tensor peak vs measured live tensor bytes)",
            rows.len(),
            abs(median),
            abs(p90),
            abs(worst)
        )?;
        if !skipped.is_empty() {
            writeln!(text, "not compared: {}", skipped.len())?;
        }
    }
    out.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn summary_is_median_p90_max_of_absolute_errors() {
        let (m, p, w) = summary(&[0.01, -0.03, 0.02, -0.5, 0.0]);
        assert!((m - 0.02).abs() < 1e-12);
        assert!((p - 0.5).abs() < 1e-12);
        assert!((w - 0.5).abs() < 1e-12);
    }
}
