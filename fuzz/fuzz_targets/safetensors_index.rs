//! Any bytes as a `model.safetensors.index.json`.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(index) = vramfit_sources::safetensors::parse_index_bytes(data, "fuzz.index.json") {
        let _ = index.shards();
    }
});
