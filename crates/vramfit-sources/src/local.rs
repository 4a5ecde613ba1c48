//! This machine's accelerators, from what its vendor tools print.
//!
//! Pure parsing: the CLI runs the tools (with a deadline and a bound on what it
//! reads) and hands their output here. Each parser takes the output of one
//! command, named on it, and returns the accelerators it lists, matched to the
//! catalog where the product and memory agree (so capability checks and the
//! Metal working set apply), else described from what the tool said.

use crate::gpus::{Gpu, Platform, Vendor, gpus, plain};
use vramfit_core::memory::runtime::MIB;

/// The command whose output [`parse_nvidia_smi`] reads.
pub const NVIDIA_SMI: (&str, &[&str]) = (
    "nvidia-smi",
    &["--query-gpu=index,name,memory.total,compute_cap", "--format=csv,noheader,nounits"],
);
/// The same without `compute_cap`, which drivers before 510 do not know.
pub const NVIDIA_SMI_OLD: (&str, &[&str]) =
    ("nvidia-smi", &["--query-gpu=index,name,memory.total", "--format=csv,noheader,nounits"]);
/// The command whose output [`parse_amd_smi`] reads.
pub const AMD_SMI: (&str, &[&str]) = ("amd-smi", &["static", "--asic", "--vram", "--json"]);
/// The command whose output [`parse_rocm_smi`] reads.
pub const ROCM_SMI: (&str, &[&str]) =
    ("rocm-smi", &["--showproductname", "--showmeminfo", "vram", "--json"]);
/// The command whose output [`parse_sysctl`] reads (macOS).
pub const SYSCTL: (&str, &[&str]) = ("sysctl", &["-n", "hw.memsize", "machdep.cpu.brand_string"]);

/// The catalog entry for a product the tool named: one whose full name holds
/// it and, when the tool gave a memory total, within 2 % of it (that total then
/// wins, the rest is the catalog's).
fn from_catalog(product: &str, memory: Option<u64>, vendor: Vendor) -> Option<Gpu> {
    let wanted = plain(product);
    // nvidia-smi's "NVIDIA H100 80GB HBM3" in "NVIDIA H100 80GB HBM3 (SXM5)";
    // rocm-smi's "Radeon RX 7900 XTX" in "AMD Radeon RX 7900 XTX".
    let named = |g: &Gpu| !wanted.is_empty() && plain(&g.display).contains(&wanted);
    let near = |g: &Gpu| memory.is_none_or(|m| g.total_bytes().abs_diff(m) <= g.total_bytes() / 50);
    let gpu = gpus().iter().filter(|g| g.vendor == vendor && near(g)).find(|g| named(g))?;
    Some(match memory {
        Some(bytes) => gpu.clone().read_locally(bytes),
        None => gpu.clone(),
    })
}

/// NVIDIA's architecture for a compute capability (NVIDIA's CUDA GPUs list).
fn nvidia_arch(major: u32, minor: u32) -> &'static str {
    match (major, minor) {
        (7, 0..=2) => "volta",
        (7, _) => "turing",
        (8, 9) => "ada",
        (8, _) => "ampere",
        (9, _) => "hopper",
        (10.., _) => "blackwell",
        _ => "unknown",
    }
}

