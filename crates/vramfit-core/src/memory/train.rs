/*!
One training step's memory, as the Hugging Face Trainer runs it, in named steps:

1. [`checked_tokens`] and [`adapter_config`]: the settings a step can run with.
2. [`DtypePolicy`]: the types parameters, gradients, states and activations
   take under the precision, the method and the sharding strategy.
3. [`adapter_set`]: the adapters PEFT creates, and which of them train.
4. [`ModelState`]: weights, adapters, gradients and optimizer states, then
   [`ModelState::shard`] over the data-parallel group and
   [`ModelState::offload`] to the host.
5. [`activations`]: the traced forward pass (`training.rs`), with the other
   micro-batches a pipeline stage keeps in flight.
6. [`Phases`]: the phases of the step (forward, backward, the checkpointed
   recompute at its worse end, the end of backward, the optimizer step), each
   the persistent parts plus what that moment holds.

[`estimate_training`] runs them for each rank that can be the worst: one
rank, or the first and last stages of a pipeline.
*/

use crate::dtype::{FloatType, WeightFormat};
use crate::error::{CoreError, Setting};
use crate::lora::{self, LoraConfig, Resolution};
use crate::memory::ledger::{Entry, Ledger, MemoryComponent as C, entry};
use crate::memory::runtime::{self, Runtime};
use crate::memory::trace::rounded;
use crate::memory::training::{ActivationTrace, TraceSetup, trace_training};
use crate::memory::weights::{
    OptimizerBytes, ParamTensor, copy_bytes, optimizer_bytes, param_tensors, weight_bytes,
};
use crate::memory::{
    MemoryEstimate, RecomputeMoment, buffer_bytes, float_weights_formula, grouped, layers_only,
    params_of, positive, text_only, to_u64, token_inputs, tokens_within_limit, within_positions,
};
use crate::parallel::{self, Offload, Strategy};
use crate::params::count_params;
use crate::spec::ModelSpec;
use crate::workload::{Method, OptimizerImpl, Precision, Training};

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

/// The step on the worst GPU: one rank, or with pipeline parallelism the
/// worse of the first stage (the most micro-batches in flight under 1F1B)
/// and the last (the head and the loss).
pub(crate) fn estimate_training(
    spec: &ModelSpec,
    training: &Training,
    runtime: &Runtime,
) -> Result<MemoryEstimate, CoreError> {
    let layout = training.layout;
    layout.validate(spec)?;
    if layout.pp <= 1 && layout.tp <= 1 {
        // The rank holds the whole model: no copy of it is needed.
        let whole = StagePart { first: true, last: true, in_flight: 1, index: 0 };
        return estimate_rank(spec, spec, training, runtime, whole);
    }
    let rank = parallel::tensor_parallel_rank(spec, layout.tp);
    if layout.pp <= 1 {
        let whole = StagePart { first: true, last: true, in_flight: 1, index: 0 };
        return estimate_rank(spec, &rank, training, runtime, whole);
    }
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
    let (batch, seq) = checked_tokens(whole, training)?;
    let config = adapter_config(training)?;
    let dtypes = DtypePolicy::new(training);
    let base = count_params(spec)?;
    let tensors = param_tensors(spec);
    let mut notes = Vec::new();
    let adapters = adapter_set(spec, config, base.total, &mut notes)?;
    let mut state =
        ModelState::new(&tensors, training, &dtypes, &adapters, base.total, &mut notes)?;
    state.shard(whole, spec, &tensors, training, &dtypes)?;
    state.offload(spec, training, &dtypes);
    let (trace, others_saved) =
        activations(spec, training, runtime, part, &dtypes, &adapters, (batch, seq));
    if training.layout.pp > 1 {
        notes.push(format!(
            "pipeline stage {} of {} (the worst): {} micro-batch(es) in flight under 1F1B",
            part.index + 1,
            training.layout.pp,
            part.in_flight
        ));
    }
    let (trace_ty, _) = dtypes.trace_types(training);
    let phases = Phases {
        training,
        state: &state,
        trace: &trace,
        trainable: adapters.trainable,
        buffers: buffer_bytes(spec, dtypes.built_ty(training.precision, trace_ty)),
        inputs: token_inputs(batch, seq),
        workspace: u128::from(runtime.cublas_workspace_bytes),
        accumulated: if training.grad_accum > 1 { state.grads } else { 0 },
        ends: GradientEnds::new(whole, spec, training, &state, part),
        others_saved,
    };
    let mut ledger = Ledger::default();
    phases.forward(&mut ledger)?;
    phases.backward(&mut ledger)?;
    if training.grad_checkpointing {
        phases.recompute(&mut ledger)?;
    }
    phases.end_of_backward(&mut ledger, whole, spec, part, (batch, seq))?;
    phases.optimizer_step(&mut ledger)?;
    step_notes(&mut notes, training, &state, &tensors, &dtypes);
    // Counts are the whole model's, whatever this rank holds (this rank's own
    // when it holds the whole model).
    let holds_whole = std::ptr::eq(whole, spec);
    let whole_base = if holds_whole { base } else { count_params(whole)? };
    let trainable = match config {
        Some(_) if holds_whole => adapters.trainable,
        Some(config) => lora::lora_params(whole, config)?.trainable,
        None => whole_base.total,
    };
    let total = whole_base
        .total
        .checked_add(if adapters.resolution.is_some() { trainable } else { 0 })
        .ok_or(CoreError::Overflow { what: "parameter count" })?;
    let layout = training.layout;
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
    let outside = state.optimizer.paged_states
        + if layout.gpus > 1 { u128::from(runtime.nccl_bytes) } else { 0 };
    let mut estimate = ledger.finish(runtime, total, trainable, outside, notes)?;
    estimate.host_bytes = to_u64(state.host, "host memory")?;
    estimate.model_state_bytes = to_u64(
        state.weights + state.adapters + state.grads + state.optimizer.states,
        "model state",
    )?;
    Ok(estimate)
}

