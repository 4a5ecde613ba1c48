//! `vramfit infer --engine {vllm,sglang,llama.cpp}`: what a serving engine holds.

use anyhow::{Result, bail};
use vramfit_core::memory::runtime::Runtime;
use vramfit_core::serving::ServingEstimate;
use vramfit_core::serving::llamacpp::{
    GgmlStorage, LlamaCppSettings, estimate_llamacpp, stored_weights_from_spec,
};
use vramfit_core::serving::paged::{PagedEngine, PagedSettings, estimate_paged, fewest_gpus_paged};
use vramfit_report::{
    EngineAnswer, EngineDocument, EngineSearch, EngineSweepDocument, ModelName, RequestLoad,
    SCHEMA_VERSION,
};
use vramfit_sources::ResolvedModel;
use vramfit_sources::gpus::Gpu;

use crate::cli::{
    CommonArgs, DtypeArg, EngineArg, EngineArgs, FitArgs, GgmlTypeArg, InferArgs, InferFlags,
    Switch,
};
use crate::render::{gb, gib, table};

/// The engine a run uses: the flag, else llama.cpp for a GGUF model, else transformers.
pub(crate) fn engine_for(args: &EngineArgs, model: &ResolvedModel) -> EngineArg {
    args.engine.unwrap_or(if model.stored_weights.is_some() {
        EngineArg::LlamaCpp
    } else {
        EngineArg::Transformers
    })
}

/// Flags that belong to one engine, given with another.
fn check_flags(args: &EngineArgs, engine: EngineArg) -> Result<()> {
    let paged = matches!(engine, EngineArg::Vllm | EngineArg::Sglang);
    let vllm = engine == EngineArg::Vllm;
    let sglang = engine == EngineArg::Sglang;
    let llama = engine == EngineArg::LlamaCpp;
    let checks: [(bool, bool, &str, &str); 19] = [
        (args.tensor_split.is_some(), llama, "--tensor-split", "llama.cpp"),
        (args.tp.is_some(), paged, "--tp", "vllm or sglang"),
        (args.gpu_memory_utilization.is_some(), vllm, "--gpu-memory-utilization", "vllm"),
        (args.mem_fraction_static.is_some(), sglang, "--mem-fraction-static", "sglang"),
        (args.max_model_len.is_some(), paged, "--max-model-len", "vllm or sglang"),
        (args.max_num_batched_tokens.is_some(), vllm, "--max-num-batched-tokens", "vllm"),
        (args.max_num_seqs.is_some(), vllm, "--max-num-seqs", "vllm"),
        (args.block_size.is_some(), paged, "--block-size", "vllm or sglang"),
        (args.llm_class, vllm, "--llm-class", "vllm"),
        (args.cuda_graph_mib.is_some(), vllm, "--cuda-graph-mib", "vllm"),
        (args.ctx_size.is_some(), llama, "--ctx-size", "llama.cpp"),
        (args.n_gpu_layers.is_some(), llama, "--n-gpu-layers", "llama.cpp"),
        (args.n_batch != 2048, llama, "--n-batch", "llama.cpp"),
        (args.n_ubatch != 512, llama, "--n-ubatch", "llama.cpp"),
        (args.cache_type_k != GgmlTypeArg::F16, llama, "--cache-type-k", "llama.cpp"),
        (args.cache_type_v != GgmlTypeArg::F16, llama, "--cache-type-v", "llama.cpp"),
        (args.flash_attn != Switch::On, llama, "--flash-attn", "llama.cpp"),
        (args.no_kv_offload || args.swa_full, llama, "--no-kv-offload/--swa-full", "llama.cpp"),
        (args.no_fit, llama, "--no-fit", "llama.cpp"),
    ];
    for (given, applies, flag, engines) in checks {
        if given && !applies {
            bail!("{flag} applies to --engine {engines}, not to {}", engine_name(engine));
        }
    }
    Ok(())
}

fn engine_name(engine: EngineArg) -> &'static str {
    match engine {
        EngineArg::Transformers => "transformers",
        EngineArg::Vllm => "vllm",
        EngineArg::Sglang => "sglang",
        EngineArg::LlamaCpp => "llama.cpp",
    }
}

