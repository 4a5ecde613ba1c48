//! `vramfit inspect PATH`: what a checkpoint stores, read from its headers alone.

use anyhow::{Context as _, Result};
use vramfit_core::params::count_params;
use vramfit_report::InspectDocument;
use vramfit_sources::checkpoint::{
    CheckpointFormat, from_gguf, from_safetensors, has_extension, read_checkpoint,
};
use vramfit_sources::hf_env::is_repo_part;
use vramfit_sources::hub::read_hub_checkpoint;

use crate::cli::InspectArgs;
use crate::render::{gb, gib, grouped, table};

pub(crate) fn run(args: &InspectArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let checkpoint = match hub_target(&args.path) {
        Some((repo, file)) => {
            let Some(hub) = crate::commands::hub()? else {
                anyhow::bail!(
                    "`{}` is not a local path, and reading the Hub is off (--offline or HF_HUB_OFFLINE=1)",
                    args.path.display()
                );
            };
            let revision = &crate::commands::revision().unwrap_or_else(|| "main".to_owned());
            match file {
                None => read_hub_checkpoint(&hub, &repo, revision)?,
                Some(file) if has_extension(&file, "gguf") => {
                    // A split model is read whole, from any of its parts, as on disk.
                    let (headers, _) = hub.gguf_file_headers(&repo, revision, &file)?;
                    let files = headers.iter().map(|h| h.file.clone().into()).collect();
                    from_gguf(files, &headers, None)
                }
                Some(file) => {
                    let header = hub.safetensors_header(&repo, revision, &file)?;
                    from_safetensors(
                        vec![
                            vramfit_sources::hf_env::redact_urls(
                                &hub.file_url(&repo, revision, &file)?,
                            )
                            .into(),
                        ],
                        vec![header],
                        None,
                    )
                }
            }
        }
        None => read_checkpoint(&args.path)?,
    };
    // A config.json beside the weights: vramfit's count from the architecture,
    // an independent check of both.
    let config = match &checkpoint.config_dir {
        Some(dir) if checkpoint.format == CheckpointFormat::Safetensors => {
            let model = crate::commands::resolve(&dir.display().to_string())
                .with_context(|| format!("reading the config.json in {}", dir.display()))?;
            Some((dir.join("config.json"), count_params(&model.parsed.spec)?.total))
        }
        _ => None,
    };
    let format = match checkpoint.format {
        CheckpointFormat::Safetensors => "safetensors",
        CheckpointFormat::Gguf => "gguf",
    };
    if args.json {
        let config = config.as_ref().map(|(path, total)| (path.display().to_string(), *total));
        let document = InspectDocument::new(&args.path.display().to_string(), &checkpoint, config);
        crate::render::write_json(out, &document)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} — {format}, {}, {} tensors (headers only)",
        args.path.display(),
        crate::render::count(checkpoint.files.len() as u64, "file"),
        grouped(checkpoint.tensors)
    )?;
    for (key, value) in &checkpoint.metadata {
        writeln!(out, "  {key}: {value}")?;
    }
    let mut rows = table(&["type", "tensors", "elements", "GiB", "GB"], &[1, 2, 3, 4]);
    for (name, totals) in &checkpoint.by_type {
        rows.add_row(vec![
            name.clone(),
            grouped(totals.tensors),
            grouped(totals.elements),
            gib(totals.bytes),
            gb(totals.bytes),
        ]);
    }
    writeln!(out, "{rows}")?;
    writeln!(
        out,
        "stored: {} bytes = {} GiB = {} GB (what loading the checkpoint as stored holds)",
        grouped(checkpoint.stored_bytes),
        gib(checkpoint.stored_bytes),
        gb(checkpoint.stored_bytes)
    )?;
    writeln!(out, "logical parameters: {}", grouped(checkpoint.logical_parameters))?;
    for (name, totals) in &checkpoint.by_format {
        writeln!(
            out,
            "  {name}: {} weights, {} parameters in {} bytes, plus {} bytes of scales/zeros/state",
            grouped(totals.weights),
            grouped(totals.logical_parameters),
            grouped(totals.stored_bytes),
            grouped(totals.auxiliary_bytes)
        )?;
    }
    if checkpoint.unknown_type_tensors > 0 {
        writeln!(
            out,
            "warning: {} tensors have a ggml type this build does not know; their bytes are not counted",
            checkpoint.unknown_type_tensors
        )?;
    }
    if let Some((path, total)) = config {
        if total == checkpoint.logical_parameters {
            writeln!(
                out,
                "{}: vramfit counts {} parameters — the same",
                path.display(),
                grouped(total)
            )?;
        } else {
            let diff = i128::from(checkpoint.logical_parameters) - i128::from(total);
            writeln!(
                out,
                "{}: vramfit counts {} parameters — the checkpoint has {diff:+} (tensors stored twice or left out, e.g. a tied head saved separately)",
                path.display(),
                grouped(total)
            )?;
        }
    }
    Ok(())
}

/// A Hub repo id (`ORG/NAME`), or one file of it (`ORG/NAME/FILE.safetensors|.gguf`),
/// for a PATH that does not exist locally.
fn hub_target(path: &std::path::Path) -> Option<(String, Option<String>)> {
    if path.exists() {
        return None;
    }
    let text = path.to_str()?;
    if text.starts_with(['.', '/', '~']) {
        return None;
    }
    let parts: Vec<&str> = text.split('/').collect();
    match parts.as_slice() {
        [org, name] if is_repo_part(org) && is_repo_part(name) => {
            Some((format!("{org}/{name}"), None))
        }
        [org, name, file]
            if is_repo_part(org)
                && is_repo_part(name)
                && is_repo_part(file)
                && (has_extension(file, "gguf") || has_extension(file, "safetensors")) =>
        {
            Some((format!("{org}/{name}"), Some((*file).to_owned())))
        }
        _ => None,
    }
}
