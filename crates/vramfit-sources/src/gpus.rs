//! The accelerator catalog (`data/gpus.toml`, generated from
//! `validation/accelerators/research.toml`), embedded at build time, and
//! accelerators given by their memory size.

use std::fmt;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};
use vramfit_core::memory::runtime::{MIB, Runtime};

/// Who makes the accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Vendor {
    /// NVIDIA.
    Nvidia,
    /// AMD.
    Amd,
    /// Apple.
    Apple,
    /// Intel.
    Intel,
}

impl Vendor {
    /// Every vendor, in the catalog's order.
    pub const ALL: [Vendor; 4] = [Vendor::Nvidia, Vendor::Amd, Vendor::Apple, Vendor::Intel];

    /// The lower-case name (`nvidia`).
    pub fn name(self) -> &'static str {
        match self {
            Vendor::Nvidia => "nvidia",
            Vendor::Amd => "amd",
            Vendor::Apple => "apple",
            Vendor::Intel => "intel",
        }
    }

    /// The vendor named `text` (case-insensitive).
    pub fn parse(text: &str) -> Option<Vendor> {
        Vendor::ALL.into_iter().find(|v| v.name().eq_ignore_ascii_case(text.trim()))
    }
}

impl fmt::Display for Vendor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The software stack that drives the accelerator.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Platform {
    /// NVIDIA CUDA.
    Cuda,
    /// AMD ROCm/HIP.
    Rocm,
    /// Apple Metal (PyTorch's `mps` device, llama.cpp's Metal backend).
    Metal,
    /// Intel's GPUs (PyTorch's `xpu` device, llama.cpp's SYCL and Vulkan backends).
    Xpu,
    /// Intel Gaudi (Habana's `hpu` device).
    Gaudi,
}

impl Platform {
    /// The lower-case name (`cuda`).
    pub fn name(self) -> &'static str {
        match self {
            Platform::Cuda => "cuda",
            Platform::Rocm => "rocm",
            Platform::Metal => "metal",
            Platform::Xpu => "xpu",
            Platform::Gaudi => "gaudi",
        }
    }
}

/// Where an accelerator's memory figure comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryFrom {
    /// The total the driver reports (`nvidia-smi`, `rocm-smi`, HIP).
    Driver,
    /// The vendor's stated capacity (no driver capture was found).
    Spec,
    /// A size the user typed (`--gpu 24GiB`).
    Given,
    /// Read from this machine's tools (`--gpu local`).
    Local,
}

/// One accelerator.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// Short name used with `--gpu` (`h100-80gb`).
    pub name: String,
    /// Other names `--gpu` takes for it.
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Who makes it.
    pub vendor: Vendor,
    /// What drives it.
    pub platform: Platform,
    /// Full product name.
    pub display: String,
    /// Total memory, MiB (2²⁰ bytes): see [`Gpu::memory_from`].
    pub memory_mib: u64,
    /// Where `memory_mib` comes from.
    pub memory_from: MemoryFrom,
    /// What CUDA itself reports (`totalGlobalMem`: nvidia-smi's total less its
    /// Reserved line), MiB, where a capture was found.
    pub cuda_total_mib: Option<u64>,
    /// Metal's `recommendedMaxWorkingSetSize` from a logged run, MiB.
    pub metal_working_set_mib: Option<u64>,
    /// On a unified-memory PC, the largest share of the RAM its firmware gives
    /// the GPU, MiB (Strix Halo: 96 GiB of 128).
    pub gpu_share_mib: Option<u64>,
    /// CPU and GPU share one memory (Apple silicon, GB10, Strix Halo).
    #[serde(default)]
    pub unified_memory: bool,
    /// Peak memory bandwidth, GB/s (10⁹ bytes per second).
    pub bandwidth_gbs: f64,
    /// Architecture (`hopper`, `ampere`, `cdna3`, `apple m2`, …).
    pub arch: String,
    /// NVIDIA's CUDA compute capability, `major.minor`.
    pub compute_capability: Option<String>,
    /// AMD's LLVM target (`gfx942`).
    pub gfx_target: Option<String>,
    /// Native bf16 arithmetic (absent: not known).
    pub bf16: Option<bool>,
    /// FP8 matrix units (absent: not known).
    pub fp8: Option<bool>,
    /// FlashAttention-2 has kernels for it (absent: not known).
    pub flash_attention_2: Option<bool>,
    /// bitsandbytes (LLM.int8, QLoRA 4-bit) runs on it (absent: not known).
    pub bitsandbytes: Option<bool>,
    /// One shortened citation per figure (the full text is in
    /// `validation/accelerators/research.toml`).
    #[serde(default)]
    pub sources: Vec<String>,
    /// Exact total when it is not a whole number of MiB (a typed size).
    #[serde(skip)]
    exact_bytes: Option<u64>,
    /// The memory a job may use, when the user capped it (`--gpu-limit`).
    #[serde(skip)]
    limit_bytes: Option<u64>,
}

