/*!
The Hugging Face environment, in one place: where `huggingface_hub` keeps its
home and cache, whether it is offline, which endpoint it asks and with which
token. These read environment variables and, for the token, one small file;
they never touch the network, so they build on every target.

Names and order follow `huggingface_hub`'s `constants.py`: `HF_HOME`,
`HF_HUB_CACHE` (legacy `HUGGINGFACE_HUB_CACHE`), `HF_HUB_OFFLINE`,
`HF_ENDPOINT`, `HF_TOKEN`, `HF_TOKEN_PATH`.
*/

use std::io::Read as _;
use std::path::PathBuf;

/// The Hub's address when `HF_ENDPOINT` is not set.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Largest token file read (a token is under 100 bytes).
const MAX_TOKEN_FILE: u64 = 4096;

/// A non-empty environment variable as a path.
fn path_var(key: &str) -> Option<PathBuf> {
    std::env::var_os(key).filter(|v| !v.is_empty()).map(PathBuf::from)
}

/// A non-empty environment variable, trimmed.
fn text_var(key: &str) -> Option<String> {
    std::env::var(key).ok().map(|v| v.trim().to_owned()).filter(|v| !v.is_empty())
}

/// `huggingface_hub`'s home: `HF_HOME`, else `XDG_CACHE_HOME/huggingface`, else
/// `~/.cache/huggingface`.
pub fn hf_home() -> Option<PathBuf> {
    path_var("HF_HOME")
        .or_else(|| path_var("XDG_CACHE_HOME").map(|cache| cache.join("huggingface")))
        .or_else(|| path_var("HOME").map(|home| home.join(".cache/huggingface")))
}

/// The Hugging Face hub cache: `HF_HUB_CACHE`, else the legacy
/// `HUGGINGFACE_HUB_CACHE`, else `{hf_home}/hub` (as `huggingface_hub` resolves it).
pub fn hf_cache_root() -> Option<PathBuf> {
    path_var("HF_HUB_CACHE")
        .or_else(|| path_var("HUGGINGFACE_HUB_CACHE"))
        .or_else(|| hf_home().map(|home| home.join("hub")))
}

/// Whether `HF_HUB_OFFLINE` asks for no network (`1`, `true`, `yes`, `on`).
pub fn offline_from_env() -> bool {
    std::env::var("HF_HUB_OFFLINE").is_ok_and(|v| {
        matches!(v.trim().to_ascii_lowercase().as_str(), "1" | "true" | "yes" | "on")
    })
}

/// The endpoint: `HF_ENDPOINT`, else [`DEFAULT_ENDPOINT`].
pub fn endpoint_from_env() -> String {
    text_var("HF_ENDPOINT").unwrap_or_else(|| DEFAULT_ENDPOINT.to_owned())
}

/// The token: `HF_TOKEN`, else the file at `HF_TOKEN_PATH`, else `HF_HOME/token`
/// (`huggingface_hub`'s order). Empty values count as unset.
pub fn token_from_env() -> Option<String> {
    if let Some(token) = text_var("HF_TOKEN") {
        return Some(token);
    }
    let path = text_var("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .or_else(|| hf_home().map(|home| home.join("token")))?;
    let mut text = String::new();
    std::fs::File::open(path).ok()?.take(MAX_TOKEN_FILE).read_to_string(&mut text).ok()?;
    Some(text.trim().to_owned()).filter(|t| !t.is_empty())
}

/// Whether `part` can be one half of a Hub repo id (`ORG` or `NAME`), or one
/// `/`-separated part of a revision name in the cache's `refs/`: ASCII
/// letters, digits, `-`, `_` and `.`, and not `.` or `..` (so it can neither
/// leave a cache folder nor change a URL's path).
pub fn is_repo_part(part: &str) -> bool {
    !part.is_empty()
        && part != "."
        && part != ".."
        && part.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}
