//! The Hub client over real HTTP: a local server in the test serves a
//! Hub-shaped layout (`/{repo}/resolve/{rev}/{file}`, `/api/models/{repo}/revision/{rev}`)
//! with range support, and records every request, so the tests see exactly
//! which bytes vramfit asked for. The server listens on 127.0.0.1 only, and
//! stops by itself after a bounded number of connections or 60 seconds.

use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const TOKEN: &str = "hf_secretTOKEN123";

#[derive(Clone, Debug)]
struct Seen {
    path: String,
    range: Option<String>,
    auth: Option<String>,
}

fn fixtures() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../vramfit-sources/tests/fixtures/headers")
}

fn tiny_config() -> Value {
    json!({
        "model_type": "llama", "vocab_size": 1000, "hidden_size": 256, "intermediate_size": 512,
        "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
        "max_position_embeddings": 2048
    })
}

/// Serves one repo layout per name; `acme/norange` ignores Range headers, `acme/gated`
/// wants the token.
fn serve() -> (String, Arc<Mutex<Vec<Seen>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.set_nonblocking(true).unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&seen);
    std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut served = 0;
        while served < 500 && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    served += 1;
                    let _ = handle(stream, &log);
                }
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (address, seen)
}

fn handle(stream: TcpStream, log: &Mutex<Vec<Seen>>) -> std::io::Result<()> {
    stream.set_nonblocking(false)?;
    stream.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut reader = BufReader::new(stream.try_clone()?.take(64 * 1024));
    let mut line = String::new();
    reader.read_line(&mut line)?;
    let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
    let (mut range, mut auth) = (None, None);
    loop {
        let mut header = String::new();
        if reader.read_line(&mut header)? == 0 || header == "\r\n" {
            break;
        }
        let (name, value) = header.split_once(':').unwrap_or(("", ""));
        match name.to_ascii_lowercase().as_str() {
            "range" => range = Some(value.trim().to_owned()),
            "authorization" => auth = Some(value.trim().to_owned()),
            _ => {}
        }
    }
    log.lock().unwrap().push(Seen { path: path.clone(), range: range.clone(), auth: auth.clone() });
    let mut out = stream;
    let repo_file = |repo: &str, file: &str| format!("/{repo}/resolve/main/{file}");
    let files = |names: &[&str]| {
        json!({"sha": "0123456789abcdef0123456789abcdef01234567",
               "siblings": names.iter().map(|n| json!({"rfilename": n})).collect::<Vec<_>>()})
        .to_string()
        .into_bytes()
    };
    let safetensors = std::fs::read(fixtures().join("gptq.safetensors"))?;
    let big = big_gguf();
    let gguf = std::fs::read(fixtures().join("tiny-llama.gguf"))?;
    let config = tiny_config().to_string().into_bytes();
    let (body, ranged): (Option<Vec<u8>>, bool) = match path.as_str() {
        p if p == repo_file("acme/tiny", "config.json") => (Some(config), false),
        // A config.json of 5 MB, above the 4 MiB any config may have.
        p if p == repo_file("acme/bigconfig", "config.json") => {
            (Some(format!("{{\"a\":\"{}\"}}", "x".repeat(5_000_000)).into_bytes()), false)
        }
        // A server that takes 3 s to answer (the run's deadline test).
        p if p == repo_file("acme/slow", "config.json") => {
            std::thread::sleep(Duration::from_secs(3));
            (Some(config), false)
        }
        p if p == repo_file("acme/gated", "config.json") => {
            if auth.as_deref() == Some(&format!("Bearer {TOKEN}")) {
                (Some(config), false)
            } else {
                return respond(&mut out, "401 Unauthorized", &[], b"gated");
            }
        }
        "/api/models/acme/tiny/revision/main" => {
            (Some(files(&["config.json", "model.safetensors"])), false)
        }
        "/api/models/acme/norange/revision/main" => (Some(files(&["model.safetensors"])), false),
        "/api/models/acme/big/revision/main" | "/api/models/acme/liar/revision/main" => {
            (Some(files(&["big.gguf"])), false)
        }
        "/api/models/acme/many/revision/main" => {
            (Some(files(&["model.safetensors.index.json"])), false)
        }
        // An index naming 20,000 shards (40,002 requests if followed).
        p if p == repo_file("acme/many", "model.safetensors.index.json") => {
            let map: serde_json::Map<String, Value> = (1..=20_000)
                .map(|i| (format!("w{i}"), json!(format!("model-{i:05}-of-20000.safetensors"))))
                .collect();
            (Some(json!({"metadata": {}, "weight_map": map}).to_string().into_bytes()), false)
        }
        "/api/models/acme/dots/revision/main" => {
            (Some(files(&["model.safetensors.index.json"])), false)
        }
        p if p == repo_file("acme/dots", "model.safetensors.index.json") => (
            Some(
                json!({"metadata": {}, "weight_map": {"w": "../../tiny/resolve/main/model.safetensors"}})
                    .to_string()
                    .into_bytes(),
            ),
            false,
        ),
        p if p == repo_file("acme/liar", "big.gguf") => {
            // Honest for the first prefix, then a Content-Range whose total shrinks to 1.
            match range.as_deref() {
                Some(r) if r.starts_with("bytes=0-") => (Some(big), true),
                Some(r) => {
                    let start = r.trim_start_matches("bytes=").split('-').next().unwrap_or("0");
                    let header = format!("bytes {start}-{start}/1");
                    return respond(&mut out, "206 Partial Content", &[("Content-Range", &header)], b"x");
                }
                None => (Some(big), false),
            }
        }
        "/api/models/acme/gguf/revision/main" => {
            (Some(files(&["README.md", "tiny-llama.gguf"])), false)
        }
        p if p == repo_file("acme/tiny", "model.safetensors") => (Some(safetensors), true),
        p if p.starts_with("/acme/many/resolve/main/model-") => (Some(safetensors), true),
        p if p == repo_file("acme/norange", "model.safetensors") => (Some(safetensors), false),
        p if p == repo_file("acme/gguf", "tiny-llama.gguf") => (Some(gguf), true),
        p if p == repo_file("acme/big", "big.gguf") => (Some(big), true),
        _ => (None, false),
    };
    let Some(body) = body else { return respond(&mut out, "404 Not Found", &[], b"no") };
    match (ranged, range.as_deref().and_then(|r| r.strip_prefix("bytes="))) {
        (true, Some(spec)) => {
            let (a, b) = spec.split_once('-').unwrap();
            let start: usize = a.parse().unwrap();
            let end = b.parse::<usize>().unwrap().min(body.len() - 1);
            let content_range = format!("bytes {start}-{end}/{}", body.len());
            respond(
                &mut out,
                "206 Partial Content",
                &[("Content-Range", &content_range)],
                &body[start..=end],
            )
        }
        _ => respond(&mut out, "200 OK", &[], &body),
    }
}