/// Apple's default Metal working set for `ram` bytes of unified memory, when
/// no logged value is in the catalog.
///
/// Source: `recommendedMaxWorkingSetSize` as llama.cpp logs it, with the
/// machine's RAM stated (`validation/accelerators/research.toml`, and
/// llama.cpp issues 1870 and 3213, PR 2011, ollama issue 434, exo PR 1672):
/// exactly 2/3 of RAM on 8, 16 and 32 GiB machines and exactly 3/4 on 64 and
/// 96 GiB ones, in macOS 13–15 logs; an M4 Max with 36 GiB logged 28991.03 MB
/// (27648 MiB, 3/4) under macOS 15.7, and an M3 Max 38654.71 MB (36864 MiB, 3/4
/// of 48 GiB): both public logs found by exact-string search. So machines above
/// 32 GiB take 3/4. macOS 26 on a 128 GiB M5 Max logged 0.84 (antirez/ds4 PR
/// 893): newer macOS releases give more, so this is a floor. `--gpu-limit`
/// (after `sudo sysctl iogpu.wired_limit_mb=…`, which Metal then reports
/// exactly) overrides it.
pub fn metal_working_set_default(ram_bytes: u64) -> u64 {
    const GIB: u64 = 1 << 30;
    if ram_bytes > 32 * GIB { ram_bytes / 4 * 3 } else { ram_bytes / 3 * 2 }
}

impl Gpu {
    /// The memory a job may use, bytes: the `--gpu-limit` if one was given; on
    /// Apple's Metal, the GPU's working set (logged, or
    /// [`metal_working_set_default`]), not the whole RAM; else the total.
    pub fn memory_bytes(&self) -> u64 {
        if let Some(limit) = self.limit_bytes {
            return limit;
        }
        if self.platform == Platform::Metal {
            return self
                .metal_working_set_mib
                .map_or_else(|| metal_working_set_default(self.total_bytes()), |mib| mib * MIB);
        }
        if let Some(mib) = self.gpu_share_mib {
            return mib.saturating_mul(MIB).min(self.total_bytes());
        }
        self.total_bytes()
    }

    /// The total memory, bytes (on unified-memory machines, the whole RAM).
    pub fn total_bytes(&self) -> u64 {
        self.exact_bytes.unwrap_or(self.memory_mib.saturating_mul(MIB))
    }

    /// This entry as a tool on this machine reported it: `bytes` in total.
    #[must_use]
    pub(crate) fn read_locally(mut self, bytes: u64) -> Self {
        self.memory_mib = bytes / MIB;
        self.exact_bytes = Some(bytes);
        self.memory_from = MemoryFrom::Local;
        self
    }

    /// Caps the memory a job may use (`--gpu-limit`).
    #[must_use]
    pub fn with_limit(mut self, bytes: u64) -> Self {
        self.limit_bytes = Some(bytes);
        self
    }

    /// The cap `--gpu-limit` set, if any.
    pub fn limit(&self) -> Option<u64> {
        self.limit_bytes
    }

