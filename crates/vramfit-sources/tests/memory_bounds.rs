//! Hostile inputs are read with bounded memory: a header of a million tensors,
//! a config of a million keys, a model listing of a million files, a GGUF
//! header that never ends. Each case runs in a child process of this test (a
//! fresh heap), which resets its peak resident set (`/proc/self/clear_refs`),
//! builds its input, runs the reader and reports the growth of its peak over
//! the resident set it had before the reader ran. Linux only, as CI is.
//!
//! The bounds: at most 4× the bytes the input needs (the text itself, the
//! largest prefix read, or for a config at its limit its JSON tree, at 50
//! bytes a value: 200 allowed), and at most 300 MB, whatever the input.

use std::fmt::Write as _;
use std::io::Write as _;
#[cfg(feature = "hub")]
use std::io::{BufRead as _, BufReader, Read as _};
#[cfg(feature = "hub")]
use std::net::{TcpListener, TcpStream};
use std::process::Command;

const CASE: &str = "VRAMFIT_MEMORY_BOUND_CASE";
const LIMIT: u64 = 300_000_000;

/// A field of `/proc/self/status`, in bytes.
fn status_bytes(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("procfs");
    let line = status.lines().find(|l| l.starts_with(field)).expect("the field exists");
    let kib: u64 = line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("a number");
    kib * 1024
}

/// Runs `read`, returning its result and how far the peak resident set rose
/// above the resident set before it.
fn peak_growth<T>(read: impl FnOnce() -> T) -> (T, u64) {
    std::fs::write("/proc/self/clear_refs", "5").expect("resetting the peak (Linux procfs)");
    let before = status_bytes("VmRSS:");
    let out = read();
    let peak = status_bytes("VmHWM:");
    (out, peak.saturating_sub(before))
}

/// A safetensors header of `count` one-element tensors.
fn safetensors_header(count: usize) -> Vec<u8> {
    let mut json = String::with_capacity(count * 72);
    json.push('{');
    for i in 0..count {
        if i > 0 {
            json.push(',');
        }
        let _ = write!(
            json,
            "\"model.layers.{i}.w\":{{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[{},{}]}}",
            2 * i,
            2 * i + 2
        );
    }
    json.push('}');
    json.into_bytes()
}

/// A server on a local port answering every request with `answer(path, range)`.
#[cfg(feature = "hub")]
fn serve(answer: impl Fn(&str, Option<(u64, u64)>, &mut TcpStream) + Send + 'static) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a local port");
    let address = format!("http://{}", listener.local_addr().expect("its address"));
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten().take(200) {
            let mut stream = stream;
            let mut reader = BufReader::new(stream.try_clone().expect("clone").take(64 * 1024));
            let mut line = String::new();
            if reader.read_line(&mut line).is_err() {
                continue;
            }
            let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
            let mut range = None;
            loop {
                let mut header = String::new();
                if reader.read_line(&mut header).unwrap_or(0) == 0 || header == "\r\n" {
                    break;
                }
                if let Some(spec) = header.to_ascii_lowercase().strip_prefix("range: bytes=") {
                    let (a, b) = spec.trim().split_once('-').unwrap_or(("0", "0"));
                    range = Some((a.parse().unwrap_or(0), b.parse().unwrap_or(0)));
                }
            }
            answer(&path, range, &mut stream);
        }
    });
    address
}

/// The GGUF of the growing-header case: one array of `count` strings of 8
/// bytes (16 bytes each with their length), far more than any real header.
#[cfg(feature = "hub")]
struct EndlessGguf {
    prefix: Vec<u8>,
    count: u64,
}

#[cfg(feature = "hub")]
impl EndlessGguf {
    fn new(count: u64) -> Self {
        let mut prefix = b"GGUF".to_vec();
        prefix.extend_from_slice(&3u32.to_le_bytes()); // version
        prefix.extend_from_slice(&0u64.to_le_bytes()); // tensors
        prefix.extend_from_slice(&1u64.to_le_bytes()); // key-value pairs
        let key = b"tokenizer.ggml.tokens";
        prefix.extend_from_slice(&(key.len() as u64).to_le_bytes());
        prefix.extend_from_slice(key);
        prefix.extend_from_slice(&9u32.to_le_bytes()); // array
        prefix.extend_from_slice(&8u32.to_le_bytes()); // of strings
        prefix.extend_from_slice(&count.to_le_bytes());
        EndlessGguf { prefix, count }
    }

    fn len(&self) -> u64 {
        self.prefix.len() as u64 + 16 * self.count
    }

    fn byte(&self, at: u64) -> u8 {
        let start = self.prefix.len() as u64;
        if at < start {
            return self.prefix[usize::try_from(at).expect("small")];
        }
        let element = [8, 0, 0, 0, 0, 0, 0, 0, b't', b'o', b'k', b'e', b'n', b'_', b'_', b'x'];
        element[usize::try_from((at - start) % 16).expect("small")]
    }
}

