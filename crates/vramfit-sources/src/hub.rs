/*!
The Hugging Face Hub over HTTPS: a model's `config.json`, its file list, and
the headers of its safetensors and GGUF files read with HTTP range requests.

Only headers travel: a safetensors header is two ranged requests (the 8-byte
length, then exactly the JSON header), a GGUF header a few growing prefixes;
every ranged answer must be `206 Partial Content` (a server that ignores the
`Range` header would send the whole file, so that is an error, not a
download). Endpoints are `huggingface_hub`'s: `{endpoint}/{repo}/resolve/
{revision}/{file}` and `{endpoint}/api/models/{repo}/revision/{revision}`.

Settings are `huggingface_hub`'s environment: `HF_ENDPOINT` (default
`https://huggingface.co`), `HF_HUB_OFFLINE=1` (no network at all), and the
token from `HF_TOKEN`, else the file at `HF_TOKEN_PATH`, else `HF_HOME/token`.
The token is sent as a bearer header to the endpoint only (never across a
redirect to another host) and never appears in errors or output.
*/

use std::fmt::Write as _;
use std::path::PathBuf;
use std::time::Duration;

use crate::checkpoint::{Checkpoint, from_gguf, from_safetensors, gguf_models, safetensors_files};
use crate::config::parse_config_str;
use crate::error::SourceError;
use crate::gguf::{self, GgufError, GgufHeader};
use crate::gguf_model::model_from_headers;
use crate::hf_env::{
    TokenError, endpoint_from_env, is_repo_part, offline_from_env, redact_urls, token_from_env,
};
use crate::resolve::{HubModel, ModelHub};
use crate::safetensors::{self, MAX_HEADER_SIZE, SafetensorsHeader, SafetensorsIndex};

/// Largest JSON document read from the Hub (configs, indexes, the model info).
const MAX_JSON_BYTES: u64 = 64 * 1024 * 1024;
/// Largest GGUF prefix read for a header: the largest real headers (256K-token
/// vocabularies with their merges and scores) take about 15 MiB. The prefix
/// grows by doubling into one buffer, so the reader holds at most this much
/// and half of it again while the buffer grows.
const MAX_GGUF_PREFIX: u64 = 64 * 1024 * 1024;
/// First GGUF prefix asked for.
const FIRST_GGUF_PREFIX: u64 = 4 * 1024 * 1024;

/// The limits of one run against the Hub: an overall deadline (each request's
/// own timeout is cut to what is left) and a budget of requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct HubLimits {
    /// Time for all of the run's requests together.
    pub deadline: Duration,
    /// Requests the run may make.
    pub max_requests: u64,
    /// Shards (safetensors or split GGUF files) one checkpoint may have.
    pub max_shards: u64,
}

impl Default for HubLimits {
    /// 300 s, 2,000 requests and 1,000 shards: the largest real checkpoints
    /// (DeepSeek-V3's 163 shards, two ranged reads each) need a few hundred
    /// requests.
    fn default() -> Self {
        HubLimits { deadline: Duration::from_secs(300), max_requests: 2000, max_shards: 1000 }
    }
}

