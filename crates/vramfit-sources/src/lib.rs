/*!
Model sources for vramfit: bytes on disk (or embedded) → [`vramfit_core::ModelSpec`].

The whole job in a few lines: LoRA on Llama-3.1-8B from the embedded catalog
(no files, no network), with gradient checkpointing, on one GPU.

```
use vramfit_core::memory::{estimate, runtime::Runtime};
use vramfit_core::workload::{Training, Workload};

let model = vramfit_sources::resolve_model("llama-3.1-8b")?;
let step = Training::lora().with(|t| t.grad_checkpointing = true);
let memory = estimate(&model.parsed.spec, &Workload::Training(step), &Runtime::HOPPER)?;
println!(
    "peak {:.2} GiB in `{}`; {:.2} GiB as nvidia-smi would show it",
    memory.peak_allocated_bytes as f64 / f64::from(1 << 30),
    memory.peak_phase,
    memory.device_total_bytes as f64 / f64::from(1 << 30),
);
// The peak holds at least the frozen bf16 base (the model card's 8,030,261,248
// parameters × 2 B) and the loss's two fp32 gradients of the logits
// (2 × 2,048 tokens × 128,256 vocabulary × 4 B); it fits a 24 GB card.
assert!(memory.peak_allocated_bytes > 2 * 8_030_261_248 + 2 * 2048 * 128_256 * 4);
assert!(memory.device_total_bytes < 24_000_000_000);
# Ok::<(), Box<dyn std::error::Error>>(())
```

- [`config`]: Hugging Face `config.json` of many architecture families.
- [`catalog`]: the embedded catalog of popular models (offline).
- [`resolve`]: what a MODEL argument means (a path, else a catalog name).
- [`gpus`]: the accelerator catalog (80 entries, four vendors, every figure
  sourced), accelerators given by size, Metal's working set.
- [`local`]: this machine's accelerators from what `nvidia-smi`, `amd-smi`,
  `rocm-smi` and `sysctl` print (parsing only; the caller runs them).
- [`hf_env`]: the Hugging Face environment (home, cache, offline, endpoint, token).
- `hub` (feature `hub`, on by default): the Hub over HTTPS, headers only.

With `default-features = false` nothing here touches the network, and the
crate builds for `wasm32-unknown-unknown`.
*/

pub mod catalog;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod files;
pub mod gguf;
pub mod gguf_model;
pub mod gpus;
pub mod hf_env;
#[cfg(feature = "hub")]
pub mod hub;
pub mod local;
pub mod resolve;
pub mod safetensors;

pub use catalog::{Catalog, CatalogEntry};
pub use config::{ParsedConfig, parse_config_str, parse_config_value};
pub use error::SourceError;
pub use hf_env::{hf_cache_root, hf_home};
pub use resolve::{
    HubModel, ModelHub, ModelOrigin, ResolvedModel, resolve_model, resolve_model_at,
    resolve_model_with,
};
