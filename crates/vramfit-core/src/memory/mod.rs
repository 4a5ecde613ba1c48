/*!
GPU memory of a workload: every component in bytes, the phases of the run,
and the peak at three levels comparable with measurements.

- `peak_allocated_bytes`: the most bytes held by tensors at once, what
  `torch.cuda.max_memory_allocated()` reports (each tensor rounded to 512 B;
  the cuBLAS workspace included, as PyTorch allocates it through its allocator).
- `peak_reserved_bytes`: plus what the caching allocator keeps cached
  (`max_memory_reserved()`).
- `device_total_bytes`: plus the CUDA context and memory outside PyTorch's
  allocator: what `nvidia-smi` shows and what decides an out-of-memory error.

The peak is persistent memory plus the worst phase, not a sum of every
component: a training step's forward, backward and optimizer step, or a
generation's prefill and decode, each hold a different set of tensors.
*/

pub(crate) mod inference;
pub mod runtime;
pub(crate) mod trace;
pub(crate) mod training;
pub(crate) mod weights;

use serde::{Deserialize, Serialize};

use crate::dtype::{FloatType, WeightFormat};
use crate::error::CoreError;
use crate::lora::{self, LoraConfig};
use crate::memory::runtime::{Runtime, reserved_bytes};
use crate::memory::trace::rounded;
use crate::memory::training::{TraceSetup, trace_training};
use crate::memory::weights::{
    ParamTensor, copy_bytes, optimizer_bytes, param_tensors, weight_bytes,
};
use crate::params::count_params;
use crate::spec::ModelSpec;
use crate::workload::{Inference, Method, Training, Workload};

/// One component of memory, with the formula that gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Part {
    /// What it is (`weights`, `optimizer states`, `kv cache`, ...).
    pub name: String,
    /// Bytes.
    pub bytes: u64,
    /// How the bytes were computed, in words.
    pub formula: String,
}

/// The memory held at the worst moment of one phase.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Phase {
    /// `forward`, `backward`, `optimizer_step`, `prefill`, `decode`, ...
    pub name: String,
    /// Allocated bytes at that moment.
    pub bytes: u64,
    /// What makes up those bytes.
    pub parts: Vec<Part>,
}

/// The estimate for one GPU.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct MemoryEstimate {
    /// Parameters of the model as run (base plus adapters).
    pub params_total: u64,
    /// Trainable parameters (0 for inference).
    pub params_trainable: u64,
    /// Every phase, with its composition.
    pub phases: Vec<Phase>,
    /// The phase where the peak falls.
    pub peak_phase: String,
    /// Peak bytes held by tensors (`max_memory_allocated`).
    pub peak_allocated_bytes: u64,
    /// The same without the cuBLAS workspace: what a live-tensor tracker sees.
    pub tensor_peak_bytes: u64,
    /// Peak bytes reserved by the caching allocator (`max_memory_reserved`).
    pub peak_reserved_bytes: u64,
    /// What the device holds at the peak (`nvidia-smi`): reserved + context + paged memory.
    pub device_total_bytes: u64,
    /// The CUDA context and libraries outside the allocator.
    pub cuda_context_bytes: u64,
    /// Memory outside the allocator that the workload adds (paged optimizer states).
    pub outside_allocator_bytes: u64,
    /// Assumptions worth knowing about this estimate.
    pub notes: Vec<String>,
}

impl MemoryEstimate {
    /// The parts of the peak phase.
    pub fn peak_parts(&self) -> &[Part] {
        self.phases.iter().find(|p| p.name == self.peak_phase).map_or(&[], |p| p.parts.as_slice())
    }
}

/// Largest token count per micro-batch accepted (2⁴⁰): far beyond any real
/// run, small enough that byte products stay exact.
const MAX_TOKENS: u128 = 1 << 40;

