/*!
Measured peaks (the JSON-lines files in `validation/data`, written by the oracle in
`../shared/oracle` or the project's harness) turned into the same spec and
workload the estimator takes, so estimates can be compared with what PyTorch
really allocated.

Each record holds a case (`arch`: a config; `mode`, `dtype`, `batch`, ...)
and what was measured: `tracked.peak_bytes_rounded512` (live tensor bytes,
each storage rounded to 512 B, comparable with `max_memory_allocated` less
the cuBLAS workspace) and, on a GPU, the `cuda` allocator and device figures.
*/

use serde_json::Value;
use vramfit_core::dtype::{FloatType, WeightFormat};
use vramfit_core::lora::{LoraConfig, LoraTargets};
use vramfit_core::spec::ModelSpec;
use vramfit_core::workload::{
    AttentionImpl, Inference, KvCacheType, Method, Optimizer, OptimizerImpl, Precision, Training,
    Workload,
};

use vramfit_sources::SourceError;
use vramfit_sources::config::parse_config_value;

/// What was measured for one case, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Measured {
    /// Peak of live tensor bytes, each storage rounded to 512 B (CPU/fake tracker).
    pub tensor_peak_bytes: Option<u64>,
    /// Where that peak fell (`step2.backward / _log_softmax_backward_data`).
    pub peak_where: Option<String>,
    /// `torch.cuda.max_memory_allocated` on a GPU.
    pub cuda_allocated_bytes: Option<u64>,
    /// `torch.cuda.max_memory_reserved` on a GPU.
    pub cuda_reserved_bytes: Option<u64>,
    /// Device-level used memory at the peak (context included) on a GPU.
    pub device_used_bytes: Option<u64>,
    /// Parameter count the harness saw.
    pub params_total: Option<u64>,
}

/// A measured case ready for the estimator.
#[derive(Clone, Debug)]
pub struct MeasuredCase {
    /// The record's id.
    pub id: String,
    /// `cpu`, `fake` or `cuda`.
    pub backend: String,
    /// The model family (`model_type`).
    pub model_type: String,
    /// `inference`, `full` or `lora`.
    pub mode: String,
    /// The architecture.
    pub spec: ModelSpec,
    /// The workload as vramfit describes it.
    pub workload: Workload,
    /// The measurements.
    pub measured: Measured,
}

/// Why a record was not turned into a case.
#[derive(Clone, Debug)]
pub struct SkippedRecord {
    /// The record's id.
    pub id: String,
    /// Why.
    pub reason: String,
}

/// Parses JSON lines of measured records; records that did not run (`status` other
/// than `ok`) or describe something vramfit does not model are returned as skipped.
pub fn parse_measured(
    text: &str,
    origin: &str,
) -> Result<(Vec<MeasuredCase>, Vec<SkippedRecord>), SourceError> {
    let mut cases = Vec::new();
    let mut skipped = Vec::new();
    for (index, line) in text.lines().enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let where_ = format!("{origin}:{}", index + 1);
        let record: Value = serde_json::from_str(line).map_err(|error| SourceError::Json {
            origin: where_.clone(),
            message: error.to_string(),
            line: index + 1,
            column: error.column(),
        })?;
        let id = record["id"].as_str().unwrap_or("(no id)").to_owned();
        if record["status"] != "ok" {
            skipped.push(SkippedRecord { id, reason: format!("status {}", record["status"]) });
            continue;
        }
        match case_of(&record, &where_) {
            Ok(case) => cases.push(case),
            Err(reason) => skipped.push(SkippedRecord { id, reason }),
        }
    }
    Ok((cases, skipped))
}

