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
use crate::parallel::{self, Offload, Strategy};
pub(crate) mod trace;
pub(crate) mod training;
pub(crate) mod weights;

use serde::{Deserialize, Serialize};

use crate::dtype::{FloatType, WeightFormat};
use crate::error::{CoreError, Setting};
use crate::lora::{self, LoraConfig};
use crate::memory::runtime::{Runtime, reserved_bytes};
use crate::memory::trace::rounded;
use crate::memory::training::{TraceSetup, trace_training};
use crate::memory::weights::{
    ParamTensor, copy_bytes, optimizer_bytes, param_tensors, weight_bytes,
};
use crate::params::count_params;
use crate::spec::{Component, ModelSpec};
use crate::workload::{Inference, Method, Precision, Training, Workload};

/// One component of memory, with the formula that gave it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
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
    /// Memory outside the allocator that the workload adds (paged optimizer states, NCCL buffers).
    pub outside_allocator_bytes: u64,
    /// Host (CPU) memory the workload uses for offloaded states and parameters.
    pub host_bytes: u64,
    /// Training: weights, adapters, gradients and optimizer states this GPU
    /// holds (no activations, no temporaries); 0 for inference. The solvers
    /// use it as a lower bound: however a job is sharded, the GPUs together
    /// hold at least the one-GPU figure.
    pub model_state_bytes: u64,
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

fn positive(value: u64, setting: Setting) -> Result<u128, CoreError> {
    if value == 0 {
        return Err(CoreError::InvalidWorkload { setting, reason: "must be at least 1".into() });
    }
    Ok(u128::from(value))
}