fn ggml(arg: GgmlTypeArg) -> GgmlStorage {
    match arg {
        GgmlTypeArg::F32 => GgmlStorage::F32,
        GgmlTypeArg::F16 => GgmlStorage::F16,
        GgmlTypeArg::Bf16 => GgmlStorage::Bf16,
        GgmlTypeArg::Q8_0 => GgmlStorage::Q8_0,
        GgmlTypeArg::Q5_1 => GgmlStorage::Q5_1,
        GgmlTypeArg::Q5_0 => GgmlStorage::Q5_0,
        GgmlTypeArg::Q4_1 => GgmlStorage::Q4_1,
        GgmlTypeArg::Q4_0 => GgmlStorage::Q4_0,
        GgmlTypeArg::Iq4Nl => GgmlStorage::Iq4Nl,
    }
}

/// Checks the engine flags for `engine`; for transformers there is nothing more to do.
pub(crate) fn validate(args: &EngineArgs, engine: EngineArg) -> Result<()> {
    check_flags(args, engine)
}

/// The memory the engines size their budgets from: CUDA's own total
/// (`cudaMemGetInfo`'s: nvidia-smi's total less its Reserved line; vLLM's
/// `gpu_worker.py` and SGLang's free memory through `torch.cuda.mem_get_info`,
/// llama.cpp's `ggml_backend_dev_memory`), where the catalog has a capture of
/// it; else the driver's total, and [`cuda_total_note`] says so. A
/// `--gpu-limit` wins. (SGLang's default `--mem-fraction-static` reads
/// nvidia-smi's total instead; the fraction moves by under 1 % between the two.)
fn cuda_total(gpu: &Gpu) -> u64 {
    match (gpu.limit(), gpu.cuda_total_mib) {
        (Some(limit), _) => limit,
        (None, Some(mib)) => mib.saturating_mul(1 << 20),
        (None, None) => gpu.memory_bytes(),
    }
}

/// Why the budget may be a little generous: CUDA's total was not captured for `gpu`.
fn cuda_total_note(gpu: &Gpu, engine: EngineArg) -> Option<String> {
    (gpu.limit().is_none()
        && gpu.cuda_total_mib.is_none()
        && gpu.platform == vramfit_sources::gpus::Platform::Cuda)
        .then(|| {
            format!(
                "{} sizes its budget from CUDA's own total, which is nvidia-smi's less a Reserved share (303–763 MiB on the GPUs captured); none was captured for {}, so nvidia-smi's total is used and the estimate may be that much too generous",
                engine_name(engine),
                gpu.name
            )
        })
}

/// The paged engine's settings from the flags, for `gpu`.
pub(crate) fn paged_settings(
    e: &EngineArgs,
    common: &CommonArgs,
    infer: &InferFlags,
    engine: EngineArg,
    gpu: &Gpu,
) -> PagedSettings {
    let inference = crate::settings::inference_workload(common, infer);
    let engine = if engine == EngineArg::Vllm { PagedEngine::Vllm } else { PagedEngine::Sglang };
    PagedSettings::new(engine, cuda_total(gpu)).with(|s| {
        s.gpu_is_a100 = gpu.name.contains("a100");
        s.memory_fraction = e.gpu_memory_utilization.or(e.mem_fraction_static);
        s.tensor_parallel = e.tp.unwrap_or(1);
        s.block_size = e.block_size;
        s.max_model_len = e.max_model_len;
        s.max_num_batched_tokens = e.max_num_batched_tokens;
        s.max_num_seqs = e.max_num_seqs;
        s.offline = e.llm_class;
        s.weights = inference.weights;
        s.kv_element_bytes = inference.kv_cache.bytes();
        s.request_tokens = infer.prompt_len.saturating_add(infer.gen_len);
        s.concurrent_requests = common.batch_size;
        s.cuda_graph_bytes = e.cuda_graph_mib.map(|mib| mib.saturating_mul(1 << 20));
    })
}