/// Step 1: the batch and sequence, at least one of each, within the tokens
/// any real step holds and within a learned position table.
fn checked_tokens(whole: &ModelSpec, training: &Training) -> Result<(u128, u128), CoreError> {
    let batch = positive(training.batch_size, Setting::BatchSize)?;
    let seq = positive(training.seq_len, Setting::SeqLen)?;
    positive(training.grad_accum, Setting::GradAccum)?;
    tokens_within_limit(batch, seq, Setting::TrainingTokens)?;
    within_positions(whole, training.seq_len, None, Setting::SeqLen)?;
    Ok((batch, seq))
}

/// Step 1: the adapters, which LoRA and QLoRA need and full fine-tuning
/// refuses; QLoRA computes in a half type (`bnb_4bit_compute_dtype`).
fn adapter_config(training: &Training) -> Result<Option<&LoraConfig>, CoreError> {
    let config = match (training.method, &training.lora) {
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
    if training.method == Method::Qlora && training.precision == Precision::Fp32 {
        return Err(CoreError::InvalidWorkload {
            setting: Setting::Precision,
            reason: "QLoRA computes in bf16 or fp16 (bnb_4bit_compute_dtype); use bf16, fp16 or their -mixed forms"
                .into(),
        });
    }
    Ok(config)
}

/// Step 2: the types of the step.
///
/// Full fine-tuning keeps every parameter in the precision's parameter type
/// (fp32 master weights for `-mixed`). LoRA loads the frozen base in the half
/// type under mixed precision (the PEFT/TRL recipe: `torch_dtype=bfloat16`
/// with `bf16=True`); the adapters are fp32 either way. DeepSpeed ZeRO runs
/// mixed precision its own way (the ZeRO paper's accounting): the module in
/// the half type, fp32 master weights inside the optimizer, whenever the
/// module is half precision (`bf16`/`fp16` enabled, with or without the
/// Trainer's autocast).
struct DtypePolicy {
    /// DeepSpeed ZeRO (stages 1–3).
    deepspeed: bool,
    /// DeepSpeed keeps fp32 master partitions inside the optimizer.
    deepspeed_master: bool,
    /// The type the module's parameters are held in.
    param_ty: FloatType,
    /// QLoRA: a 4-bit base.
    quantized: bool,
}

impl DtypePolicy {
    fn new(training: &Training) -> Self {
        let precision = training.precision;
        let layout = training.layout;
        let deepspeed =
            matches!(layout.strategy, Strategy::Zero1 | Strategy::Zero2 | Strategy::Zero3);
        let deepspeed_master =
            deepspeed && training.method == Method::Full && precision != Precision::Fp32;
        let param_ty = match (training.method, precision.autocast_type()) {
            (Method::Full, Some(half)) if deepspeed_master => half,
            // peft's `prepare_model_for_kbit_training` casts every non-quantized parameter to fp32.
            (Method::Qlora, _) => FloatType::F32,
            (Method::Full, _) | (_, None) => precision.param_type(),
            (_, Some(half)) => half,
        };
        DtypePolicy {
            deepspeed,
            deepspeed_master,
            param_ty,
            quantized: training.method == Method::Qlora,
        }
    }

    /// The type matmuls run in: autocast's half type, else the parameters'.
    fn compute_ty(&self, precision: Precision) -> FloatType {
        precision.autocast_type().unwrap_or(self.param_ty)
    }

    /// The types the trace runs in: the parameters' and autocast's. Sharded
    /// strategies under mixed precision compute on half-precision parameters
    /// (FSDP's `MixedPrecision(param_dtype)` gathers them in the half type,
    /// DeepSpeed keeps the module in it): no autocast casts, half activations.
    fn trace_types(&self, training: &Training) -> (FloatType, Option<FloatType>) {
        let layout = training.layout;
        let sharded_mixed = layout.gpus > 1 && layout.strategy != Strategy::Ddp;
        match training.precision.autocast_type() {
            Some(half) if sharded_mixed && training.method == Method::Full => (half, None),
            autocast => (self.param_ty, autocast),
        }
    }

    /// Buffers are made in the type the model is built in: the module's
    /// parameter type, or the compute type for QLoRA (loaded in it before peft
    /// casts parameters to fp32).
    fn built_ty(&self, precision: Precision, trace_ty: FloatType) -> FloatType {
        if self.quantized {
            precision.autocast_type().unwrap_or(precision.param_type())
        } else {
            trace_ty
        }
    }
}

/// Step 3: the adapters PEFT creates and those that train.
struct AdapterSet<'a> {
    config: Option<&'a LoraConfig>,
    resolution: Option<Resolution>,
    /// Every adapter tensor.
    all: Vec<ParamTensor>,
    /// Those a text-only batch trains (not the vision tower's).
    text: Vec<ParamTensor>,
    /// Trainable parameters of this rank: the adapters', else the base's.
    trainable: u64,
}

