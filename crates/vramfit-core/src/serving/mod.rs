/*!
Serving engines: what vLLM, SGLang and llama.cpp put on a GPU for a model.

transformers' `generate()` allocates as it goes (see [`crate::memory`]); the
serving engines instead size their memory once at start-up and hand what is
left to a KV cache: vLLM and SGLang to a paged pool whose capacity in tokens
decides how many requests run at once ([`paged`]), llama.cpp to a context of
`n_ctx` cells per layer placed on the devices that hold each layer
([`llamacpp`]). Each profile names the engine version whose source it
follows; figures that the engine measures at start-up (activation profiling,
CUDA graphs, ggml's compute buffer) are approximated, and said so.
*/

pub mod llamacpp;
pub mod paged;

use serde::{Deserialize, Serialize};

use crate::memory::Part;
use crate::memory::ledger::MemoryComponent as C;

/// A checkpoint's tensor bytes as stored (a GGUF file's, per ggml type),
/// grouped the way llama.cpp places them on devices.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct StoredWeights {
    /// Bytes of each repeating layer's tensors (`blk.N.*`), by layer index.
    pub layer_bytes: Vec<u64>,
    /// llama.cpp's input layer, always on the host: the token embedding table
    /// (`token_embd.weight`) and a learned position table (`position_embd.weight`).
    pub token_embd_bytes: u64,
    /// The output head (`output.weight`); 0 when tied to the embeddings.
    pub output_bytes: u64,
    /// Everything else: the final norm, rotary frequency factors.
    pub other_bytes: u64,
}

impl StoredWeights {
    /// All stored bytes.
    pub fn total(&self) -> u64 {
        self.layer_bytes
            .iter()
            .fold(self.token_embd_bytes, |sum, b| sum.saturating_add(*b))
            .saturating_add(self.output_bytes)
            .saturating_add(self.other_bytes)
    }
}

/// What a serving engine holds, per GPU and on the host.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct ServingEstimate {
    /// `vllm`, `sglang` or `llama.cpp`.
    pub engine: String,
    /// The engine release whose behaviour this follows.
    pub engine_version: String,
    /// What one GPU holds, component by component (the CUDA context included).
    pub gpu_parts: Vec<Part>,
    /// Host (CPU) memory, component by component.
    pub host_parts: Vec<Part>,
    /// Sum of `gpu_parts`: what one GPU shows in `nvidia-smi` once the engine is up.
    pub device_total_bytes: u64,
    /// Sum of `host_parts`.
    pub host_bytes: u64,
    /// Tokens the KV cache holds (vLLM/SGLang: the pool; llama.cpp: context cells).
    pub kv_capacity_tokens: u64,
    /// Requests of the engine's maximum length that fit at once, as the engine logs it.
    pub max_concurrency: Option<f64>,
    /// Requests of the workload's length (prompt + generated tokens) that fit at once.
    pub concurrency_at_request: f64,
    /// The settings in force (defaults filled in), as `(flag, value)`.
    pub settings: Vec<(String, String)>,
    /// Whether the engine starts and serves the workload: the budget covers
    /// weights and activations, and the workload's requests fit in the cache.
    pub fits: bool,
    /// Why it does not fit, or what to know.
    pub notes: Vec<String>,
    /// llama.cpp over several GPUs: what each one holds, in device order. Empty
    /// on one GPU. With several, `gpu_parts` and `device_total_bytes` are those
    /// of the device with the least memory left (the one that decides `fits`).
    pub devices: Vec<DeviceShare>,
}

/// One GPU's part of a model split layer by layer (llama.cpp's `--split-mode layer`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
pub struct DeviceShare {
    /// The device's memory (what it may use), bytes.
    pub memory_bytes: u64,
    /// Its `--tensor-split` share, normalised to sum to 1.
    pub split: f64,
    /// Repeating layers on it.
    pub layers: u64,
    /// Whether it holds the output layer (final norm and head).
    pub output_layer: bool,
    /// What it holds, component by component (the CUDA context included).
    pub parts: Vec<Part>,
    /// Their sum.
    pub total_bytes: u64,
    /// `total_bytes` fits in `memory_bytes`.
    pub fits: bool,
}

impl ServingEstimate {
    /// An estimate of `engine` holding `gpu_parts` per GPU and `host_parts` on the
    /// host, with NCCL's buffers (when `nccl` > 0) inserted after the CUDA context;
    /// the totals are their sums. The caller fills in capacity and verdict.
    pub(crate) fn from_parts(
        engine: &str,
        version: &str,
        mut gpu_parts: Vec<Part>,
        host_parts: Vec<Part>,
        nccl: (u64, &str),
    ) -> Self {
        if nccl.0 > 0 {
            gpu_parts.insert(1.min(gpu_parts.len()), part(C::Nccl, nccl.0, nccl.1));
        }
        ServingEstimate {
            engine: engine.to_owned(),
            engine_version: version.to_owned(),
            device_total_bytes: sum(&gpu_parts),
            host_bytes: sum(&host_parts),
            gpu_parts,
            host_parts,
            kv_capacity_tokens: 0,
            max_concurrency: None,
            concurrency_at_request: 0.0,
            settings: Vec::new(),
            fits: false,
            notes: Vec::new(),
            devices: Vec::new(),
        }
    }
}

/// A part of an engine's memory: its component, bytes and formula.
pub(crate) fn part(component: C, bytes: u64, formula: impl Into<String>) -> Part {
    Part { name: component.name().to_owned(), bytes, formula: formula.into() }
}

/// GiB (2³⁰ bytes), for the notes' text only.
#[expect(clippy::cast_precision_loss, reason = "display only")]
pub(crate) fn gib(bytes: u64) -> f64 {
    bytes as f64 / (1u64 << 30) as f64
}

pub(crate) fn sum(parts: &[Part]) -> u64 {
    parts.iter().fold(0u64, |total, p| total.saturating_add(p.bytes))
}