/// `nvidia-smi --query-gpu=index,name,memory.total[,compute_cap]
/// --format=csv,noheader,nounits`: one line per GPU, fields separated by ", ",
/// memory in MiB (the nvidia-smi manual, `--help-query-gpu`). Lines that are
/// not such a row (an error from an old driver) are an error.
pub fn parse_nvidia_smi(text: &str) -> Result<Vec<Gpu>, String> {
    let mut found = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        let (Some(name), Some(mib)) = (fields.get(1), fields.get(2)) else {
            return Err(format!("nvidia-smi printed `{line}`, not a GPU row"));
        };
        let capability = fields.get(3).filter(|c| c.contains('.')).map(|c| (*c).to_owned());
        // No framebuffer total: unified-memory parts (DGX Spark's GB10) and
        // some MIG or embedded setups print `[N/A]`. The catalog entry of that
        // name stands in; a row with neither is left out, not the machine.
        let Ok(mib) = mib.parse::<u64>() else {
            found.extend(from_catalog(name, None, Vendor::Nvidia));
            continue;
        };
        let memory = mib.checked_mul(MIB).ok_or("nvidia-smi: memory out of range")?;
        let gpu = from_catalog(name, Some(memory), Vendor::Nvidia).unwrap_or_else(|| {
            let mut gpu = Gpu::local(
                format!("local-{}", fields[0]),
                (*name).to_owned(),
                Vendor::Nvidia,
                Platform::Cuda,
                memory,
                false,
            );
            gpu.compute_capability = capability;
            let (major, minor) = gpu.capability();
            nvidia_arch(major, minor).clone_into(&mut gpu.arch);
            // The Transformer Engine matrix's rules (bf16 from 8.0, FP8 from
            // 8.9) and FlashAttention-2's (Ampere and later), as in the catalog.
            if major > 0 {
                gpu.bf16 = Some((major, minor) >= (8, 0));
                gpu.fp8 = Some((major, minor) >= (8, 9));
                gpu.flash_attention_2 = Some((major, minor) >= (8, 0));
            }
            gpu
        });
        found.push(gpu);
    }
    Ok(found)
}

/// A byte count from a JSON value: a number, a string of digits, or an object
/// `{"value": N, "unit": "MB"}` / a string `"N MB"` (amd-smi writes MB for
/// MiB, as its memory figures are the driver's MiB).
fn json_bytes(value: &serde_json::Value, default_unit: u64) -> Option<u64> {
    let scale = |unit: &str| match unit.trim().to_ascii_uppercase().as_str() {
        "B" => Some(1),
        "KB" | "KIB" => Some(1 << 10),
        "MB" | "MIB" => Some(1 << 20),
        "GB" | "GIB" => Some(1 << 30),
        _ => None,
    };
    match value {
        serde_json::Value::Number(n) => n.as_u64()?.checked_mul(default_unit),
        serde_json::Value::String(s) => {
            let s = s.trim();
            let split = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
            let (digits, unit) = s.split_at(split);
            let unit = if unit.trim().is_empty() { default_unit } else { scale(unit)? };
            digits.parse::<u64>().ok()?.checked_mul(unit)
        }
        serde_json::Value::Object(map) => {
            let unit =
                map.get("unit").and_then(|u| u.as_str()).map_or(Some(default_unit), scale)?;
            map.get("value")?.as_u64()?.checked_mul(unit)
        }
        _ => None,
    }
}

/// `amd-smi static --asic --vram --json`, in the shapes its releases print
/// (`amdsmi_cli/amdsmi_commands.py`; see the fixtures' `SOURCES.md`): one GPU
/// as an object with `vram.vram_size_mb` (`ROCm` 6.0), a list of GPUs with
/// `vram.size` as `{"value": N, "unit": "MB"}` (`ROCm` 6.2), or that list under
/// `gpu_data` (newer); amd-smi's "MB" is the driver's MiB. Each GPU's name is
/// `asic.market_name`.
pub fn parse_amd_smi(text: &str) -> Result<Vec<Gpu>, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("amd-smi printed no JSON: {e}"))?;
    let list = match &json {
        serde_json::Value::Array(list) => list.clone(),
        serde_json::Value::Object(map) => match map.get("gpu_data") {
            Some(serde_json::Value::Array(list)) => list.clone(),
            _ => vec![json.clone()],
        },
        _ => return Err("amd-smi's JSON is not a list of GPUs".to_owned()),
    };
    let mut found = Vec::new();
    for (index, entry) in list.iter().enumerate() {
        let product = entry
            .pointer("/asic/market_name")
            .and_then(|v| v.as_str())
            .unwrap_or("AMD GPU")
            .to_owned();
        let memory = entry
            .pointer("/vram/size")
            .or_else(|| entry.pointer("/vram/vram_size_mb"))
            .and_then(|v| json_bytes(v, MIB))
            .ok_or_else(|| format!("amd-smi: GPU {index} has no vram.size"))?;
        let target = entry.pointer("/asic/target_graphics_version").and_then(|v| v.as_str());
        found.push(amd(index, product, memory, target));
    }
    Ok(found)
}