/// Estimates `workload` on `spec` for one GPU.
pub fn estimate(
    spec: &ModelSpec,
    workload: &Workload,
    runtime: &Runtime,
) -> Result<MemoryEstimate, CoreError> {
    match workload {
        Workload::Inference(inference) => estimate_inference(spec, inference, runtime),
        Workload::Training(training) => estimate_training(spec, training, runtime),
    }
}

fn positive(value: u64, setting: &'static str) -> Result<u128, CoreError> {
    if value == 0 {
        return Err(CoreError::InvalidWorkload { setting, reason: "must be at least 1".into() });
    }
    Ok(u128::from(value))
}

fn tokens_within_limit(batch: u128, seq: u128, setting: &'static str) -> Result<(), CoreError> {
    if batch.checked_mul(seq).is_none_or(|tokens| tokens > MAX_TOKENS) {
        return Err(CoreError::InvalidWorkload {
            setting,
            reason: format!(
                "{batch} × {seq} tokens per step is beyond any real workload (limit 2^40)"
            ),
        });
    }
    Ok(())
}

/// A model with a learned position table cannot run past it (GPT-2's `wpe`
/// raises an index error); rotary models can, so only learned positions are checked.
fn within_positions(
    spec: &ModelSpec,
    tokens: u128,
    setting: &'static str,
) -> Result<(), CoreError> {
    if spec.positions == crate::spec::PositionEncoding::Learned
        && let Some(limit) = spec.max_position_embeddings
        && tokens > u128::from(limit)
    {
        return Err(CoreError::InvalidWorkload {
            setting,
            reason: format!(
                "{tokens} tokens exceed the model's {limit} learned positions (n_positions / max_position_embeddings)"
            ),
        });
    }
    Ok(())
}

fn to_u64(bytes: u128, what: &'static str) -> Result<u64, CoreError> {
    u64::try_from(bytes).map_err(|_| CoreError::Overflow { what })
}

/// Assembles phases from parts, checking sizes.
struct Ledger {
    phases: Vec<Phase>,
}

impl Ledger {
    fn phase(&mut self, name: &str, parts: Vec<(String, u128, String)>) -> Result<(), CoreError> {
        let mut out = Vec::new();
        let mut total = 0u128;
        for (part, bytes, formula) in parts {
            if bytes == 0 {
                continue;
            }
            total += bytes;
            out.push(Part { name: part, bytes: to_u64(bytes, "memory estimate")?, formula });
        }
        self.phases.push(Phase {
            name: name.to_owned(),
            bytes: to_u64(total, "memory estimate")?,
            parts: out,
        });
        Ok(())
    }

    fn finish(
        self,
        runtime: &Runtime,
        params_total: u64,
        params_trainable: u64,
        outside_allocator: u128,
        notes: Vec<String>,
    ) -> Result<MemoryEstimate, CoreError> {
        let peak = self
            .phases
            .iter()
            .max_by_key(|p| p.bytes)
            .ok_or(CoreError::Overflow { what: "memory estimate" })?;
        let peak_allocated = peak.bytes;
        let peak_phase = peak.name.clone();
        let reserved = reserved_bytes(peak_allocated, runtime);
        let outside = to_u64(outside_allocator, "memory estimate")?;
        let device_total = reserved
            .checked_add(runtime.cuda_context_bytes)
            .and_then(|t| t.checked_add(outside))
            .ok_or(CoreError::Overflow { what: "device memory total" })?;
        Ok(MemoryEstimate {
            params_total,
            params_trainable,
            phases: self.phases,
            peak_phase,
            peak_allocated_bytes: peak_allocated,
            tensor_peak_bytes: peak_allocated.saturating_sub(runtime.cublas_workspace_bytes),
            peak_reserved_bytes: reserved,
            device_total_bytes: device_total,
            cuda_context_bytes: runtime.cuda_context_bytes,
            outside_allocator_bytes: outside,
            notes,
        })
    }
}