/// llama.cpp's estimate from the flags, on `gpu` if one is named.
fn llama(
    e: &EngineArgs,
    common: &CommonArgs,
    infer: &InferFlags,
    model: &ResolvedModel,
    gpu: Option<&Gpu>,
    runtime: &Runtime,
    devices: &[Gpu],
) -> Result<ServingEstimate> {
    let spec = &model.parsed.spec;
    let mut derived = None;
    let weights = match &model.stored_weights {
        Some(stored) => {
            if infer.dtype != DtypeArg::Bf16 {
                bail!(
                    "--dtype: a GGUF model's weights are stored in its own ggml types; --dtype applies to models given by config"
                );
            }
            stored.clone()
        }
        None => {
            let storage = match infer.dtype {
                DtypeArg::Fp32 => GgmlStorage::F32,
                DtypeArg::Fp16 => GgmlStorage::F16,
                DtypeArg::Bf16 => GgmlStorage::Bf16,
                DtypeArg::Int8 => GgmlStorage::Q8_0,
                DtypeArg::Int4 => GgmlStorage::Q4_0,
                DtypeArg::Fp8 | DtypeArg::Nf4 => bail!(
                    "--dtype {} is not a llama.cpp weight type; use fp32, fp16, bf16, int8 (q8_0) or int4 (q4_0), or give a .gguf file",
                    crate::render::flag_value(&infer.dtype)
                ),
            };
            derived = Some(storage);
            stored_weights_from_spec(spec, storage)
        }
    };
    if infer.kv_dtype.is_some() {
        bail!("--kv-dtype: llama.cpp's cache types are --cache-type-k and --cache-type-v");
    }
    let settings = LlamaCppSettings::default().with(|s| {
        s.n_ctx = e.ctx_size;
        s.n_seq = common.batch_size;
        s.n_batch = e.n_batch;
        s.n_ubatch = e.n_ubatch;
        s.cache_k = ggml(e.cache_type_k);
        s.cache_v = ggml(e.cache_type_v);
        s.flash_attn = e.flash_attn == Switch::On;
        s.n_gpu_layers = e.n_gpu_layers;
        s.kv_offload = !e.no_kv_offload;
        s.swa_full = e.swa_full;
        s.fit = !e.no_fit;
        // llama.cpp's --fit and its default split read cudaMemGetInfo, as vLLM does.
        s.gpu_total_bytes = gpu.map(cuda_total);
        s.devices = devices.iter().map(cuda_total).collect();
        s.tensor_split.clone_from(&e.tensor_split);
        s.request_tokens = infer.prompt_len.saturating_add(infer.gen_len);
    });
    let mut estimate = estimate_llamacpp(spec, &weights, &settings, runtime)?;
    if let Some(storage) = derived {
        estimate.notes.push(format!(
            "weights from the config, every matrix in {} and vectors in f32; quantized GGUF files mix types (Q4_K_M keeps some tensors in Q6_K): give the .gguf for its exact bytes",
            storage.name()
        ));
    }
    Ok(estimate)
}