fn tokens_within_limit(batch: u128, seq: u128, setting: Setting) -> Result<(), CoreError> {
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
fn within_positions(spec: &ModelSpec, tokens: u128, setting: Setting) -> Result<(), CoreError> {
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
            host_bytes: 0,
            model_state_bytes: 0,
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

/// `spec` reduced to `count` copies of one decoder layer: no embeddings, final
/// norm, head or extra modules.
pub(crate) fn layers_only(
    spec: &ModelSpec,
    group: &crate::spec::LayerGroup,
    count: u64,
) -> ModelSpec {
    ModelSpec {
        layers: vec![crate::spec::LayerGroup { count, layer: group.layer.clone() }],
        embeddings: Vec::new(),
        final_norm: Vec::new(),
        extra_modules: Vec::new(),
        lm_head: crate::spec::LmHead { tied: true, additional: None, ..spec.lm_head.clone() },
        ..spec.clone()
    }
}

/// `spec` without its vision towers and projectors: what a text-only batch runs.
fn text_only(spec: &ModelSpec) -> ModelSpec {
    let mut text = spec.clone();
    text.extra_modules.retain(|m| m.component != Component::Vision);
    text
}

/// Parameters of `spec` as counted, 0 if they overflow (callers bound sizes first).
fn params_of(spec: &ModelSpec) -> u128 {
    count_params(spec).map_or(0, |c| u128::from(c.total))
}

/// Parameter bytes of the largest decoder layer in `ty` (what sharded training gathers).
fn largest_layer_bytes(spec: &ModelSpec, ty: FloatType) -> u128 {
    let largest = spec.layers.iter().map(|g| params_of(&layers_only(spec, g, 1))).max();
    largest.unwrap_or(0) * u128::from(ty.bytes())
}

/// Parameter bytes outside the decoder layers (embeddings, final norm, head) in `ty`.
fn root_bytes(spec: &ModelSpec, ty: FloatType) -> u128 {
    let layers: u128 = spec.layers.iter().map(|g| params_of(&layers_only(spec, g, g.count))).sum();
    params_of(spec).saturating_sub(layers) * u128::from(ty.bytes())
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

/// Buffers the model registers, in bytes; `ty` is the type the model was built in.
///
/// - Rotary models: `inv_freq` and `original_inv_freq`, `head_dim / 2` fp32 each
///   (`*RotaryEmbedding.__init__`).
/// - Sinusoidal positions (XGLM): the whole table, `(max_position_embeddings + 2) ×
///   hidden` (`XGLMSinusoidalPositionalEmbedding.__init__` calls `make_weights` for
///   `num_positions + self.offset` rows, `offset = 2`, and `emb.to(torch.get_default_dtype())`
///   gives the type the model is built in; registered with `persistent=False`). Measured
///   on `xglm-tiny` (4,198,400 B in fp32) and XGLM-4.5B (bf16 and fp32 builds).
fn buffer_bytes(spec: &ModelSpec, ty: FloatType) -> u128 {
    match spec.positions {
        crate::spec::PositionEncoding::Rotary | crate::spec::PositionEncoding::PartialRotary => {
            let head_dim =
                spec.layers.first().map_or(0, |g| u128::from(g.layer.attention.head_dim));
            2 * rounded(head_dim / 2 * 4)
        }
        crate::spec::PositionEncoding::Sinusoidal => {
            // XGLMConfig's default `max_position_embeddings` is 2048.
            let positions = u128::from(spec.max_position_embeddings.unwrap_or(2048)) + 2;
            rounded(positions * u128::from(spec.hidden_size) * u128::from(ty.bytes()))
        }
        crate::spec::PositionEncoding::Learned => 0,
    }
}

/// Which part of the model a pipeline stage holds, and how many micro-batches'
/// activations it keeps at once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct StagePart {
    /// The stage starts with the token embeddings.
    pub(crate) first: bool,
    /// The stage ends with the final norm, the head and the loss.
    pub(crate) last: bool,
    /// Micro-batches whose activations are alive at once (1F1B: `pp − stage index`).
    pub(crate) in_flight: u128,
    /// Which stage, for notes.
    pub(crate) index: u64,
}

fn estimate_training(
    spec: &ModelSpec,
    training: &Training,
    runtime: &Runtime,
) -> Result<MemoryEstimate, CoreError> {
    let layout = training.layout;
    layout.validate(spec)?;
    let rank = parallel::tensor_parallel_rank(spec, layout.tp);
    if layout.pp <= 1 {
        let whole = StagePart { first: true, last: true, in_flight: 1, index: 0 };
        return estimate_rank(spec, &rank, training, runtime, whole);
    }
    // Pipeline: the first stage keeps the most micro-batches in flight (1F1B), the
    // last holds the head and the loss; one of the two is the worst.
    let layers = parallel::stage_layers(spec.num_layers(), layout.pp);
    let in_flight = u128::from(layout.pp.min(training.grad_accum));
    let first = stage_spec(&rank, 0, layers[0], true, false);
    let last_start = spec.num_layers() - layers[layers.len() - 1];
    let last = stage_spec(&rank, last_start, layers[layers.len() - 1], false, true);
    let first = estimate_rank(
        spec,
        &first,
        training,
        runtime,
        StagePart { first: true, last: false, in_flight, index: 0 },
    )?;
    let last = estimate_rank(
        spec,
        &last,
        training,
        runtime,
        StagePart { first: false, last: true, in_flight: 1, index: layout.pp - 1 },
    )?;
    Ok(if first.device_total_bytes >= last.device_total_bytes { first } else { last })
}

/// The layers `start..start + count` of `spec`, with the embeddings only on the
/// first stage and the final norm and head only on the last (a tied table is held
/// by both, as Megatron-LM does).
fn stage_spec(spec: &ModelSpec, start: u64, count: u64, first: bool, last: bool) -> ModelSpec {
    let mut stage = spec.clone();
    let mut layers = Vec::new();
    let mut index = 0;
    for group in &spec.layers {
        let from = start.max(index);
        let to = (start + count).min(index + group.count);
        if from < to {
            layers.push(crate::spec::LayerGroup { count: to - from, layer: group.layer.clone() });
        }
        index += group.count;
    }
    stage.layers = layers;
    if !first {
        stage.embeddings.clear();
        stage.lm_head.tied = false;
    }
    if !last {
        stage.final_norm.clear();
        stage.lm_head.tied = true;
        stage.lm_head.linear.bias = false;
        stage.lm_head.additional = None;
    }
    stage
}

/// One rank's memory: `whole` gives the counts reported, `spec` the part this
/// rank holds (a tensor-parallel slice, a pipeline stage).
fn estimate_rank(
    whole: &ModelSpec,
    spec: &ModelSpec,
    training: &Training,
    runtime: &Runtime,
    part: StagePart,
) -> Result<MemoryEstimate, CoreError> {
    let batch = positive(training.batch_size, Setting::BatchSize)?;
    let seq = positive(training.seq_len, Setting::SeqLen)?;
    positive(training.grad_accum, Setting::GradAccum)?;
    tokens_within_limit(batch, seq, Setting::TrainingTokens)?;
    within_positions(whole, seq, Setting::SeqLen)?;
    let layout = training.layout;
    let precision = training.precision;
    // Full fine-tuning keeps every parameter in the precision's parameter type (fp32
    // master weights for `-mixed`). LoRA loads the frozen base in the half type under
    // mixed precision (the PEFT/TRL recipe: `torch_dtype=bfloat16` with `bf16=True`);
    // the adapters are fp32 either way.
    // DeepSpeed ZeRO runs mixed precision its own way (the ZeRO paper's accounting):
    // the module in the half type, fp32 master weights inside the optimizer.
    let deepspeed = matches!(layout.strategy, Strategy::Zero1 | Strategy::Zero2 | Strategy::Zero3);
    // DeepSpeed keeps fp32 master partitions whenever the module is half precision
    // (`bf16`/`fp16` enabled, with or without the Trainer's autocast).
    let deepspeed_master =
        deepspeed && training.method == Method::Full && precision != Precision::Fp32;
    let param_ty = match (training.method, precision.autocast_type()) {
        (Method::Full, Some(half)) if deepspeed_master => half,
        // peft's `prepare_model_for_kbit_training` casts every non-quantized parameter to fp32.
        (Method::Qlora, _) => FloatType::F32,
        (Method::Full, _) | (_, None) => precision.param_type(),
        (_, Some(half)) => half,
    };
    let base = count_params(spec)?;
    let whole_base = count_params(whole)?;
    let tensors = param_tensors(spec);
    let mut notes = Vec::new();

    // Adapters and what they adapt.
    let lora_config: Option<&LoraConfig> = match (training.method, &training.lora) {
        (Method::Full, None) => None,
        (Method::Full, Some(_)) => {
            return Err(CoreError::InvalidWorkload {
                setting: Setting::Method,
                reason: "adapters were given with full fine-tuning; use LoRA or QLoRA".into(),
            });
        }
        (_, Some(config)) => Some(config),
        (_, None) => {
            return Err(CoreError::InvalidWorkload {
                setting: Setting::LoraTargets,
                reason: "LoRA and QLoRA need adapters (a rank and target modules)".into(),
            });
        }
    };
    if training.method == Method::Qlora && precision == crate::workload::Precision::Fp32 {
        return Err(CoreError::InvalidWorkload {
            setting: Setting::Precision,
            reason: "QLoRA computes in bf16 or fp16 (bnb_4bit_compute_dtype); use bf16, fp16 or their -mixed forms"
                .into(),
        });
    }
    let (resolution, adapter_tensors, text_adapter_tensors, trainable) = match lora_config {
        Some(config) => {
            let resolution = lora::resolve(spec, config)?;
            let (params, adapters) = lora::adapters(spec, config)?;
            let to_params = |adapters: &[lora::AdapterTensor]| -> Vec<ParamTensor> {
                adapters
                    .iter()
                    .map(|a| ParamTensor {
                        numel: u128::from(a.numel),
                        count: u128::from(a.count),
                        ..ParamTensor::default()
                    })
                    .collect()
            };
            // A text-only batch never runs the vision tower, so the adapters peft put
            // there (`q_proj`/`k_proj`/`v_proj` of SigLIP's attention match attention
            // targets) get no gradient, and torch's optimizers create states only for
            // parameters that have one (`_init_group` skips `p.grad is None`). Measured
            // on Gemma-3-4B LoRA (fake backend): AdamW states cover the language
            // model's adapters alone.
            let text = text_only(spec);
            let text_adapters = if text.extra_modules.len() < spec.extra_modules.len() {
                lora::adapters(&text, config).map_or_else(|_| adapters.clone(), |(_, a)| a)
            } else {
                adapters.clone()
            };
            if text_adapters != adapters {
                notes.push(
                    "text-only batches: the vision tower's adapters get no gradient and no optimizer state"
                        .to_owned(),
                );
            }
            (Some(resolution), to_params(&adapters), to_params(&text_adapters), params.trainable)
        }
        None => (None, Vec::new(), Vec::new(), base.total),
    };

    // Weights and the trainable set.
    let quantized = training.method == Method::Qlora;
    let (weights, weights_formula) = if quantized {
        // peft's `prepare_model_for_kbit_training` casts every non-quantized parameter to fp32.
        let bytes = weight_bytes(&tensors, WeightFormat::Nf4, FloatType::F32)
            .ok_or(CoreError::Overflow { what: "weight bytes" })?;
        let rest = if tensors.iter().any(|t| t.expert_bank) {
            "embeddings, norms, lm_head and the fused MoE expert banks"
        } else {
            "embeddings, norms and lm_head"
        };
        (
            bytes,
            format!(
                "linear weights in NF4 (4 bits + 64-element block absmax, double-quantized); {rest} in fp32 (peft prepare_model_for_kbit_training)"
            ),
        )
    } else {
        let bytes = weight_bytes(&tensors, WeightFormat::Float(param_ty), param_ty)
            .ok_or(CoreError::Overflow { what: "weight bytes" })?;
        (bytes, float_weights_formula(base.total, param_ty))
    };
    // A text-only batch never runs a vision tower or projector: their
    // parameters get no gradient, and torch's optimizers create states lazily,
    // only for parameters that have one (measured on Gemma 3: gradients and
    // AdamW states cover the language model alone).
    let text_params: Vec<ParamTensor> = tensors.iter().copied().filter(|t| !t.vision).collect();
    if training.method == Method::Full && text_params.len() < tensors.len() {
        notes.push(
            "text-only batches: the vision tower gets no gradient and no optimizer state"
                .to_owned(),
        );
    }
    let (train_set, train_ty) = if resolution.is_some() {
        // peft keeps adapters in fp32 (`autocast_adapter_dtype=True`).
        (text_adapter_tensors.as_slice(), FloatType::F32)
    } else {
        (text_params.as_slice(), param_ty)
    };
    let train_numel: u128 = train_set.iter().map(|t| t.numel * t.count).sum();
    let mut adapters =
        if resolution.is_some() { copy_bytes(&adapter_tensors, FloatType::F32) } else { 0 };
    let mut grads = copy_bytes(train_set, train_ty);
    // DeepSpeed's optimizer works on the fp32 master copy, so its states are fp32.
    let state_ty = if deepspeed_master { FloatType::F32 } else { train_ty };
    let mut optimizer =
        optimizer_bytes(training.optimizer, training.optimizer_impl, train_set, state_ty);
    if deepspeed_master {
        // The fp32 master copy lives with the optimizer states (and is sharded with them).
        optimizer.states += copy_bytes(train_set, FloatType::F32);
    }

    // Data-parallel sharding over the shard group.
    let group = u128::from(layout.shard_group());
    let shards = layout.strategy.shards();
    let mut weights = weights;
    let mut gathered = 0u128;
    let mut comm_buffers = 0u128;
    let mut host = 0u128;
    let compute_ty = precision.autocast_type().unwrap_or(param_ty);
    let largest_layer = largest_layer_bytes(spec, compute_ty);
    let shards_grads = layout.gpus > 1 && group > 1 && shards.grads;
    if layout.gpus > 1 && group > 1 {
        if shards.params {
            weights = weights.div_ceil(group);
            adapters = adapters.div_ceil(group);
            // Gathered for compute: the current and the prefetched layer (FSDP2 prefetches one
            // layer; ZeRO-3's prefetch bucket holds about one), and the root group of
            // embeddings, final norm and head that FSDP keeps gathered through the step.
            let root = root_bytes(spec, compute_ty);
            gathered = 2 * largest_layer + root;
        } else if layout.strategy == Strategy::FsdpShardGradOp {
            // SHARD_GRAD_OP keeps the gathered parameters from forward to backward.
            gathered = weight_bytes(&tensors, WeightFormat::Float(compute_ty), compute_ty)
                .ok_or(CoreError::Overflow { what: "weight bytes" })?;
            weights = weights.div_ceil(group);
        }
        if shards.grads {
            grads = grads.div_ceil(group);
            comm_buffers = if deepspeed {
                // DeepSpeed's reduce buckets: two (`overlap_comm`, on in the HF
                // Trainer's ZeRO configs) of `reduce_bucket_size` elements, which the
                // Trainer's "auto" sets to hidden²; half-precision gradients.
                let hidden = u128::from(whole.hidden_size);
                2 * rounded((hidden * hidden).min(train_numel) * u128::from(compute_ty.bytes()))
            } else {
                // FSDP: the reduce-scatter input, one layer's unsharded gradients.
                largest_layer
            };
        }
        if shards.states {
            optimizer.states = optimizer.states.div_ceil(group);
            optimizer.step_temporaries = optimizer.step_temporaries.div_ceil(group);
        }
    }
    if layout.strategy == Strategy::Ddp && layout.data_parallel() > 1 {
        // DDP copies gradients into flat communication buckets
        // (`gradient_as_bucket_view=False`, the default): a second gradient copy.
        comm_buffers = grads;
    }
    let comm_formula = match layout.strategy {
        Strategy::Ddp => "DDP gradient buckets: a flat copy of all gradients",
        Strategy::Zero1 | Strategy::Zero2 | Strategy::Zero3 => {
            "2 DeepSpeed reduce buckets of hidden² half-precision elements (HF \"auto\", overlap_comm)"
        }
        _ => "one layer's unsharded gradients for reduce-scatter",
    }
    .to_owned();
    if layout.offload != Offload::None {
        // ZeRO-Offload / FSDP CPUOffload: states and the optimizer step run on the
        // host, and the sharded gradient partitions are copied there.
        host += optimizer.states + optimizer.step_temporaries;
        optimizer.states = 0;
        optimizer.step_temporaries = 0;
        if shards_grads {
            host += grads;
            grads = 0;
        }
    }
    if layout.offload == Offload::Params {
        host += weights;
        weights = 0;
        // ZeRO-Infinity and FSDP still bring each layer onto the GPU to compute.
        if gathered == 0 {
            gathered = 2 * largest_layer + root_bytes(spec, compute_ty);
        }
    }

    // Activations. Sharded strategies under mixed precision compute on half-precision
    // parameters (FSDP's `MixedPrecision(param_dtype)` gathers them in the half type,
    // DeepSpeed keeps the module in it): no autocast casts, half activations.
    let sharded_mixed = layout.gpus > 1 && layout.strategy != Strategy::Ddp;
    let (trace_ty, trace_autocast) = match precision.autocast_type() {
        Some(half) if sharded_mixed && training.method == Method::Full => (half, None),
        autocast => (param_ty, autocast),
    };
    let lora_use = match (&resolution, lora_config) {
        (Some(resolution), Some(config)) => Some((resolution, config.rank, config.dora)),
        _ => None,
    };
    let setup = TraceSetup {
        batch,
        seq,
        param_ty: trace_ty,
        autocast: trace_autocast,
        full: training.method == Method::Full,
        lora: lora_use,
        quantized_compute: quantized
            .then(|| precision.autocast_type().unwrap_or(precision.param_type())),
        input_requires_grad: quantized && training.grad_checkpointing,
        attention: training.attention,
        checkpointing: training.grad_checkpointing,
        first: part.first,
        last: part.last,
        cpu_kernels: runtime.kernels != runtime::Kernels::Cuda,
        typed_dropout_masks: runtime.kernels != runtime::Kernels::Cuda,
        watched: runtime.watched,
    };
    let mut trace = trace_training(spec, &setup);
    // Pipeline stages keep the activations of every micro-batch in flight.
    // The other micro-batches keep all they saved while this one is in a layer;
    // with checkpointing, the moments count the recomputed layer's own part.
    let other_batches = part.in_flight.max(1) - 1;
    let (saved_one, autocast_one) = (trace.saved, trace.autocast_saved);
    let others_saved = other_batches * saved_one;
    trace.saved += others_saved;
    trace.autocast_saved += other_batches * autocast_one;
    trace.layers_saved += others_saved;
    trace.layers_autocast_saved += other_batches * autocast_one;
    if !training.grad_checkpointing {
        trace.forward.kept_in_layer += others_saved;
        trace.backward.kept_in_layer += others_saved;
        trace.backward_by_bytes.kept_in_layer += others_saved;
    }
    if layout.pp > 1 {
        notes.push(format!(
            "pipeline stage {} of {} (the worst): {} micro-batch(es) in flight under 1F1B",
            part.index + 1,
            layout.pp,
            part.in_flight
        ));
    }
    let inputs = token_inputs(batch, seq);
    // Buffers are made in the type the model is built in: the module's parameter type,
    // or the compute type for QLoRA (loaded in it before peft casts parameters to fp32).
    let built_ty = if quantized {
        precision.autocast_type().unwrap_or(precision.param_type())
    } else {
        trace_ty
    };
    let buffers = buffer_bytes(spec, built_ty);
    let workspace = u128::from(runtime.cublas_workspace_bytes);
    let accumulated = if training.grad_accum > 1 { grads } else { 0 };

    let t = train_ty.torch_name();
    // Gathered parameters and reduce-scatter buffers exist while forward and
    // backward run: FSDP and ZeRO-3 reshard after backward. DDP's buckets persist.
    let persistent = |computing: bool| {
        let mut parts = vec![
            ("weights".to_owned(), weights, weights_formula.clone()),
            (
                "lora adapters".to_owned(),
                adapters,
                format!("{} trainable params × 4 B (fp32)", grouped(u128::from(trainable))),
            ),
            (
                "buffers".to_owned(),
                buffers,
                "rotary inv_freq buffers, or a sinusoidal position table".to_owned(),
            ),
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
        parts.push((
            "gathered parameters".to_owned(),
            if computing { gathered } else { 0 },
            format!(
                "{} parameters gathered for compute (current and prefetched layer, root group)",
                layout.strategy.name()
            ),
        ));
        parts.push((
            "communication buffers".to_owned(),
            if computing || layout.strategy == Strategy::Ddp { comm_buffers } else { 0 },
            comm_formula.clone(),
        ));
        parts.push((
            "optimizer states".to_owned(),
            optimizer.states,
            format!(
                "{} states for {} trainable params ({t})",
                training.optimizer.name(),
                grouped(u128::from(trainable))
            ),
        ));
        parts
    };
    let autocast_copies = |bytes: u128| {
        (
            "autocast weight copies".to_owned(),
            bytes,
            "half-precision copies of the weights that autocast makes and backward keeps (2 B × linear weights)".to_owned(),
        )
    };
    // `bytes` kept, of which `autocast` are autocast's weight copies.
    let activation_part = |bytes: u128, autocast: u128| {
        (
            "activations".to_owned(),
            bytes - autocast,
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

    // What every phase that runs the model holds: the persistent parts with the
    // layers being computed, gradients so far, saved activations (`kept`, of which
    // `autocast` are autocast's weight copies).
    let computing = |grads: u128, label: &str, kept: u128, autocast: u128| {
        let mut parts = persistent(true);
        parts.push(grads_part(grads, label));
        parts.push(activation_part(kept, autocast));
        parts.push(autocast_copies(autocast));
        parts
    };
    let backward_set_part = |bytes: u128| {
        (
            "backward gradients".to_owned(),
            bytes,
            "inside a layer's backward, beside the residual stream's gradient: an adapted linear's output and input gradients (the adapter's through its casts, then the frozen base's), an MLP product's incoming and factor gradients, an attention softmax's or probabilities' gradients, or an adapted expert bank's gradient and its input's".to_owned(),
        )
    };
    let temporaries_part = |bytes: u128, when: &str| {
        (
            "layer temporaries".to_owned(),
            bytes,
            format!(
                "an adapted linear's input, peft's fp32 copy of it, the base's output and the hidden states the frames hold, alive while the adapter {when}"
            ),
        )
    };
    let mut ledger = Ledger { phases: Vec::new() };
    let mut forward = computing(
        accumulated,
        "accumulated from earlier micro-batches",
        trace.saved,
        trace.autocast_saved,
    );
    forward.push((
        "logits at the loss".to_owned(),
        trace.loss_transient,
        "batch × seq × vocab logits in the compute type, their fp32 copy (`logits.float()`), and the final norm's output the model returns".to_owned(),
    ));
    forward.push((
        "autocast weight cache".to_owned(),
        trace.autocast_cache,
        "half copies of trainable weights that autocast caches for the forward and backward does not keep".to_owned(),
    ));
    // No 4-bit weight is dequantized at the loss: the head is never quantized.
    ledger.phase("forward", forward)?;

    // Inside the last layers (without checkpointing): what they saved up to the
    // worst moment, with its temporaries or gradients (`ActivationTrace::forward`,
    // `backward`).
    let in_layers = |kept: u128, working: (String, u128, String)| {
        let mut parts = computing(
            accumulated,
            "accumulated from earlier micro-batches",
            kept,
            trace.layers_autocast_saved.min(kept),
        );
        parts.push(working);
        parts
    };
    if !training.grad_checkpointing && trace.forward.working > 0 {
        let temporaries = temporaries_part(trace.forward.working, "runs");
        ledger.phase("forward.layers", in_layers(trace.forward.kept_in_layer, temporaries))?;
    }

    let mut backward = computing(
        accumulated,
        "accumulated from earlier micro-batches",
        trace.saved,
        trace.autocast_saved,
    );
    backward.push((
        "logit gradients".to_owned(),
        trace.logit_grads,
        "2 × batch × seq × vocab × 4 B: nll_loss and log_softmax gradients in fp32".to_owned(),
    ));
    ledger.phase("backward", backward)?;

    // Later in backward, inside the last layers: the loss, the head and the final norm
    // have released what they kept, and an adapted op's backward holds its gradients
    // beside what the layers saved up to it (`ActivationTrace::backward`).
    // The head's (and a first stage's embedding's) gradients, which exist once backward
    // has passed them, when gradients are not sharded (full fine-tuning).
    let table = |part: bool| {
        if part && training.method == Method::Full && !shards_grads {
            rounded(
                u128::from(spec.vocab_size)
                    * u128::from(spec.hidden_size)
                    * u128::from(train_ty.bytes()),
            )
            .min(grads)
        } else {
            0
        }
    };
    let embedding_grad =
        table(part.first && !spec.embeddings.is_empty() && !(whole.lm_head.tied && part.last));
    let head_grad = table(part.last);
    // A tied head's gradient waits in autograd's buffer until the embedding's arrives;
    // with accumulation it is a new tensor beside the accumulated `.grad` (measured on
    // a tied model's second micro-batch).
    let tied_buffer = if whole.lm_head.tied && part.first && part.last { head_grad } else { 0 };
    // The worst moment inside a layer's backward: with gradients appearing op by
    // op, the one that is worst with them; when they do not (all accumulated from
    // the first micro-batch, or sharded and counted apart), the largest by itself.
    let backward_moment =
        if accumulated > 0 || shards_grads { trace.backward_by_bytes } else { trace.backward };
    if !training.grad_checkpointing && backward_moment.working > 0 {
        // The head's gradient and those of the last layer's weights used after the op
        // exist by then (unsharded gradients).
        let present = if accumulated > 0 {
            accumulated + tied_buffer
        } else if shards_grads {
            0
        } else {
            head_grad + backward_moment.grads_after()
        };
        let mut parts = computing(
            present,
            "the head's and the last layer's after the op, with any accumulated from earlier micro-batches",
            backward_moment.kept_in_layer,
            trace.layers_autocast_saved.min(backward_moment.kept_in_layer),
        );
        parts.push(backward_set_part(backward_moment.working));
        ledger.phase("backward.layers", parts)?;
    }

    if training.grad_checkpointing {
        // Backward recomputes the layers last to first, and its peak falls at
        // one of the two ends: at the last layer, few gradients exist (the
        // head's) and every checkpoint is still kept; at the first layer, every
        // gradient but the embedding's exists and one checkpoint is left. Both
        // ends count the recomputed layer. With sharded gradients, all gradients
        // are counted at once (an upper bound).
        // Backward reaches the layers after the loss, the head and the final norm.
        let kept = trace.layers_saved;
        // Unsharded gradients appear layer by layer as backward goes (full fine-tuning's
        // and adapters' alike); sharded ones are counted all at once (an upper bound).
        let ordered = !shards_grads;
        let (start_grads, start_kept) = if ordered { (head_grad, kept) } else { (grads, kept) };
        // Under 1F1B, the other micro-batches in flight keep all their checkpoints.
        let (end_grads, end_kept) = if ordered {
            // The head's saved autocast copy is gone by then (measured on phi-2).
            (grads - embedding_grad, others_saved + trace.checkpoint)
        } else {
            (grads, kept)
        };
        // The recomputed layer itself, at its worst moment: all of it kept beside a
        // dequantized weight (a frozen 4-bit linear's backward); or, while it is
        // recomputed, its forward temporaries beside the part recomputed so far; or an
        // op's backward gradients (a 4-bit base's dequantized weight among them) beside
        // the part saved up to that op. With trained weights, the layer's own gradients
        // exist only for the weights used after that op: none while it is recomputed.
        let layer_grads = if ordered { trace.layer_grads } else { 0 };
        // The backward moment's own layer: its weights' gradients before the op are not
        // there yet, those after it are.
        let (absent_at_op, after_op) = if ordered {
            let after = backward_moment.grads_after();
            (backward_moment.layer_grads - after, after)
        } else {
            (0, 0)
        };
        // The residual stream's gradient is alive beside a recomputed layer, as beside
        // its forward and backward moments (which count it already).
        let whole = trace.recomputed_layer + trace.largest_transient + trace.stream_grad;
        let refwd = trace.forward.kept_in_layer + trace.forward.working + trace.stream_grad;
        let back = backward_moment.kept_in_layer + backward_moment.working;
        // (moment, its bytes, the layer's own gradients present and absent then); on a
        // tie the earlier end and moment are named.
        let moments = [
            (RecomputeMoment::Whole, whole, 0, layer_grads),
            (RecomputeMoment::Forward, refwd, 0, layer_grads),
            (RecomputeMoment::Backward, back, after_op, absent_at_op),
        ];
        let mut best: Option<(bool, RecomputeMoment, u128, u128)> = None;
        for at_start in [true, false] {
            for (moment, bytes, present, absent) in moments {
                let (grads_now, kept_now) = if at_start {
                    (start_grads + present, start_kept)
                } else {
                    (end_grads.saturating_sub(absent), end_kept)
                };
                // With accumulation every gradient exists from the first micro-batch on
                // (a tied head's new one waits beside them for the embedding's).
                let grads_now = if accumulated > 0 { accumulated + tied_buffer } else { grads_now };
                let total = grads_now + kept_now + bytes;
                if best.is_none_or(|(.., most)| total > most) {
                    best = Some((at_start, moment, grads_now, total));
                }
            }
        }
        let (at_start, moment, grads_now, _) =
            best.unwrap_or((true, RecomputeMoment::Whole, start_grads, 0));
        let label = match (at_start, ordered && layer_grads > 0) {
            (true, false) => "the last layer's recompute: the head's",
            (false, false) => "the first layer's recompute: all but the embedding's",
            (true, true) => {
                "the last layer's recompute: the head's, and the layer's own for the weights backward has passed"
            }
            (false, true) => {
                "the first layer's recompute: all but the embedding's and the layer's own for the weights backward has not reached"
            }
        };
        let kept_now = if at_start { start_kept } else { end_kept };
        let mut recompute =
            computing(grads_now, label, kept_now, trace.layers_autocast_saved.min(kept_now));
        match moment {
            RecomputeMoment::Forward => {
                recompute.push((
                    "recomputed layer".to_owned(),
                    trace.forward.kept_in_layer,
                    "the recomputed layer's saved tensors so far, while it is recomputed"
                        .to_owned(),
                ));
                recompute.push(temporaries_part(trace.forward.working, "is recomputed"));
                recompute.push((
                    "stream gradient".to_owned(),
                    trace.stream_grad,
                    "the residual stream's gradient, waiting for the recomputed layer's backward"
                        .to_owned(),
                ));
            }
            RecomputeMoment::Backward => {
                recompute.push((
                    "recomputed layer".to_owned(),
                    backward_moment.kept_in_layer,
                    "the recomputed layer's saved tensors up to the op whose backward runs"
                        .to_owned(),
                ));
                recompute.push(backward_set_part(backward_moment.working));
            }
            RecomputeMoment::Whole => {
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
                recompute.push((
                    "stream gradient".to_owned(),
                    trace.stream_grad,
                    "the residual stream's gradient, waiting for the recomputed layer's backward"
                        .to_owned(),
                ));
            }
        }
        ledger.phase("backward.recompute", recompute)?;
    }

    // The end of backward: every gradient exists. A tied embedding receives two
    // gradients (from the head, then from the embedding lookup), and autograd's
    // `AccumulateGrad` sums them out of place: the old gradient, the new one and
    // their sum coexist, two table-sized tensors beyond the final gradient.
    // Only a rank holding both ends of a tied table sums its two gradients;
    // pipeline stages each hold a copy and all-reduce them instead.
    let both_ends = part.first && part.last;
    let tied_sum = if training.method == Method::Full && whole.lm_head.tied && both_ends {
        let table = u128::from(spec.vocab_size) * u128::from(spec.hidden_size);
        2 * rounded(table * u128::from(train_ty.bytes()))
    } else {
        0
    };
    // An untied, trainable embedding table gets its gradient last
    // (`embedding_dense_backward`), while the lookup's output gradient
    // (batch × seq × hidden) is still alive.
    let lookup_grad = if training.method == Method::Full
        && part.first
        && !spec.embeddings.is_empty()
        && !(whole.lm_head.tied && part.last)
    {
        rounded(batch * seq * u128::from(spec.hidden_size) * u128::from(train_ty.bytes()))
    } else {
        0
    };
    let mut end = persistent(false);
    end.push(grads_part(grads, "all trainable params"));
    end.push((
        "tied-embedding gradient sum".to_owned(),
        tied_sum,
        "2 × vocab × hidden: the head's and the lookup's gradients of the tied table, summed out of place".to_owned(),
    ));
    end.push((
        "embedding output gradient".to_owned(),
        lookup_grad,
        "batch × seq × hidden: alive while the untied embedding's own gradient is computed, the last of backward".to_owned(),
    ));
    ledger.phase("backward.end", end)?;

    let mut step = persistent(false);
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
        if tensors.iter().any(|t| t.expert_bank) {
            // Measured (validation/data/harness-bnb-cpu.jsonl, Mixtral, Qwen3-MoE, DeepSeek-V3):
            // bitsandbytes replaces `nn.Linear` modules only.
            notes.push("transformers 5 keeps MoE experts as fused 3-D parameters, which bitsandbytes does not quantize: they load in the compute type and peft casts them to fp32 like the rest".to_owned());
        }
    }
    if training.grad_checkpointing {
        notes.push("with gradient checkpointing, the recompute phase is taken at its worse end: the last layer (every checkpoint kept, the gradients of what backward has passed) or the first (one checkpoint, every gradient but those backward has not reached); with sharded gradients it counts all gradients at once (an upper bound)".to_owned());
    }
    // Counts are the whole model's, whatever this rank holds.
    let trainable = match lora_config {
        Some(config) => lora::lora_params(whole, config)?.trainable,
        None => whole_base.total,
    };
    let total = whole_base
        .total
        .checked_add(if resolution.is_some() { trainable } else { 0 })
        .ok_or(CoreError::Overflow { what: "parameter count" })?;
    if layout.gpus > 1 {
        notes.push(format!(
            "per GPU of {} ({} data-parallel × {} tensor × {} pipeline, {}); NCCL buffers counted outside the allocator",
            layout.gpus,
            layout.data_parallel(),
            layout.tp,
            layout.pp,
            layout.strategy.name()
        ));
    }
    let outside =
        optimizer.paged_states + if layout.gpus > 1 { u128::from(runtime.nccl_bytes) } else { 0 };
    let mut estimate = ledger.finish(runtime, total, trainable, outside, notes)?;
    estimate.host_bytes = to_u64(host, "host memory")?;
    estimate.model_state_bytes =
        to_u64(weights + adapters + grads + optimizer.states, "model state")?;
    Ok(estimate)
}

fn estimate_inference(
    spec: &ModelSpec,
    inference: &Inference,
    runtime: &Runtime,
) -> Result<MemoryEstimate, CoreError> {
    let batch = positive(inference.batch_size, Setting::BatchSize)?;
    let prompt = positive(inference.prompt_len, Setting::PromptLen)?;
    tokens_within_limit(batch, prompt + u128::from(inference.gen_len), Setting::InferenceTokens)?;
    within_positions(
        spec,
        prompt + u128::from(inference.gen_len).saturating_sub(1),
        Setting::RequestTokens,
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
    let buffers = buffer_bytes(spec, compute);
    let mut ledger = Ledger { phases: Vec::new() };
    for peak in inference::inference_peaks(spec, inference, compute) {
        ledger.phase(
            peak.phase,
            vec![
                ("weights".to_owned(), weights, weights_formula.clone()),
                ("buffers".to_owned(), buffers, "rotary inv_freq buffers, or a sinusoidal position table".to_owned()),
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
    if inference.kv_cache == crate::workload::KvCacheType::OneByte {
        notes.push("an 8-bit KV cache is counted at 1 byte per element, as vLLM (fp8) and llama.cpp (q8_0 ≈ 1.06) store it; transformers' DynamicCache has none, and its QuantizedCache keeps the last 128 tokens in full precision".to_owned());
    }
    ledger.finish(runtime, base.total, 0, 0, notes)
}

/// Which moment of the recomputed layer sets the checkpointed recompute's peak.
#[derive(Clone, Copy)]
enum RecomputeMoment {
    /// All of it kept, beside a dequantized weight.
    Whole,
    /// While it is recomputed: its forward temporaries.
    Forward,
    /// When an op's backward runs: that op's gradients.
    Backward,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::parallel::Layout;
    use crate::toy;
    use crate::workload::{AttentionImpl, Optimizer, OptimizerImpl, Precision};

    fn training(layout: Layout) -> Training {
        Training {
            method: Method::Full,
            precision: Precision::Fp32,
            optimizer: Optimizer::Adamw,
            optimizer_impl: OptimizerImpl::Foreach,
            batch_size: 1,
            seq_len: 64,
            grad_accum: 1,
            grad_checkpointing: false,
            attention: AttentionImpl::Sdpa,
            lora: None,
            layout,
        }
    }

    fn part(estimate: &MemoryEstimate, phase: &str, name: &str) -> u64 {
        let phase = estimate.phases.iter().find(|p| p.name == phase).unwrap();
        phase.parts.iter().filter(|p| p.name == name).map(|p| p.bytes).sum()
    }

    #[test]
    fn qlora_leaves_fused_expert_banks_unquantized_in_fp32() {
        // transformers 5's fused experts are 3-D parameters, not `nn.Linear`: bitsandbytes
        // leaves them alone and peft's `prepare_model_for_kbit_training` casts them to fp32
        // (measured: validation/data/harness-bnb-cpu.jsonl, Mixtral, Qwen3-MoE, DeepSeek-V3).
        let spec = toy::mixtral();
        let lora = crate::lora::LoraConfig {
            rank: 4,
            targets: crate::lora::LoraTargets::AllLinear,
            dora: false,
        };
        let qlora = Training {
            method: Method::Qlora,
            precision: Precision::Bf16Mixed,
            lora: Some(lora),
            ..training(Layout::SINGLE)
        };
        let tensors = weights::param_tensors(&spec);
        let banks: Vec<_> = tensors.iter().filter(|t| t.expert_bank).collect();
        // the toy's two banks: 4 experts × 2 × 32 × 64 (gate_up) and 4 × 32 × 64 (down)
        assert_eq!(banks.iter().map(|t| t.numel * t.count).sum::<u128>(), 4 * 3 * 32 * 64);
        assert!(banks.iter().all(|t| t.quantizable.is_none()));
        let result = estimate(&spec, &Workload::Training(qlora), &Runtime::HOPPER).unwrap();
        let weights = u128::from(part(&result, "forward", "weights"));
        let nf4_banks = weight_bytes(&tensors, WeightFormat::Nf4, FloatType::Bf16).unwrap();
        let fp32_banks = weight_bytes(&tensors, WeightFormat::Nf4, FloatType::F32).unwrap();
        assert_eq!(weights, fp32_banks);
        // fp32 rather than the compute type: 2 more bytes per bank element (and per norm,
        // embedding and head element, which peft casts too)
        assert!(weights - nf4_banks >= 2 * 4 * 3 * 32 * 64);
        assert!(result.notes.iter().any(|n| n.contains("MoE experts")));
        let dense = estimate(
            &toy::llama(),
            &Workload::Training(Training {
                method: Method::Qlora,
                precision: Precision::Bf16Mixed,
                lora: Some(crate::lora::LoraConfig {
                    rank: 4,
                    targets: crate::lora::LoraTargets::AllLinear,
                    dora: false,
                }),
                ..training(Layout::SINGLE)
            }),
            &Runtime::HOPPER,
        )
        .unwrap();
        assert!(!dense.notes.iter().any(|n| n.contains("MoE experts")));
    }

    fn run(layout: Layout) -> MemoryEstimate {
        estimate(&toy::llama(), &Workload::Training(training(layout)), &Runtime::HOPPER).unwrap()
    }

    fn on(gpus: u64, strategy: Strategy) -> Layout {
        Layout { gpus, strategy, ..Layout::SINGLE }
    }

    #[test]
    fn data_parallel_strategies_shard_what_they_promise() {
        let single = run(Layout::SINGLE);
        let (weights, grads, states) = (
            part(&single, "optimizer_step", "weights"),
            part(&single, "optimizer_step", "gradients"),
            part(&single, "optimizer_step", "optimizer states"),
        );
        // DDP: nothing sharded; buckets copy every gradient.
        let ddp = run(on(4, Strategy::Ddp));
        assert_eq!(part(&ddp, "optimizer_step", "weights"), weights);
        assert_eq!(part(&ddp, "optimizer_step", "communication buffers"), grads);
        // ZeRO-1: states / 4. ZeRO-2: also gradients / 4.
        let zero1 = run(on(4, Strategy::Zero1));
        assert_eq!(part(&zero1, "optimizer_step", "optimizer states"), states.div_ceil(4));
        assert_eq!(part(&zero1, "optimizer_step", "gradients"), grads);
        let zero2 = run(on(4, Strategy::Zero2));
        assert_eq!(part(&zero2, "optimizer_step", "gradients"), grads.div_ceil(4));
        // ZeRO-3 / FSDP: weights / 4, plus two gathered layers and the root group.
        for strategy in [Strategy::Zero3, Strategy::Fsdp] {
            let sharded = run(on(4, strategy));
            assert_eq!(part(&sharded, "optimizer_step", "weights"), weights.div_ceil(4));
            let layer = 2 * (2 * 64 * 64 + 2 * 64 * 32 + 3 * 64 * 176 + 2 * 64) * 4;
            let root = (2 * 1000 * 64 + 64) * 4;
            assert_eq!(part(&sharded, "backward", "gathered parameters"), layer + root);
            // Resharded after backward: nothing gathered during the optimizer step.
            assert_eq!(part(&sharded, "optimizer_step", "gathered parameters"), 0);
        }
        // NCCL's buffers sit outside the allocator on every multi-GPU layout.
        assert_eq!(ddp.outside_allocator_bytes, Runtime::HOPPER.nccl_bytes);
    }

    #[test]
    fn offload_moves_states_to_the_host() {
        let layout = Layout { offload: Offload::Optimizer, ..on(4, Strategy::Zero2) };
        let offloaded = run(layout);
        assert_eq!(part(&offloaded, "optimizer_step", "optimizer states"), 0);
        let zero2 = run(on(4, Strategy::Zero2));
        let states = part(&zero2, "optimizer_step", "optimizer states");
        let temporaries = part(&zero2, "optimizer_step", "optimizer step temporaries");
        let grads = part(&zero2, "optimizer_step", "gradients");
        assert_eq!(part(&offloaded, "optimizer_step", "gradients"), 0);
        assert_eq!(offloaded.host_bytes, states + temporaries + grads);
        // Offloaded parameters still come to the GPU layer by layer, even on one GPU.
        let zero3 = run(Layout { offload: Offload::Params, ..on(1, Strategy::Zero3) });
        assert_eq!(part(&zero3, "forward", "weights"), 0);
        assert!(part(&zero3, "forward", "gathered parameters") > 0);
    }

    #[test]
    fn deepspeed_keeps_fp32_masters_with_half_precision() {
        // ZeRO's accounting: 2 B weights + 2 B gradients + 12 B master and Adam
        // states per parameter, the last two divided by the group (ZeRO-2).
        let fp32 = run(Layout::SINGLE);
        let master = part(&fp32, "optimizer_step", "weights");
        let adam = part(&fp32, "optimizer_step", "optimizer states");
        for precision in [Precision::Bf16Mixed, Precision::Bf16] {
            let half = Training { precision, ..training(Layout::SINGLE) };
            let bf16 = estimate(
                &toy::llama(),
                &Workload::Training(Training { precision: Precision::Bf16, ..half.clone() }),
                &Runtime::HOPPER,
            )
            .unwrap();
            let zero2 = estimate(
                &toy::llama(),
                &Workload::Training(Training { layout: on(4, Strategy::Zero2), ..half }),
                &Runtime::HOPPER,
            )
            .unwrap();
            let step = |e: &MemoryEstimate, name| part(e, "optimizer_step", name);
            assert_eq!(step(&zero2, "weights"), step(&bf16, "weights"));
            assert_eq!(step(&zero2, "gradients"), step(&bf16, "gradients").div_ceil(4));
            assert_eq!(step(&zero2, "optimizer states"), (master + adam).div_ceil(4));
        }
    }

    #[test]
    fn pipeline_stages_of_an_untied_model_sum_no_tied_gradient() {
        let pp = estimate(
            &toy::llama(),
            &Workload::Training(training(Layout { gpus: 2, pp: 2, ..Layout::SINGLE })),
            &Runtime::HOPPER,
        )
        .unwrap();
        assert_eq!(part(&pp, "backward.end", "tied-embedding gradient sum"), 0);
    }

    #[test]
    fn tensor_and_pipeline_parallel_divide_the_work() {
        let single = run(Layout::SINGLE);
        let tp2 = run(Layout { gpus: 2, tp: 2, ..Layout::SINGLE });
        assert!(
            part(&tp2, "optimizer_step", "weights") < part(&single, "optimizer_step", "weights")
        );
        // Two stages of one layer each; the first keeps two micro-batches in flight.
        let pp = estimate(
            &toy::llama(),
            &Workload::Training(Training {
                grad_accum: 4,
                ..training(Layout { gpus: 2, pp: 2, ..Layout::SINGLE })
            }),
            &Runtime::HOPPER,
        )
        .unwrap();
        assert!(pp.notes.iter().any(|n| n.contains("pipeline stage")));
        assert!(pp.peak_allocated_bytes < single.peak_allocated_bytes);
        // An impossible layout is refused.
        let bad = Training { ..training(Layout { gpus: 3, tp: 2, ..Layout::SINGLE }) };
        assert!(estimate(&toy::llama(), &Workload::Training(bad), &Runtime::HOPPER).is_err());
    }
}