    /// What limits the memory a job may use, in words, when it is not the total.
    pub fn limit_reason(&self) -> Option<String> {
        if self.limit_bytes.is_some() {
            Some("the --gpu-limit given".to_owned())
        } else if self.platform == Platform::Metal {
            Some(if self.metal_working_set_mib.is_some() {
                "Metal's working set (recommendedMaxWorkingSetSize, from a logged run; raise it with `sysctl iogpu.wired_limit_mb` and --gpu-limit)".to_owned()
            } else {
                "Metal's default working set (2/3 of RAM up to 32 GiB, 3/4 above, as llama.cpp logs show; raise it with `sysctl iogpu.wired_limit_mb` and --gpu-limit)".to_owned()
            })
        } else if self.gpu_share_mib.is_some() {
            Some("the largest share of its RAM the firmware assigns the GPU (the catalog's source; set yours with --gpu-limit)".to_owned())
        } else {
            None
        }
    }

    /// "`name` may use X GiB of its Y GiB: why", when that is not the total.
    pub fn limit_note(&self) -> Option<String> {
        const GIB: f64 = (1u64 << 30) as f64;
        self.limit_reason().map(|reason| {
            #[expect(clippy::cast_precision_loss, reason = "GiB for display")]
            let (usable, total) =
                (self.memory_bytes() as f64 / GIB, self.total_bytes() as f64 / GIB);
            format!("{} may use {usable:.2} GiB of its {total:.2} GiB: {reason}", self.name)
        })
    }

    /// A generic CUDA GPU of `bytes` memory, named by the size as typed.
    pub fn of_size(bytes: u64, typed: &str) -> Gpu {
        Gpu {
            name: typed.trim().to_owned(),
            aliases: Vec::new(),
            vendor: Vendor::Nvidia,
            platform: Platform::Cuda,
            display: format!("generic CUDA GPU ({})", typed.trim()),
            memory_mib: bytes / MIB,
            memory_from: MemoryFrom::Given,
            cuda_total_mib: None,
            metal_working_set_mib: None,
            gpu_share_mib: None,
            unified_memory: false,
            bandwidth_gbs: 0.0,
            arch: "unknown".to_owned(),
            compute_capability: None,
            gfx_target: None,
            bf16: None,
            fp8: None,
            flash_attention_2: None,
            bitsandbytes: None,
            sources: Vec::new(),
            exact_bytes: Some(bytes),
            limit_bytes: None,
        }
    }

    /// An accelerator read from this machine: `memory` bytes in total.
    pub fn local(
        name: String,
        display: String,
        vendor: Vendor,
        platform: Platform,
        memory: u64,
        unified_memory: bool,
    ) -> Gpu {
        Gpu {
            name,
            vendor,
            platform,
            display,
            memory_mib: memory / MIB,
            memory_from: MemoryFrom::Local,
            unified_memory,
            exact_bytes: Some(memory),
            ..Gpu::of_size(memory, "local")
        }
    }

    /// Several of these devices work on one job together: CUDA (NCCL), `ROCm`
    /// (RCCL) and Gaudi (HCCL) do; an Apple GPU is one per machine, and Intel's
    /// GPUs are not modelled working together.
    pub fn works_with_others(&self) -> bool {
        matches!(self.platform, Platform::Cuda | Platform::Rocm | Platform::Gaudi)
    }