fn case_of(record: &Value, origin: &str) -> Result<MeasuredCase, String> {
    if record["schema"] == "vramfit-harness/1" {
        return harness_case_of(record, origin);
    }
    let case = &record["case"];
    let parsed = parse_config_value(&case["arch"], origin).map_err(|e| e.to_string())?;
    let spec = parsed.spec;
    let text = |key: &str, default: &str| case[key].as_str().unwrap_or(default).to_owned();
    let number = |key: &str, default: u64| case[key].as_u64().unwrap_or(default);
    let mode = text("mode", "full");
    let dtype = match text("dtype", "float32").as_str() {
        "float32" => FloatType::F32,
        "bfloat16" => FloatType::Bf16,
        "float16" => FloatType::F16,
        other => return Err(format!("dtype {other}")),
    };
    let attention = match text("attn_impl", "sdpa").as_str() {
        "eager" => AttentionImpl::Eager,
        "sdpa" => AttentionImpl::Sdpa,
        "flash_attention_2" => AttentionImpl::Flash,
        other => return Err(format!("attn_impl {other}")),
    };
    let batch = number("batch", 1);
    let seq = number("seq", 512);
    let workload = if mode == "inference" {
        float_inference(dtype, batch, seq, number("gen_tokens", 0), attention)
    } else {
        let mixed = case["mixed_precision"].as_bool().unwrap_or(false);
        let precision = match (dtype, mixed) {
            (FloatType::F32, _) => Precision::Fp32,
            (FloatType::Bf16, false) => Precision::Bf16,
            (FloatType::F16, false) => Precision::Fp16,
            (FloatType::Bf16, true) => Precision::Bf16Mixed,
            (FloatType::F16, true) => Precision::Fp16Mixed,
        };
        let optimizer = match text("optimizer", "adamw").as_str() {
            "adamw" => Optimizer::Adamw,
            "adamw_8bit" => Optimizer::Adamw8bit,
            "sgd" => Optimizer::Sgd,
            "sgd_momentum" => Optimizer::SgdMomentum,
            "adafactor" => Optimizer::Adafactor,
            other => return Err(format!("optimizer {other}")),
        };
        let optimizer_impl = match text("optimizer_impl", "foreach").as_str() {
            "foreach" => OptimizerImpl::Foreach,
            "fused" => OptimizerImpl::Fused,
            "forloop" => OptimizerImpl::Forloop,
            other => return Err(format!("optimizer_impl {other}")),
        };
        let (method, lora) = match mode.as_str() {
            "full" => (Method::Full, None),
            "lora" => {
                let lora = &case["lora"];
                // The oracle's default targets are the four attention projections.
                let targets = lora_targets(&lora["target_modules"]).unwrap_or_else(|| {
                    LoraTargets::Modules(
                        ["q_proj", "k_proj", "v_proj", "o_proj"].map(str::to_owned).to_vec(),
                    )
                });
                let config = LoraConfig::new(lora["r"].as_u64().unwrap_or(16), targets)
                    .with(|c| c.dora = lora["use_dora"].as_bool().unwrap_or(false));
                (Method::Lora, Some(config))
            }
            other => return Err(format!("mode {other}")),
        };
        Workload::Training(Training::default().with(|t| {
            t.method = method;
            t.precision = precision;
            t.optimizer = optimizer;
            t.optimizer_impl = optimizer_impl;
            t.batch_size = batch;
            t.seq_len = seq;
            t.grad_accum = 1;
            t.grad_checkpointing = case["grad_ckpt"].as_bool().unwrap_or(false);
            t.attention = attention;
            t.lora = lora;
        }))
    };
    let tracked = &record["tracked"];
    let cuda = &record["cuda"];
    // The workload's peak is the highest phase after loading: building a model from
    // random weights briefly holds an untied copy of a tied output head (`load`), which
    // loading a checkpoint does not.
    let workload_peak = record["phases"].as_array().and_then(|phases| {
        phases
            .iter()
            .filter(|p| p["phase"] != "load")
            .filter_map(|p| {
                p["tracked_peak_bytes_rounded512"].as_u64().map(|b| (b, p["phase"].as_str()))
            })
            .max_by_key(|(bytes, _)| *bytes)
    });
    let overall_where = tracked["peak_where"].as_str().map(str::to_owned);
    let (tensor_peak_bytes, peak_where) = match workload_peak {
        Some((bytes, phase)) if overall_where.as_deref().is_some_and(|w| w.starts_with("load")) => {
            (Some(bytes), phase.map(str::to_owned))
        }
        _ => (tracked["peak_bytes_rounded512"].as_u64(), overall_where),
    };
    let measured = Measured {
        tensor_peak_bytes,
        peak_where,
        cuda_allocated_bytes: cuda["max_memory_allocated"].as_u64(),
        cuda_reserved_bytes: cuda["max_memory_reserved"].as_u64(),
        device_used_bytes: cuda["device_used_max_sampled"].as_u64(),
        params_total: record["params"]["total"].as_u64(),
    };
    Ok(MeasuredCase {
        id: record["id"].as_str().unwrap_or_default().to_owned(),
        backend: record["env"]["backend"].as_str().unwrap_or("unknown").to_owned(),
        model_type: spec.model_type.clone(),
        mode,
        spec,
        workload,
        measured,
    })
}

