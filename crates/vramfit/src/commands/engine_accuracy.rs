//! `vramfit accuracy --engines`: the serving engines' estimates against the
//! start-up logs users published (`validation/engine-logs/compare.jsonl`, drawn
//! from the corpus beside it). Each record names the log line, the engine
//! release, and the `vramfit infer` flags that describe the same start-up;
//! the command runs them and compares figure by figure.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use anyhow::{Context as _, Result, bail};
use clap::Parser as _;
use serde::Deserialize;
use serde_json::Value;
use vramfit_report::{EngineLogCase, EngineLogDocument, EngineLogSummary, SCHEMA_VERSION};

use crate::cli::{AccuracyArgs, Cli, Command};

/// The comparison records this binary was built with (`build.rs`); empty when
/// built outside the repository.
const EMBEDDED: &str = include_str!(concat!(env!("OUT_DIR"), "/engine-logs.jsonl"));

/// One published start-up log, as `vramfit infer` flags and the figures it printed.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Record {
    id: String,
    corpus_id: String,
    engine: String,
    version: String,
    source: String,
    args: Vec<String>,
    /// The model's `config.json`, when it is not in the catalog: `args` then
    /// names it by a label.
    #[serde(default)]
    config: Option<Value>,
    figures: Vec<Figure>,
    #[serde(default)]
    note: Option<String>,
}

/// One logged figure.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Figure {
    /// `weights`, `activation`, `kv_cache_bytes`, `kv_tokens`, `max_concurrency`, `compute_buffer`.
    name: String,
    logged: f64,
    /// `GiB` (2^30), `MiB` (2^20), `GB` (10^9), `tokens` or `x`.
    unit: String,
    line: String,
    #[serde(default)]
    explained: Option<String>,
    #[serde(default)]
    note: Option<String>,
}

/// The most records a comparison file may hold.
const MAX_RECORDS: usize = 10_000;

fn parse(text: &str, origin: &str) -> Result<Vec<Record>> {
    let mut records = Vec::new();
    for (number, line) in text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty()) {
        if records.len() == MAX_RECORDS {
            bail!("{origin}: more than {MAX_RECORDS} records");
        }
        let record: Record = serde_json::from_str(line)
            .with_context(|| format!("{origin}, line {}: not an engine-log record", number + 1))?;
        records.push(record);
    }
    Ok(records)
}

/// A logged figure in the unit vramfit reports (bytes, tokens, or a ratio).
fn logged(figure: &Figure) -> Result<f64> {
    let scale = match figure.unit.as_str() {
        "GiB" => f64::from(1u32 << 30),
        "MiB" => f64::from(1u32 << 20),
        "GB" => 1e9,
        "tokens" | "x" => 1.0,
        other => bail!("figure `{}`: unknown unit `{other}`", figure.name),
    };
    Ok(figure.logged * scale)
}

/// vramfit's figure `name` in an engine document (`vramfit infer --engine … --json`).
fn estimated(document: &Value, name: &str) -> Option<f64> {
    let component = |part: &str| {
        document["memory"]["components"].as_array()?.iter().find(|p| p["name"] == part)?["bytes"]
            .as_u64()
    };
    #[expect(clippy::cast_precision_loss, reason = "byte and token counts far below 2^53")]
    let value = match name {
        "weights" => component("weights")? as f64,
        "activation" => component("activation profile")? as f64,
        "kv_cache_bytes" => component("kv cache")? as f64,
        "compute_buffer" => component("compute buffer")? as f64,
        "kv_tokens" => document["kv_cache"]["capacity_tokens"].as_u64()? as f64,
        "max_concurrency" => document["kv_cache"]["max_concurrency"].as_f64()?,
        _ => return None,
    };
    Some(value)
}

/// Runs `vramfit infer ARGS --json` in this process (with the record's own
/// config standing for the model, when it has one) and returns its document.
fn infer_document(record: &Record) -> Result<Value> {
    let saved = crate::commands::context();
    if let Some(config) = &record.config {
        let label = record.args.get(1).cloned().unwrap_or_default();
        let mut context = saved.clone();
        context.inline_config = Some((label, config.to_string()));
        crate::commands::set_context(context);
    }
    let document = infer_document_with(&record.args);
    crate::commands::set_context(saved);
    document
}

fn infer_document_with(args: &[String]) -> Result<Value> {
    let mut argv = vec!["vramfit".to_owned()];
    argv.extend(args.iter().cloned());
    argv.push("--json".to_owned());
    let cli = Cli::try_parse_from(&argv).map_err(|e| anyhow::anyhow!("{}", e.render()))?;
    let Command::Infer(infer) = &cli.command else {
        bail!("a record's args must be an `infer` command");
    };
    let mut buffer = Vec::new();
    crate::commands::estimate::run_infer(infer, &mut buffer)?;
    if crate::commands::capturing_documents() {
        return crate::commands::take_document().context("the engine wrote no document");
    }
    serde_json::from_slice(&buffer).context("the engine's JSON document")
}

struct Row<'a> {
    record: &'a Record,
    figure: &'a Figure,
    logged: f64,
    estimated: f64,
}

impl Row<'_> {
    fn error(&self) -> f64 {
        (self.estimated - self.logged) / self.logged
    }
}

/// Errors above this need a cause in the report.
const EXPLAIN_ABOVE: f64 = 0.10;