    /// The compute capability as `(major, minor)`; `(0, 0)` where there is none.
    pub fn capability(&self) -> (u32, u32) {
        let Some(text) = &self.compute_capability else { return (0, 0) };
        let mut parts = text.split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Runtime defaults for this accelerator.
    ///
    /// CUDA: the cuBLAS workspace follows the architecture (Hopper and later
    /// take 32 MiB, see [`Runtime::HOPPER`]); a GPU of unknown architecture
    /// takes Hopper's. `ROCm` runs PyTorch's same caching allocator (`c10`'s CUDA
    /// allocator, hipified) and takes the CUDA defaults, unmeasured there (see
    /// [`Gpu::platform_notes`]). Metal, XPU and Gaudi have no CUDA context or
    /// cuBLAS workspace: those are zero, and the tensors are PyTorch's own.
    pub fn runtime(&self) -> Runtime {
        match self.platform {
            Platform::Cuda | Platform::Rocm => {
                if matches!(self.arch.as_str(), "ampere" | "ada" | "turing" | "volta") {
                    Runtime::PRE_HOPPER
                } else {
                    Runtime::HOPPER
                }
            }
            Platform::Metal | Platform::Xpu | Platform::Gaudi => Runtime::NO_CUDA,
        }
    }

    /// What is modelled but not measured for a PyTorch job on this
    /// accelerator, or not the device's driver figure, in words for the
    /// output: [`Gpu::memory_notes`] and [`Gpu::pytorch_note`].
    pub fn platform_notes(&self) -> Vec<String> {
        let mut notes = self.memory_notes();
        notes.extend(self.pytorch_note().map(str::to_owned));
        notes
    }

    /// What to know of the memory figure itself: a vendor's stated capacity
    /// rather than the driver's total, a size typed for a generic GPU, or a
    /// unified-memory share left to give ([`Gpu::unified_note`]). Every job and
    /// engine on the device needs these.
    pub fn memory_notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        match self.memory_from {
            MemoryFrom::Spec if !self.unified_memory => notes.push(format!(
                "{}'s memory is the vendor's stated capacity ({} GiB): no driver total was found, and drivers report a little less",
                self.name,
                self.total_bytes() / (1 << 30)
            )),
            MemoryFrom::Given => notes.push(format!(
                "--gpu {}: a generic CUDA GPU of that memory is assumed (CUDA context and cuBLAS workspace of a Hopper-class GPU; no capability checks)",
                self.name
            )),
            _ => {}
        }
        notes.extend(self.unified_note());
        notes
    }

    /// On a unified-memory machine without a sourced GPU share or a
    /// `--gpu-limit`: the whole RAM is counted, and the user should give the share.
    pub fn unified_note(&self) -> Option<String> {
        (self.unified_memory
            && self.platform != Platform::Metal
            && self.limit_bytes.is_none()
            && self.gpu_share_mib.is_none())
        .then(|| {
            format!(
                "{} shares its {} GiB with the CPU: the GPU may use only what the firmware and driver assign it; give that with --gpu-limit",
                self.name,
                self.total_bytes() / (1 << 30)
            )
        })
    }

    /// What a PyTorch job on this platform takes from CUDA's figures without
    /// their having been measured there; the same for every device of the
    /// platform (a sweep says it once).
    pub fn pytorch_note(&self) -> Option<&'static str> {
        match self.platform {
            Platform::Cuda => None,
            Platform::Rocm => Some(
                "ROCm: PyTorch's tensors and caching allocator are the same as on CUDA; the HIP context and hipBLAS workspace are taken as CUDA's, not measured on ROCm",
            ),
            Platform::Metal => Some(
                "Metal (mps): tensors as PyTorch allocates them; no CUDA context or cuBLAS workspace; the MPS allocator's own overhead is not measured (the reserved level uses the CUDA allocator's rule)",
            ),
            Platform::Xpu => Some(
                "xpu: tensors as PyTorch allocates them; the device runtime's own memory is not modelled",
            ),
            Platform::Gaudi => Some(
                "gaudi: tensors as PyTorch allocates them; the device runtime's own memory is not modelled, and over several devices HCCL's buffers are taken as NCCL's (1 GiB), not measured",
            ),
        }
    }
}