/// `fit --mode infer --engine …`: per GPU kind, the fewest GPUs (vLLM/SGLang:
/// the smallest tensor-parallel size that serves `--batch-size` requests) or
/// what llama.cpp's `--fit` settles on (its context and GPU layers).
pub(crate) fn fit(
    args: &FitArgs,
    engine: EngineArg,
    model: &ResolvedModel,
    chosen: Option<Gpu>,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let w = &args.workload;
    let mut skipped: Vec<(&'static str, Vec<String>)> = Vec::new();
    let targets: Vec<Gpu> = match chosen {
        Some(gpu) => {
            engine_on(engine, &gpu).map_err(anyhow::Error::msg)?;
            vec![gpu]
        }
        None => crate::commands::gpus::filtered(&args.filter)?
            .into_iter()
            .filter(|g| match engine_refusal(engine, g) {
                Some(why) => {
                    match skipped.iter_mut().find(|(w, _)| *w == why) {
                        Some((_, names)) => names.push(g.name.clone()),
                        None => skipped.push((why, vec![g.name.clone()])),
                    }
                    false
                }
                None => true,
            })
            .collect(),
    };
    let request = w.infer.prompt_len.saturating_add(w.infer.gen_len);
    let mut rows = Vec::new();
    let mut progress = crate::render::Progress::new(targets.len());
    for gpu in &targets {
        let runtime = crate::settings::overrides(gpu.runtime(), &w.runtime)?;
        let (gpus_needed, estimate) = match engine {
            EngineArg::Vllm | EngineArg::Sglang => {
                if model.stored_weights.is_some() {
                    bail!(
                        "--engine {}: GGUF models are modelled for llama.cpp only",
                        engine_name(engine)
                    );
                }
                let settings = paged_settings(&w.engine, &w.common, &w.infer, engine, gpu);
                match fewest_gpus_paged(&model.parsed.spec, &settings, &runtime, args.max_gpus)? {
                    Some((tp, estimate)) => (Some(tp), Some(estimate)),
                    None => (None, None),
                }
            }
            EngineArg::LlamaCpp => {
                let estimate =
                    llama(&w.engine, &w.common, &w.infer, model, Some(gpu), &runtime, &[])?;
                (estimate.fits.then_some(1), Some(estimate))
            }
            EngineArg::Transformers => unreachable!("transformers is fit's own search"),
        };
        rows.push((gpu, gpus_needed, estimate));
        progress.step(rows.len());
    }
    drop(progress);
    if w.runtime.json {
        let document = EngineSweepDocument {
            schema_version: SCHEMA_VERSION,
            model: ModelName::new(model),
            engine: engine_name(engine).to_owned(),
            workload: RequestLoad {
                concurrent_requests: w.common.batch_size,
                request_tokens: request,
            },
            search: EngineSearch { max_gpus: args.max_gpus },
            answers: rows
                .iter()
                .map(|(gpu, needed, e)| EngineAnswer::new(gpu, *needed, e.as_ref()))
                .collect(),
            left_out: skipped
                .iter()
                .map(|(why, names)| vramfit_report::SweepGroup {
                    reason: (*why).to_owned(),
                    gpus: names.clone(),
                })
                .collect(),
        };
        crate::render::write_json(out, &document)?;
        return Ok(());
    }
    writeln!(
        out,
        "{} — {}, {} of {request} tokens",
        model.origin.describe(),
        engine_name(engine),
        crate::render::count(w.common.batch_size, "request")
    )?;
    for vendor in vramfit_sources::gpus::Vendor::ALL {
        let group: Vec<_> = rows.iter().filter(|(g, _, _)| g.vendor == vendor).collect();
        if group.is_empty() {
            continue;
        }
        let mut platforms: Vec<&str> = group.iter().map(|(g, _, _)| g.platform.name()).collect();
        platforms.dedup();
        writeln!(out, "{} ({})", vendor.name().to_uppercase(), platforms.join(", "))?;
        let mut t = table(
            &["GPU", "GPUs", "settings", "KV tokens", "requests at once", "GiB per GPU"],
            &[1, 3, 4, 5],
        );
        for (gpu, needed, e) in group {
            let gpu: &Gpu = gpu;
            let shown = |key: &str| {
                e.as_ref().and_then(|e| {
                    e.settings.iter().find(|(k, _)| k == key).map(|(k, v)| format!("{k} {v}"))
                })
            };
            let settings = match engine {
                EngineArg::LlamaCpp => [shown("-c"), shown("-ngl")]
                    .into_iter()
                    .flatten()
                    .collect::<Vec<_>>()
                    .join(", "),
                _ => shown("--tensor-parallel-size").or_else(|| shown("--tp")).unwrap_or_default(),
            };
            t.add_row(vec![
                gpu.name.clone(),
                match (engine, needed) {
                    (_, Some(n)) => n.to_string(),
                    (EngineArg::LlamaCpp, None) => "no".to_owned(),
                    (_, None) => format!("> {}", args.max_gpus),
                },
                settings,
                e.as_ref()
                    .map_or_else(String::new, |e| crate::render::grouped(e.kv_capacity_tokens)),
                e.as_ref().map_or_else(String::new, |e| {
                    crate::render::whole_requests(e.concurrency_at_request).to_string()
                }),
                e.as_ref().map_or_else(String::new, |e| gib(e.device_total_bytes)),
            ]);
        }
        writeln!(out, "{t}")?;
    }
    if engine == EngineArg::LlamaCpp {
        writeln!(
            out,
            "llama.cpp runs on one GPU here, with --fit's context and layers; GPUs 1 = it fits, leaving the rest of the model on the host"
        )?;
    }
    // What is modelled but not measured on the listed platforms, once each.
    let mut said: Vec<String> = Vec::new();
    for gpu in &targets {
        let mut notes = engine_on(engine, gpu).unwrap_or_default();
        notes.extend(gpu.unified_note());
        for note in notes {
            if !said.contains(&note) {
                writeln!(out, "note: {note}")?;
                said.push(note);
            }
        }
    }
    for (why, names) in &skipped {
        writeln!(out, "not listed: {} ({why})", names.join(", "))?;
    }
    Ok(())
}

/// Whether `engine` runs on `gpu` as vramfit models it: `Err(why)` where the
/// engine does not run there or its memory there is not modelled, else the
/// notes to print beside the estimate.
///
/// Sources (read 2026-12-08): vLLM's installation docs (`gpu.rocm.inc.md`:
/// `ROCm` on gfx90a, gfx942, gfx950, gfx1100/1101, gfx1150/1151, gfx1200/1201;
/// on Apple silicon only the CPU backend, or the community vllm-metal plugin,
/// which runs on MLX); SGLang's `sgl-kernel/setup_rocm.py` (`ROCm` kernels built
/// for gfx942 and gfx950 only) and `docs/platforms/apple_metal.md` (Metal
/// through MLX, `SGLANG_USE_MLX=1`); llama.cpp's README (Metal, CUDA, HIP,
/// Vulkan and SYCL backends; HIP builds the CUDA backend's code).
pub(crate) fn engine_on(engine: EngineArg, gpu: &Gpu) -> Result<Vec<String>, String> {
    use vramfit_sources::gpus::Platform;
    if let Some(why) = engine_refusal(engine, gpu) {
        return Err(format!(
            "--engine {} on {} ({}{}): {why}",
            engine_name(engine),
            gpu.name,
            gpu.platform.name(),
            gpu.gfx_target.as_deref().map(|t| format!(", {t}")).unwrap_or_default()
        ));
    }
    let name = engine_name(engine);
    Ok(match (engine, gpu.platform) {
        (EngineArg::Vllm | EngineArg::Sglang, Platform::Rocm) => vec![format!(
            "{name} on ROCm: modelled as on CUDA (the same profiling run and budget through HIP's torch.cuda); not yet checked against a ROCm log"
        )],
        (EngineArg::LlamaCpp, Platform::Metal) => vec![
            "llama.cpp on Metal: weights and KV cache as on CUDA; the compute buffer is CUDA's graph allocation, which matched a Metal log where the logits dominate (Qwen2.5-1.5B, docs/engine-accuracy.md) and can be larger than Metal's elsewhere; no CUDA context".to_owned(),
        ],
        (EngineArg::LlamaCpp, Platform::Rocm) => vec![
            "llama.cpp on ROCm: the HIP backend builds the CUDA backend's code, so its buffers are modelled as CUDA's; the HIP context is taken as CUDA's, not measured".to_owned(),
        ],
        (EngineArg::LlamaCpp, Platform::Xpu) => vec![
            "llama.cpp on Intel (SYCL or Vulkan): weights and KV cache as on CUDA; the compute buffer is CUDA's, not measured on those backends".to_owned(),
        ],
        _ => Vec::new(),
    })
}

/// Why `engine` is not modelled on `gpu`, in words that do not name the device
/// (a sweep groups the devices it leaves out by them); `None` where it is.
pub(crate) fn engine_refusal(engine: EngineArg, gpu: &Gpu) -> Option<&'static str> {
    use vramfit_sources::gpus::Platform;
    match (engine, gpu.platform) {
        (EngineArg::Sglang, Platform::Rocm)
            if !matches!(gpu.gfx_target.as_deref(), Some("gfx942" | "gfx950")) =>
        {
            Some("SGLang's ROCm kernels are built for gfx942 and gfx950 (MI300, MI350) only")
        }
        (EngineArg::Vllm, Platform::Rocm)
            if gpu.gfx_target.as_deref().is_some_and(|t| {
                !matches!(
                    t,
                    "gfx90a"
                        | "gfx942"
                        | "gfx950"
                        | "gfx1100"
                        | "gfx1101"
                        | "gfx1150"
                        | "gfx1151"
                        | "gfx1200"
                        | "gfx1201"
                )
            }) =>
        {
            Some(
                "vLLM's ROCm builds support gfx90a, gfx942, gfx950, gfx1100/1101, gfx1150/1151 and gfx1200/1201 only",
            )
        }
        (EngineArg::Vllm, Platform::Metal) => Some(
            "vLLM runs on Apple silicon only on the CPU or through the vllm-metal plugin (MLX), whose memory is not modelled; use --engine llama.cpp, or transformers",
        ),
        (EngineArg::Sglang, Platform::Metal) => Some(
            "SGLang runs on Apple silicon only through its MLX backend (SGLANG_USE_MLX), whose memory is not modelled; use --engine llama.cpp, or transformers",
        ),
        (EngineArg::Vllm | EngineArg::Sglang, Platform::Xpu | Platform::Gaudi) => {
            Some("its memory accounting on Intel GPUs and Gaudi is not modelled")
        }
        (EngineArg::LlamaCpp, Platform::Gaudi) => Some("llama.cpp has no Gaudi backend"),
        _ => None,
    }
}