fn grouped(n: u128) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The formula of unquantized weights, in words.
fn float_weights_formula(params: u64, ty: FloatType) -> String {
    format!(
        "{} params × {} B ({}), each tensor rounded to 512 B",
        grouped(u128::from(params)),
        ty.bytes(),
        ty.torch_name()
    )
}

/// Three int64 tensors of `batch × tokens`: `input_ids`, `attention_mask` and
/// `labels` in a Trainer batch, or `input_ids`, `attention_mask` and the
/// `position_ids` that `generate()` derives.
pub(crate) fn token_inputs(batch: u128, tokens: u128) -> u128 {
    3 * rounded(batch * tokens * 8)
}

/// Buffers every rotary model registers (`inv_freq` and `original_inv_freq`,
/// `head_dim / 2` fp32 each, `*RotaryEmbedding.__init__`).
fn buffer_bytes(spec: &ModelSpec) -> u128 {
    if spec.positions != crate::spec::PositionEncoding::Rotary {
        return 0;
    }
    let head_dim = spec.layers.first().map_or(0, |g| u128::from(g.layer.attention.head_dim));
    2 * rounded(head_dim / 2 * 4)
}

fn estimate_training(
    spec: &ModelSpec,
    training: &Training,
    runtime: &Runtime,
) -> Result<MemoryEstimate, CoreError> {
    let batch = positive(training.batch_size, "--batch-size")?;
    let seq = positive(training.seq_len, "--seq-len")?;
    positive(training.grad_accum, "--grad-accum")?;
    tokens_within_limit(batch, seq, "--batch-size × --seq-len")?;
    within_positions(spec, seq, "--seq-len")?;
    let precision = training.precision;
    // Full fine-tuning keeps every parameter in the precision's parameter type (fp32
    // master weights for `-mixed`). LoRA loads the frozen base in the half type under
    // mixed precision (the PEFT/TRL recipe: `torch_dtype=bfloat16` with `bf16=True`);
    // the adapters are fp32 either way.
    let param_ty = match (training.method, precision.autocast_type()) {
        // peft's `prepare_model_for_kbit_training` casts every non-quantized parameter to fp32.
        (Method::Qlora, _) => FloatType::F32,
        (Method::Full, _) | (_, None) => precision.param_type(),
        (_, Some(half)) => half,
    };
    let base = count_params(spec)?;
    let tensors = param_tensors(spec);
    let mut notes = Vec::new();

    // Adapters and what they adapt.
    let lora_config: Option<&LoraConfig> = match (training.method, &training.lora) {
        (Method::Full, None) => None,
        (Method::Full, Some(_)) => {
            return Err(CoreError::InvalidWorkload {
                setting: "--method",
                reason: "LoRA flags were given with full fine-tuning; use --method lora or qlora"
                    .into(),
            });
        }
        (_, Some(config)) => Some(config),
        (_, None) => {
            return Err(CoreError::InvalidWorkload {
                setting: "--lora-targets",
                reason: "LoRA and QLoRA need adapters (a rank and target modules)".into(),
            });
        }
    };
    if training.method == Method::Qlora && precision == crate::workload::Precision::Fp32 {
        return Err(CoreError::InvalidWorkload {
            setting: "--precision",
            reason: "QLoRA computes in bf16 or fp16 (bnb_4bit_compute_dtype); use bf16, fp16 or their -mixed forms"
                .into(),
        });
    }
    let (resolution, adapter_tensors, trainable) = match lora_config {
        Some(config) => {
            let resolution = lora::resolve(spec, config)?;
            let (params, adapters) = lora::adapters(spec, config)?;
            let tensors: Vec<ParamTensor> = adapters
                .iter()
                .map(|a| ParamTensor {
                    numel: u128::from(a.numel),
                    count: u128::from(a.count),
                    ..ParamTensor::default()
                })
                .collect();
            (Some(resolution), tensors, params.trainable)
        }
        None => (None, Vec::new(), base.total),
    };

    // Weights and the trainable set.
    let quantized = training.method == Method::Qlora;
    let (weights, weights_formula) = if quantized {
        // peft's `prepare_model_for_kbit_training` casts every non-quantized parameter to fp32.
        let bytes = weight_bytes(&tensors, WeightFormat::Nf4, FloatType::F32)
            .ok_or(CoreError::Overflow { what: "weight bytes" })?;
        (bytes, "linear weights in NF4 (4 bits + 64-element block absmax, double-quantized); embeddings, norms and lm_head in fp32 (peft prepare_model_for_kbit_training)".to_owned())
    } else {
        let bytes = weight_bytes(&tensors, WeightFormat::Float(param_ty), param_ty)
            .ok_or(CoreError::Overflow { what: "weight bytes" })?;
        (bytes, float_weights_formula(base.total, param_ty))
    };
    let (train_set, train_ty) = if resolution.is_some() {
        // peft keeps adapters in fp32 (`autocast_adapter_dtype=True`).
        (adapter_tensors.as_slice(), FloatType::F32)
    } else {
        (tensors.as_slice(), param_ty)
    };
    let adapters = if resolution.is_some() { copy_bytes(train_set, FloatType::F32) } else { 0 };
    let grads = copy_bytes(train_set, train_ty);
    let optimizer =
        optimizer_bytes(training.optimizer, training.optimizer_impl, train_set, train_ty);

    // Activations.
    let lora_use = match (&resolution, lora_config) {
        (Some(resolution), Some(config)) => Some((resolution, config.rank, config.dora)),
        _ => None,
    };
    let setup = TraceSetup {
        batch,
        seq,
        param_ty,
        autocast: precision.autocast_type(),
        full: training.method == Method::Full,
        lora: lora_use,
        quantized_compute: quantized
            .then(|| precision.autocast_type().unwrap_or(precision.param_type())),
        input_requires_grad: quantized && training.grad_checkpointing,
        attention: training.attention,
        checkpointing: training.grad_checkpointing,
        cpu_kernels: runtime.kernels != runtime::Kernels::Cuda,
        typed_dropout_masks: runtime.kernels != runtime::Kernels::Cuda,
    };
    let trace = trace_training(spec, &setup);
    let inputs = token_inputs(batch, seq);
    let buffers = buffer_bytes(spec);
    let workspace = u128::from(runtime.cublas_workspace_bytes);
    let accumulated = if training.grad_accum > 1 { grads } else { 0 };

    let t = train_ty.torch_name();
    let persistent = |with_states: bool| {
        let mut parts = vec![
            ("weights".to_owned(), weights, weights_formula.clone()),
            (
                "lora adapters".to_owned(),
                adapters,
                format!("{} trainable params × 4 B (fp32)", grouped(u128::from(trainable))),
            ),
            ("buffers".to_owned(), buffers, "rotary inv_freq buffers".to_owned()),
            (
                "inputs".to_owned(),
                inputs,
                "input_ids, attention_mask, labels: 3 × batch × seq × 8 B".to_owned(),
            ),
            (
                "cuBLAS workspace".to_owned(),
                workspace,
                "CUBLAS_WORKSPACE_CONFIG default, via the caching allocator".to_owned(),
            ),
        ];
        if with_states {
            parts.push((
                "optimizer states".to_owned(),
                optimizer.states,
                format!(
                    "{} states for {} trainable params ({t})",
                    training.optimizer.name(),
                    grouped(u128::from(trainable))
                ),
            ));
        }
        parts
    };
    let autocast_copies = (
        "autocast weight copies".to_owned(),
        trace.autocast_saved,
        "half-precision copies of the weights that autocast makes and backward keeps (2 B × linear weights)".to_owned(),
    );
    let activation_part = |bytes: u128| {
        (
            "activations".to_owned(),
            bytes - trace.autocast_saved,
            if training.grad_checkpointing {
                "tensors autograd keeps: each checkpointed layer's input, the final norm and head, the fp32 log-softmax".to_owned()
            } else {
                "tensors autograd keeps for backward, traced op by op through every layer, incl. the fp32 log-softmax of the loss".to_owned()
            },
        )
    };
    let grads_part = |bytes: u128, label: &str| {
        (
            "gradients".to_owned(),
            bytes,
            format!(
                "{label}: {} trainable params × {} B ({t})",
                grouped(u128::from(trainable)),
                train_ty.bytes()
            ),
        )
    };

    let mut ledger = Ledger { phases: Vec::new() };
    let mut forward = persistent(true);
    forward.push(grads_part(accumulated, "accumulated from earlier micro-batches"));
    forward.push(activation_part(trace.saved));
    forward.push(autocast_copies.clone());
    forward.push((
        "logits at the loss".to_owned(),
        trace.loss_transient,
        "batch × seq × vocab logits in the compute type, and their fp32 copy (`logits.float()`)"
            .to_owned(),
    ));
    forward.push((
        "autocast weight cache".to_owned(),
        trace.autocast_cache,
        "half copies of trainable weights that autocast caches for the forward and backward does not keep".to_owned(),
    ));
    forward.push((
        "dequantized weight".to_owned(),
        trace.largest_transient,
        "the largest 4-bit weight dequantized for its matmul".to_owned(),
    ));
    ledger.phase("forward", forward)?;

    let mut backward = persistent(true);
    backward.push(grads_part(accumulated, "accumulated from earlier micro-batches"));
    backward.push(activation_part(trace.saved));
    backward.push(autocast_copies.clone());
    backward.push((
        "logit gradients".to_owned(),
        trace.logit_grads,
        "2 × batch × seq × vocab × 4 B: nll_loss and log_softmax gradients in fp32".to_owned(),
    ));
    ledger.phase("backward", backward)?;

    if training.grad_checkpointing {
        let mut recompute = persistent(true);
        recompute.push(grads_part(grads, "all trainable params (upper bound)"));
        recompute.push(activation_part(trace.saved - trace.log_softmax));
        recompute.push(autocast_copies.clone());
        recompute.push((
            "recomputed layer".to_owned(),
            trace.recomputed_layer,
            "one decoder layer's saved tensors, rebuilt during backward".to_owned(),
        ));
        recompute.push((
            "dequantized weight".to_owned(),
            trace.largest_transient,
            "the largest 4-bit weight dequantized for its matmul".to_owned(),
        ));
        ledger.phase("backward.recompute", recompute)?;
    }

    // The end of backward: every gradient exists. A tied embedding receives two
    // gradients (from the head, then from the embedding lookup), and autograd's
    // `AccumulateGrad` sums them out of place: the old gradient, the new one and
    // their sum coexist, two table-sized tensors beyond the final gradient.
    let tied_sum = if training.method == Method::Full && spec.lm_head.tied {
        let table = u128::from(spec.vocab_size) * u128::from(spec.hidden_size);
        2 * rounded(table * u128::from(train_ty.bytes()))
    } else {
        0
    };
    let mut end = persistent(true);
    end.push(grads_part(grads, "all trainable params"));
    end.push((
        "tied-embedding gradient sum".to_owned(),
        tied_sum,
        "2 × vocab × hidden: the head's and the lookup's gradients of the tied table, summed out of place".to_owned(),
    ));
    ledger.phase("backward.end", end)?;

    let mut step = persistent(true);
    step.push(grads_part(grads, "all trainable params"));
    step.push((
        "optimizer step temporaries".to_owned(),
        optimizer.step_temporaries,
        match training.optimizer_impl {
            crate::workload::OptimizerImpl::Foreach => {
                "foreach step: one temporary as large as all trainable params (`_foreach_sqrt`)"
                    .to_owned()
            }
            crate::workload::OptimizerImpl::Forloop => {
                "for-loop step: temporaries of the largest parameter".to_owned()
            }
            crate::workload::OptimizerImpl::Fused => "fused step: none".to_owned(),
        },
    ));
    ledger.phase("optimizer_step", step)?;

    if optimizer.paged_states > 0 {
        notes.push("paged 8-bit optimizer states live in unified memory: counted on the device, outside the allocator; under memory pressure the driver can page them to the host".to_owned());
    }
    if quantized {
        notes.push("QLoRA follows peft's prepare_model_for_kbit_training: non-quantized parameters in fp32".to_owned());
    }
    if training.grad_checkpointing {
        notes.push("with gradient checkpointing, the recompute phase counts all gradients at once (an upper bound)".to_owned());
    }
    let total = base
        .total
        .checked_add(if resolution.is_some() { trainable } else { 0 })
        .ok_or(CoreError::Overflow { what: "parameter count" })?;
    ledger.finish(runtime, total, trainable, optimizer.paged_states, notes)
}

