//! Accelerators end to end: the catalog and its filters, GPUs given by size,
//! Metal's working set and `--gpu-limit`, capability checks, engines by
//! platform, and `--gpu local` against recorded outputs of the vendor tools.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

fn vramfit_with(args: &[&str], path: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_vramfit"));
    command.args(args).env("NO_COLOR", "1").env("HF_HUB_OFFLINE", "1");
    if let Some(path) = path {
        command.env("PATH", path).env("VRAMFIT_TOOL_TIMEOUT_MS", "2000");
    }
    command.output().expect("the binary runs")
}

fn vramfit(args: &[&str]) -> Output {
    vramfit_with(args, None)
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8(bytes.to_vec()).expect("UTF-8")
}

fn json(args: &[&str]) -> serde_json::Value {
    let output = vramfit(args);
    assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
    serde_json::from_slice(&output.stdout).expect("valid JSON")
}

fn refused(args: &[&str]) -> String {
    let output = vramfit(args);
    assert!(!output.status.success(), "{args:?} ran: {}", text(&output.stdout));
    text(&output.stderr)
}

fn notes(document: &serde_json::Value) -> String {
    document["notes"].as_array().map(|n| format!("{n:?}")).unwrap_or_default()
}

#[test]
fn the_catalog_spans_vendors_with_sources_and_filters() {
    let all = json(&["gpus", "--json"])["gpus"].as_array().unwrap().clone();
    assert!(all.len() >= 60, "{}", all.len());
    for vendor in ["nvidia", "amd", "apple", "intel"] {
        assert!(all.iter().any(|g| g["vendor"] == vendor), "{vendor}");
    }
    for g in &all {
        assert!(g["sources"].as_array().unwrap().len() >= 2, "{} cites its figures", g["name"]);
        assert!(["driver", "spec"].contains(&g["memory_from"].as_str().unwrap()), "{g}");
    }
    // nvidia-smi's total for an H100 SXM, and what CUDA itself reports (deviceQuery).
    let h100 = all.iter().find(|g| g["name"] == "h100-80gb").unwrap();
    assert_eq!(h100["memory_mib"], 81_559);
    assert_eq!(h100["cuda_total_mib"], 81_105);
    assert_eq!(h100["aliases"][0], "h100-sxm");

    let amd = json(&["gpus", "--vendor", "amd", "--json"])["gpus"].as_array().unwrap().clone();
    assert!(amd.len() >= 6 && amd.iter().all(|g| g["vendor"] == "amd" && g["platform"] == "rocm"));
    let big =
        json(&["gpus", "--min-memory", "100GB", "--json"])["gpus"].as_array().unwrap().clone();
    assert!(!big.is_empty());
    assert!(big.iter().all(|g| g["usable_bytes"].as_u64().unwrap() >= 100_000_000_000));
    // Apple's is the working set: a 128 GB Mac gives its GPU 96 GiB, under 100 GiB.
    let apple_big = json(&["gpus", "--vendor", "apple", "--min-memory", "100GiB", "--json"]);
    let names: Vec<&str> =
        apple_big["gpus"].as_array().unwrap().iter().map(|g| g["name"].as_str().unwrap()).collect();
    assert!(names.contains(&"m2-ultra-192gb") && !names.contains(&"m4-max-128gb"), "{names:?}");
    // Filters that keep nothing, or do not parse, are errors.
    assert!(refused(&["gpus", "--vendor", "apple", "--min-memory", "10TB"]).contains("no catalog"));
    assert!(refused(&["gpus", "--vendor", "ibm"]).contains("nvidia, amd, apple, intel"));
    assert!(refused(&["gpus", "--min-memory", "24"]).contains("with its unit"));
}