/// What an engine's estimate on `gpu` says beside its figures: the engine on
/// that platform ([`engine_on`], an error where it is not modelled), the
/// budget's total ([`cuda_total_note`]), the memory figure itself and what a
/// job may use of it.
fn engine_notes(engine: EngineArg, gpu: &Gpu) -> Result<Vec<String>> {
    let mut notes = engine_on(engine, gpu).map_err(anyhow::Error::msg)?;
    notes.extend(cuda_total_note(gpu, engine));
    notes.extend(gpu.memory_notes());
    notes.extend(gpu.limit_note());
    Ok(notes)
}

/// Runs a serving-engine estimate and prints it.
pub(crate) fn run(
    args: &InferArgs,
    engine: EngineArg,
    model: &ResolvedModel,
    runtime: &Runtime,
    gpu: Option<&Gpu>,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let e = &args.engine;
    let spec = &model.parsed.spec;
    let platform_notes = match gpu {
        Some(gpu) => engine_notes(engine, gpu)?,
        None => Vec::new(),
    };
    let mut estimate = match engine {
        EngineArg::Vllm | EngineArg::Sglang => {
            let Some(gpu) = gpu else {
                bail!(
                    "--engine {} sizes its KV cache from the GPU's memory: name the GPU with --gpu (see `vramfit gpus`)",
                    engine_name(engine)
                );
            };
            if model.stored_weights.is_some() {
                bail!(
                    "--engine {}: GGUF models are modelled for llama.cpp only; give the model's config.json or catalog name",
                    engine_name(engine)
                );
            }
            let settings = paged_settings(e, &args.common, &args.infer, engine, gpu);
            estimate_paged(spec, &settings, runtime)?
        }
        EngineArg::LlamaCpp => llama(e, &args.common, &args.infer, model, gpu, runtime, &[])?,
        EngineArg::Transformers => unreachable!("transformers runs through the memory model"),
    };
    estimate.notes.extend(platform_notes);
    render(model, &estimate, gpu, &[], args, out)
}

