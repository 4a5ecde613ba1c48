//! Embeds the repository's measured peaks (`validation/data/*.jsonl`, the
//! parameter-count references aside) so that `vramfit accuracy` works from an
//! installed binary. A build outside the repository (a source archive without
//! `validation/`) embeds none; `accuracy` then asks for the files.

use std::fmt::Write as _;
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var_os("CARGO_MANIFEST_DIR").expect("set by cargo"));
    let data = manifest.join("../../validation/data");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-changed={}", data.display());
    let mut files: Vec<PathBuf> = std::fs::read_dir(&data)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.extension().is_some_and(|e| e == "jsonl")
                        && !path.file_name().is_some_and(|n| {
                            n.to_string_lossy().starts_with("transformers-param-counts")
                        })
                })
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    let mut code = String::from("&[\n");
    for path in &files {
        let path = path.canonicalize().expect("a listed file exists");
        let name = path.file_name().expect("a file").to_string_lossy().into_owned();
        writeln!(code, "    ({name:?}, include_str!({:?})),", path.display().to_string())
            .expect("writing to a String");
    }
    code.push(']');
    let out = PathBuf::from(std::env::var_os("OUT_DIR").expect("set by cargo"));
    std::fs::write(out.join("measurements.rs"), code).expect("OUT_DIR is writable");
    // The serving engines' published logs with the flags that describe them
    // (`vramfit accuracy --engines`); empty outside the repository.
    let logs = manifest.join("../../validation/engine-logs/compare.jsonl");
    println!("cargo:rerun-if-changed={}", logs.display());
    let text = std::fs::read_to_string(&logs).unwrap_or_default();
    std::fs::write(out.join("engine-logs.jsonl"), text).expect("OUT_DIR is writable");
}