/// Step 3: `config`'s adapters on `spec`. A text-only batch never runs the
/// vision tower, so the adapters peft put there (`q_proj`/`k_proj`/`v_proj`
/// of SigLIP's attention match attention targets) get no gradient, and torch's
/// optimizers create states only for parameters that have one (`_init_group`
/// skips `p.grad is None`). Measured on Gemma-3-4B LoRA (fake backend): AdamW
/// states cover the language model's adapters alone.
fn adapter_set<'a>(
    spec: &ModelSpec,
    config: Option<&'a LoraConfig>,
    base_total: u64,
    notes: &mut Vec<String>,
) -> Result<AdapterSet<'a>, CoreError> {
    let Some(config) = config else {
        return Ok(AdapterSet {
            config: None,
            resolution: None,
            all: Vec::new(),
            text: Vec::new(),
            trainable: base_total,
        });
    };
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
    let has_vision =
        spec.extra_modules.iter().any(|m| m.component == crate::spec::Component::Vision);
    let text_adapters = if has_vision {
        lora::adapters(&text_only(spec), config).map_or_else(|_| adapters.clone(), |(_, a)| a)
    } else {
        adapters.clone()
    };
    if text_adapters != adapters {
        notes.push(
            "text-only batches: the vision tower's adapters get no gradient and no optimizer state"
                .to_owned(),
        );
    }
    Ok(AdapterSet {
        config: Some(config),
        resolution: Some(resolution),
        all: to_params(&adapters),
        text: to_params(&text_adapters),
        trainable: params.trainable,
    })
}

/// Step 4: what a GPU holds for the model itself, all bytes.
struct ModelState {
    weights: u128,
    weights_formula: String,
    adapters: u128,
    grads: u128,
    optimizer: OptimizerBytes,
    /// The type gradients and (unless DeepSpeed's) states take.
    train_ty: FloatType,
    /// Elements of the trained set.
    train_numel: u128,
    /// Sharded parameters gathered for compute.
    gathered: u128,
    /// Gradient buckets or reduce-scatter buffers, and their formula.
    comm_buffers: u128,
    comm_formula: &'static str,
    /// Offloaded to the host.
    host: u128,
    /// Gradients are sharded over the data-parallel group.
    shards_grads: bool,
}