fn respond(
    out: &mut TcpStream,
    status: &str,
    headers: &[(&str, &str)],
    body: &[u8],
) -> std::io::Result<()> {
    let mut head =
        format!("HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n", body.len());
    for (name, value) in headers {
        let _ = write!(head, "{name}: {value}\r\n");
    }
    head.push_str("\r\n");
    out.write_all(head.as_bytes())?;
    out.write_all(body)?;
    out.flush()
}

fn vramfit(endpoint: &str, env: &[(&str, &str)], args: &[&str]) -> Output {
    let cache = tempfile::tempdir().unwrap();
    let mut command = Command::new(env!("CARGO_BIN_EXE_vramfit"));
    command.args(args).env("NO_COLOR", "1").env("HF_ENDPOINT", endpoint);
    for key in [
        "HF_HUB_OFFLINE",
        "HF_TOKEN",
        "HF_TOKEN_PATH",
        "HF_HUB_CACHE",
        "HUGGINGFACE_HUB_CACHE",
        "XDG_CACHE_HOME",
    ] {
        command.env_remove(key);
    }
    // An empty cache and home: nothing is found locally.
    command.env("HF_HOME", cache.path()).env("HOME", cache.path());
    for (key, value) in env {
        command.env(key, value);
    }
    command.output().expect("the binary runs")
}

