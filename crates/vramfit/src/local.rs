//! `--gpu local` and `vramfit gpus --local`: runs this machine's vendor tools,
//! each with a deadline and a bound on what is read, and parses what they print
//! (`vramfit_sources::local`). A tool that is absent, fails or times out is
//! skipped and said so; the next one is tried.

use std::io::Read as _;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use vramfit_sources::gpus::Gpu;
use vramfit_sources::local::{
    AMD_SMI, NVIDIA_SMI, NVIDIA_SMI_OLD, ROCM_SMI, SYSCTL, parse_amd_smi, parse_meminfo,
    parse_nvidia_smi, parse_rocm_smi, parse_sysctl,
};

/// How long one tool may run: 10 s, or `VRAMFIT_TOOL_TIMEOUT_MS` (for tests).
fn deadline() -> Duration {
    std::env::var("VRAMFIT_TOOL_TIMEOUT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
        .map_or(Duration::from_secs(10), Duration::from_millis)
}
/// The most a tool's output may be: far above a 16-GPU node's JSON.
const MAX_OUTPUT: u64 = 1 << 20;

/// What was found, and what each tool said.
pub(crate) struct Found {
    /// The accelerators, first tool that listed any.
    pub(crate) gpus: Vec<Gpu>,
    /// The tool that listed them (`nvidia-smi`).
    pub(crate) tool: Option<&'static str>,
    /// One line per tool tried that listed none: why.
    pub(crate) tried: Vec<String>,
    /// The machine's RAM (`/proc/meminfo`, or macOS's hw.memsize), bytes.
    pub(crate) ram_bytes: Option<u64>,
}

/// Runs `program args`, returning its standard output, or why not.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                format!("{program}: not installed")
            } else {
                format!("{program}: {e}")
            }
        })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    // Read on a thread, so that a tool that never closes its output cannot
    // hold us past the deadline.
    let reader = std::thread::spawn(move || {
        let mut text = Vec::new();
        stdout.take(MAX_OUTPUT).read_to_end(&mut text).map(|_| text)
    });
    let start = Instant::now();
    let deadline = deadline();
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!("{program}: no answer in {} ms", deadline.as_millis()));
            }
            Err(e) => return Err(format!("{program}: {e}")),
        }
    };
    let text = reader
        .join()
        .map_err(|_| format!("{program}: reading its output failed"))?
        .map_err(|e| format!("{program}: {e}"))?;
    if !status.success() {
        return Err(format!("{program}: exited with {status}"));
    }
    String::from_utf8(text).map_err(|_| format!("{program}: output is not UTF-8"))
}

/// The accelerators of this machine: NVIDIA (nvidia-smi), then AMD (amd-smi,
/// then rocm-smi), then Apple silicon (sysctl, on macOS).
pub(crate) fn detect() -> Found {
    type Parser = fn(&str) -> Result<Vec<Gpu>, String>;
    let mut found = Found { gpus: Vec::new(), tool: None, tried: Vec::new(), ram_bytes: None };
    let mut tools: Vec<((&'static str, &'static [&'static str]), Parser)> = vec![
        (NVIDIA_SMI, parse_nvidia_smi),
        (NVIDIA_SMI_OLD, parse_nvidia_smi),
        (AMD_SMI, parse_amd_smi),
        (ROCM_SMI, parse_rocm_smi),
    ];
    if cfg!(target_os = "macos") {
        tools.push((SYSCTL, parse_sysctl));
    }
    let mut absent: Vec<&str> = Vec::new();
    for ((program, args), parse) in tools {
        if absent.contains(&program) {
            continue;
        }
        match run(program, args).and_then(|text| parse(&text)) {
            Ok(gpus) if !gpus.is_empty() => {
                found.gpus = gpus;
                found.tool = Some(program);
                break;
            }
            Ok(_) => found.tried.push(format!("{program}: lists no accelerator")),
            Err(why) => {
                if why.ends_with("not installed") {
                    absent.push(program);
                }
                // The old-driver retry says nothing new when the first call failed alike.
                if !found.tried.contains(&why) {
                    found.tried.push(why);
                }
            }
        }
    }
    if let Ok(text) = std::fs::File::open("/proc/meminfo").and_then(|f| {
        let mut text = String::new();
        f.take(MAX_OUTPUT).read_to_string(&mut text).map(|_| text)
    }) {
        found.ram_bytes = parse_meminfo(&text);
    } else if let Some(apple) = found.gpus.iter().find(|g| g.unified_memory) {
        found.ram_bytes = Some(apple.total_bytes());
    }
    found
}