/// Why the Hub could not answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HubError {
    /// Offline mode forbids the request.
    #[error(
        "`{what}` is not available offline (HF_HUB_OFFLINE=1 or --offline): vramfit reads the Hub only when online"
    )]
    Offline {
        /// What was wanted.
        what: String,
    },
    /// The run's request budget is spent.
    #[error(
        "the run's budget of {limit} Hub requests is spent (vramfit: --hub-max-requests raises it)"
    )]
    RequestBudget {
        /// The budget.
        limit: u64,
    },
    /// A checkpoint has more shards than the run allows.
    #[error(
        "`{}` names {count} shards, more than the run's limit of {limit} (vramfit: --hub-max-shards raises it)",
        redact_urls(url)
    )]
    TooManyShards {
        /// The index or first file.
        url: String,
        /// Shards named.
        count: usize,
        /// The limit.
        limit: u64,
    },
    /// The run's deadline passed.
    #[error(
        "the run's Hub deadline of {seconds} s passed while fetching `{}` (vramfit: --hub-deadline raises it)",
        redact_urls(url)
    )]
    Deadline {
        /// The deadline, in seconds.
        seconds: u64,
        /// The URL being fetched.
        url: String,
    },
    /// The connection failed or timed out.
    #[error("cannot reach `{}`: {}", redact_urls(url), redact_urls(message))]
    Transport {
        /// The URL.
        url: String,
        /// The client's reason.
        message: String,
    },
    /// The server answered with an error status.
    #[error("`{}` answered HTTP {status}{}", redact_urls(url), hint(*status))]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
    },
    /// A range request was not answered with 206.
    #[error(
        "`{}` answered HTTP {status} to a range request for bytes {range}; expected 206 Partial Content (the server does not serve ranges, and vramfit does not download whole files)",
        redact_urls(url)
    )]
    NotPartial {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The range asked for.
        range: String,
    },
    /// An answer that is not what was asked for.
    #[error("`{}`: {}", redact_urls(url), redact_urls(reason))]
    Invalid {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// A safetensors header fetched from the Hub is invalid.
    #[error(transparent)]
    Safetensors(#[from] safetensors::SafetensorsError),
    /// A GGUF header fetched from the Hub is invalid.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The token cannot be used.
    #[error(transparent)]
    Token(#[from] TokenError),
}

fn hint(status: u16) -> &'static str {
    match status {
        401 | 403 => " (a gated or private repo: accept its terms on the Hub and set HF_TOKEN)",
        404 => " (no such repo, revision or file)",
        429 => " (rate limited: try again later, or set HF_TOKEN)",
        _ => "",
    }
}

/// A client for one Hub endpoint.
pub struct HubClient {
    endpoint: String,
    token: Option<String>,
    agent: ureq::Agent,
    progress: Option<Progress>,
    limits: HubLimits,
    started: std::time::Instant,
    requests: std::sync::atomic::AtomicU64,
}

/// A callback shown each request before it is made.
type Progress = Box<dyn Fn(&str) + Send + Sync>;

impl std::fmt::Debug for HubClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HubClient")
            .field("endpoint", &self.endpoint)
            .field("token", &self.token.as_ref().map(|_| "(set)"))
            .finish_non_exhaustive()
    }
}

