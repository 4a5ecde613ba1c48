//! `vramfit gpus`: the GPU catalog.

use anyhow::Result;
use serde_json::json;
use vramfit_sources::gpus::gpus;

use crate::cli::JsonArgs;
use crate::render::{SCHEMA_VERSION, gb, gib, table};

pub(crate) fn run(args: &JsonArgs, out: &mut dyn std::io::Write) -> Result<()> {
    if args.json {
        let list: Vec<_> = gpus()
            .iter()
            .map(|g| {
                json!({
                    "name": g.name, "display": g.display, "memory_bytes": g.memory_bytes(),
                    "memory_mib": g.memory_mib, "bandwidth_gbs": g.bandwidth_gbs, "arch": g.arch,
                })
            })
            .collect();
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&json!({"schema_version": SCHEMA_VERSION, "gpus": list}))?
        )?;
        return Ok(());
    }
    let mut rows =
        table(&["name", "GPU", "memory GiB", "memory GB", "bandwidth GB/s", "arch"], &[2, 3, 4]);
    for g in gpus() {
        rows.add_row(vec![
            g.name.clone(),
            g.display.clone(),
            gib(g.memory_bytes()),
            gb(g.memory_bytes()),
            g.bandwidth_gbs.to_string(),
            g.arch.clone(),
        ]);
    }
    writeln!(out, "{rows}")?;
    writeln!(
        out,
        "memory as the driver reports it (nvidia-smi memory.total); use a name with --gpu"
    )?;
    Ok(())
}