#[test]
fn a_gpu_given_by_size_is_a_generic_cuda_gpu_of_that_memory() {
    let by_name = json(&["infer", "llama-3.1-8b", "--gpu", "h100-80gb", "--json"]);
    let total = by_name["memory"]["device_total_bytes"].as_u64().unwrap();
    let by_size = json(&["infer", "llama-3.1-8b", "--gpu", "24GiB", "--json"]);
    // Same runtime as a Hopper-class GPU: the same estimate.
    assert_eq!(by_size["memory"]["device_total_bytes"].as_u64(), Some(total));
    assert_eq!(by_size["gpu"]["memory_bytes"].as_u64(), Some(24 * GIB));
    assert_eq!(by_size["gpu"]["name"], "24GiB");
    assert!(notes(&by_size).contains("generic CUDA GPU"), "{}", notes(&by_size));
    // Decimal and fractional sizes; the verdict flips exactly at the device total.
    let decimal = json(&["infer", "llama-3.1-8b", "--gpu", "80GB", "--json"]);
    assert_eq!(decimal["gpu"]["memory_bytes"].as_u64(), Some(80_000_000_000));
    let just = format!("{}MiB", total.div_ceil(MIB));
    let short = format!("{}MiB", total.div_ceil(MIB) - 1);
    assert_eq!(json(&["infer", "llama-3.1-8b", "--gpu", &just, "--json"])["gpu"]["fits"], true);
    assert_eq!(json(&["infer", "llama-3.1-8b", "--gpu", &short, "--json"])["gpu"]["fits"], false);
    let half = json(&["infer", "llama-3.1-8b", "--gpu", "0.5TiB", "--json"]);
    assert_eq!(half["gpu"]["memory_bytes"].as_u64(), Some(512 * GIB));
    // A bare number, or an absurd size, is refused.
    assert!(refused(&["infer", "llama-3.1-8b", "--gpu", "24"]).contains("with its unit"));
    assert!(refused(&["infer", "llama-3.1-8b", "--gpu", "1MiB"]).contains("between 1 GiB"));
}

#[test]
fn apple_silicon_offers_its_working_set_and_takes_a_limit() {
    // llama.cpp logged 73728 MiB on a 96 GB M2 Max.
    let m2 = json(&["infer", "llama-3.1-8b", "--gpu", "m2-max-96gb", "--json"]);
    assert_eq!(m2["gpu"]["memory_bytes"].as_u64(), Some(73_728 * MIB));
    assert!(notes(&m2).contains("working set"), "{}", notes(&m2));
    assert_eq!(m2["memory"]["cuda_context_bytes"].as_u64(), Some(0), "no CUDA context on Metal");
    let raised =
        json(&["infer", "llama-3.1-8b", "--gpu", "m2-max-96gb", "--gpu-limit", "90GiB", "--json"]);
    assert_eq!(raised["gpu"]["memory_bytes"].as_u64(), Some(90 * GIB));
    assert!(
        refused(&["infer", "llama-3.1-8b", "--gpu", "m2-max-96gb", "--gpu-limit", "200GiB"])
            .contains("at most")
    );
    assert!(refused(&["infer", "llama-3.1-8b", "--gpu-limit", "20GiB"]).contains("--gpu"));
    // A unified-memory box that is not a Mac says its share is to be given.
    let spark = json(&["infer", "llama-3.1-8b", "--gpu", "gb10", "--json"]);
    assert!(notes(&spark).contains("--gpu-limit"), "{}", notes(&spark));
}

#[test]
fn what_a_device_cannot_run_is_refused_or_warned() {
    // FP8 before Ada, FlashAttention-2 on Metal and before Ampere: errors.
    let fp8 = refused(&["infer", "llama-3.1-8b", "--dtype", "fp8", "--gpu", "a100-80gb"]);
    assert!(fp8.contains("FP8") && fp8.contains("8.0"), "{fp8}");
    assert!(
        refused(&["infer", "llama-3.1-8b", "--attn", "flash", "--gpu", "t4"])
            .contains("FlashAttention-2")
    );
    assert!(
        refused(&["train", "llama-3.1-8b", "--attn", "flash", "--gpu", "m4-max-128gb"])
            .contains("FlashAttention-2")
    );
    // bf16 on a T4: a warning, the estimate stands.
    let t4 = json(&["train", "qwen2.5-0.5b", "--method", "lora", "--gpu", "t4", "--json"]);
    assert!(notes(&t4).contains("no native bf16"), "{}", notes(&t4));
    // Unknown support (bitsandbytes on Gaudi): a warning that says so.
    let gaudi = json(&["train", "llama-3.1-8b", "--method", "qlora", "--gpu", "gaudi2", "--json"]);
    assert!(notes(&gaudi).contains("not known"), "{}", notes(&gaudi));
    // ROCm: modelled, and said to be unmeasured.
    let mi300 = json(&["train", "llama-3.1-8b", "--gpu", "mi300x", "--json"]);
    assert!(notes(&mi300).contains("ROCm"), "{}", notes(&mi300));
    // Several Apple devices do not train together.
    assert!(
        refused(&["train", "llama-3.1-8b", "--gpus", "2", "--gpu", "m2-ultra-192gb"])
            .contains("not modelled")
    );
}