/// llama.cpp over several GPUs (`--gpu a,b`, `--tensor-split`), layer by layer.
pub(crate) fn run_split(
    args: &InferArgs,
    model: &ResolvedModel,
    runtime: &Runtime,
    gpus: &[Gpu],
    out: &mut dyn std::io::Write,
) -> Result<()> {
    if let Some(gpu) = gpus.iter().find(|g| g.platform == vramfit_sources::gpus::Platform::Metal) {
        bail!(
            "--gpu: {} is an Apple GPU, one per machine: llama.cpp does not split a model over several Macs' GPUs here; give one",
            gpu.name
        );
    }
    let mut notes = Vec::new();
    for gpu in gpus {
        for note in engine_notes(EngineArg::LlamaCpp, gpu)? {
            if !notes.contains(&note) {
                notes.push(note);
            }
        }
    }
    let mut estimate = llama(&args.engine, &args.common, &args.infer, model, None, runtime, gpus)?;
    estimate.notes.extend(notes);
    // The verdict names the GPU with the least memory left.
    let tightest = estimate
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.parts.is_empty())
        .min_by_key(|(_, d)| i128::from(d.memory_bytes) - i128::from(d.total_bytes))
        .map_or(0, |(i, _)| i);
    render(model, &estimate, gpus.get(tightest), gpus, args, out)
}