impl ModelState {
    /// The unsharded model state: weights (NF4 for QLoRA), adapters, the
    /// trained set's gradients and optimizer states.
    fn new(
        tensors: &[ParamTensor],
        training: &Training,
        dtypes: &DtypePolicy,
        adapters: &AdapterSet<'_>,
        base_total: u64,
        notes: &mut Vec<String>,
    ) -> Result<ModelState, CoreError> {
        let param_ty = dtypes.param_ty;
        let (weights, weights_formula) = if dtypes.quantized {
            // peft's `prepare_model_for_kbit_training` casts every non-quantized parameter to fp32.
            let bytes = weight_bytes(tensors, WeightFormat::Nf4, FloatType::F32)
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
            let bytes = weight_bytes(tensors, WeightFormat::Float(param_ty), param_ty)
                .ok_or(CoreError::Overflow { what: "weight bytes" })?;
            (bytes, float_weights_formula(base_total, param_ty))
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
        let (train_set, train_ty) = if adapters.resolution.is_some() {
            // peft keeps adapters in fp32 (`autocast_adapter_dtype=True`).
            (adapters.text.as_slice(), FloatType::F32)
        } else {
            (text_params.as_slice(), param_ty)
        };
        let adapter_bytes = if adapters.resolution.is_some() {
            copy_bytes(&adapters.all, FloatType::F32)
        } else {
            0
        };
        // DeepSpeed's optimizer works on the fp32 master copy, so its states are fp32.
        let state_ty = if dtypes.deepspeed_master { FloatType::F32 } else { train_ty };
        let mut optimizer =
            optimizer_bytes(training.optimizer, training.optimizer_impl, train_set, state_ty);
        if dtypes.deepspeed_master {
            // The fp32 master copy lives with the optimizer states (and is sharded with them).
            optimizer.states += copy_bytes(train_set, FloatType::F32);
        }
        Ok(ModelState {
            weights,
            weights_formula,
            adapters: adapter_bytes,
            grads: copy_bytes(train_set, train_ty),
            optimizer,
            train_ty,
            train_numel: train_set.iter().map(|t| t.numel * t.count).sum(),
            gathered: 0,
            comm_buffers: 0,
            comm_formula: "",
            host: 0,
            shards_grads: false,
        })
    }

    /// Data-parallel sharding over the shard group: what each strategy
    /// divides, what it gathers for compute, and its communication buffers.
    fn shard(
        &mut self,
        whole: &ModelSpec,
        spec: &ModelSpec,
        tensors: &[ParamTensor],
        training: &Training,
        dtypes: &DtypePolicy,
    ) -> Result<(), CoreError> {
        let layout = training.layout;
        let group = u128::from(layout.shard_group());
        let shards = layout.strategy.shards();
        let compute_ty = dtypes.compute_ty(training.precision);
        let largest_layer = largest_layer_bytes(spec, compute_ty);
        self.shards_grads = layout.gpus > 1 && group > 1 && shards.grads;
        if layout.gpus > 1 && group > 1 {
            if shards.params {
                self.weights = self.weights.div_ceil(group);
                self.adapters = self.adapters.div_ceil(group);
                // Gathered for compute: the current and the prefetched layer (FSDP2
                // prefetches one layer; ZeRO-3's prefetch bucket holds about one), and the
                // root group of embeddings, final norm and head that FSDP keeps gathered
                // through the step.
                self.gathered = 2 * largest_layer + root_bytes(spec, compute_ty);
            } else if layout.strategy == Strategy::FsdpShardGradOp {
                // SHARD_GRAD_OP keeps the gathered parameters from forward to backward.
                self.gathered = weight_bytes(tensors, WeightFormat::Float(compute_ty), compute_ty)
                    .ok_or(CoreError::Overflow { what: "weight bytes" })?;
                self.weights = self.weights.div_ceil(group);
            }
            if shards.grads {
                self.grads = self.grads.div_ceil(group);
                self.comm_buffers = if dtypes.deepspeed {
                    // DeepSpeed's reduce buckets: two (`overlap_comm`, on in the HF
                    // Trainer's ZeRO configs) of `reduce_bucket_size` elements, which the
                    // Trainer's "auto" sets to hidden²; half-precision gradients.
                    let hidden = u128::from(whole.hidden_size);
                    2 * rounded(
                        (hidden * hidden).min(self.train_numel) * u128::from(compute_ty.bytes()),
                    )
                } else {
                    // FSDP: the reduce-scatter input, one layer's unsharded gradients.
                    largest_layer
                };
            }
            if shards.states {
                self.optimizer.states = self.optimizer.states.div_ceil(group);
                self.optimizer.step_temporaries = self.optimizer.step_temporaries.div_ceil(group);
            }
        }
        if layout.strategy == Strategy::Ddp && layout.data_parallel() > 1 {
            // DDP copies gradients into flat communication buckets
            // (`gradient_as_bucket_view=False`, the default): a second gradient copy.
            self.comm_buffers = self.grads;
        }
        self.comm_formula = match layout.strategy {
            Strategy::Ddp => "DDP gradient buckets: a flat copy of all gradients",
            Strategy::Zero1 | Strategy::Zero2 | Strategy::Zero3 => {
                "2 DeepSpeed reduce buckets of hidden² half-precision elements (HF \"auto\", overlap_comm)"
            }
            _ => "one layer's unsharded gradients for reduce-scatter",
        };
        Ok(())
    }

    /// ZeRO-Offload / FSDP `CPUOffload`: states and the optimizer step run on the
    /// host, and the sharded gradient partitions are copied there; with
    /// parameter offload the weights live there too, each layer brought onto
    /// the GPU to compute (ZeRO-Infinity and FSDP alike).
    fn offload(&mut self, spec: &ModelSpec, training: &Training, dtypes: &DtypePolicy) {
        let offload = training.layout.offload;
        if offload != Offload::None {
            self.host += self.optimizer.states + self.optimizer.step_temporaries;
            self.optimizer.states = 0;
            self.optimizer.step_temporaries = 0;
            if self.shards_grads {
                self.host += self.grads;
                self.grads = 0;
            }
        }
        if offload == Offload::Params {
            self.host += self.weights;
            self.weights = 0;
            if self.gathered == 0 {
                let compute_ty = dtypes.compute_ty(training.precision);
                self.gathered =
                    2 * largest_layer_bytes(spec, compute_ty) + root_bytes(spec, compute_ty);
            }
        }
    }
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

/// Step 5: the traced forward pass of this rank, and the bytes the other
/// micro-batches in flight keep. Pipeline stages keep the activations of
/// every micro-batch in flight: the others keep all they saved while this one
/// is in a layer; with checkpointing, the moments count the recomputed layer's
/// own part.
fn activations(
    spec: &ModelSpec,
    training: &Training,
    runtime: &Runtime,
    part: StagePart,
    dtypes: &DtypePolicy,
    adapters: &AdapterSet<'_>,
    (batch, seq): (u128, u128),
) -> (ActivationTrace, u128) {
    let precision = training.precision;
    let (trace_ty, trace_autocast) = dtypes.trace_types(training);
    let lora_use = match (&adapters.resolution, adapters.config) {
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
        quantized_compute: dtypes
            .quantized
            .then(|| precision.autocast_type().unwrap_or(precision.param_type())),
        input_requires_grad: dtypes.quantized && training.grad_checkpointing,
        attention: training.attention,
        checkpointing: training.grad_checkpointing,
        first: part.first,
        last: part.last,
        cpu_kernels: runtime.kernels != runtime::Kernels::Cuda,
        typed_dropout_masks: runtime.kernels != runtime::Kernels::Cuda,
        watched: runtime.watched,
    };
    let mut trace = trace_training(spec, &setup);
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
    (trace, others_saved)
}

/// When gradients exist during backward: the tables' gradients that appear
/// once backward has passed them, and the layer moment that is worst given
/// how gradients appear.
struct GradientEnds {
    /// The head's gradient (and a first stage's embedding's), which exist once
    /// backward has passed them, when gradients are not sharded (full fine-tuning).
    head_grad: u128,
    embedding_grad: u128,
    /// A tied head's gradient waits in autograd's buffer until the embedding's
    /// arrives; with accumulation it is a new tensor beside the accumulated
    /// `.grad` (measured on a tied model's second micro-batch).
    tied_buffer: u128,
}

impl GradientEnds {
    fn new(
        whole: &ModelSpec,
        spec: &ModelSpec,
        training: &Training,
        state: &ModelState,
        part: StagePart,
    ) -> Self {
        let table = |holds: bool| {
            if holds && training.method == Method::Full && !state.shards_grads {
                rounded(
                    u128::from(spec.vocab_size)
                        * u128::from(spec.hidden_size)
                        * u128::from(state.train_ty.bytes()),
                )
                .min(state.grads)
            } else {
                0
            }
        };
        let embedding_grad =
            table(part.first && !spec.embeddings.is_empty() && !(whole.lm_head.tied && part.last));
        let head_grad = table(part.last);
        let tied_buffer = if whole.lm_head.tied && part.first && part.last { head_grad } else { 0 };
        GradientEnds { head_grad, embedding_grad, tied_buffer }
    }
}

/// Step 6: the phases of the step, each the persistent parts plus what that
/// moment holds.
struct Phases<'a> {
    training: &'a Training,
    state: &'a ModelState,
    trace: &'a ActivationTrace,
    trainable: u64,
    buffers: u128,
    inputs: u128,
    workspace: u128,
    /// Gradients kept from earlier micro-batches (all of them, with accumulation).
    accumulated: u128,
    ends: GradientEnds,
    /// What the other micro-batches of a pipeline stage keep.
    others_saved: u128,
}

impl Phases<'_> {
    /// What every phase holds: the model state, buffers, inputs and workspace.
    /// Gathered parameters and reduce-scatter buffers exist while forward and
    /// backward run (`computing`): FSDP and ZeRO-3 reshard after backward.
    /// DDP's buckets persist.
    fn persistent(&self, computing: bool) -> Vec<Entry> {
        let state = self.state;
        let layout = self.training.layout;
        let trainable = grouped(u128::from(self.trainable));
        vec![
            entry(C::Weights, state.weights, state.weights_formula.clone()),
            entry(
                C::LoraAdapters,
                state.adapters,
                format!("{trainable} trainable params × 4 B (fp32)"),
            ),
            entry(
                C::Buffers,
                self.buffers,
                "rotary inv_freq buffers, or a sinusoidal position table",
            ),
            entry(
                C::Inputs,
                self.inputs,
                "input_ids, attention_mask, labels: 3 × batch × seq × 8 B",
            ),
            entry(
                C::CublasWorkspace,
                self.workspace,
                "CUBLAS_WORKSPACE_CONFIG default, via the caching allocator",
            ),
            entry(
                C::GatheredParameters,
                if computing { state.gathered } else { 0 },
                format!(
                    "{} parameters gathered for compute (current and prefetched layer, root group)",
                    layout.strategy.name()
                ),
            ),
            entry(
                C::CommunicationBuffers,
                if computing || layout.strategy == Strategy::Ddp { state.comm_buffers } else { 0 },
                state.comm_formula,
            ),
            entry(
                C::OptimizerStates,
                state.optimizer.states,
                format!(
                    "{} states for {trainable} trainable params ({})",
                    self.training.optimizer.name(),
                    state.train_ty.torch_name()
                ),
            ),
        ]
    }

