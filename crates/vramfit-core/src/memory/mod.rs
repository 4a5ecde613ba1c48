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
pub(crate) mod ledger;
pub mod runtime;
pub(crate) mod trace;
mod train;
pub(crate) mod training;
pub(crate) mod weights;

use serde::{Deserialize, Serialize};

use crate::dtype::FloatType;
use crate::error::{CoreError, Setting};
use crate::memory::ledger::{Ledger, MemoryComponent as C, entry};
use crate::memory::runtime::Runtime;
use crate::memory::trace::rounded;
use crate::memory::train::estimate_training;
use crate::memory::weights::{param_tensors, weight_bytes};
use crate::params::count_params;
use crate::spec::{Component, ModelSpec};
use crate::workload::{Inference, Workload};

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
        Workload::Training(training) => {
            refuse_unmodelled(spec, "training", false)?;
            estimate_training(spec, training, runtime)
        }
    }
}

/// Refuses an architecture whose memory in `context` is not modelled yet
/// ([`ModelSpec::unmodelled_memory`]), naming what is missing.
pub(crate) fn refuse_unmodelled(
    spec: &ModelSpec,
    context: &'static str,
    generate: bool,
) -> Result<(), CoreError> {
    spec.unmodelled_memory(generate)
        .map_or(Ok(()), |what| Err(CoreError::NotModelled { what, context }))
}

pub(crate) fn positive(value: u64, setting: Setting) -> Result<u128, CoreError> {
    if value == 0 {
        return Err(CoreError::InvalidWorkload { setting, reason: "must be at least 1".into() });
    }
    Ok(u128::from(value))
}

pub(crate) fn tokens_within_limit(
    batch: u128,
    seq: u128,
    setting: Setting,
) -> Result<(), CoreError> {
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
/// raises an index error); rotary models can, so only learned positions are
/// checked. `length` is the training sequence, or the prompt of a generation
/// of `generated` tokens; the limit is [`crate::solve::position_limit`]'s.
pub(crate) fn within_positions(
    spec: &ModelSpec,
    length: u64,
    generated: Option<u64>,
    setting: Setting,
) -> Result<(), CoreError> {
    if spec.positions == crate::spec::PositionEncoding::Learned
        && let Some(limit) = crate::solve::position_limit(spec, generated)
        && length > limit
    {
        let table = spec.max_position_embeddings.unwrap_or(limit);
        let reason = match generated {
            Some(generated) => format!(
                "a prompt of {length} tokens plus {generated} generated needs more than the \
                 model's {table} learned positions (n_positions / max_position_embeddings): the \
                 prompt can be at most {limit} tokens"
            ),
            None => format!(
                "{length} tokens exceed the model's {table} learned positions (n_positions / \
                 max_position_embeddings)"
            ),
        };
        return Err(CoreError::InvalidWorkload { setting, reason });
    }
    Ok(())
}

pub(crate) fn to_u64(bytes: u128, what: &'static str) -> Result<u64, CoreError> {
    u64::try_from(bytes).map_err(|_| CoreError::Overflow { what })
}

pub(crate) fn grouped(n: u128) -> String {
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
pub(crate) fn text_only(spec: &ModelSpec) -> ModelSpec {
    let mut text = spec.clone();
    text.extra_modules.retain(|m| m.component != Component::Vision);
    text
}

/// Parameters of `spec` as counted, 0 if they overflow (callers bound sizes first).
pub(crate) fn params_of(spec: &ModelSpec) -> u128 {
    count_params(spec).map_or(0, |c| u128::from(c.total))
}

/// The formula of unquantized weights, in words.
pub(crate) fn float_weights_formula(params: u64, ty: FloatType) -> String {
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
pub(crate) fn buffer_bytes(spec: &ModelSpec, ty: FloatType) -> u128 {
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

fn estimate_inference(
    spec: &ModelSpec,
    inference: &Inference,
    runtime: &Runtime,
) -> Result<MemoryEstimate, CoreError> {
    refuse_unmodelled(spec, "transformers' generate()", true)?;
    let batch = positive(inference.batch_size, Setting::BatchSize)?;
    let prompt = positive(inference.prompt_len, Setting::PromptLen)?;
    tokens_within_limit(batch, prompt + u128::from(inference.gen_len), Setting::InferenceTokens)?;
    within_positions(spec, inference.prompt_len, Some(inference.gen_len), Setting::RequestTokens)?;
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
    let mut ledger = Ledger::default();
    for peak in inference::inference_peaks(spec, inference, compute) {
        let mut entries = vec![
            entry(C::Weights, weights, weights_formula.clone()),
            entry(C::Buffers, buffers, "rotary inv_freq buffers, or a sinusoidal position table"),
            entry(
                C::CublasWorkspace,
                workspace,
                "CUBLAS_WORKSPACE_CONFIG default, via the caching allocator",
            ),
            entry(
                C::KvCache,
                peak.kv_cache,
                format!(
                    "2 (k, v) × layers × kv heads × head_dim × batch × tokens × {} B",
                    inference.kv_cache.bytes()
                ),
            ),
            entry(
                C::Activations,
                peak.activations,
                match peak.phase {
                    "decode" => {
                        "the cache tensor being grown by torch.cat, one token's hidden states, last-position logits"
                    }
                    "prefill.logits" => {
                        "logits of the prompt (batch × prompt × vocab) and the final hidden states"
                    }
                    "prefill.delta_net" => {
                        "in the last gated DeltaNet layer: 3 hidden-size tensors, its convolution output and gate, and the chunked delta rule's fp32 working set (10 head-width and 3 chunk-width tensors per position and value head)"
                    }
                    _ => {
                        "in the last layer: 4 hidden-size tensors and the MLP's act, up and product (or attention scores when eager)"
                    }
                },
            ),
            entry(C::Inputs, peak.inputs, "input_ids, attention_mask, position_ids (int64)"),
        ];
        if peak.state > 0 {
            entries.push(entry(
                C::RecurrentState,
                peak.state,
                "per sequence, in each gated DeltaNet layer the peak has run: the convolution's \
                 last kernel inputs (conv_dim × kernel, model type) and the recurrent state (value \
                 heads × key dim × value dim, fp32); constant in the context",
            ));
        }
        ledger.phase(peak.phase, entries)?;
    }
    let mut notes = Vec::new();
    if inference.kv_cache == crate::workload::KvCacheType::OneByte {
        notes.push("an 8-bit KV cache is counted at 1 byte per element, as vLLM (fp8) and llama.cpp (q8_0 ≈ 1.06) store it; transformers' DynamicCache has none, and its QuantizedCache keeps the last 128 tokens in full precision".to_owned());
    }
    ledger.finish(runtime, base.total, 0, 0, notes)
}

/// Which moment of the recomputed layer sets the checkpointed recompute's peak.
#[derive(Clone, Copy)]
pub(crate) enum RecomputeMoment {
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
    use crate::dtype::WeightFormat;
    use crate::parallel::{Layout, Offload, Strategy};
    use crate::toy;
    use crate::workload::{AttentionImpl, Method, Optimizer, OptimizerImpl, Precision, Training};

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
