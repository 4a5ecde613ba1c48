//! `vramfit gpus`: the GPU catalog.

use anyhow::Result;
use vramfit_report::{GpuEntry, GpusDocument, SCHEMA_VERSION};
use vramfit_sources::gpus::gpus;

use crate::cli::JsonArgs;
use crate::render::{gb, gib, table};

pub(crate) fn run(args: &JsonArgs, out: &mut dyn std::io::Write) -> Result<()> {
    if args.json {
        let list: Vec<_> = gpus().iter().map(GpuEntry::from).collect();
        crate::render::write_json(
            out,
            &GpusDocument { schema_version: SCHEMA_VERSION, gpus: list },
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