/// A memory size as typed: a number (fractions allowed) and a unit, `24GiB`,
/// `80GB`, `1.5TiB`, `512 MiB` (units case-insensitive; GB/MB/TB are powers of
/// 10, GiB/MiB/TiB powers of 2). `None` when `text` is not a size.
pub fn parse_size(text: &str) -> Option<u64> {
    let text = text.trim();
    let split = text.find(|c: char| !(c.is_ascii_digit() || c == '.'))?;
    let (number, unit) = text.split_at(split);
    let unit = unit.trim().to_ascii_lowercase();
    let scale: u64 = match unit.as_str() {
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        _ => return None,
    };
    // Digits only, at most one point, and a digit somewhere.
    if number.is_empty()
        || number.matches('.').count() > 1
        || !number.chars().any(|c| c.is_ascii_digit())
    {
        return None;
    }
    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let whole: u64 = if whole.is_empty() { 0 } else { whole.parse().ok()? };
    let bytes = whole.checked_mul(scale)?;
    // The fraction exactly (rounded down to the byte): scale × digits / 10^len.
    let fraction = &fraction[..fraction.len().min(18)];
    let part = if fraction.is_empty() {
        0
    } else {
        let digits: u128 = fraction.parse().ok()?;
        u128::from(scale) * digits / 10u128.pow(u32::try_from(fraction.len()).ok()?)
    };
    let bytes = bytes.checked_add(u64::try_from(part).ok()?)?;
    Some(bytes)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuFile {
    gpu: Vec<Gpu>,
}

static GPUS_TOML: &str = include_str!("../data/gpus.toml");

/// All catalog accelerators.
///
/// # Panics
/// Never in a released build: `data/gpus.toml` is checked by the test suite.
pub fn gpus() -> &'static [Gpu] {
    static GPUS: OnceLock<Vec<Gpu>> = OnceLock::new();
    GPUS.get_or_init(|| {
        toml::from_str::<GpuFile>(GPUS_TOML)
            .expect("data/gpus.toml is valid (checked by tests)")
            .gpu
    })
}

/// `text` reduced to its lower-case letters and digits, for matching names as
/// people and tools write them (`RTX4090`, `NVIDIA GeForce RTX 4090`).
pub(crate) fn plain(text: &str) -> String {
    text.to_ascii_lowercase().chars().filter(char::is_ascii_alphanumeric).collect()
}

