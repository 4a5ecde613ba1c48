//! Any bytes as a `config.json`: an error naming the key, or a spec whose counts are checked.
#![no_main]
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else { return };
    if let Ok(parsed) = vramfit_sources::parse_config_str(text, "fuzz/config.json") {
        let _ = vramfit_core::params::count_params(&parsed.spec);
    }
});
