//! MODEL from the local Hugging Face cache, laid out as `huggingface_hub`
//! writes it: `models--ORG--NAME/{refs/REV, snapshots/COMMIT/config.json → ../../blobs/HASH}`.

use std::path::Path;
use std::process::{Command, Output};

fn vramfit(env: &[(&str, &Path)], args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vramfit"));
    command.args(args).env("NO_COLOR", "1").env("HF_HUB_OFFLINE", "1");
    for key in ["HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_HOME", "XDG_CACHE_HOME", "HOME"] {
        command.env_remove(key);
    }
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

fn total(output: &Output) -> u64 {
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    document["params"]["total"].as_u64().unwrap()
}

fn source(output: &Output) -> String {
    let document: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    document["model"]["source"].as_str().unwrap().to_owned()
}

const MAIN: &str = "0123456789abcdef0123456789abcdef01234567";
const V1: &str = "89abcdef0123456789abcdef0123456789abcdef";

/// A Llama config with `layers` layers; its count by hand.
fn config(layers: u64) -> (String, u64) {
    let text = format!(
        r#"{{"model_type": "llama", "vocab_size": 1000, "hidden_size": 64, "intermediate_size": 176,
            "num_hidden_layers": {layers}, "num_attention_heads": 4, "num_key_value_heads": 2,
            "tie_word_embeddings": false}}"#
    );
    let per_layer = 2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 176 + 2 * 64;
    (text, 2 * 1000 * 64 + 64 + layers * per_layer)
}

/// A cache holding `acme/tiny` at two commits: `main` (2 layers) and tag `v1` (3 layers).
fn cache(root: &Path) -> (u64, u64) {
    let repo = root.join("models--acme--tiny");
    let (main, main_total) = config(2);
    let (v1, v1_total) = config(3);
    std::fs::create_dir_all(repo.join("refs")).unwrap();
    std::fs::create_dir_all(repo.join("blobs")).unwrap();
    std::fs::write(repo.join("refs/main"), MAIN).unwrap();
    std::fs::write(repo.join("refs/v1"), format!("{V1}\n")).unwrap();
    for (commit, text, blob) in [(MAIN, &main, "blob-main"), (V1, &v1, "blob-v1")] {
        std::fs::write(repo.join("blobs").join(blob), text).unwrap();
        let snapshot = repo.join("snapshots").join(commit);
        std::fs::create_dir_all(&snapshot).unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(format!("../../blobs/{blob}"), snapshot.join("config.json"))
            .unwrap();
        #[cfg(not(unix))]
        std::fs::write(snapshot.join("config.json"), text).unwrap();
    }
    (main_total, v1_total)
}

#[test]
fn repo_ids_are_read_from_the_cache_at_a_revision() {
    let dir = tempfile::tempdir().unwrap();
    let (main, v1) = cache(dir.path());
    let env = [("HF_HUB_CACHE", dir.path())];
    let output = vramfit(&env, &["params", "acme/tiny", "--json"]);
    assert_eq!(total(&output), main);
    assert_eq!(source(&output), format!("hf-cache:acme/tiny@{}", &MAIN[..12]));
    // A tag through refs/, and a commit directly.
    assert_eq!(total(&vramfit(&env, &["params", "acme/tiny", "--revision", "v1", "--json"])), v1);
    assert_eq!(total(&vramfit(&env, &["--revision", V1, "params", "acme/tiny", "--json"])), v1);
    // Estimates read the same way.
    let output = vramfit(&env, &["infer", "acme/tiny", "--prompt-len", "16", "--json"]);
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
}

#[test]
fn the_cache_is_found_as_huggingface_hub_finds_it() {
    let home = tempfile::tempdir().unwrap();
    // HF_HOME/hub.
    let (main, _) = cache(&home.path().join("hub"));
    assert_eq!(
        total(&vramfit(&[("HF_HOME", home.path())], &["params", "acme/tiny", "--json"])),
        main
    );
    // ~/.cache/huggingface/hub.
    let user = tempfile::tempdir().unwrap();
    cache(&user.path().join(".cache/huggingface/hub"));
    assert_eq!(total(&vramfit(&[("HOME", user.path())], &["params", "acme/tiny", "--json"])), main);
}

#[test]
fn missing_repos_and_revisions_say_where_vramfit_looked() {
    let dir = tempfile::tempdir().unwrap();
    cache(dir.path());
    let env = [("HF_HUB_CACHE", dir.path())];
    let output = vramfit(&env, &["params", "acme/other"]);
    assert_eq!(output.status.code(), Some(1));
    let message = String::from_utf8_lossy(&output.stderr);
    assert!(message.contains("not in the Hugging Face cache"), "{message}");
    assert!(message.contains(&dir.path().display().to_string()), "{message}");
    let output = vramfit(&env, &["params", "acme/tiny", "--revision", "v2"]);
    assert_eq!(output.status.code(), Some(1));
    // A ref that does not hold a commit is an error naming the file.
    std::fs::write(dir.path().join("models--acme--tiny/refs/main"), "not a commit").unwrap();
    let output = vramfit(&env, &["params", "acme/tiny"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("refs/main"));
    // A revision is a cache snapshot: not for catalog models or local paths.
    let output = vramfit(&env, &["--revision", "v1", "params", "llama-3.1-8b"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&output.stderr).contains("not in the Hugging Face cache"));
    let path = dir.path().join("models--acme--tiny/snapshots").join(MAIN);
    let output = vramfit(&env, &["--revision", "v1", "params", path.to_str().unwrap()]);
    assert_eq!(output.status.code(), Some(2), "--revision with a path is bad usage");
    assert!(String::from_utf8_lossy(&output.stderr).contains("local path"));
    // Names that would leave the cache are not looked up.
    let output = vramfit(&env, &["params", "../tiny"]);
    assert_eq!(output.status.code(), Some(1));
}