#[test]
fn engines_run_where_they_run() {
    for engine in ["vllm", "sglang"] {
        let message =
            refused(&["infer", "llama-3.1-8b", "--engine", engine, "--gpu", "m2-max-96gb"]);
        assert!(message.contains("runs on Apple silicon only"), "{message}");
        assert!(
            refused(&["infer", "llama-3.1-8b", "--engine", engine, "--gpu", "gaudi3"])
                .contains("not modelled")
        );
    }
    let metal = json(&[
        "infer",
        "llama-3.1-8b",
        "--engine",
        "llama.cpp",
        "--dtype",
        "int4",
        "--gpu",
        "m2-max-96gb",
        "--json",
    ]);
    assert_eq!(metal["gpu"]["memory_bytes"].as_u64(), Some(73_728 * MIB));
    assert!(format!("{}", metal["notes"]).contains("llama.cpp on Metal"), "{metal}");
    let rocm = json(&["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "mi300x", "--json"]);
    assert!(format!("{}", rocm["notes"]).contains("ROCm"), "{rocm}");
    // SGLang's ROCm kernels are built for gfx942 and gfx950 only.
    json(&["infer", "llama-3.1-8b", "--engine", "sglang", "--gpu", "mi300x", "--json"]);
    let mi210 = refused(&["infer", "llama-3.1-8b", "--engine", "sglang", "--gpu", "mi210"]);
    assert!(mi210.contains("gfx942 and gfx950") && mi210.contains("gfx90a"), "{mi210}");
    // A sweep leaves out where vLLM does not run, and says so.
    let sweep = vramfit(&["fit", "llama-3.1-8b", "--mode", "infer", "--engine", "vllm"]);
    let table = text(&sweep.stdout);
    assert!(
        table.contains("m2-max-96gb, m2-ultra-192gb")
            && table.contains("runs on Apple silicon only"),
        "{table}"
    );
    assert!(!table.contains("│ m2-max-96gb"));
    // Training sweeps keep Apple devices to one each.
    let fit = json(&["fit", "llama-3.1-70b", "--method", "lora", "--vendor", "apple", "--json"]);
    for answer in fit["answers"].as_array().unwrap() {
        let gpus = answer["gpus_needed"]["gpus"].as_u64();
        assert!(gpus.is_none_or(|n| n == 1), "{answer}");
    }
}

/// A folder holding fake vendor tools that print recorded outputs.
struct FakeTools {
    dir: tempfile::TempDir,
}

impl FakeTools {
    fn new() -> FakeTools {
        FakeTools { dir: tempfile::tempdir().unwrap() }
    }

    fn fixture(name: &str) -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/local").join(name)
    }

    /// `program` prints the recorded `fixture` (and exits 0).
    fn prints(self, program: &str, fixture: &str) -> FakeTools {
        let body = format!("#!/bin/sh\nexec /bin/cat '{}'\n", Self::fixture(fixture).display());
        self.script(program, &body)
    }

    fn script(self, program: &str, body: &str) -> FakeTools {
        use std::os::unix::fs::PermissionsExt as _;
        let path = self.dir.path().join(program);
        std::fs::write(&path, body).unwrap();
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).unwrap();
        self
    }

    fn run(&self, args: &[&str]) -> Output {
        vramfit_with(args, Some(self.dir.path()))
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        let output = self.run(args);
        assert!(output.status.success(), "{args:?}: {}", text(&output.stderr));
        serde_json::from_slice(&output.stdout).expect("valid JSON")
    }
}