/// `rocm-smi --showproductname --showmeminfo vram --json`: an object with one
/// `cardN` entry per GPU holding `"VRAM Total Memory (B)"` (bytes, as a
/// string) and `"Card series"` (`rocm_smi_lib`'s `python_smi_tools/rocm_smi.py`).
pub fn parse_rocm_smi(text: &str) -> Result<Vec<Gpu>, String> {
    let json: serde_json::Value =
        serde_json::from_str(text).map_err(|e| format!("rocm-smi printed no JSON: {e}"))?;
    let Some(cards) = json.as_object() else {
        return Err("rocm-smi's JSON is not an object of cards".to_owned());
    };
    let mut found = Vec::new();
    // In card order (card2 before card10), not the JSON's key order.
    let mut listed: Vec<(u64, &String, &serde_json::Value)> = cards
        .iter()
        .filter_map(|(k, v)| Some((k.strip_prefix("card")?.parse().ok()?, k, v)))
        .collect();
    listed.sort_by_key(|(n, _, _)| *n);
    for (index, (_, card, entry)) in listed.into_iter().enumerate() {
        let memory = entry
            .get("VRAM Total Memory (B)")
            .and_then(|v| json_bytes(v, 1))
            .ok_or_else(|| format!("rocm-smi: {card} has no \"VRAM Total Memory (B)\""))?;
        let product = ["Card Series", "Card series", "Card SKU", "Card model"]
            .iter()
            .find_map(|key| entry.get(*key).and_then(|v| v.as_str()))
            .unwrap_or("AMD GPU")
            .to_owned();
        let target = ["GFX Version", "GFX version"]
            .iter()
            .find_map(|key| entry.get(*key).and_then(|v| v.as_str()));
        found.push(amd(index, product, memory, target));
    }
    Ok(found)
}

/// An AMD GPU the tool listed: the catalog's entry, or one described from
/// what the tool said (its LLVM target decides what runs on it).
fn amd(index: usize, product: String, memory: u64, target: Option<&str>) -> Gpu {
    from_catalog(&product, Some(memory), Vendor::Amd).unwrap_or_else(|| {
        let mut gpu = Gpu::local(
            format!("local-{index}"),
            product,
            Vendor::Amd,
            Platform::Rocm,
            memory,
            false,
        );
        gpu.gfx_target = target.filter(|t| t.starts_with("gfx")).map(str::to_owned);
        gpu
    })
}

/// `sysctl -n hw.memsize machdep.cpu.brand_string` on macOS: the RAM in bytes,
/// then the chip (`Apple M2 Max`), one per line. Only Apple silicon is an
/// accelerator here; an Intel Mac gives none.
pub fn parse_sysctl(text: &str) -> Result<Vec<Gpu>, String> {
    let mut lines = text.lines().map(str::trim).filter(|l| !l.is_empty());
    let memory: u64 = lines
        .next()
        .and_then(|l| l.parse().ok())
        .ok_or("sysctl: hw.memsize is not a byte count")?;
    let chip = lines.next().unwrap_or_default();
    let Some(model) = chip.strip_prefix("Apple ") else { return Ok(Vec::new()) };
    // Catalog names are `m2-max-96gb`: the chip, then the RAM in GiB.
    let name = format!("{}-{}gb", model.to_ascii_lowercase().replace(' ', "-"), memory >> 30);
    if let Some(gpu) = gpus().iter().find(|g| g.name == name) {
        return Ok(vec![gpu.clone().read_locally(memory)]);
    }
    let mut gpu = Gpu::local(
        name,
        format!("{chip} with {} GiB unified memory", memory >> 30),
        Vendor::Apple,
        Platform::Metal,
        memory,
        true,
    );
    gpu.arch = model
        .split(' ')
        .next()
        .map_or_else(|| "apple".to_owned(), |m| format!("apple {}", m.to_ascii_lowercase()));
    Ok(vec![gpu])
}

