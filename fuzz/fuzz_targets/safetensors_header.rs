//! Any bytes as the start of a safetensors file: an error or a header, never a panic.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(header) = vramfit_sources::safetensors::parse_bytes(data, "fuzz.safetensors") {
        // What inspect does next with a parsed header.
        let _ = vramfit_sources::safetensors::count_logical_parameters(&header.tensors);
        let _ = header.check_file_len(data.len() as u64);
    }
});