    fn gradients(&self, bytes: u128, label: &str) -> Entry {
        entry(
            C::Gradients,
            bytes,
            format!(
                "{label}: {} trainable params × {} B ({})",
                grouped(u128::from(self.trainable)),
                self.state.train_ty.bytes(),
                self.state.train_ty.torch_name()
            ),
        )
    }

    /// `bytes` kept, of which `autocast` are autocast's weight copies.
    fn activations(&self, bytes: u128, autocast: u128) -> Entry {
        entry(
            C::Activations,
            bytes - autocast,
            if self.training.grad_checkpointing {
                "tensors autograd keeps: each checkpointed layer's input, the final norm and head, the fp32 log-softmax"
            } else {
                "tensors autograd keeps for backward, traced op by op through every layer, incl. the fp32 log-softmax of the loss"
            },
        )
    }

    /// What every phase that runs the model holds: the persistent parts with
    /// the layers being computed, gradients so far, saved activations (`kept`,
    /// of which `autocast` are autocast's weight copies).
    fn computing(&self, grads: u128, label: &str, kept: u128, autocast: u128) -> Vec<Entry> {
        let mut parts = self.persistent(true);
        parts.push(self.gradients(grads, label));
        parts.push(self.activations(kept, autocast));
        parts.push(entry(
            C::AutocastWeightCopies,
            autocast,
            "half-precision copies of the weights that autocast makes and backward keeps (2 B × linear weights)",
        ));
        parts
    }