fn render(
    model: &ResolvedModel,
    estimate: &ServingEstimate,
    gpu: Option<&Gpu>,
    split: &[Gpu],
    args: &InferArgs,
    out: &mut dyn std::io::Write,
) -> Result<()> {
    let request = args.infer.prompt_len.saturating_add(args.infer.gen_len);
    if gpu.is_some() {
        crate::commands::record_verdict(estimate.fits);
    }
    if args.runtime.json {
        let load =
            RequestLoad { concurrent_requests: args.common.batch_size, request_tokens: request };
        let document = EngineDocument::new(model, estimate, load, gpu, split);
        crate::render::write_json(out, &document)?;
        return Ok(());
    }
    for warning in &model.parsed.warnings {
        writeln!(out, "warning: {warning}")?;
    }
    writeln!(
        out,
        "{}  ({}) — {}, {} of {} tokens (prompt {} + generate {})",
        model.origin.describe(),
        model.parsed.spec.model_type,
        estimate.engine,
        crate::render::count(args.common.batch_size, "request"),
        request,
        args.infer.prompt_len,
        args.infer.gen_len
    )?;
    writeln!(out, "modelled on {}", estimate.engine_version)?;
    let settings: Vec<String> = estimate.settings.iter().map(|(k, v)| format!("{k} {v}")).collect();
    writeln!(out, "settings: {}", settings.join(", "))?;
    if !estimate.devices.is_empty() {
        writeln!(out, "per GPU (layers split by llama.cpp's load_tensors)")?;
        let mut rows = table(
            &[
                "GPU",
                "split",
                "layers",
                "weights GiB",
                "KV GiB",
                "compute GiB",
                "context GiB",
                "total GiB",
                "of GiB",
                "fits",
            ],
            &[1, 2, 3, 4, 5, 6, 7, 8],
        );
        let part = |d: &vramfit_core::serving::DeviceShare, name: &str| {
            gib(d.parts.iter().find(|p| p.name == name).map_or(0, |p| p.bytes))
        };
        for (i, (d, g)) in estimate.devices.iter().zip(split).enumerate() {
            rows.add_row(vec![
                format!("{i}: {}", g.name),
                format!("{:.3}", d.split),
                format!("{}{}", d.layers, if d.output_layer { " + output" } else { "" }),
                part(d, "weights"),
                part(d, "kv cache"),
                part(d, "compute buffer"),
                part(d, "CUDA context"),
                gib(d.total_bytes),
                gib(d.memory_bytes),
                if d.fits { "yes".to_owned() } else { "NO".to_owned() },
            ]);
        }
        writeln!(out, "{rows}")?;
    }
    for (title, parts, total) in [
        ("per GPU", &estimate.gpu_parts, estimate.device_total_bytes),
        ("host memory", &estimate.host_parts, estimate.host_bytes),
    ] {
        if parts.is_empty() || (title == "per GPU" && !estimate.devices.is_empty()) {
            continue;
        }
        writeln!(out, "{title}")?;
        let mut rows = crate::render::parts_table(parts, total);
        rows.add_row(vec![
            "total".to_owned(),
            gib(total),
            gb(total),
            String::new(),
            String::new(),
            String::new(),
        ]);
        writeln!(out, "{rows}")?;
    }
    match estimate.max_concurrency {
        Some(concurrency) => writeln!(
            out,
            "KV cache: {} tokens; maximum concurrency at the longest request: {concurrency:.2}x",
            crate::render::grouped(estimate.kv_capacity_tokens)
        )?,
        None => writeln!(
            out,
            "KV cache: {} cells of context",
            crate::render::grouped(estimate.kv_capacity_tokens)
        )?,
    }
    writeln!(
        out,
        "requests of {request} tokens at once: {}",
        crate::render::whole_requests(estimate.concurrency_at_request)
    )?;
    if split.len() > 1 {
        let names: Vec<&str> = split.iter().map(|g| g.name.as_str()).collect();
        writeln!(
            out,
            "{}: {}",
            names.join(" + "),
            crate::render::verdict_word(
                estimate.fits,
                if estimate.fits { "fits, every GPU within its memory" } else { "does not fit" }
            ),
        )?;
    } else if let Some(gpu) = gpu {
        writeln!(
            out,
            "{}: {} ({} GiB on the GPU of {} GiB)",
            gpu.name,
            crate::render::verdict_word(
                estimate.fits,
                if estimate.fits { "fits" } else { "does not fit" }
            ),
            gib(estimate.device_total_bytes),
            gib(gpu.memory_bytes())
        )?;
    }
    for note in &estimate.notes {
        writeln!(out, "note: {note}")?;
    }
    Ok(())
}