fn text(output: &Output) -> String {
    format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

fn ok_json(output: &Output) -> Value {
    assert!(output.status.success(), "{}", text(output));
    serde_json::from_slice(&output.stdout).unwrap()
}

#[test]
fn a_config_is_read_from_the_hub_when_nothing_local_has_it() {
    let (endpoint, seen) = serve();
    let doc = ok_json(&vramfit(&endpoint, &[], &["params", "acme/tiny", "--json"]));
    // The same config read from a file gives the same count.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("config.json");
    std::fs::write(&file, tiny_config().to_string()).unwrap();
    let local = ok_json(&vramfit(&endpoint, &[], &["params", file.to_str().unwrap(), "--json"]));
    assert_eq!(doc["params"]["total"], local["params"]["total"]);
    assert!(doc["model"]["source"].as_str().unwrap().starts_with("hub:acme/tiny"), "{doc}");
    assert!(seen.lock().unwrap().iter().any(|s| s.path == "/acme/tiny/resolve/main/config.json"));
    // --verbose tells each step on stderr.
    let output = vramfit(&endpoint, &[], &["params", "acme/tiny", "--verbose"]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("catalog: no model") && err.contains("hub: fetched"), "{err}");
}

#[test]
fn offline_means_no_request() {
    let (endpoint, seen) = serve();
    for env in [&[("HF_HUB_OFFLINE", "1")][..], &[]] {
        let mut args = vec!["params", "acme/tiny"];
        if env.is_empty() {
            args.push("--offline");
        }
        let output = vramfit(&endpoint, env, &args);
        assert!(!output.status.success());
        assert!(text(&output).contains("HF_HUB_OFFLINE=1"), "{}", text(&output));
    }
    assert!(seen.lock().unwrap().is_empty(), "{:?}", seen.lock().unwrap());
}

#[test]
fn gated_repos_need_the_token_and_it_is_never_shown() {
    let (endpoint, seen) = serve();
    let output = vramfit(&endpoint, &[], &["params", "acme/gated"]);
    assert!(!output.status.success());
    assert!(
        text(&output).contains("401") && text(&output).contains("HF_TOKEN"),
        "{}",
        text(&output)
    );
    let output = vramfit(
        &endpoint,
        &[("HF_TOKEN", TOKEN)],
        &["params", "acme/gated", "--verbose", "--json"],
    );
    ok_json(&output);
    assert!(!text(&output).contains(TOKEN));
    // The token file in HF_HOME works too.
    let home = tempfile::tempdir().unwrap();
    std::fs::write(home.path().join("token"), format!("{TOKEN}\n")).unwrap();
    let home_path = home.path().to_str().unwrap();
    ok_json(&vramfit(&endpoint, &[("HF_HOME", home_path)], &["params", "acme/gated", "--json"]));
    let auths: Vec<Option<String>> = seen.lock().unwrap().iter().map(|s| s.auth.clone()).collect();
    assert_eq!(auths, [None, Some(format!("Bearer {TOKEN}")), Some(format!("Bearer {TOKEN}"))]);
}

#[test]
fn safetensors_headers_are_read_with_two_range_requests() {
    let (endpoint, seen) = serve();
    let hub = ok_json(&vramfit(&endpoint, &[], &["inspect", "acme/tiny", "--json"]));
    let local = ok_json(&vramfit(
        &endpoint,
        &[],
        &["inspect", fixtures().join("gptq.safetensors").to_str().unwrap(), "--json"],
    ));
    for key in ["stored_bytes", "logical_parameters", "tensors", "by_type", "auxiliary_bytes"] {
        assert_eq!(hub[key], local[key], "{key}");
    }
    // Exactly the 8-byte length and then the header, never the data.
    let bytes = std::fs::read(fixtures().join("gptq.safetensors")).unwrap();
    let n = u64::from_le_bytes(bytes[..8].try_into().unwrap());
    let ranges: Vec<Option<String>> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.ends_with("model.safetensors"))
        .map(|s| s.range.clone())
        .collect();
    assert_eq!(ranges, [Some("bytes=0-7".to_owned()), Some(format!("bytes=8-{}", 8 + n - 1))]);
}