/// Runs one case in this process and prints `BOUND growth needed what`.
fn run_case(name: &str) {
    let (growth, needed, what) = match name {
        "safetensors-header" => {
            // The most tensors accepted, in a header of about 70 MB.
            let json = safetensors_header(vramfit_sources::safetensors::MAX_TENSORS);
            let (result, growth) = peak_growth(|| {
                vramfit_sources::safetensors::parse_header_json(&json, json.len() as u64, "h")
                    .map(|h| h.tensors.len())
            });
            (growth, json.len() as u64, format!("{result:?}"))
        }
        "safetensors-too-many" => {
            // 1.3 million tensors, under the 100 MB header limit:
            // refused by their count before any is parsed.
            let mut json = String::from("{");
            for i in 0..1_300_000 {
                let _ = write!(
                    json,
                    "{}\"t{i}\":{{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[{},{}]}}",
                    if i > 0 { "," } else { "" },
                    2 * i,
                    2 * i + 2
                );
            }
            json.push('}');
            let json = json.into_bytes();
            assert!(json.len() < 100_000_000);
            let (result, growth) = peak_growth(|| {
                vramfit_sources::safetensors::parse_header_json(&json, json.len() as u64, "h")
                    .map(|h| h.tensors.len())
            });
            let error = result.expect_err("too many tensors").to_string();
            assert!(error.contains("above the limit"), "{error}");
            (growth, json.len() as u64, error)
        }
        "safetensors-metadata" => {
            // A header of about 90 MB of `__metadata__` entries and one tensor.
            let mut json = String::from("{\"__metadata__\":{");
            for i in 0..3_000_000 {
                let _ = write!(json, "{}\"k{i}\":\"v{i}\"", if i > 0 { "," } else { "" });
            }
            json.push_str("},\"w\":{\"dtype\":\"F16\",\"shape\":[1],\"data_offsets\":[0,2]}}");
            let json = json.into_bytes();
            let (result, growth) = peak_growth(|| {
                vramfit_sources::safetensors::parse_header_json(&json, json.len() as u64, "h")
                    .map(|h| h.metadata.len())
            });
            let error = result.expect_err("too many metadata entries").to_string();
            assert!(error.contains("__metadata__") && error.contains("10000 strings"), "{error}");
            (growth, json.len() as u64, error)
        }
        "safetensors-index" => {
            // An index of a weight map as large as accepted.
            let limit = usize::try_from(vramfit_sources::safetensors::MAX_INDEX_SIZE).unwrap();
            let mut json = String::from("{\"metadata\":{},\"weight_map\":{");
            let mut i = 0;
            while json.len() + 80 < limit {
                if i > 0 {
                    json.push(',');
                }
                let _ =
                    write!(json, "\"m.l.{i}.w\":\"model-{:05}-of-09999.safetensors\"", i % 9999);
                i += 1;
            }
            json.push_str("}}");
            let (result, growth) = peak_growth(|| {
                vramfit_sources::safetensors::parse_index_bytes(json.as_bytes(), "i")
                    .map(|index| index.weight_map.len())
            });
            assert_eq!(result.expect("a valid index"), i);
            (growth, json.len() as u64, format!("{i} tensors"))
        }
        "config-keys" => {
            // A config.json of short keys as large as accepted.
            let limit = usize::try_from(vramfit_sources::config::MAX_CONFIG_BYTES).unwrap();
            let mut text = String::from("{\"model_type\":\"llama\"");
            let mut i = 0;
            while text.len() + 16 < limit {
                let _ = write!(text, ",\"k{i}\":0");
                i += 1;
            }
            text.push('}');
            let (result, growth) =
                peak_growth(|| vramfit_sources::parse_config_str(&text, "c").map(|_| ()));
            (
                growth,
                text.len() as u64,
                format!("{} keys: {result:?}", i + 1).chars().take(200).collect(),
            )
        }
        "config-at-limit" => {
            // The most keys accepted: parsed as a tree of about 100 bytes a value.
            let limit = vramfit_sources::config::MAX_CONFIG_VALUES - 10;
            let mut text = String::from("{\"model_type\":\"llama\"");
            for i in 1..limit {
                let _ = write!(text, ",\"k{i}\":0");
            }
            text.push('}');
            let (result, growth) =
                peak_growth(|| vramfit_sources::parse_config_str(&text, "c").map(|_| ()));
            let error = result.expect_err("no llama dimensions").to_string();
            assert!(error.contains("vocab_size"), "parsed, then missing fields: {error}");
            // The tree, not the text, is what parsing needs: serde_json's map entry,
            // key and value, about 160 bytes a value (the 4× bound allows 200).
            (growth, 50 * limit as u64, format!("{limit} keys"))
        }
        "config-too-large" => {
            // 60 MB: refused by its size, never parsed.
            let text = format!("{{\"a\":\"{}\"}}", "x".repeat(60_000_000));
            let (result, growth) =
                peak_growth(|| vramfit_sources::parse_config_str(&text, "c").map(|_| ()));
            assert!(result.is_err_and(|e| e.to_string().contains("larger than")));
            (growth, 4 << 20, "refused by size".to_owned())
        }
        #[cfg(feature = "hub")]
        "hub-files" => {
            // The model info of a repository of a million files.
            let names: Vec<String> = (0..1_000_000)
                .map(|i| format!("{{\"rfilename\":\"f/{i:07}.bin\",\"size\":1}}"))
                .collect();
            let body = format!("{{\"sha\":\"abc\",\"siblings\":[{}]}}", names.join(","));
            drop(names);
            let body = std::sync::Arc::new(body.into_bytes());
            let served = std::sync::Arc::clone(&body);
            let endpoint = serve(move |_, _, stream| {
                let head = format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n", served.len());
                let _ = stream.write_all(head.as_bytes());
                let _ = stream.write_all(&served);
            });
            let client = vramfit_sources::hub::HubClient::new(&endpoint, None);
            let (result, growth) =
                peak_growth(|| client.files("acme/huge", "main").map(|f| f.0.len()));
            assert_eq!(result.expect("the listing is read"), 1_000_000);
            (growth, body.len() as u64, "1,000,000 files".to_owned())
        }
        #[cfg(feature = "hub")]
        "hub-gguf-growing" => {
            // A GGUF whose header would need 960 MB: read in growing prefixes up to the bound.
            let gguf = std::sync::Arc::new(EndlessGguf::new(60_000_000));
            let served = std::sync::Arc::clone(&gguf);
            let endpoint = serve(move |_, range, stream| {
                let total = served.len();
                let (start, end) = range.unwrap_or((0, total - 1));
                let end = end.min(total - 1);
                let head = format!(
                    "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{total}\r\n\r\n",
                    end - start + 1
                );
                let _ = stream.write_all(head.as_bytes());
                let mut chunk = Vec::with_capacity(64 * 1024);
                for at in start..=end {
                    chunk.push(served.byte(at));
                    if chunk.len() == chunk.capacity() {
                        if stream.write_all(&chunk).is_err() {
                            return;
                        }
                        chunk.clear();
                    }
                }
                let _ = stream.write_all(&chunk);
            });
            let client = vramfit_sources::hub::HubClient::new(&endpoint, None);
            let (result, growth) =
                peak_growth(|| client.gguf_header("acme/grow", "main", "big.gguf").map(|_| ()));
            let error = result.expect_err("a header past the bound is refused").to_string();
            assert!(error.contains("needs more than"), "{error}");
            (growth, 64 << 20, error)
        }
        other => panic!("unknown case {other}"),
    };
    let _ = writeln!(std::io::stdout(), "BOUND {growth} {needed} {what}");
}

