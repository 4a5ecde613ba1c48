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

/// Runs `program args`, returning its standard output, or why not. The
/// deadline covers the whole run, reading included (a tool that exits while a
/// child of it keeps the pipe open cannot hold us); output past
/// [`MAX_OUTPUT`] is an error; a failing tool's first line on stderr is kept.
fn run(program: &str, args: &[&str]) -> Result<String, String> {
    use std::sync::mpsc;
    let mut command = Command::new(program);
    command.args(args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped());
    // Its own process group, so that a child it leaves behind is stopped with it.
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt as _;
        command.process_group(0);
    }
    let mut child = command.spawn().map_err(|e| {
        if e.kind() == std::io::ErrorKind::NotFound {
            format!("{program}: not installed")
        } else {
            format!("{program}: {e}")
        }
    })?;
    let stdout = child.stdout.take().expect("stdout is piped");
    let stderr = child.stderr.take().expect("stderr is piped");
    // Read on threads, so that a tool that never closes its output cannot hold
    // us past the deadline: the answer comes through a channel or not at all.
    let (sender, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let read = stdout.take(MAX_OUTPUT + 1).read_to_end(&mut text).map(|_| text);
        let _ = sender.send(read);
    });
    let (error_sender, error_receiver) = mpsc::channel();
    std::thread::spawn(move || {
        let mut text = Vec::new();
        let mut stderr = stderr;
        let _ = (&mut stderr).take(4096).read_to_end(&mut text);
        let _ = error_sender.send(text);
        // Drain the rest, so that a tool with many warnings does not die of SIGPIPE.
        let _ = std::io::copy(&mut stderr, &mut std::io::sink());
    });
    let start = Instant::now();
    let deadline = deadline();
    let timeout = |child: &mut std::process::Child| {
        stop_group(child);
        Err(format!("{program}: no answer in {} ms", deadline.as_millis()))
    };
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if start.elapsed() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => return timeout(&mut child),
            Err(e) => return Err(format!("{program}: {e}")),
        }
    };
    let left = deadline.saturating_sub(start.elapsed());
    let text = match receiver.recv_timeout(left) {
        Ok(read) => read.map_err(|e| format!("{program}: {e}"))?,
        Err(_) => {
            // It exited, but something it started still holds its output open.
            stop_group(&mut child);
            return Err(format!(
                "{program}: exited, but a process it started kept its output open past {} ms",
                deadline.as_millis()
            ));
        }
    };
    if text.len() as u64 > MAX_OUTPUT {
        return Err(format!("{program}: output over {} MiB", MAX_OUTPUT >> 20));
    }
    if !status.success() {
        let said = error_receiver
            .recv_timeout(Duration::from_millis(100))
            .ok()
            .map(|e| String::from_utf8_lossy(&e).into_owned())
            .and_then(|e| e.lines().map(str::trim).find(|l| !l.is_empty()).map(str::to_owned))
            .or_else(|| {
                String::from_utf8_lossy(&text)
                    .lines()
                    .map(str::trim)
                    .find(|l| !l.is_empty())
                    .map(str::to_owned)
            });
        return Err(match said {
            Some(line) => format!("{program}: exited with {status}: {line}"),
            None => format!("{program}: exited with {status}"),
        });
    }
    String::from_utf8(text).map_err(|_| format!("{program}: output is not UTF-8"))
}

/// Stops `child` and, on Unix, the process group it leads (what it started).
fn stop_group(child: &mut std::process::Child) {
    #[cfg(unix)]
    {
        // The shell's own `kill`, which any PATH has: `-PGID` is the group the
        // child leads (`process_group(0)`).
        let _ = Command::new("/bin/sh")
            .args(["-c", &format!("kill -9 -{}", child.id())])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status();
    }
    let _ = child.kill();
    let _ = child.wait();
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
    // A tool absent or out of time is not asked again (nvidia-smi's retry is
    // for old drivers that refuse the compute_cap field, and only for them).
    let mut skip: Vec<&str> = Vec::new();
    for ((program, args), parse) in tools {
        if skip.contains(&program) {
            continue;
        }
        match run(program, args).and_then(|text| parse(&text)) {
            Ok(gpus) if !gpus.is_empty() => {
                found.gpus = gpus;
                found.tool = Some(program);
                break;
            }
            Ok(_) => {
                skip.push(program);
                found.tried.push(format!("{program}: lists no accelerator"));
            }
            Err(why) => {
                if !why.contains("not a valid field") {
                    skip.push(program);
                }
                found.tried.push(why);
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