/// The GPU named `name` (case-insensitive, or one of its aliases), or close
/// names for "did you mean".
pub fn find_gpu(name: &str) -> Result<&'static Gpu, Vec<String>> {
    let all = gpus();
    if let Some(gpu) = all.iter().find(|g| {
        g.name.eq_ignore_ascii_case(name) || g.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
    }) {
        return Ok(gpu);
    }
    // Close names: one holds the other once separators are dropped
    // (`rtx4090`, `h100`), or a few letters differ (`rtx-4900`).
    let wanted = plain(name);
    let mut close: Vec<((u8, usize), &Gpu)> = all
        .iter()
        .filter_map(|g| {
            let candidate = plain(&g.name);
            // Names holding what was typed first (`a100` → `a100-80gb`), then
            // names it holds (`a10`), then the fewest edits.
            let rank = if candidate.contains(&wanted) {
                0
            } else if wanted.contains(&candidate) {
                1
            } else {
                2
            };
            let score = crate::catalog::distance(&wanted, &candidate);
            let near = !wanted.is_empty() && (rank < 2 || score <= (candidate.len() / 3).max(2));
            near.then_some(((rank, score), g))
        })
        .collect();
    close.sort_by_key(|(rank, _)| *rank);
    Err(if close.is_empty() {
        all.iter().map(|g| g.name.clone()).collect()
    } else {
        close.into_iter().take(4).map(|(_, g)| g.name.clone()).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn catalog_parses_with_unique_names() {
        let all = gpus();
        assert!(all.len() >= 60, "{}", all.len());
        let mut names: Vec<&str> = all
            .iter()
            .flat_map(|g| std::iter::once(&g.name).chain(&g.aliases))
            .map(String::as_str)
            .collect();
        names.sort_unstable();
        let count = names.len();
        names.dedup();
        assert_eq!(names.len(), count, "a name or alias is used twice");
        assert!(all.iter().all(|g| g.memory_mib > 1024 && g.bandwidth_gbs > 0.0));
        assert!(all.iter().all(|g| g.sources.len() >= 2), "every entry cites its figures");
        assert!(all.iter().all(|g| (g.vendor == Vendor::Nvidia) == g.compute_capability.is_some()));
        assert!(find_gpu("H100-80GB").is_ok());
        assert_eq!(find_gpu("h100-sxm").unwrap().name, "h100-80gb");
        assert!(find_gpu("h100").unwrap_err().contains(&"h100-80gb".to_owned()));
    }

    #[test]
    fn every_vendor_and_the_issue_list_are_in_the_catalog() {
        for name in [
            "rtx-3060-12gb",
            "rtx-5090",
            "rtx-a4000",
            "rtx-pro-6000-blackwell",
            "t4",
            "v100-16gb",
            "a10",
            "a40",
            "l4",
            "a100-40gb-pcie",
            "h100-nvl",
            "h200",
            "h20",
            "gh200",
            "b200",
            "gb200",
            "b300",
            "gb10",
            "rx-7900-xtx",
            "pro-w7900",
            "mi210",
            "mi250x",
            "mi300x",
            "mi325x",
            "mi355x",
            "ryzen-ai-max-395",
            "m1-max-64gb",
            "m2-ultra-192gb",
            "m3-ultra-512gb",
            "m4-max-128gb",
            "arc-a770-16gb",
            "arc-b580",
            "gaudi2",
            "gaudi3",
        ] {
            assert!(find_gpu(name).is_ok(), "{name}");
        }
        for vendor in Vendor::ALL {
            assert!(gpus().iter().any(|g| g.vendor == vendor), "{vendor}");
        }
    }

    #[test]
    fn metal_uses_its_working_set_not_the_ram() {
        // Logged: 73728 MiB on a 96 GiB M2 Max (llama.cpp issue 3213).
        // Logged: 49152 MiB on a 64 GB M1 Max (llama.cpp issue 1870).
        assert_eq!(find_gpu("m1-max-64gb").unwrap().memory_bytes(), 49_152 * MIB);
        let m2 = find_gpu("m2-max-96gb").unwrap();
        assert_eq!(m2.total_bytes(), 96 * GIB);
        assert_eq!(m2.memory_bytes(), 73_728 * MIB);
        // Not logged: the rule, 3/4 above 32 GiB and 2/3 up to it.
        assert_eq!(find_gpu("m4-max-128gb").unwrap().memory_bytes(), 96 * GIB);
        assert_eq!(find_gpu("m3-pro-36gb").unwrap().memory_bytes(), 27 * GIB);
        assert_eq!(find_gpu("m4-pro-24gb").unwrap().memory_bytes(), 16 * GIB);
        // A limit wins.
        assert_eq!(m2.clone().with_limit(90 * GIB).memory_bytes(), 90 * GIB);
        // Elsewhere the total is what a job may use.
        let h100 = find_gpu("h100-80gb").unwrap();
        assert_eq!(h100.memory_bytes(), 81_559 * MIB);
        assert!(h100.limit_reason().is_none());
    }

    #[test]
    fn runtimes_follow_the_platform() {
        assert_eq!(find_gpu("h100-80gb").unwrap().runtime(), Runtime::HOPPER);
        assert_eq!(find_gpu("rtx-4090").unwrap().runtime(), Runtime::PRE_HOPPER);
        assert_eq!(find_gpu("rtx-5090").unwrap().runtime(), Runtime::HOPPER);
        assert_eq!(find_gpu("m2-max-96gb").unwrap().runtime(), Runtime::NO_CUDA);
        assert!(find_gpu("mi300x").unwrap().platform_notes()[0].contains("ROCm"));
    }

    #[test]
    fn sizes_parse_exactly() {
        assert_eq!(parse_size("24GiB"), Some(24 * GIB));
        assert_eq!(parse_size("80GB"), Some(80_000_000_000));
        assert_eq!(parse_size("80 gb"), Some(80_000_000_000));
        assert_eq!(parse_size("0.5TiB"), Some(512 * GIB));
        assert_eq!(parse_size("23.5GiB"), Some(23 * GIB + GIB / 2));
        assert_eq!(parse_size("1.25GB"), Some(1_250_000_000));
        assert_eq!(parse_size(".5GiB"), Some(GIB / 2));
        for bad in ["24", "GiB", "24XB", "1.2.3GiB", "h100", "", "99999999999999999999GiB", "-1GiB"]
        {
            assert_eq!(parse_size(bad), None, "{bad}");
        }
        let gpu = Gpu::of_size(80_000_000_000, "80GB");
        assert_eq!(gpu.memory_bytes(), 80_000_000_000);
        assert!(gpu.platform_notes()[0].contains("generic CUDA GPU"));
    }
}