fn estimate_inference(
    spec: &ModelSpec,
    inference: &Inference,
    runtime: &Runtime,
) -> Result<MemoryEstimate, CoreError> {
    let batch = positive(inference.batch_size, "--batch-size")?;
    let prompt = positive(inference.prompt_len, "--prompt-len")?;
    tokens_within_limit(
        batch,
        prompt + u128::from(inference.gen_len),
        "--batch-size × (--prompt-len + --gen-len)",
    )?;
    within_positions(
        spec,
        prompt + u128::from(inference.gen_len).saturating_sub(1),
        "--prompt-len + --gen-len",
    )?;
    let base = count_params(spec)?;
    let tensors = param_tensors(spec);
    let compute = inference.weights.compute_type();
    let weights = weight_bytes(&tensors, inference.weights, compute)
        .ok_or(CoreError::Overflow { what: "weight bytes" })?;
    let weights_formula = if inference.weights.is_quantized() {
        format!(
            "linear weights in {} with their scales; embeddings, norms and lm_head in {}",
            inference.weights.name(),
            compute.torch_name()
        )
    } else {
        float_weights_formula(base.total, compute)
    };
    let workspace = u128::from(runtime.cublas_workspace_bytes);
    let buffers = buffer_bytes(spec);
    let mut ledger = Ledger { phases: Vec::new() };
    for peak in inference::inference_peaks(spec, inference, compute) {
        ledger.phase(
            peak.phase,
            vec![
                ("weights".to_owned(), weights, weights_formula.clone()),
                ("buffers".to_owned(), buffers, "rotary inv_freq buffers".to_owned()),
                ("cuBLAS workspace".to_owned(), workspace, "CUBLAS_WORKSPACE_CONFIG default, via the caching allocator".to_owned()),
                (
                    "kv cache".to_owned(),
                    peak.kv_cache,
                    format!(
                        "2 (k, v) × layers × kv heads × head_dim × batch × tokens × {} B",
                        inference.kv_cache.bytes()
                    ),
                ),
                ("activations".to_owned(), peak.activations, match peak.phase {
                    "decode" => "the cache tensor being grown by torch.cat, one token's hidden states, last-position logits".to_owned(),
                    "prefill.logits" => "logits of the prompt (batch × prompt × vocab) and the final hidden states".to_owned(),
                    _ => "in the last layer: 4 hidden-size tensors and the MLP's act, up and product (or attention scores when eager)".to_owned(),
                }),
                ("inputs".to_owned(), peak.inputs, "input_ids, attention_mask, position_ids (int64)".to_owned()),
            ],
        )?;
    }
    let mut notes = Vec::new();
    if spec
        .layers
        .iter()
        .any(|g| matches!(g.layer.attention.kind, crate::spec::AttentionKind::Latent(_)))
    {
        notes.push("transformers caches DeepSeek's decompressed per-head keys and values; vLLM/SGLang cache the 576-wide latent instead".to_owned());
    }
    ledger.finish(runtime, base.total, 0, 0, notes)
}