#[cfg(unix)]
#[test]
fn the_local_machine_is_read_from_its_tools() {
    // Two H100s as nvidia-smi lists them: matched to the catalog entry.
    let tools = FakeTools::new().prints("nvidia-smi", "nvidia-smi-h100x2.csv");
    let found = tools.json(&["gpus", "--local", "--json"]);
    let gpus = found["gpus"].as_array().unwrap();
    assert_eq!(gpus.len(), 2, "{found}");
    assert_eq!(gpus[0]["name"], "h100-80gb");
    assert_eq!(gpus[0]["memory_from"], "local");
    assert_eq!(gpus[0]["memory_mib"], 81_559);
    let job = tools.json(&["infer", "llama-3.1-8b", "--gpu", "local", "--json"]);
    assert_eq!(job["gpu"]["name"], "h100-80gb");
    let table = text(&tools.run(&["gpus", "--local"]).stdout);
    assert!(table.contains("as nvidia-smi reports them"), "{table}");

    // A consumer card.
    let tools = FakeTools::new().prints("nvidia-smi", "nvidia-smi-rtx4090.csv");
    let found = tools.json(&["gpus", "--local", "--json"]);
    assert_eq!(found["gpus"][0]["name"], "rtx-4090");

    // No NVIDIA tool: AMD's amd-smi, then rocm-smi.
    let tools = FakeTools::new().prints("amd-smi", "amd-smi-static-mi300x.json");
    let found = tools.json(&["gpus", "--local", "--json"]);
    assert_eq!(found["gpus"][0]["vendor"], "amd", "{found}");
    assert_eq!(found["gpus"][0]["name"], "mi300x", "{found}");
    // amd-smi's older shapes: a list (ROCm 6.2), one bare object (ROCm 6.0).
    for fixture in ["amd-smi-static-mi300x-rocm62.json", "amd-smi-static-mi300x-rocm60.json"] {
        let tools = FakeTools::new().prints("amd-smi", fixture);
        let found = tools.json(&["gpus", "--local", "--json"]);
        assert_eq!(found["gpus"][0]["name"], "mi300x", "{fixture}: {found}");
        assert_eq!(found["gpus"][0]["memory_mib"], 196_592, "{fixture}");
    }
    // rocm-smi, in its newer and older key spellings.
    for fixture in ["rocm-smi-7900xtx.json", "rocm-smi-7900xtx-rocm61.json"] {
        let tools = FakeTools::new().prints("rocm-smi", fixture);
        let found = tools.json(&["gpus", "--local", "--json"]);
        assert_eq!(found["gpus"][0]["name"], "rx-7900-xtx", "{fixture}: {found}");
        assert_eq!(found["gpus"][0]["memory_bytes"].as_u64(), Some(25_753_026_560));
    }
    // An old driver refuses compute_cap: the query without it is tried next.
    let tools = FakeTools::new().script(
        "nvidia-smi",
        &format!(
            "#!/bin/sh\ncase \"$1\" in *compute_cap*) /bin/cat '{}'; exit 2;; esac\necho '0, NVIDIA GeForce RTX 4090, 24564'\n",
            FakeTools::fixture("nvidia-smi-old-driver.txt").display()
        ),
    );
    let found = tools.json(&["gpus", "--local", "--json"]);
    assert_eq!(found["gpus"][0]["name"], "rtx-4090", "{found}");

    // A tool that fails, or never answers, is skipped and said so.
    let tools = FakeTools::new()
        .script("nvidia-smi", "#!/bin/sh\necho 'NVIDIA-SMI has failed' >&2\nexit 9\n")
        .script("amd-smi", "#!/bin/sh\nexec /bin/sleep 30\n")
        .prints("rocm-smi", "rocm-smi-7900xtx.json");
    let started = std::time::Instant::now();
    let output = tools.run(&["gpus", "--local"]);
    assert!(started.elapsed().as_secs() < 20, "the deadline holds");
    let table = text(&output.stdout);
    assert!(table.contains("nvidia-smi: exited"), "{table}");
    assert!(table.contains("amd-smi: no answer"), "{table}");
    assert!(table.contains("rocm-smi reports"), "{table}");

    // A tool that exits but leaves a child holding its output is stopped and named.
    let tools = FakeTools::new().script(
        "nvidia-smi",
        "#!/bin/sh\n/bin/sleep 30 &\necho '0, NVIDIA GeForce RTX 4090, 24564, 8.9'\nexit 0\n",
    );
    let started = std::time::Instant::now();
    let table = text(&tools.run(&["gpus", "--local"]).stdout);
    assert!(started.elapsed().as_secs() < 10, "the deadline holds");
    assert!(table.contains("kept its output open"), "{table}");

    // A tool that warns a lot on stderr still answers (its stderr is drained).
    let tools = FakeTools::new().script(
        "nvidia-smi",
        "#!/bin/sh\ni=0; while [ $i -lt 400 ]; do echo 'warning: a long line of driver chatter' >&2; i=$((i+1)); done\necho '0, NVIDIA GeForce RTX 4090, 24564, 8.9'\n",
    );
    let found = tools.json(&["gpus", "--local", "--json"]);
    assert_eq!(found["gpus"][0]["name"], "rtx-4090", "{found}");

    // Nothing at all: --gpu local is an error naming what was tried.
    let tools = FakeTools::new();
    let message = text(&tools.run(&["infer", "llama-3.1-8b", "--gpu", "local"]).stderr);
    assert!(
        message.contains("no accelerator found") && message.contains("nvidia-smi: not installed"),
        "{message}"
    );
}

