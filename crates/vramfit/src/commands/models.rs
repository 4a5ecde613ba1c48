//! `vramfit models`: the embedded catalog, with exact counts beside the published ones.

use anyhow::{Context as _, Result};
use vramfit_core::params::count_params;
use vramfit_report::{ModelEntry, ModelsDocument, SCHEMA_VERSION};
use vramfit_sources::Catalog;

use crate::cli::ModelsArgs;
use crate::render::{grouped, human_count, table};

pub(crate) fn run(args: &ModelsArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let catalog = Catalog::embedded();
    let mut rows = Vec::new();
    for entry in catalog.entries() {
        let parsed = entry.parse()?;
        let counts = count_params(&parsed.spec)
            .with_context(|| format!("counting the parameters of `{}`", entry.id))?;
        let model_type = parsed.spec.model_type.clone();
        let wanted =
            args.family.as_deref().is_none_or(|family| entry.in_family(&model_type, family))
                && args.since.as_deref().is_none_or(|since| entry.released_since(since));
        // What vramfit estimates for it (`ModelSpec::unmodelled_memory`).
        let memory =
            match (parsed.spec.unmodelled_memory(true), parsed.spec.unmodelled_memory(false)) {
                (None, None) => "all",
                (None, Some(_)) => "generate",
                (Some(_), _) => "none",
            };
        if wanted {
            rows.push((entry, model_type, counts.total, memory));
        }
    }
    if args.json {
        let models: Vec<_> = rows
            .iter()
            .map(|(entry, model_type, total, memory)| {
                ModelEntry::new(entry, model_type, *total, memory)
            })
            .collect();
        let document = ModelsDocument { schema_version: SCHEMA_VERSION, models };
        crate::render::write_json(out, &document)?;
        return Ok(());
    }
    if rows.is_empty() {
        writeln!(
            out,
            "No catalog model matches{}{}. `vramfit models` lists all {}.",
            args.family.as_ref().map(|f| format!(" family `{f}`")).unwrap_or_default(),
            args.since.as_ref().map(|s| format!(" released since {s}")).unwrap_or_default(),
            catalog.entries().len()
        )?;
        return Ok(());
    }
    let mut listing =
        table(&["name", "repository id", "released", "type", "parameters", ""], &[4, 5]);
    for (entry, model_type, total, memory) in &rows {
        // A mark on the name when vramfit does not estimate every memory for it.
        let mark = match *memory {
            "all" => "",
            "generate" => " ¹",
            _ => " ²",
        };
        listing.add_row(vec![
            format!("{}{mark}", entry.short_name()),
            entry.id.clone(),
            entry.release.clone(),
            model_type.clone(),
            grouped(*total),
            human_count(*total),
        ]);
    }
    writeln!(out, "{listing}")?;
    let filtered = if rows.len() == catalog.entries().len() {
        String::new()
    } else {
        format!(" (of {})", catalog.entries().len())
    };
    writeln!(
        out,
        "{} models{filtered}, embedded: no network or files needed. Use a name or id as MODEL.",
        rows.len()
    )?;
    if rows.iter().any(|row| row.3 != "all") {
        writeln!(
            out,
            "¹ memory of transformers' generate() only; ² parameters only: the other commands say \
             what is not modelled yet."
        )?;
    }
    Ok(())
}