#[test]
fn hostile_inputs_are_read_with_bounded_memory() {
    if let Ok(name) = std::env::var(CASE) {
        run_case(&name);
        return;
    }
    let exe = std::env::current_exe().expect("the test binary");
    let mut names = vec![
        "safetensors-header",
        "safetensors-too-many",
        "safetensors-metadata",
        "safetensors-index",
        "config-keys",
        "config-at-limit",
        "config-too-large",
    ];
    if cfg!(feature = "hub") {
        names.extend(["hub-files", "hub-gguf-growing"]);
    }
    for name in names {
        let output = Command::new(&exe)
            .args(["--exact", "hostile_inputs_are_read_with_bounded_memory", "--nocapture"])
            .env(CASE, name)
            .output()
            .expect("the test binary runs");
        let stdout = String::from_utf8_lossy(&output.stdout);
        let line = stdout.lines().find(|l| l.starts_with("BOUND ")).unwrap_or_else(|| {
            panic!("{name}: no report\n{stdout}\n{}", String::from_utf8_lossy(&output.stderr))
        });
        let mut parts = line.splitn(4, ' ').skip(1);
        let growth: u64 = parts.next().and_then(|n| n.parse().ok()).expect("growth");
        let needed: u64 = parts.next().and_then(|n| n.parse().ok()).expect("needed");
        let what = parts.next().unwrap_or("");
        let _ = writeln!(
            std::io::stderr(),
            "{name}: peak +{} MB for {} MB needed ({what})",
            growth / 1_000_000,
            needed / 1_000_000
        );
        assert!(growth <= LIMIT, "{name}: peak grew by {growth} bytes, above {LIMIT} ({what})");
        assert!(
            growth <= 4 * needed,
            "{name}: peak grew by {growth} bytes, over 4 × {needed} ({what})"
        );
    }
}