#[test]
fn llama_cpp_splits_layers_over_unequal_gpus() {
    let base =
        ["infer", "llama-3.1-8b", "--engine", "llama.cpp", "--dtype", "int8", "--ctx-size", "8192"];
    let run = |extra: &[&str]| {
        let mut args = base.to_vec();
        args.extend(extra);
        args.push("--json");
        json(&args)
    };
    let one = run(&["--gpu", "h200"]);
    let two = run(&["--gpu", "rtx-4090,rtx-3060-12gb", "--tensor-split", "2,1"]);
    let devices = two["memory"]["devices"].as_array().unwrap();
    assert_eq!(devices.len(), 2, "{two}");
    assert_eq!(devices[0]["name"], "rtx-4090");
    assert_eq!(devices[1]["name"], "rtx-3060-12gb");
    // What llama.cpp sees: CUDA's own total (24,564 MiB less the 354 MiB Reserved line).
    assert_eq!(devices[0]["memory_bytes"].as_u64(), Some(24_210 * MIB));
    // Weights and KV cache are divided among the GPUs, not copied: their sums
    // are what one large GPU holds.
    let component = |parts: &serde_json::Value, name: &str| {
        parts.as_array().unwrap().iter().find(|p| p["name"] == name).unwrap()["bytes"]
            .as_u64()
            .unwrap()
    };
    for name in ["weights", "kv cache"] {
        let sum: u64 = devices.iter().map(|d| component(&d["components"], name)).sum();
        assert_eq!(sum, component(&one["memory"]["components"], name), "{name}");
    }
    // 33 slots (32 layers and the output layer) split 2:1 in f32: 22 and 11.
    assert_eq!(devices[0]["layers"], 22);
    assert_eq!(devices[1]["layers"], 10);
    assert_eq!(devices[1]["output_layer"], true);
    assert_eq!(two["gpu"]["name"], "rtx-4090,rtx-3060-12gb");
    assert_eq!(two["gpu"]["fits"], true);
    // Default split: in proportion to free memory, so the 24 GB card takes more.
    let default = run(&["--gpu", "rtx-4090,rtx-3060-12gb"]);
    let d = default["memory"]["devices"].as_array().unwrap();
    assert!(d[0]["layers"].as_u64() > d[1]["layers"].as_u64(), "{default}");
    // Too small a second card: that card is named and the verdict is no.
    let tight = run(&["--gpu", "rtx-4090,2GiB", "--tensor-split", "1,1", "--no-fit"]);
    assert_eq!(tight["gpu"]["fits"], false);
    assert_eq!(tight["memory"]["devices"][1]["fits"], false);
    // The table shows one row per GPU.
    let mut args = base.to_vec();
    args.extend(["--gpu", "rtx-4090,rtx-3060-12gb"]);
    let table = text(&vramfit(&args).stdout);
    assert!(table.contains("0: rtx-4090") && table.contains("fits, every GPU"), "{table}");

    // Elsewhere unequal GPUs are refused, by name.
    for args in [
        &["train", "llama-3.1-8b", "--gpu", "rtx-4090,rtx-3090"][..],
        &["infer", "llama-3.1-8b", "--engine", "vllm", "--gpu", "rtx-4090,rtx-3090"],
        &["infer", "llama-3.1-8b", "--gpu", "rtx-4090,rtx-3090"],
    ] {
        assert!(refused(args).contains("llama.cpp only"), "{args:?}");
    }
    assert!(
        refused(&[
            "infer",
            "llama-3.1-8b",
            "--engine",
            "llama.cpp",
            "--gpu",
            "rtx-4090",
            "--tensor-split",
            "1,1"
        ])
        .contains("several GPUs")
    );
    assert!(
        refused(&[
            "infer",
            "llama-3.1-8b",
            "--engine",
            "llama.cpp",
            "--gpu",
            "rtx-4090,rtx-3090",
            "--tensor-split",
            "1"
        ])
        .contains("one non-negative share per GPU")
    );
    assert!(
        refused(&[
            "infer",
            "llama-3.1-8b",
            "--engine",
            "llama.cpp",
            "--gpu",
            "rtx-4090,m2-max-96gb"
        ])
        .contains("different platforms")
    );
}

