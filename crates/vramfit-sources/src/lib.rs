/*!
Model sources for vramfit: bytes on disk (or embedded) → [`vramfit_core::ModelSpec`].

- [`config`]: Hugging Face `config.json` of many architecture families.
- [`catalog`]: the embedded catalog of popular models (offline).
- [`resolve`]: what a MODEL argument means (a path, else a catalog name).
- [`hf_env`]: the Hugging Face environment (home, cache, offline, endpoint, token).
- `hub` (feature `hub`, on by default): the Hub over HTTPS, headers only.

With `default-features = false` nothing here touches the network, and the
crate builds for `wasm32-unknown-unknown`.
*/

pub mod catalog;
pub mod checkpoint;
pub mod config;
pub mod error;
pub mod gguf;
pub mod gguf_model;
pub mod gpus;
pub mod hf_env;
#[cfg(feature = "hub")]
pub mod hub;
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