/// `/proc/meminfo`'s `MemTotal`, bytes (the file gives kB, meaning KiB).
pub fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let kib: u64 =
        line.trim_start_matches("MemTotal:").trim().trim_end_matches("kB").trim().parse().ok()?;
    kib.checked_mul(1024)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nvidia_rows_match_the_catalog_or_stand_alone() {
        let found = parse_nvidia_smi(
            "0, NVIDIA H100 80GB HBM3, 81559, 9.0\n1, NVIDIA H100 80GB HBM3, 81559, 9.0\n",
        )
        .unwrap();
        assert_eq!(found.len(), 2);
        assert_eq!(found[0].name, "h100-80gb");
        assert_eq!(found[0].memory_from, crate::gpus::MemoryFrom::Local);
        let odd = parse_nvidia_smi("0, NVIDIA Quadro X, 20000, 8.6").unwrap();
        assert_eq!(odd[0].name, "local-0");
        assert_eq!(odd[0].arch, "ampere");
        assert_eq!(
            (odd[0].bf16, odd[0].fp8, odd[0].flash_attention_2),
            (Some(true), Some(false), Some(true))
        );
        // DGX Spark prints no framebuffer total: the catalog's GB10 stands in,
        // and a row with neither is left out without losing the others.
        let spark = parse_nvidia_smi("0, NVIDIA GB10, [N/A], 12.1\n1, NVIDIA Mystery, [N/A], 9.0\n2, NVIDIA H100 80GB HBM3, 81559, 9.0").unwrap();
        assert_eq!(
            spark.iter().map(|g| g.name.as_str()).collect::<Vec<_>>(),
            ["gb10", "h100-80gb"]
        );
        assert_eq!(odd[0].memory_bytes(), 20_000 * MIB);
        assert!(parse_nvidia_smi("Field \"compute_cap\" is not a valid field to query.").is_err());
    }

    #[test]
    fn amd_tools_give_the_target_and_keep_card_order() {
        let json = r#"{"card10": {"VRAM Total Memory (B)": "1073741824", "Card Series": "Odd B"},
                       "card2": {"VRAM Total Memory (B)": "2147483648", "Card Series": "Odd A", "GFX Version": "gfx942"}}"#;
        let found = parse_rocm_smi(json).unwrap();
        assert_eq!(found[0].display, "Odd A");
        assert_eq!(found[0].gfx_target.as_deref(), Some("gfx942"));
        assert_eq!(found[1].gfx_target, None);
    }

    #[test]
    fn sysctl_finds_the_apple_entry() {
        let found = parse_sysctl("103079215104\nApple M2 Max\n").unwrap();
        assert_eq!(found[0].name, "m2-max-96gb");
        assert_eq!(found[0].memory_bytes(), 73_728 * MIB);
        let other = parse_sysctl("17179869184\nApple M4\n").unwrap();
        assert_eq!(other[0].name, "m4-16gb");
        assert_eq!(other[0].arch, "apple m4");
        assert!(parse_sysctl("17179869184\nIntel(R) Core(TM) i9\n").unwrap().is_empty());
        assert!(parse_sysctl("lots\n").is_err());
    }

    #[test]
    fn meminfo_total() {
        assert_eq!(
            parse_meminfo("MemTotal:       65842392 kB\nMemFree: 1 kB\n"),
            Some(65_842_392 * 1024)
        );
        assert_eq!(parse_meminfo("nothing"), None);
    }
}