#[test]
fn devices_that_work_alone_are_not_advised_in_numbers() {
    // An Apple GPU is one per machine: no "it needs 13 ×" advice, no split, no list.
    let verdict = text(&vramfit(&["infer", "llama-3.1-70b", "--gpu", "m2-pro-16gb"]).stdout);
    assert!(
        verdict.contains("do not work on one job together") && !verdict.contains("needs"),
        "{verdict}"
    );
    let doc = json(&["infer", "llama-3.1-70b", "--gpu", "m2-pro-16gb", "--json"]);
    assert!(doc["gpu"]["gpus_needed"].is_null(), "{doc}");
    assert!(
        refused(&[
            "infer",
            "llama-3.1-8b",
            "--engine",
            "llama.cpp",
            "--gpu",
            "m2-max-96gb,m2-max-96gb"
        ])
        .contains("one per machine")
    );
    // Gaudi cards do work together (HCCL): the advice stands and --gpus runs, said to be unmeasured.
    let gaudi = json(&[
        "train",
        "llama-3.1-70b",
        "--method",
        "lora",
        "--grad-ckpt",
        "--gpu",
        "gaudi2",
        "--json",
    ]);
    assert_eq!(gaudi["gpu"]["gpus_needed"], 2, "{gaudi}");
    let two = json(&[
        "train",
        "llama-3.1-70b",
        "--method",
        "lora",
        "--grad-ckpt",
        "--gpus",
        "2",
        "--strategy",
        "fsdp",
        "--gpu",
        "gaudi2",
        "--json",
    ]);
    assert!(notes(&two).contains("HCCL"), "{}", notes(&two));
    // fit takes one GPU kind, and filters only without --gpu.
    assert!(
        refused(&["fit", "llama-3.1-8b", "--gpu", "rtx-4090,rtx-3090"]).contains("one GPU kind")
    );
    assert!(
        refused(&["fit", "llama-3.1-8b", "--gpu", "l4", "--vendor", "apple"])
            .contains("drop --gpu")
    );
    // A unified-memory PC with a sourced GPU share uses it: Strix Halo's 96 of 128 GiB.
    let halo = json(&["infer", "llama-3.1-8b", "--gpu", "ryzen-ai-max-395", "--json"]);
    assert_eq!(halo["gpu"]["memory_bytes"].as_u64(), Some(96 * GIB));
    // --min-memory keeps cards a driver reports a little under their size.
    let big = json(&["gpus", "--min-memory", "80GiB", "--json"]);
    assert!(big["gpus"].as_array().unwrap().iter().any(|g| g["name"] == "h100-80gb"));
}