    /// `computing` with only the gradients accumulated from earlier micro-batches.
    fn computing_accumulated(&self, kept: u128, autocast: u128) -> Vec<Entry> {
        self.computing(self.accumulated, "accumulated from earlier micro-batches", kept, autocast)
    }

    fn backward_set(bytes: u128) -> Entry {
        entry(
            C::BackwardGradients,
            bytes,
            "inside a layer's backward, beside the residual stream's gradient: an adapted linear's output and input gradients (the adapter's through its casts, then the frozen base's), an MLP product's incoming and factor gradients, an attention softmax's or probabilities' gradients, or an adapted expert bank's gradient and its input's",
        )
    }

    fn temporaries(bytes: u128, when: &str) -> Entry {
        entry(
            C::LayerTemporaries,
            bytes,
            format!(
                "an adapted linear's input, peft's fp32 copy of it, the base's output and the hidden states the frames hold, alive while the adapter {when}"
            ),
        )
    }

    fn stream_gradient(&self) -> Entry {
        entry(
            C::StreamGradient,
            self.trace.stream_grad,
            "the residual stream's gradient, waiting for the recomputed layer's backward",
        )
    }

    /// The worst moment inside a layer's backward: with gradients appearing op
    /// by op, the one that is worst with them; when they do not (all
    /// accumulated from the first micro-batch, or sharded and counted apart),
    /// the largest by itself.
    fn backward_moment(&self) -> crate::memory::trace::LayerMoment {
        if self.accumulated > 0 || self.state.shards_grads {
            self.trace.backward_by_bytes
        } else {
            self.trace.backward
        }
    }

    /// The forward at the loss (every activation saved, the logits and their
    /// fp32 copy, autocast's cache) and, without checkpointing, inside the
    /// last layers at their worst forward moment. No 4-bit weight is
    /// dequantized at the loss: the head is never quantized.
    fn forward(&self, ledger: &mut Ledger) -> Result<(), CoreError> {
        let trace = self.trace;
        let mut forward = self.computing_accumulated(trace.saved, trace.autocast_saved);
        forward.push(entry(
            C::LogitsAtTheLoss,
            trace.loss_transient,
            "batch × seq × vocab logits in the compute type, their fp32 copy (`logits.float()`), and the final norm's output the model returns",
        ));
        forward.push(entry(
            C::AutocastWeightCache,
            trace.autocast_cache,
            "half copies of trainable weights that autocast caches for the forward and backward does not keep",
        ));
        ledger.phase("forward", forward)?;
        if !self.training.grad_checkpointing && trace.forward.working > 0 {
            let kept = trace.forward.kept_in_layer;
            let mut parts = self.computing_accumulated(kept, trace.layers_autocast_saved.min(kept));
            parts.push(Self::temporaries(trace.forward.working, "runs"));
            ledger.phase("forward.layers", parts)?;
        }
        Ok(())
    }

