/*!
What the CUDA runtime and PyTorch's allocator add on top of the tensors.

These numbers depend on the GPU, the driver and the PyTorch build, so they
are data with a stated source and every one can be overridden. They are
defaults until measured on the GPU in question (`validation/`).
*/

use serde::{Deserialize, Serialize};

/// Bytes in a MiB (2²⁰).
pub const MIB: u64 = 1 << 20;

/// Whose kernels decide which tensors exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Kernels {
    /// PyTorch on CUDA: fused attention kernels for masks and dropout, bool dropout masks.
    Cuda,
    /// PyTorch's CPU kernels (SDPA's math path for attention dropout and explicit masks,
    /// dropout masks in the input's type): only to compare with CPU measurements.
    Cpu,
    /// Fake tensors on the CPU device: the CPU's kernel choices, but the meta
    /// functions' output types (bool dropout masks): to compare with fake-tensor measurements.
    FakeCpu,
}

/// Default CUDA context (see [`Runtime::cuda_context_bytes`]).
const DEFAULT_CUDA_CONTEXT: u64 = 512 * MIB;
/// Default NCCL memory per process (see [`Runtime::nccl_bytes`]).
const DEFAULT_NCCL: u64 = 1024 * MIB;
/// Default reserved-over-allocated fraction (see [`Runtime::reserved_overhead`]).
const DEFAULT_RESERVED_OVERHEAD: f64 = 0.05;

/// Runtime overheads for one GPU process.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct Runtime {
    /// The kernels modelled (CUDA unless reproducing a CPU measurement).
    pub kernels: Kernels,
    /// Memory the CUDA context takes outside PyTorch's allocator (driver,
    /// loaded kernels, cuBLAS/cuDNN handles), as `nvidia-smi` sees it.
    /// Default 512 MiB: with lazy module loading (CUDA ≥ 11.7's default) a
    /// PyTorch process on Ampere/Hopper reports 300–600 MiB before any tensor
    /// (range from `../shared/reference/formulas-and-accuracy.md` §b6); the
    /// HF "anatomy of training" page measured 1,343 MiB on a V100 with CUDA
    /// 11.2, before lazy loading.
    pub cuda_context_bytes: u64,
    /// cuBLAS workspace, allocated through the caching allocator (so inside
    /// `max_memory_allocated`): PyTorch's default `CUBLAS_WORKSPACE_CONFIG`
    /// is `:4096:8` (8 × 4 MiB) on Hopper and later, `:4096:2:16:8`
    /// (≈ 8.1 MiB) before (`aten/src/ATen/cuda/CublasHandlePool.cpp`).
    pub cublas_workspace_bytes: u64,
    /// Extra memory the caching allocator reserves over the peak it hands
    /// out: cached free blocks and segment rounding, as a fraction of the
    /// allocated peak. Default 0.05, the low end of the +5–15 % typically
    /// reported for training (reference §b6); not yet calibrated here.
    pub reserved_overhead: f64,
    /// NCCL's buffers and communicator state per process when several GPUs
    /// work together, outside PyTorch's allocator. Default 1 GiB: vLLM on an
    /// H100 reports 1.79 GiB of non-torch memory at TP=1 and 3.58 GiB at TP=2
    /// (reference §b6), the difference being NCCL's; NCCL's own default
    /// buffers are 4 MiB per channel and peer. Not yet calibrated here.
    pub nccl_bytes: u64,
    /// The run is watched by a Python `TorchDispatchMode` (the project's harness
    /// and the shared oracle measure live tensors this way). Under any such mode,
    /// autograd's `InputBuffer` sums a tensor's two gradients into a new tensor
    /// instead of into the first one (measured: a pass-through mode is enough), so
    /// a watched run holds one more gradient where a tensor receives two. False
    /// for what a real run does; true only to compare with those measurements.
    pub(crate) watched: bool,
}

impl Runtime {
    /// This runtime as the project's measurements see it: watched by a
    /// Python `TorchDispatchMode`, under which autograd sums a tensor's two
    /// gradients out of place (one more gradient alive). Only for comparing
    /// with those measurements (`validation/`); a real run is not watched.
    #[must_use]
    pub fn watched_by_dispatch_mode(mut self) -> Self {
        self.watched = true;
        self
    }

    /// Whether [`Runtime::watched_by_dispatch_mode`] applies.
    pub fn is_watched(&self) -> bool {
        self.watched
    }

    /// Defaults for a Hopper-class GPU (H100, H200).
    pub const HOPPER: Runtime = Runtime {
        kernels: Kernels::Cuda,
        cuda_context_bytes: DEFAULT_CUDA_CONTEXT,
        cublas_workspace_bytes: 32 * MIB,
        reserved_overhead: DEFAULT_RESERVED_OVERHEAD,
        nccl_bytes: DEFAULT_NCCL,
        watched: false,
    };

    /// Defaults for earlier GPUs (Ampere, Ada, Turing, Volta).
    pub const PRE_HOPPER: Runtime = Runtime {
        kernels: Kernels::Cuda,
        cuda_context_bytes: DEFAULT_CUDA_CONTEXT,
        cublas_workspace_bytes: 2 * 4 * MIB + 8 * 16 * 1024,
        reserved_overhead: DEFAULT_RESERVED_OVERHEAD,
        nccl_bytes: DEFAULT_NCCL,
        watched: false,
    };
}

impl Runtime {
    /// Defaults for a device without CUDA (Apple's Metal, Intel's XPU and
    /// Gaudi): no CUDA context, no cuBLAS workspace, no NCCL; the tensors and
    /// the allocator's rounding are PyTorch's as on CUDA, which is not measured
    /// on those devices (the CLI says so).
    pub const NO_CUDA: Runtime = Runtime {
        kernels: Kernels::Cuda,
        cuda_context_bytes: 0,
        cublas_workspace_bytes: 0,
        reserved_overhead: DEFAULT_RESERVED_OVERHEAD,
        nccl_bytes: 0,
        watched: false,
    };
}

impl Default for Runtime {
    fn default() -> Self {
        Runtime::HOPPER
    }
}

/// The allocator's reserved peak for an allocated peak: the overhead
/// fraction added, then rounded up to the 2 MiB granularity of its large
/// segments (`kLargeBuffer` in `CUDACachingAllocator.cpp`).
pub fn reserved_bytes(allocated: u64, runtime: &Runtime) -> u64 {
    const SEGMENT: u64 = 2 * MIB;
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "a non-negative fraction of a u64, far below 2^64"
    )]
    let overhead = (allocated as f64 * runtime.reserved_overhead.max(0.0)) as u64;
    allocated.saturating_add(overhead).div_ceil(SEGMENT).saturating_mul(SEGMENT)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserved_rounds_to_segments() {
        let runtime = Runtime { reserved_overhead: 0.0, ..Runtime::HOPPER };
        assert_eq!(reserved_bytes(1, &runtime), 2 * MIB);
        assert_eq!(reserved_bytes(4 * MIB, &runtime), 4 * MIB);
        let runtime = Runtime { reserved_overhead: 0.5, ..Runtime::HOPPER };
        assert_eq!(reserved_bytes(4 * MIB, &runtime), 6 * MIB);
    }
}