#[test]
fn llama_cpp_fit_shrinks_the_context_over_several_gpus() {
    // One RTX 4090 fits Llama-3.1-70B q4_0 by --fit shrinking the context and
    // moving layers to the host; a 4090 with a 3090 must not do worse.
    let args = |gpu: &str| {
        json(&[
            "infer",
            "llama-3.1-70b",
            "--engine",
            "llama.cpp",
            "--dtype",
            "int4",
            "--gpu",
            gpu,
            "--json",
        ])
    };
    let one = args("rtx-4090");
    let two = args("rtx-4090,rtx-3090");
    assert_eq!(one["gpu"]["fits"], true);
    assert_eq!(two["gpu"]["fits"], true, "{two}");
    // Where even 4096 cells are too many (bf16 weights), --fit lowers the GPU layers too.
    let pair = json(&[
        "infer",
        "llama-3.1-70b",
        "--engine",
        "llama.cpp",
        "--gpu",
        "rtx-4090,rtx-4090",
        "--json",
    ]);
    assert_eq!(pair["gpu"]["fits"], true, "{pair}");
    assert!(pair["notes"].to_string().contains("lowered the GPU layers"), "{pair}");
    // Shares are checked as llama.cpp sums them, in f32.
    for bad in ["1e39,1e39", "1e-46,1e-46", "-1,2", "nan,1"] {
        let message = refused(&[
            "infer",
            "llama-3.1-8b",
            "--engine",
            "llama.cpp",
            "--gpu",
            "rtx-4090,rtx-4090",
            "--tensor-split",
            bad,
        ]);
        // (a negative share never reaches vramfit: the parser takes `-1` for a flag)
        assert!(message.contains("tensor-split") || bad.starts_with('-'), "{bad}: {message}");
    }
    assert!(
        refused(&[
            "fit",
            "llama-3.1-8b",
            "--mode",
            "infer",
            "--engine",
            "llama.cpp",
            "--tensor-split",
            "3,1"
        ])
        .contains("fit does not search")
    );
    let cells = two["kv_cache"]["capacity_tokens"].as_u64().unwrap();
    assert!(cells < 131_072 && cells.is_multiple_of(256), "{cells}");
    for device in two["memory"]["devices"].as_array().unwrap() {
        let total = device["total_bytes"].as_u64().unwrap();
        assert!(total + 1024 * MIB <= device["memory_bytes"].as_u64().unwrap(), "{device}");
    }
}

#[test]
fn sweeps_say_in_json_what_they_left_out() {
    let fit = json(&[
        "fit",
        "llama-3.1-8b",
        "--mode",
        "infer",
        "--dtype",
        "fp8",
        "--min-memory",
        "40GiB",
        "--json",
    ]);
    let left: Vec<&str> = fit["left_out"][0]["gpus"]
        .as_array()
        .unwrap()
        .iter()
        .map(|g| g.as_str().unwrap())
        .collect();
    assert!(
        left.contains(&"a100-80gb")
            && fit["left_out"][0]["reason"].as_str().unwrap().contains("FP8"),
        "{fit}"
    );
    assert!(fit["answers"].as_array().unwrap().iter().all(|a| a["gpu"] != "a100-80gb"));
    // Apple's FP8 support is not sourced: answered, and said so.
    let unchecked = fit["unchecked"].to_string();
    assert!(unchecked.contains("m2-ultra-192gb"), "{unchecked}");
    let sweep = json(&["fit", "llama-3.1-8b", "--mode", "infer", "--engine", "vllm", "--json"]);
    assert!(sweep["left_out"].to_string().contains("m2-max-96gb"), "{sweep}");
    // gpus --local --json says what it asked, even when nothing answered.
    let tools = FakeTools::new();
    let probe = tools.json(&["gpus", "--local", "--json"]);
    assert!(probe["gpus"].as_array().unwrap().is_empty());
    assert!(probe["local"]["tried"].to_string().contains("nvidia-smi: not installed"), "{probe}");
}