    /// The start of backward (the loss's two fp32 logit gradients beside every
    /// activation) and, without checkpointing, later inside the last layers:
    /// the loss, the head and the final norm have released what they kept,
    /// and an op's backward holds its gradients beside what the layers saved
    /// up to it.
    fn backward(&self, ledger: &mut Ledger) -> Result<(), CoreError> {
        let trace = self.trace;
        let mut backward = self.computing_accumulated(trace.saved, trace.autocast_saved);
        backward.push(entry(
            C::LogitGradients,
            trace.logit_grads,
            "2 × batch × seq × vocab × 4 B: nll_loss and log_softmax gradients in fp32",
        ));
        ledger.phase("backward", backward)?;
        let moment = self.backward_moment();
        if !self.training.grad_checkpointing && moment.working > 0 {
            // The head's gradient and those of the last layer's weights used after the op
            // exist by then (unsharded gradients).
            let present = if self.accumulated > 0 {
                self.accumulated + self.ends.tied_buffer
            } else if self.state.shards_grads {
                0
            } else {
                self.ends.head_grad + moment.grads_after()
            };
            let mut parts = self.computing(
                present,
                "the head's and the last layer's after the op, with any accumulated from earlier micro-batches",
                moment.kept_in_layer,
                trace.layers_autocast_saved.min(moment.kept_in_layer),
            );
            parts.push(Self::backward_set(moment.working));
            ledger.phase("backward.layers", parts)?;
        }
        Ok(())
    }

    /// With checkpointing, backward recomputes the layers last to first, and
    /// its peak falls at one of the two ends: at the last layer, few gradients
    /// exist (the head's) and every checkpoint is still kept; at the first
    /// layer, every gradient but the embedding's exists and one checkpoint is
    /// left. Both ends count the recomputed layer at its worst moment. With
    /// sharded gradients, all gradients are counted at once (an upper bound).
    fn recompute(&self, ledger: &mut Ledger) -> Result<(), CoreError> {
        let (trace, state, ends) = (self.trace, self.state, &self.ends);
        let moment = self.backward_moment();
        // Backward reaches the layers after the loss, the head and the final norm.
        let kept = trace.layers_saved;
        // Unsharded gradients appear layer by layer as backward goes (full fine-tuning's
        // and adapters' alike); sharded ones are counted all at once (an upper bound).
        let ordered = !state.shards_grads;
        let (start_grads, start_kept) =
            if ordered { (ends.head_grad, kept) } else { (state.grads, kept) };
        // Under 1F1B, the other micro-batches in flight keep all their checkpoints.
        let (end_grads, end_kept) = if ordered {
            // The head's saved autocast copy is gone by then (measured on phi-2).
            (state.grads - ends.embedding_grad, self.others_saved + trace.checkpoint)
        } else {
            (state.grads, kept)
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
            let after = moment.grads_after();
            (moment.layer_grads - after, after)
        } else {
            (0, 0)
        };
        // The residual stream's gradient is alive beside a recomputed layer, as beside
        // its forward and backward moments (which count it already).
        let whole = trace.recomputed_layer + trace.largest_transient + trace.stream_grad;
        let refwd = trace.forward.kept_in_layer + trace.forward.working + trace.stream_grad;
        let back = moment.kept_in_layer + moment.working;
        // (moment, its bytes, the layer's own gradients present and absent then); on a
        // tie the earlier end and moment are named.
        let moments = [
            (RecomputeMoment::Whole, whole, 0, layer_grads),
            (RecomputeMoment::Forward, refwd, 0, layer_grads),
            (RecomputeMoment::Backward, back, after_op, absent_at_op),
        ];
        let mut best: Option<(bool, RecomputeMoment, u128, u128)> = None;
        for at_start in [true, false] {
            for (which, bytes, present, absent) in moments {
                let (grads_now, kept_now) = if at_start {
                    (start_grads + present, start_kept)
                } else {
                    (end_grads.saturating_sub(absent), end_kept)
                };
                // With accumulation every gradient exists from the first micro-batch on
                // (a tied head's new one waits beside them for the embedding's).
                let grads_now = if self.accumulated > 0 {
                    self.accumulated + ends.tied_buffer
                } else {
                    grads_now
                };
                let total = grads_now + kept_now + bytes;
                if best.is_none_or(|(.., most)| total > most) {
                    best = Some((at_start, which, grads_now, total));
                }
            }
        }
        let (at_start, which, grads_now, _) =
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
            self.computing(grads_now, label, kept_now, trace.layers_autocast_saved.min(kept_now));
        match which {
            RecomputeMoment::Forward => {
                recompute.push(entry(
                    C::RecomputedLayer,
                    trace.forward.kept_in_layer,
                    "the recomputed layer's saved tensors so far, while it is recomputed",
                ));
                recompute.push(Self::temporaries(trace.forward.working, "is recomputed"));
                recompute.push(self.stream_gradient());
            }
            RecomputeMoment::Backward => {
                recompute.push(entry(
                    C::RecomputedLayer,
                    moment.kept_in_layer,
                    "the recomputed layer's saved tensors up to the op whose backward runs",
                ));
                recompute.push(Self::backward_set(moment.working));
            }
            RecomputeMoment::Whole => {
                recompute.push(entry(
                    C::RecomputedLayer,
                    trace.recomputed_layer,
                    "one decoder layer's saved tensors, rebuilt during backward",
                ));
                recompute.push(entry(
                    C::DequantizedWeight,
                    trace.largest_transient,
                    "the largest 4-bit weight dequantized for its matmul",
                ));
                recompute.push(self.stream_gradient());
            }
        }
        ledger.phase("backward.recompute", recompute)
    }