#[test]
fn a_server_that_ignores_ranges_is_an_error_not_a_download() {
    let (endpoint, _) = serve();
    let output = vramfit(&endpoint, &[], &["inspect", "acme/norange"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("expected 206"), "{}", text(&output));
}

#[test]
fn gguf_headers_are_read_from_growing_prefixes() {
    let (endpoint, seen) = serve();
    let hub = ok_json(&vramfit(&endpoint, &[], &["inspect", "acme/gguf", "--json"]));
    let local = ok_json(&vramfit(
        &endpoint,
        &[],
        &["inspect", fixtures().join("tiny-llama.gguf").to_str().unwrap(), "--json"],
    ));
    for key in ["stored_bytes", "logical_parameters", "tensors", "metadata", "format"] {
        assert_eq!(hub[key], local[key], "{key}");
    }
    let one =
        ok_json(&vramfit(&endpoint, &[], &["inspect", "acme/gguf/tiny-llama.gguf", "--json"]));
    assert_eq!(one["stored_bytes"], local["stored_bytes"]);
    assert!(
        seen.lock()
            .unwrap()
            .iter()
            .filter(|s| Path::new(&s.path).extension().is_some_and(|e| e == "gguf"))
            .all(|s| s.range.is_some())
    );
}

#[test]
fn a_gguf_only_repo_runs_under_llama_cpp_from_its_header() {
    let (endpoint, seen) = serve();
    // acme/gguf has no config.json (404): the architecture comes from the GGUF header.
    let doc =
        ok_json(&vramfit(&endpoint, &[], &["infer", "acme/gguf", "--ctx-size", "1024", "--json"]));
    assert_eq!(doc["engine"]["name"], "llama.cpp");
    let local = ok_json(&vramfit(
        &endpoint,
        &[],
        &[
            "infer",
            fixtures().join("tiny-llama.gguf").to_str().unwrap(),
            "--ctx-size",
            "1024",
            "--json",
        ],
    ));
    assert_eq!(doc["memory"], local["memory"]);
    let seen = seen.lock().unwrap();
    assert!(seen.iter().any(|s| s.path == "/acme/gguf/resolve/main/config.json"));
    assert!(seen.iter().filter(|s| s.path.ends_with("tiny-llama.gguf")).all(|s| s.range.is_some()));
}

/// A GGUF v3 file whose header (a 300,000-token vocabulary) is larger than the first
/// 4 MiB prefix the client asks for, with one small F32 tensor after it.
fn big_gguf() -> Vec<u8> {
    fn string(out: &mut Vec<u8>, s: &str) {
        out.extend_from_slice(&(s.len() as u64).to_le_bytes());
        out.extend_from_slice(s.as_bytes());
    }
    let mut out = b"GGUF".to_vec();
    out.extend_from_slice(&3u32.to_le_bytes());
    out.extend_from_slice(&1u64.to_le_bytes()); // tensors
    out.extend_from_slice(&2u64.to_le_bytes()); // key/values
    string(&mut out, "general.architecture");
    out.extend_from_slice(&8u32.to_le_bytes());
    string(&mut out, "llama");
    string(&mut out, "tokenizer.ggml.tokens");
    out.extend_from_slice(&9u32.to_le_bytes());
    out.extend_from_slice(&8u32.to_le_bytes());
    out.extend_from_slice(&300_000u64.to_le_bytes());
    for i in 0..300_000 {
        string(&mut out, &format!("token{i}"));
    }
    string(&mut out, "token_embd.weight");
    out.extend_from_slice(&2u32.to_le_bytes());
    out.extend_from_slice(&32u64.to_le_bytes());
    out.extend_from_slice(&4u64.to_le_bytes());
    out.extend_from_slice(&0u32.to_le_bytes()); // F32
    out.extend_from_slice(&0u64.to_le_bytes());
    out.resize(out.len().div_ceil(32) * 32, 0);
    out.extend_from_slice(&[0u8; 32 * 4 * 4]);
    out
}

#[test]
fn a_gguf_header_larger_than_the_first_prefix_is_read_in_growing_ranges() {
    let (endpoint, seen) = serve();
    let big = big_gguf();
    assert!(big.len() > 4 << 20);
    let doc = ok_json(&vramfit(&endpoint, &[], &["inspect", "acme/big", "--json"]));
    assert_eq!(doc["tensors"], 1);
    assert_eq!(doc["stored_bytes"], 32 * 4 * 4);
    let ranges: Vec<String> = seen
        .lock()
        .unwrap()
        .iter()
        .filter(|s| s.path.ends_with("big.gguf"))
        .map(|s| s.range.clone().expect("only ranged requests"))
        .collect();
    assert!(ranges.len() >= 2, "{ranges:?}");
    assert_eq!(ranges[0], format!("bytes=0-{}", (4 << 20) - 1));
    // Each next range starts where the last ended: no byte is asked for twice.
    for pair in ranges.windows(2) {
        let end: u64 = pair[0].rsplit('-').next().unwrap().parse().unwrap();
        let start: u64 =
            pair[1].trim_start_matches("bytes=").split('-').next().unwrap().parse().unwrap();
        assert_eq!(start, end + 1, "{ranges:?}");
    }
}

#[test]
fn lying_servers_and_hostile_names_get_errors_not_loops_or_other_paths() {
    let (endpoint, seen) = serve();
    // A Content-Range total that shrinks below the offset asked for ends the read at once.
    let output = vramfit(&endpoint, &[], &["inspect", "acme/liar"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("Content-Range"), "{}", text(&output));
    let asked = seen.lock().unwrap().iter().filter(|s| s.path.ends_with("big.gguf")).count();
    assert_eq!(asked, 2);
    // A shard name from an index that climbs out of the repo is refused, never requested.
    let output = vramfit(&endpoint, &[], &["inspect", "acme/dots"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("file name"), "{}", text(&output));
    assert!(!seen.lock().unwrap().iter().any(|s| s.path.contains("..")));
    // A repo id with URL syntax in it is not sent anywhere.
    let before = seen.lock().unwrap().len();
    let output = vramfit(&endpoint, &[], &["params", "acme/x?y=1"]);
    assert!(!output.status.success());
    assert!(text(&output).contains("not a Hub repo id"), "{}", text(&output));
    assert_eq!(seen.lock().unwrap().len(), before);
    // The Hub's error is said once, not repeated as its own cause.
    let output = vramfit(&endpoint, &[], &["params", "acme/missing"]);
    let err = String::from_utf8_lossy(&output.stderr);
    assert_eq!(err.matches("HTTP 404").count(), 1, "{err}");
}

#[test]
fn one_gguf_file_of_a_repo_is_named_as_org_name_file() {
    let (endpoint, _) = serve();
    let doc = ok_json(&vramfit(
        &endpoint,
        &[],
        &["infer", "acme/gguf/tiny-llama.gguf", "--ctx-size", "1024", "--json"],
    ));
    assert_eq!(doc["engine"]["name"], "llama.cpp");
    assert!(doc["model"]["source"].as_str().unwrap().starts_with("hub:acme/gguf"), "{doc}");
}

#[test]
fn each_run_has_a_request_budget_and_a_deadline() {
    let (endpoint, _) = serve();
    // Inspecting a checkpoint takes the file list and two ranged reads.
    let output = vramfit(&endpoint, &[], &["inspect", "acme/tiny"]);
    assert!(output.status.success(), "{}", text(&output));
    let output = vramfit(&endpoint, &[], &["inspect", "acme/tiny", "--hub-max-requests", "2"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("budget of 2 Hub requests is spent"), "{}", text(&output));
    // An index naming more shards than the limit is refused before any shard is asked for.
    let (endpoint_many, seen) = serve();
    let output = vramfit(&endpoint_many, &[], &["inspect", "acme/many"]);
    assert_eq!(output.status.code(), Some(1));
    assert!(
        text(&output).contains("names 20000 shards, more than the run's limit of 1000"),
        "{}",
        text(&output)
    );
    assert!(!seen.lock().unwrap().iter().any(|s| s.path.contains("-of-20000")));
    // Allowed that many shards, the run stops at its request budget.
    let output = vramfit(
        &endpoint_many,
        &[],
        &["inspect", "acme/many", "--hub-max-shards", "20000", "--hub-max-requests", "50"],
    );
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("budget of 50 Hub requests is spent"), "{}", text(&output));
    // The refused run asked for the file list and the index; this one, 50 in all.
    assert_eq!(seen.lock().unwrap().len(), 2 + 50);
    // A server slower than the run's deadline: the run stops at the deadline,
    // not at the request's own 120 s timeout.
    let start = Instant::now();
    let output = vramfit(&endpoint, &[], &["params", "acme/slow", "--hub-deadline", "1"]);
    let took = start.elapsed();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output).contains("Hub deadline of 1 s passed"), "{}", text(&output));
    assert!(took < Duration::from_millis(2500), "took {took:?}");
}

#[test]
fn an_oversized_config_from_the_hub_is_named_too_large_not_a_network_error() {
    let (endpoint, _) = serve();
    let output = vramfit(&endpoint, &[], &["params", "acme/bigconfig"]);
    assert_eq!(output.status.code(), Some(1));
    let message = text(&output);
    assert!(message.contains("larger than 4194304 bytes"), "{message}");
}
