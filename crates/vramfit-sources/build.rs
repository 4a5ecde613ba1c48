//! Embeds every `data/models/ORG/NAME/config.json` into the binary.
//!
//! Writes `$OUT_DIR/embedded_configs.rs`: a sorted table of
//! `("ORG/NAME", include_str!(…))`, so the catalog works offline with no files.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

fn main() {
    let manifest =
        PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let data = manifest.join("data");
    let models = data.join("models");
    println!("cargo::rerun-if-changed={}", data.join("catalog.toml").display());
    println!("cargo::rerun-if-changed={}", models.display());
    let mut found = Vec::new();
    for org in sorted_dirs(&models) {
        println!("cargo::rerun-if-changed={}", org.display());
        for repo in sorted_dirs(&org) {
            let config = repo.join("config.json");
            println!("cargo::rerun-if-changed={}", config.display());
            if config.is_file() {
                let id = format!("{}/{}", name_of(&org), name_of(&repo));
                found.push((id, config));
            }
        }
    }
    // Sorted by id as a string (the catalog binary-searches it); path order differs
    // (`openai` sorts before `openai-community` as a path, after it as a string).
    found.sort();
    let mut code = String::from("/// Embedded `config.json` files by repository id, sorted.\n");
    code.push_str("pub(crate) static EMBEDDED_CONFIGS: &[(&str, &str)] = &[\n");
    for (id, path) in &found {
        let path = path.canonicalize().expect("config path resolves");
        writeln!(code, "    ({id:?}, include_str!({:?})),", path.display().to_string())
            .expect("write to String");
    }
    code.push_str("];\n");
    let index = data.join("catalog.toml").canonicalize().expect("data/catalog.toml exists");
    writeln!(
        code,
        "/// The catalog index.\npub(crate) static CATALOG_TOML: &str = include_str!({:?});",
        index.display().to_string()
    )
    .expect("write to String");
    let out = PathBuf::from(std::env::var("OUT_DIR").expect("cargo sets OUT_DIR"));
    std::fs::write(out.join("embedded_configs.rs"), code).expect("write generated table");
}

fn sorted_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut dirs: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|entries| {
            entries.filter_map(Result::ok).map(|e| e.path()).filter(|p| p.is_dir()).collect()
        })
        .unwrap_or_default();
    dirs.sort();
    dirs
}

fn name_of(path: &Path) -> String {
    path.file_name().expect("directory has a name").to_string_lossy().into_owned()
}
