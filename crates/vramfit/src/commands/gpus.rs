//! `vramfit gpus`: the accelerator catalog, filtered, or this machine's accelerators.

use anyhow::{Result, bail};
use vramfit_report::{GpuEntry, GpusDocument, LocalProbe, SCHEMA_VERSION};
use vramfit_sources::gpus::{Gpu, MemoryFrom, Vendor, gpus};

use crate::cli::{GpuFilter, GpusArgs};
use crate::render::{gib, table};

/// Whether `gpu` passes `filter`. `--min-memory` allows 2 % under the size
/// asked: drivers report a little less than a card's stated capacity (an
/// "80 GB" H100 shows 79.65 GiB, a "48 GB" L40S 44.99 GiB with ECC on is not
/// caught by this, by design), so that `--min-memory 80GiB` keeps the H100.
pub(crate) fn keep(gpu: &Gpu, filter: &GpuFilter) -> bool {
    filter.vendor.is_none_or(|v| gpu.vendor == v)
        && filter.min_memory.is_none_or(|m| gpu.memory_bytes() >= m - m / 50)
}

/// The catalog entries `filter` keeps, or an error saying none does.
pub(crate) fn filtered(filter: &GpuFilter) -> Result<Vec<Gpu>> {
    let list: Vec<Gpu> = gpus().iter().filter(|g| keep(g, filter)).cloned().collect();
    if list.is_empty() {
        bail!(
            "--vendor/--min-memory: no catalog accelerator matches{}{}",
            filter.vendor.map(|v| format!(" vendor {v}")).unwrap_or_default(),
            filter.min_memory.map(|m| format!(" with at least {} GiB", gib(m))).unwrap_or_default()
        );
    }
    Ok(list)
}

/// A support flag as the table shows it: yes, no, or not known.
fn flag(value: Option<bool>) -> &'static str {
    match value {
        Some(true) => "✓",
        Some(false) => "✗",
        None => "?",
    }
}

pub(crate) fn run(args: &GpusArgs, out: &mut dyn std::io::Write) -> Result<()> {
    let (list, local) = if args.local {
        let found = crate::local::detect();
        let gpus: Vec<Gpu> = found.gpus.iter().filter(|g| keep(g, &args.filter)).cloned().collect();
        (gpus, Some(found))
    } else {
        (filtered(&args.filter)?, None)
    };
    if args.json {
        crate::render::write_json(
            out,
            &GpusDocument {
                schema_version: SCHEMA_VERSION,
                gpus: list.iter().map(GpuEntry::from).collect(),
                local: local.as_ref().map(|found| LocalProbe {
                    tool: found.tool.map(str::to_owned),
                    tried: found.tried.clone(),
                    ram_bytes: found.ram_bytes,
                }),
            },
        )?;
        return Ok(());
    }
    if let Some(found) = &local {
        match found.tool {
            Some(tool) => writeln!(out, "this machine's accelerators, as {tool} reports them:")?,
            None => writeln!(out, "no accelerator found on this machine")?,
        }
        for why in &found.tried {
            writeln!(out, "  {why}")?;
        }
        if let Some(ram) = found.ram_bytes {
            writeln!(
                out,
                "  RAM: {} GiB (what llama.cpp on the CPU, or --n-gpu-layers offload, can use)",
                gib(ram)
            )?;
        }
        if list.is_empty() {
            if !found.gpus.is_empty() {
                writeln!(out, "  none of them matches --vendor/--min-memory")?;
            }
            return Ok(());
        }
    }
    for vendor in Vendor::ALL {
        let group: Vec<&Gpu> = list.iter().filter(|g| g.vendor == vendor).collect();
        if group.is_empty() {
            continue;
        }
        let mut platforms: Vec<&str> = group.iter().map(|g| g.platform.name()).collect();
        platforms.dedup();
        writeln!(out, "{} ({})", vendor.name().to_uppercase(), platforms.join(", "))?;
        let mut rows = table(
            &[
                "name",
                "accelerator",
                "GiB",
                "usable GiB",
                "GB/s",
                "arch",
                "bf16",
                "fp8",
                "FA2",
                "bnb",
            ],
            &[2, 3, 4],
        );
        for g in group {
            let from = if g.memory_from == MemoryFrom::Spec { " ²" } else { "" };
            rows.add_row(vec![
                g.name.clone(),
                g.display.clone(),
                format!("{}{from}", gib(g.total_bytes())),
                if g.memory_bytes() == g.total_bytes() {
                    "=".to_owned()
                } else {
                    format!("{} ¹", gib(g.memory_bytes()))
                },
                if g.bandwidth_gbs > 0.0 { format!("{}", g.bandwidth_gbs) } else { "?".to_owned() },
                g.arch.clone(),
                flag(g.bf16).to_owned(),
                flag(g.fp8).to_owned(),
                flag(g.flash_attention_2).to_owned(),
                flag(g.bitsandbytes).to_owned(),
            ]);
        }
        writeln!(out, "{rows}")?;
    }
    writeln!(
        out,
        "GiB: the total as the driver reports it (nvidia-smi, rocm-smi); ² the vendor's stated capacity (no driver total found)"
    )?;
    if list.iter().any(|g| g.memory_bytes() != g.total_bytes()) {
        writeln!(
            out,
            "¹ what a job may use: on Apple silicon, Metal's working set, not the whole RAM (override with --gpu-limit)"
        )?;
    }
    writeln!(
        out,
        "FA2: FlashAttention-2 kernels; bnb: bitsandbytes; ✓ runs, ✗ does not, ? not known. Give --gpu a name or a size (--gpu 24GiB); every figure's source: `vramfit gpus --json`"
    )?;
    Ok(())
}
