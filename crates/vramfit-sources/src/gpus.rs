//! The GPU catalog (`data/gpus.toml`), embedded at build time.

use std::sync::OnceLock;

use serde::Deserialize;
use vramfit_core::memory::runtime::{MIB, Runtime};

/// One GPU model.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Gpu {
    /// Short name used with `--gpu` (`h100-80gb`).
    pub name: String,
    /// Full product name.
    pub display: String,
    /// Memory as the driver reports it, MiB.
    pub memory_mib: u64,
    /// Datasheet memory bandwidth, GB/s.
    pub bandwidth_gbs: u64,
    /// Architecture (`hopper`, `ampere`, `ada`, `turing`, `volta`).
    pub arch: String,
    /// CUDA compute capability, `major.minor`.
    pub compute_capability: String,
}

impl Gpu {
    /// Memory in bytes.
    pub fn memory_bytes(&self) -> u64 {
        self.memory_mib * MIB
    }

    /// The compute capability as `(major, minor)`.
    pub fn capability(&self) -> (u32, u32) {
        let mut parts = self.compute_capability.split('.').map(|p| p.parse().unwrap_or(0));
        (parts.next().unwrap_or(0), parts.next().unwrap_or(0))
    }

    /// Runtime defaults for this GPU's architecture.
    pub fn runtime(&self) -> Runtime {
        if self.arch == "hopper" || self.arch == "blackwell" {
            Runtime::HOPPER
        } else {
            Runtime::PRE_HOPPER
        }
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct GpuFile {
    gpu: Vec<Gpu>,
}

static GPUS_TOML: &str = include_str!("../data/gpus.toml");

/// All catalog GPUs.
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

/// The GPU named `name` (case-insensitive), or close names for "did you mean".
pub fn find_gpu(name: &str) -> Result<&'static Gpu, Vec<String>> {
    let all = gpus();
    if let Some(gpu) = all.iter().find(|g| g.name.eq_ignore_ascii_case(name)) {
        return Ok(gpu);
    }
    // Close names: one holds the other once separators are dropped
    // (`rtx4090`, `h100`), or a few letters differ (`rtx-4900`).
    let plain = |text: &str| -> String {
        text.to_ascii_lowercase().chars().filter(char::is_ascii_alphanumeric).collect()
    };
    let wanted = plain(name);
    let mut close: Vec<((bool, usize), &Gpu)> = all
        .iter()
        .filter_map(|g| {
            let candidate = plain(&g.name);
            let holds = candidate.contains(&wanted) || wanted.contains(&candidate);
            let score = crate::catalog::distance(&wanted, &candidate);
            let near = !wanted.is_empty() && (holds || score <= (candidate.len() / 3).max(2));
            // Names holding what was typed first, then the fewest edits.
            near.then_some(((!holds, score), g))
        })
        .collect();
    close.sort_by_key(|(rank, _)| *rank);
    Err(if close.is_empty() {
        all.iter().map(|g| g.name.clone()).collect()
    } else {
        close.into_iter().take(3).map(|(_, g)| g.name.clone()).collect()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_parses_with_unique_names() {
        let all = gpus();
        assert!(all.len() >= 10);
        let mut names: Vec<&str> = all.iter().map(|g| g.name.as_str()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), all.len());
        assert!(all.iter().all(|g| g.memory_mib > 1024 && g.bandwidth_gbs > 0));
        assert!(all.iter().all(|g| g.capability().0 >= 7));
        assert!(find_gpu("H100-80GB").is_ok());
        assert!(find_gpu("h100").unwrap_err().contains(&"h100-80gb".to_owned()));
    }
}