/// A record of the project's own harness (`validation/measure.py`, schema
/// `vramfit-harness/1`): the case uses vramfit's own names (`precision`,
/// `optimizer`, `optimizer_impl` as the CLI spells them), and `tensor` holds the
/// workload peak (model building already left out).
fn harness_case_of(record: &Value, origin: &str) -> Result<MeasuredCase, String> {
    let case = &record["case"];
    let parsed = parse_config_value(&case["arch"], origin).map_err(|e| e.to_string())?;
    let spec = parsed.spec;
    let text = |key: &str, default: &str| case[key].as_str().unwrap_or(default).to_owned();
    let number = |key: &str, default: u64| case[key].as_u64().unwrap_or(default);
    let mode = text("mode", "full");
    let attention = match text("attn", "sdpa").as_str() {
        "eager" => AttentionImpl::Eager,
        "sdpa" => AttentionImpl::Sdpa,
        "flash" | "flash_attention_2" => AttentionImpl::Flash,
        other => return Err(format!("attn {other}")),
    };
    let batch = number("batch", 1);
    let seq = number("seq", 512);
    let workload = if mode == "inference" {
        let dtype = match text("dtype", "bf16").as_str() {
            "fp32" => FloatType::F32,
            "bf16" => FloatType::Bf16,
            "fp16" => FloatType::F16,
            other => return Err(format!("dtype {other}")),
        };
        float_inference(dtype, batch, seq, number("gen", 0), attention)
    } else {
        let precision = [
            Precision::Fp32,
            Precision::Bf16,
            Precision::Fp16,
            Precision::Bf16Mixed,
            Precision::Fp16Mixed,
        ]
        .into_iter()
        .find(|p| case["precision"] == p.name())
        .ok_or_else(|| format!("precision {}", case["precision"]))?;
        let optimizer = [
            Optimizer::Adamw,
            Optimizer::Adamw8bit,
            Optimizer::PagedAdamw8bit,
            Optimizer::Adafactor,
            Optimizer::Sgd,
            Optimizer::SgdMomentum,
            Optimizer::Lion,
        ]
        .into_iter()
        .find(|o| case["optimizer"] == o.name())
        .ok_or_else(|| format!("optimizer {}", case["optimizer"]))?;
        let optimizer_impl = match case["optimizer_impl"].as_str() {
            Some("foreach") | None => OptimizerImpl::Foreach,
            Some("fused") => OptimizerImpl::Fused,
            Some("forloop") => OptimizerImpl::Forloop,
            Some(other) => return Err(format!("optimizer_impl {other}")),
        };
        let (method, lora) = match mode.as_str() {
            "full" => (Method::Full, None),
            "lora" | "qlora" => {
                let lora = &case["lora"];
                let targets = lora_targets(&lora["targets"])
                    .ok_or_else(|| format!("lora targets {}", lora["targets"]))?;
                let config = LoraConfig::new(lora["r"].as_u64().ok_or("lora r")?, targets)
                    .with(|c| c.dora = lora["dora"].as_bool().unwrap_or(false));
                let method = if mode == "qlora" { Method::Qlora } else { Method::Lora };
                (method, Some(config))
            }
            other => return Err(format!("mode {other}")),
        };
        let grad_accum = number("grad_accum", 1);
        Workload::Training(Training::default().with(|t| {
            t.method = method;
            t.precision = precision;
            t.optimizer = optimizer;
            t.optimizer_impl = optimizer_impl;
            t.batch_size = batch;
            t.seq_len = seq;
            t.grad_accum = grad_accum;
            t.grad_checkpointing = case["grad_ckpt"].as_bool().unwrap_or(false);
            t.attention = attention;
            t.lora = lora;
        }))
    };
    let tensor = &record["tensor"];
    let cuda = &record["cuda"];
    let peak_where = match (tensor["peak_phase"].as_str(), tensor["peak_op"].as_str()) {
        (Some(phase), Some(op)) => Some(format!("{phase} / {op}")),
        (Some(phase), None) => Some(phase.to_owned()),
        _ => None,
    };
    let measured = Measured {
        tensor_peak_bytes: tensor["peak_bytes_rounded"].as_u64(),
        peak_where,
        cuda_allocated_bytes: cuda["max_memory_allocated"].as_u64(),
        cuda_reserved_bytes: cuda["max_memory_reserved"].as_u64(),
        device_used_bytes: cuda["device_peak_estimate"].as_u64(),
        params_total: record["params"]["total"].as_u64(),
    };
    Ok(MeasuredCase {
        id: record["id"].as_str().unwrap_or_default().to_owned(),
        backend: record["backend"].as_str().unwrap_or("unknown").to_owned(),
        model_type: spec.model_type.clone(),
        mode,
        spec,
        workload,
        measured,
    })
}

/// Generation with float weights and a cache of the same type.
fn float_inference(
    dtype: FloatType,
    batch: u64,
    prompt: u64,
    generated: u64,
    attention: AttentionImpl,
) -> Workload {
    Workload::Inference(Inference::default().with(|i| {
        i.weights = WeightFormat::Float(dtype);
        i.kv_cache = KvCacheType::Float(dtype);
        i.batch_size = batch;
        i.prompt_len = prompt;
        i.gen_len = generated;
        i.attention = attention;
    }))
}

/// PEFT's `target_modules`: `"all-linear"`, one name, or a list of names.
fn lora_targets(value: &Value) -> Option<LoraTargets> {
    match value {
        Value::String(all) if all == "all-linear" => Some(LoraTargets::AllLinear),
        Value::String(one) => Some(LoraTargets::Modules(vec![one.clone()])),
        Value::Array(names) => Some(LoraTargets::Modules(
            names.iter().filter_map(Value::as_str).map(str::to_owned).collect(),
        )),
        _ => None,
    }
}