pub(crate) fn run(args: &AccuracyArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let (text, origin) = match args.paths.as_slice() {
        [] if EMBEDDED.is_empty() => bail!(
            "this binary was built without the engine logs: name the file (`vramfit accuracy --engines validation/engine-logs/compare.jsonl`)"
        ),
        [] => (EMBEDDED.to_owned(), "validation/engine-logs/compare.jsonl".to_owned()),
        [path] => (crate::commands::accuracy::read_bounded(path)?, path.display().to_string()),
        _ => bail!("--engines compares one file of engine-log records"),
    };
    let records = parse(&text, &origin)?;
    let mut rows = Vec::new();
    for record in &records {
        let document = infer_document(record)
            .with_context(|| format!("{}: vramfit {}", record.id, record.args.join(" ")));
        // A record's own verdict is not this command's (`--check`).
        let _ = crate::commands::take_does_not_fit();
        let document = document?;
        // Only the figures are kept, not the document.
        for figure in &record.figures {
            let estimate = estimated(&document, &figure.name).with_context(|| {
                format!("{}: vramfit reports no `{}` for this engine", record.id, figure.name)
            })?;
            let value = logged(figure).with_context(|| record.id.clone())?;
            if value == 0.0 || !value.is_finite() {
                bail!("{}: figure `{}` logs no usable value", record.id, figure.name);
            }
            rows.push(Row { record, figure, logged: value, estimated: estimate });
        }
    }
    let mut groups: BTreeMap<(String, String), Vec<f64>> = BTreeMap::new();
    for row in &rows {
        groups
            .entry((row.record.engine.clone(), row.figure.name.clone()))
            .or_default()
            .push(row.error());
    }
    if args.json {
        let document = EngineLogDocument {
            schema_version: SCHEMA_VERSION,
            source: origin,
            cases: rows
                .iter()
                .map(|r| EngineLogCase {
                    id: r.record.id.clone(),
                    engine: r.record.engine.clone(),
                    engine_version: r.record.version.clone(),
                    figure: r.figure.name.clone(),
                    logged: r.logged,
                    estimated: r.estimated,
                    error: r.error(),
                    explained: r.figure.explained.clone(),
                    source: r.record.source.clone(),
                    line: r.figure.line.clone(),
                })
                .collect(),
            summary: groups
                .iter()
                .map(|((engine, figure), errors)| {
                    let (median, _, worst) = crate::commands::accuracy::summary(errors);
                    EngineLogSummary {
                        engine: engine.clone(),
                        figure: figure.clone(),
                        figures: errors.len(),
                        median_abs_error: median,
                        max_abs_error: worst,
                    }
                })
                .collect(),
        };
        crate::render::write_json(out, &document)?;
        return Ok(());
    }
    let pct = |e: f64| format!("{:+.1} %", e * 100.0);
    let show = |row: &Row<'_>, value: f64| match row.figure.unit.as_str() {
        "tokens" => format!("{value:.0}"),
        "x" => format!("{value:.2}x"),
        "MiB" => format!("{:.2} MiB", value / f64::from(1u32 << 20)),
        _ => format!("{:.2} GiB", value / f64::from(1u32 << 30)),
    };
    let mut text = String::new();
    writeln!(text, "# Serving engines: vramfit against the start-up logs users published")?;
    writeln!(text)?;
    writeln!(
        text,
        "Generated by `vramfit accuracy --engines --markdown` from {origin} (do not edit by hand)."
    )?;
    writeln!(text)?;
    writeln!(
        text,
        "Each record is a log from `validation/engine-logs/corpus.jsonl` whose model, GPU and settings are"
    )?;
    writeln!(
        text,
        "known, with the `vramfit infer` flags that describe the same start-up. vramfit models one release of"
    )?;
    writeln!(
        text,
        "each engine (the output names it); logs of other releases differ where the engine changed. Error ="
    )?;
    writeln!(
        text,
        "(vramfit − logged) / logged; GiB = 2^30 bytes. Every error above 10 % names its cause, or says it is"
    )?;
    writeln!(text, "not yet explained.")?;
    writeln!(text)?;
    writeln!(text, "| engine | figure | figures | median abs error | worst |")?;
    writeln!(text, "|---|---|---:|---:|---:|")?;
    for ((engine, figure), errors) in &groups {
        let (median, _, worst) = crate::commands::accuracy::summary(errors);
        writeln!(
            text,
            "| {engine} | {figure} | {} | {:.1} % | {:.1} % |",
            errors.len(),
            median * 100.0,
            worst * 100.0
        )?;
    }
    writeln!(text)?;
    writeln!(text, "| record | engine release | figure | logged | vramfit | error | cause |")?;
    writeln!(text, "|---|---|---|---:|---:|---:|---|")?;
    for row in &rows {
        let cause = match (&row.figure.explained, row.error().abs() > EXPLAIN_ABOVE) {
            (Some(why), _) => why.clone(),
            (None, true) => "not yet explained".to_owned(),
            (None, false) => String::new(),
        };
        writeln!(
            text,
            "| [{}]({}) | {} | {} | {} | {} | {} | {} |",
            row.record.id,
            row.record.source,
            row.record.version,
            row.figure.name,
            show(row, row.logged),
            show(row, row.estimated),
            pct(row.error()),
            cause
        )?;
    }
    writeln!(text)?;
    writeln!(text, "## The records")?;
    writeln!(text)?;
    for record in &records {
        writeln!(
            text,
            "- `{}` (corpus `{}`): `vramfit {}`{}",
            record.id,
            record.corpus_id,
            record.args.join(" "),
            record.note.as_ref().map(|n| format!(". {n}")).unwrap_or_default()
        )?;
        for figure in &record.figures {
            writeln!(
                text,
                "  - {}: `{}`{}",
                figure.name,
                figure.line.trim(),
                figure.note.as_ref().map(|n| format!(" ({n})")).unwrap_or_default()
            )?;
        }
    }
    // The same Markdown with or without --markdown: its tables read as plain tables.
    write!(out, "{text}")?;
    Ok(())
}
