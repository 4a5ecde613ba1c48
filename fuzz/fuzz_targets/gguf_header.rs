//! Any bytes as a GGUF file (whole, or a prefix of a longer one), then the header read
//! into a model spec and the llama.cpp estimate, as `vramfit infer x.gguf` does.
#![no_main]
use libfuzzer_sys::fuzz_target;
use vramfit_core::memory::runtime::Runtime;
use vramfit_core::serving::llamacpp::{GgmlStorage, LlamaCppSettings, estimate_llamacpp};
use vramfit_sources::{gguf, gguf_model};

fuzz_target!(|data: &[u8]| {
    let _ = gguf::read_header(data, "fuzz.gguf", Some(data.len() as u64));
    let _ = gguf::parse_prefix(data, "fuzz.gguf", (data.len() as u64).saturating_mul(4));
    // Without a file length, as for header-only inputs (the seeds): the spec path runs.
    if let Ok(header) = gguf::read_header(data, "fuzz.gguf", None)
        && let Ok(model) = gguf_model::model_from_headers(&[header], "fuzz.gguf")
    {
        let _ = vramfit_core::params::count_params(&model.parsed.spec);
        let settings = LlamaCppSettings {
            n_ctx: None,
            n_seq: 1,
            n_batch: 2048,
            n_ubatch: 512,
            cache_k: GgmlStorage::F16,
            cache_v: GgmlStorage::Q8_0,
            flash_attn: true,
            n_gpu_layers: None,
            kv_offload: true,
            swa_full: false,
            fit: true,
            gpu_total_bytes: Some(24 << 30),
            request_tokens: 1024,
        };
        let _ = estimate_llamacpp(&model.parsed.spec, &model.weights, &settings, &Runtime::HOPPER);
    }
});