    /// The end of backward: every gradient exists. A tied embedding receives
    /// two gradients (from the head, then from the embedding lookup), and
    /// autograd's `AccumulateGrad` sums them out of place: the old gradient,
    /// the new one and their sum coexist, two table-sized tensors beyond the
    /// final gradient. Only a rank holding both ends of a tied table sums its
    /// two gradients; pipeline stages each hold a copy and all-reduce them
    /// instead. An untied, trainable embedding table gets its gradient last
    /// (`embedding_dense_backward`), while the lookup's output gradient
    /// (batch × seq × hidden) is still alive.
    fn end_of_backward(
        &self,
        ledger: &mut Ledger,
        whole: &ModelSpec,
        spec: &ModelSpec,
        part: StagePart,
        (batch, seq): (u128, u128),
    ) -> Result<(), CoreError> {
        let full = self.training.method == Method::Full;
        let train_bytes = u128::from(self.state.train_ty.bytes());
        let both_ends = part.first && part.last;
        let tied_sum = if full && whole.lm_head.tied && both_ends {
            let table = u128::from(spec.vocab_size) * u128::from(spec.hidden_size);
            2 * rounded(table * train_bytes)
        } else {
            0
        };
        let lookup_grad = if full
            && part.first
            && !spec.embeddings.is_empty()
            && !(whole.lm_head.tied && part.last)
        {
            rounded(batch * seq * u128::from(spec.hidden_size) * train_bytes)
        } else {
            0
        };
        let mut end = self.persistent(false);
        end.push(self.gradients(self.state.grads, "all trainable params"));
        end.push(entry(
            C::TiedEmbeddingGradientSum,
            tied_sum,
            "2 × vocab × hidden: the head's and the lookup's gradients of the tied table, summed out of place",
        ));
        end.push(entry(
            C::EmbeddingOutputGradient,
            lookup_grad,
            "batch × seq × hidden: alive while the untied embedding's own gradient is computed, the last of backward",
        ));
        ledger.phase("backward.end", end)
    }

    /// The optimizer step: every gradient, and the step's own temporaries.
    fn optimizer_step(&self, ledger: &mut Ledger) -> Result<(), CoreError> {
        let mut step = self.persistent(false);
        step.push(self.gradients(self.state.grads, "all trainable params"));
        step.push(entry(
            C::OptimizerStepTemporaries,
            self.state.optimizer.step_temporaries,
            match self.training.optimizer_impl {
                OptimizerImpl::Foreach => {
                    "foreach step: one temporary as large as all trainable params (`_foreach_sqrt`)"
                }
                OptimizerImpl::Forloop => "for-loop step: temporaries of the largest parameter",
                OptimizerImpl::Fused => "fused step: none",
            },
        ));
        ledger.phase("optimizer_step", step)
    }
}

/// What the step's reader should know: paged states, QLoRA's fp32 casts and
/// unquantized expert banks, how the recompute is taken.
fn step_notes(
    notes: &mut Vec<String>,
    training: &Training,
    state: &ModelState,
    tensors: &[ParamTensor],
    dtypes: &DtypePolicy,
) {
    if state.optimizer.paged_states > 0 {
        notes.push("paged 8-bit optimizer states live in unified memory: counted on the device, outside the allocator; under memory pressure the driver can page them to the host".to_owned());
    }
    if dtypes.quantized {
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
}
