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

/// A token that cannot be used, named by where it came from.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the Hugging Face token from {origin}: {reason}")]
pub struct TokenError {
    /// `HF_TOKEN`, or the token file's path.
    pub origin: String,
    /// What is wrong with it.
    pub reason: String,
}

/// The token: `HF_TOKEN`, else the file at `HF_TOKEN_PATH`, else `HF_HOME/token`
/// (`huggingface_hub`'s order). Empty values count as unset; a missing file
/// is no token.
///
/// # Errors
/// A token file that is not a regular file (a FIFO would block every run) or
/// cannot be read, and a token with a character a request header cannot carry
/// (non-ASCII, a space or a line break inside it), each naming where it came from.
pub fn token_from_env() -> Result<Option<String>, TokenError> {
    if let Some(token) = text_var("HF_TOKEN") {
        return checked_token(token, "HF_TOKEN").map(Some);
    }
    let Some(path) = text_var("HF_TOKEN_PATH")
        .map(PathBuf::from)
        .or_else(|| hf_home().map(|home| home.join("token")))
    else {
        return Ok(None);
    };
    let origin = || format!("the file `{}`", path.display());
    let file = match crate::files::open_regular(&path) {
        Ok(file) => file,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(error) => return Err(TokenError { origin: origin(), reason: error.to_string() }),
    };
    let mut text = String::new();
    file.take(MAX_TOKEN_FILE)
        .read_to_string(&mut text)
        .map_err(|error| TokenError { origin: origin(), reason: error.to_string() })?;
    let token = text.trim().to_owned();
    if token.is_empty() {
        return Ok(None);
    }
    checked_token(token, &origin()).map(Some)
}

/// A token as an `Authorization` header can carry it: visible ASCII only.
fn checked_token(token: String, origin: &str) -> Result<String, TokenError> {
    if token.bytes().all(|b| b.is_ascii_graphic()) {
        Ok(token)
    } else {
        Err(TokenError {
            origin: origin.to_owned(),
            reason: "holds a character a request header cannot carry (non-ASCII, a space or a \
                     line break inside it)"
                .to_owned(),
        })
    }
}

/// `text` with the user information of every URL in it (`user:secret@` in
/// `https://user:secret@host/…`) replaced by `***@`: an endpoint may carry a
/// password, which vramfit never prints.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(scheme_end) = rest.find("://") {
        let authority_start = scheme_end + 3;
        out.push_str(&rest[..authority_start]);
        rest = &rest[authority_start..];
        let authority_end = rest
            .find(|c: char| matches!(c, '/' | '?' | '#' | '`' | '\'' | '"') || c.is_whitespace())
            .unwrap_or(rest.len());
        match rest[..authority_end].rfind('@') {
            Some(at) => {
                out.push_str("***");
                out.push_str(&rest[at..authority_end]);
            }
            None => out.push_str(&rest[..authority_end]),
        }
        rest = &rest[authority_end..];
    }
    out.push_str(rest);
    out
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_in_urls_are_redacted_everywhere_in_a_text() {
        assert_eq!(
            redact_urls(
                "cannot reach `http://user:secret@hub.local:8080/org/m/resolve/main/x`: refused"
            ),
            "cannot reach `http://***@hub.local:8080/org/m/resolve/main/x`: refused"
        );
        assert_eq!(redact_urls("https://huggingface.co/a/b"), "https://huggingface.co/a/b");
        assert_eq!(
            redact_urls("GET https://a:b@h/x and https://c@d/y"),
            "GET https://***@h/x and https://***@d/y"
        );
        assert_eq!(redact_urls("no url: a@b"), "no url: a@b");
        // An '@' after the host is part of the path, not user information.
        assert_eq!(redact_urls("https://h/x@y"), "https://h/x@y");
    }
}