impl HubClient {
    /// A client for `endpoint` (no trailing slash needed) with an optional token.
    pub fn new(endpoint: &str, token: Option<String>) -> Self {
        let config = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(Duration::from_secs(10)))
            .timeout_global(Some(Duration::from_secs(120)))
            .user_agent(concat!("vramfit/", env!("CARGO_PKG_VERSION")))
            .build();
        HubClient {
            endpoint: endpoint.trim_end_matches('/').to_owned(),
            token,
            agent: config.new_agent(),
            progress: None,
            limits: HubLimits::default(),
            started: std::time::Instant::now(),
            requests: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// An error unless `count` shards, named by `url`, are within the limit.
    fn check_shards(&self, url: &str, count: usize) -> Result<(), HubError> {
        if count as u64 > self.limits.max_shards {
            return Err(HubError::TooManyShards {
                url: url.to_owned(),
                count,
                limit: self.limits.max_shards,
            });
        }
        Ok(())
    }

    /// The run's limits, counted from now.
    #[must_use]
    pub fn with_limits(mut self, limits: HubLimits) -> Self {
        self.limits = limits;
        self.started = std::time::Instant::now();
        self
    }

    /// The client the environment describes (`HF_ENDPOINT`, the token), or `None` offline.
    ///
    /// # Errors
    /// A token that cannot be used ([`TokenError`]).
    pub fn from_env(offline: bool) -> Result<Option<Self>, HubError> {
        if offline || offline_from_env() {
            return Ok(None);
        }
        Ok(Some(HubClient::new(&endpoint_from_env(), token_from_env()?)))
    }

    /// Calls `progress` with a line before each request (for a progress display).
    #[must_use]
    pub fn with_progress(mut self, progress: impl Fn(&str) + Send + Sync + 'static) -> Self {
        self.progress = Some(Box::new(progress));
        self
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The URL of `file` in `repo` at `revision`: the repo id checked, every path
    /// segment of the file percent-encoded, and `.`, `..` or empty segments refused
    /// (a file name listed by a server must not lead the request elsewhere).
    ///
    /// # Errors
    /// A repo id or file name that cannot name a Hub file.
    pub fn file_url(&self, repo: &str, revision: &str, file: &str) -> Result<String, HubError> {
        check_repo(repo)?;
        check_revision(&self.endpoint, repo, revision)?;
        let mut path = String::new();
        for segment in file.split('/') {
            if segment.is_empty() || segment == "." || segment == ".." {
                return Err(HubError::Invalid {
                    url: format!("{}/{repo}", self.endpoint),
                    reason: format!("`{file}` is not a file name in a repo"),
                });
            }
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(&encode(segment));
        }
        Ok(format!("{}/{repo}/resolve/{}/{path}", self.endpoint, encode(revision)))
    }

    fn info_url(&self, repo: &str, revision: &str) -> Result<String, HubError> {
        check_repo(repo)?;
        check_revision(&self.endpoint, repo, revision)?;
        Ok(format!("{}/api/models/{repo}/revision/{}", self.endpoint, encode(revision)))
    }

    fn request(
        &self,
        url: &str,
        range: Option<(u64, u64)>,
    ) -> Result<ureq::http::Response<ureq::Body>, HubError> {
        if let Some(progress) = &self.progress {
            progress(&match range {
                Some((start, end)) => format!("GET {} (bytes {start}–{end})", redact_urls(url)),
                None => format!("GET {}", redact_urls(url)),
            });
        }
        let made = self.requests.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if made >= self.limits.max_requests {
            return Err(HubError::RequestBudget { limit: self.limits.max_requests });
        }
        let deadline =
            || HubError::Deadline { seconds: self.limits.deadline.as_secs(), url: url.to_owned() };
        let left = self.limits.deadline.saturating_sub(self.started.elapsed());
        if left.is_zero() {
            return Err(deadline());
        }
        let timeout = left.min(Duration::from_secs(120));
        let mut request = self.agent.get(url).config().timeout_global(Some(timeout)).build();
        if let Some(token) = &self.token {
            request = request.header("Authorization", format!("Bearer {token}"));
        }
        if let Some((start, end)) = range {
            request = request.header("Range", format!("bytes={start}-{end}"));
        }
        let response = request.call().map_err(|e| {
            if self.started.elapsed() >= self.limits.deadline {
                deadline()
            } else {
                HubError::Transport { url: url.to_owned(), message: e.to_string() }
            }
        })?;
        let status = response.status().as_u16();
        match (range, status) {
            (None, 200) | (Some(_), 206) => Ok(response),
            (Some((start, end)), 200) => Err(HubError::NotPartial {
                url: url.to_owned(),
                status,
                range: format!("{start}-{end}"),
            }),
            _ => Err(HubError::Status { url: url.to_owned(), status }),
        }
    }

    /// A whole small document (at most 64 MiB).
    fn small(&self, url: &str) -> Result<Vec<u8>, HubError> {
        self.small_within(url, MAX_JSON_BYTES)
    }

    /// A whole document of at most `limit` bytes; a longer one is an error
    /// that says so, not a transport failure.
    fn small_within(&self, url: &str, limit: u64) -> Result<Vec<u8>, HubError> {
        let mut response = self.request(url, None)?;
        let bytes =
            response.body_mut().with_config().limit(limit).read_to_vec().map_err(|e| match e {
                ureq::Error::BodyExceedsLimit(_) => HubError::Invalid {
                    url: url.to_owned(),
                    reason: format!("is larger than {limit} bytes, more than vramfit reads"),
                },
                other => HubError::Transport { url: url.to_owned(), message: other.to_string() },
            })?;
        Ok(bytes)
    }

    /// Bytes `start..=end` of a file, and the file's length from `Content-Range`.
    fn range(&self, url: &str, start: u64, end: u64) -> Result<(Vec<u8>, u64), HubError> {
        let mut bytes = Vec::new();
        let total = self.range_into(url, start, end, &mut bytes)?;
        Ok((bytes, total))
    }

    /// Bytes `start..=end` of a file appended to `bytes` (which grows once, to
    /// its final length, before the body is read into it), and the file's
    /// length from `Content-Range`.
    fn range_into(
        &self,
        url: &str,
        start: u64,
        end: u64,
        bytes: &mut Vec<u8>,
    ) -> Result<u64, HubError> {
        let mut response = self.request(url, Some((start, end)))?;
        let invalid = |reason: String| HubError::Invalid { url: url.to_owned(), reason };
        let content_range =
            response
                .headers()
                .get("content-range")
                .and_then(|v| v.to_str().ok())
                .ok_or_else(|| invalid("a 206 answer without a Content-Range header".into()))?;
        let (span, total) = content_range
            .strip_prefix("bytes ")
            .and_then(|rest| rest.split_once('/'))
            .ok_or_else(|| invalid(format!("unreadable Content-Range `{content_range}`")))?;
        let total: u64 = total
            .parse()
            .map_err(|_| invalid(format!("Content-Range `{content_range}` has no file length")))?;
        if total <= start {
            return Err(invalid(format!(
                "asked for bytes from {start}, but Content-Range `{content_range}` says the file has {total}"
            )));
        }
        let first: Option<u64> = span.split_once('-').and_then(|(a, _)| a.parse().ok());
        if first != Some(start) {
            return Err(invalid(format!("asked for bytes from {start}, got `{content_range}`")));
        }
        let want = end.min(total.saturating_sub(1)).saturating_sub(start).saturating_add(1);
        let before = bytes.len();
        bytes.reserve_exact(usize::try_from(want).unwrap_or(usize::MAX));
        std::io::Read::read_to_end(
            &mut response.body_mut().with_config().limit(want).reader(),
            bytes,
        )
        .map_err(|e| HubError::Transport { url: url.to_owned(), message: e.to_string() })?;
        let got = bytes.len() - before;
        if got as u64 != want {
            return Err(invalid(format!("asked for {want} bytes, got {got}")));
        }
        Ok(total)
    }

    /// The text of `config.json` of `repo` at `revision`, with its URL.
    pub fn config(&self, repo: &str, revision: &str) -> Result<(String, String), HubError> {
        let url = self.file_url(repo, revision, "config.json")?;
        let bytes = self.small_within(&url, crate::config::MAX_CONFIG_BYTES)?;
        let text = String::from_utf8(bytes).map_err(|_| HubError::Invalid {
            url: url.clone(),
            reason: "config.json is not UTF-8 text".into(),
        })?;
        Ok((text, url))
    }

    /// The files of `repo` at `revision` and the commit the revision points to.
    pub fn files(
        &self,
        repo: &str,
        revision: &str,
    ) -> Result<(Vec<String>, Option<String>), HubError> {
        let url = self.info_url(repo, revision)?;
        let bytes = self.small(&url)?;
        // Only the file names and the commit are kept; every other field of the
        // model info (and of each file) is skipped unread, so a listing of a
        // million files holds their names, not a JSON tree of them.
        let info: ModelInfo = serde_json::from_slice(&bytes).map_err(|e| HubError::Invalid {
            url: url.clone(),
            reason: format!("model info is not the JSON expected: {e}"),
        })?;
        drop(bytes);
        let files = info.siblings.ok_or_else(|| HubError::Invalid {
            url: url.clone(),
            reason: "no `siblings` list".into(),
        })?;
        Ok((files.into_iter().filter_map(|s| s.rfilename).collect(), info.sha))
    }

    /// A sharded checkpoint's index.
    pub fn safetensors_index(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<SafetensorsIndex, HubError> {
        let url = self.file_url(repo, revision, file)?;
        let bytes = self.small(&url)?;
        Ok(safetensors::parse_index_bytes(&bytes, &redact_urls(&url))?)
    }

    /// A safetensors file's header: its 8-byte length, then exactly the JSON.
    pub fn safetensors_header(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<SafetensorsHeader, HubError> {
        let url = self.file_url(repo, revision, file)?;
        let (prefix, total) = self.range(&url, 0, 7)?;
        let declared = u64::from_le_bytes(prefix.try_into().map_err(|_| HubError::Invalid {
            url: url.clone(),
            reason: "the file is shorter than the 8-byte header length".into(),
        })?);
        if declared == 0 || declared > MAX_HEADER_SIZE || declared > total.saturating_sub(8) {
            return Err(HubError::Invalid {
                url,
                reason: format!(
                    "declares a header of {declared} bytes (the limit is {MAX_HEADER_SIZE} and the file has {total})"
                ),
            });
        }
        let (json, _) = self.range(&url, 8, 8 + declared - 1)?;
        let header = safetensors::parse_header_json(&json, declared, &redact_urls(&url))?;
        header.check_file_len(total)?;
        Ok(header)
    }

    /// A GGUF file's header, from prefixes that grow until it parses.
    pub fn gguf_header(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<GgufHeader, HubError> {
        let url = self.file_url(repo, revision, file)?;
        let (mut bytes, total) = self.range(&url, 0, FIRST_GGUF_PREFIX - 1)?;
        loop {
            match gguf::parse_prefix(&bytes, &redact_urls(&url), total) {
                Ok(header) => return Ok(header),
                Err(GgufError::NeedMoreBytes { need_at_least, .. }) => {
                    let have = bytes.len() as u64;
                    let next = need_at_least.max(have.saturating_mul(2)).min(total);
                    if next <= have || next > MAX_GGUF_PREFIX {
                        return Err(HubError::Invalid {
                            url,
                            reason: format!(
                                "the header needs more than {} MiB; not read over the network",
                                MAX_GGUF_PREFIX >> 20
                            ),
                        });
                    }
                    let again = self.range_into(&url, have, next - 1, &mut bytes)?;
                    if again != total {
                        return Err(HubError::Invalid {
                            url,
                            reason: format!(
                                "the file's length changed from {total} to {again} between requests"
                            ),
                        });
                    }
                }
                Err(other) => return Err(other.into()),
            }
        }
    }
}

/// The fields of the Hub's model info vramfit reads.
#[derive(serde::Deserialize)]
struct ModelInfo {
    #[serde(default)]
    siblings: Option<Vec<Sibling>>,
    #[serde(default)]
    sha: Option<String>,
}

/// One file of the model info's `siblings`.
#[derive(serde::Deserialize)]
struct Sibling {
    #[serde(default)]
    rfilename: Option<String>,
}

/// Percent-encodes a revision for a URL path (branch names may hold `/`).
fn encode(revision: &str) -> String {
    let mut out = String::new();
    for byte in revision.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            out.push(char::from(byte));
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// A checkpoint on the Hub, measured from its headers alone: the sharded
/// safetensors index, else the safetensors files (a PEFT adapter excluded),
/// else a single GGUF model (one file or one split set).
///
/// # Errors
/// A failed request, an invalid header, or a repo with no checkpoint or several GGUF models.
pub fn read_hub_checkpoint(
    hub: &HubClient,
    repo: &str,
    revision: &str,
) -> Result<Checkpoint, HubError> {
    let (files, _) = hub.files(repo, revision)?;
    let urls = |files: &[&str]| -> Result<Vec<PathBuf>, HubError> {
        files
            .iter()
            .map(|f| hub.file_url(repo, revision, f).map(|url| PathBuf::from(redact_urls(&url))))
            .collect()
    };
    if files.iter().any(|f| f == "model.safetensors.index.json") {
        let index = hub.safetensors_index(repo, revision, "model.safetensors.index.json")?;
        let shards = index.shards();
        hub.check_shards(
            &hub.file_url(repo, revision, "model.safetensors.index.json")?,
            shards.len(),
        )?;
        let headers = shards
            .iter()
            .map(|shard| hub.safetensors_header(repo, revision, shard))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(from_safetensors(urls(&shards)?, headers, None));
    }
    let safetensors = safetensors_files(top_level(&files));
    if !safetensors.is_empty() {
        let headers = safetensors
            .iter()
            .map(|file| hub.safetensors_header(repo, revision, file))
            .collect::<Result<Vec<_>, _>>()?;
        return Ok(from_safetensors(urls(&safetensors)?, headers, None));
    }
    let (headers, _) = hub.gguf_model_headers(repo, revision)?;
    let files = headers.iter().map(|h| PathBuf::from(redact_urls(&h.file))).collect();
    Ok(from_gguf(files, &headers, None))
}

impl ModelHub for HubClient {
    fn fetch_model(&self, repo: &str, revision: &str) -> Result<HubModel, SourceError> {
        let error = |cause| SourceError::Hub { name: repo.to_owned(), cause: Box::new(cause) };
        match self.config(repo, revision) {
            Ok((text, url)) => {
                let url = redact_urls(&url);
                Ok(HubModel { parsed: parse_config_str(&text, &url)?, url, stored_weights: None })
            }
            // A GGUF-only repo has no config.json: the architecture is in the header.
            Err(HubError::Status { status: 404, .. }) => {
                let (headers, url) = self.gguf_model_headers(repo, revision).map_err(error)?;
                let url = redact_urls(&url);
                let model = model_from_headers(&headers, &url)?;
                Ok(HubModel { parsed: model.parsed, url, stored_weights: Some(model.weights) })
            }
            Err(other) => Err(error(other)),
        }
    }

    fn fetch_gguf_model(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<HubModel, SourceError> {
        let (headers, url) = self.gguf_file_headers(repo, revision, file).map_err(|cause| {
            SourceError::Hub { name: format!("{repo}/{file}"), cause: Box::new(cause) }
        })?;
        let url = redact_urls(&url);
        let model = model_from_headers(&headers, &url)?;
        Ok(HubModel { parsed: model.parsed, url, stored_weights: Some(model.weights) })
    }
}

impl HubClient {
    /// The headers of the GGUF model `file` names in `repo`: that file, or every
    /// part of the split it belongs to (`-00001-of-00003.gguf`), with the first
    /// part's URL.
    ///
    /// # Errors
    /// A failed request or an invalid header.
    pub fn gguf_file_headers(
        &self,
        repo: &str,
        revision: &str,
        file: &str,
    ) -> Result<(Vec<GgufHeader>, String), HubError> {
        let parts: Vec<String> = gguf::sibling_shard_paths(std::path::Path::new(file)).map_or_else(
            || vec![file.to_owned()],
            |paths| paths.iter().map(|p| p.display().to_string()).collect(),
        );
        self.check_shards(&self.file_url(repo, revision, file)?, parts.len())?;
        let headers = parts
            .iter()
            .map(|part| self.gguf_header(repo, revision, part))
            .collect::<Result<Vec<_>, _>>()?;
        Ok((headers, self.file_url(repo, revision, &parts[0])?))
    }

    /// The headers of the one GGUF model (a file or a split set) at the top of
    /// `repo`, and the first file's URL. Several quantizations in one repo are an
    /// error naming them (pick one with `ORG/NAME/FILE.gguf`).
    pub fn gguf_model_headers(
        &self,
        repo: &str,
        revision: &str,
    ) -> Result<(Vec<GgufHeader>, String), HubError> {
        let (files, _) = self.files(repo, revision)?;
        let info_url = self.info_url(repo, revision)?;
        let models = gguf_models(top_level(&files));
        match models.as_slice() {
            [one] => self.gguf_file_headers(repo, revision, one),
            [] => Err(HubError::Invalid {
                url: info_url,
                reason:
                    "has no config.json and lists no .safetensors or .gguf files at the top level"
                        .into(),
            }),
            many => Err(HubError::Invalid {
                url: info_url,
                reason: format!(
                    "holds {} GGUF models ({}); pick one with ORG/NAME/FILE.gguf",
                    many.len(),
                    many.join(", ")
                ),
            }),
        }
    }
}

/// The files at the top of a repo's listing (not in a subfolder).
fn top_level(files: &[String]) -> impl Iterator<Item = &str> {
    files.iter().map(String::as_str).filter(|f| !f.contains('/'))
}

/// A revision that can name a branch, tag or commit: not empty, and not `.`
/// or `..`, which a URL path would resolve away (every other byte is
/// percent-encoded, `/` included).
fn check_revision(endpoint: &str, repo: &str, revision: &str) -> Result<(), HubError> {
    if revision.is_empty() || revision == "." || revision == ".." {
        return Err(HubError::Invalid {
            url: format!("{endpoint}/{repo}"),
            reason: format!("`{revision}` is not a revision (a branch, tag or commit)"),
        });
    }
    Ok(())
}

/// A Hub repo id: `ORG/NAME`, both parts as [`is_repo_part`] says.
fn check_repo(repo: &str) -> Result<(), HubError> {
    match repo.split_once('/') {
        Some((org, name)) if is_repo_part(org) && is_repo_part(name) => Ok(()),
        _ => Err(HubError::Invalid {
            url: repo.to_owned(),
            reason: "is not a Hub repo id (ORG/NAME of letters, digits, `-`, `_`, `.`)".into(),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `.` and `..` would leave the revision's place in the URL path; a
    /// revision with `/` stays one percent-encoded segment.
    #[test]
    fn dot_revisions_are_refused_and_slashes_encoded() {
        let hub = HubClient::new("http://127.0.0.1:9", None);
        for revision in ["", ".", ".."] {
            let error = hub.file_url("org/name", revision, "config.json").unwrap_err();
            assert!(error.to_string().contains("not a revision"), "{revision}: {error}");
            assert!(hub.info_url("org/name", revision).is_err(), "{revision}");
        }
        let url = hub.file_url("org/name", "refs/pr/1", "config.json").unwrap();
        assert_eq!(url, "http://127.0.0.1:9/org/name/resolve/refs%2Fpr%2F1/config.json");
    }
}
