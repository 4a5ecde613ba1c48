/*!
vLLM and SGLang: a paged KV cache sized from what is left of a memory budget.

Both engines load the weights, then give the rest of a fraction of the GPU's
memory to a pool of KV-cache pages. The pool's capacity in tokens, and so
how many requests run at once, follows from the per-token bytes of the
cache. Sources (read at the commits named in [`VLLM_VERSION`] and
[`SGLANG_VERSION`]):

- vLLM: `Worker.determine_available_memory` (`vllm/v1/worker/gpu_worker.py`):
  `available = ceil(total × gpu_memory_utilization) − weights − the profile
  run's peak activation increase − non-torch increase − the CUDA-graph
  estimate`; pages of `block_size` tokens (`AttentionSpec.page_size_bytes`,
  `vllm/v1/kv_cache_interface.py`); `num_blocks = available // page //
  layers per group` and the logged capacity and concurrency
  (`_report_kv_cache_config`, `vllm/v1/core/kv_cache_utils.py`).
- SGLang: the default `--mem-fraction-static` from the GPU's size
  (`ServerArgs._handle_gpu_memory_settings`), the pool `available = free
  memory before loading × mem_fraction_static − weights`
  (`_profile_available_bytes`), and `max_total_num_tokens = available //
  cell` with `cell` the bytes of one token over all layers
  (`DefaultPoolConfigurator`).
*/

use crate::dtype::{WeightFormat, linear_weight_bytes};
use crate::error::{CoreError, Setting};
use crate::memory::ledger::MemoryComponent as C;
use crate::memory::runtime::{MIB, Runtime};
use crate::memory::weights::{param_tensors, weight_bytes};
use crate::parallel::{VLLM_VOCAB_PADDING, tensor_parallel_rank_padded};
use crate::spec::{AttentionKind, FeedForward, ModelSpec};
use crate::workload::Inference;

use super::{ServingEstimate, gib, part};

/// The vLLM source this profile follows.
pub const VLLM_VERSION: &str = "vLLM main after v0.21.0 (commit 4ff865c, 2026-05-29)";
/// The SGLang source this profile follows.
pub const SGLANG_VERSION: &str = "SGLang main (commit b276a9a, 2026-07-02)";

/// vLLM's default `gpu_memory_utilization` since PR #38284 (2026-04-21; 0.9 before).
pub const VLLM_DEFAULT_UTILIZATION: f64 = 0.92;
/// vLLM's `CacheConfig.DEFAULT_BLOCK_SIZE`. The attention backend may change it
/// (`update_block_size_for_backend`); for latent attention `_get_backend_priorities`
/// (`platforms/cuda.py`) puts `FLASH_ATTN_MLA` first on Hopper and earlier, which
/// takes any multiple of 16, so 16 stays (on Blackwell, not in the GPU catalog,
/// FlashInfer-MLA's 32 would apply).
pub const VLLM_DEFAULT_BLOCK_SIZE: u64 = 16;
/// The longest request when the config states no length: 2048 tokens in both
/// engines (vLLM's `_get_and_verify_max_len`, SGLang's `get_context_length`).
const FALLBACK_MAX_MODEL_LEN: u64 = 2048;
/// `max_cudagraph_capture_size`'s cap (`config/vllm.py`).
const VLLM_MAX_CAPTURE: u64 = 512;

/// Which engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PagedEngine {
    /// vLLM's V1 engine.
    Vllm,
    /// SGLang's runtime.
    Sglang,
}

/// How the engine is started and what it is asked to serve.
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct PagedSettings {
    /// The engine.
    pub engine: PagedEngine,
    /// The GPU's memory as the driver reports it (`cudaMemGetInfo` total), bytes.
    pub gpu_total_bytes: u64,
    /// An A100 (vLLM gives A100s the smaller batch defaults whatever their memory).
    pub gpu_is_a100: bool,
    /// vLLM `--gpu-memory-utilization` / SGLang `--mem-fraction-static`; `None` = default.
    pub memory_fraction: Option<f64>,
    /// Tensor-parallel size (`--tensor-parallel-size`, `--tp`).
    pub tensor_parallel: u64,
    /// Tokens per KV page (vLLM `--block-size`, SGLang `--page-size`); `None` = default.
    pub block_size: Option<u64>,
    /// Longest request (`--max-model-len`, `--context-length`); `None` = the model's.
    pub max_model_len: Option<u64>,
    /// vLLM `--max-num-batched-tokens` / SGLang `--chunked-prefill-size`; `None` = default.
    pub max_num_batched_tokens: Option<u64>,
    /// vLLM `--max-num-seqs`; `None` = default.
    pub max_num_seqs: Option<u64>,
    /// vLLM's offline `LLM` class (larger batch defaults) rather than `vllm serve`.
    pub offline: bool,
    /// How weights are stored.
    pub weights: WeightFormat,
    /// Bytes per cached element (`--kv-cache-dtype`: 2 for auto with a 16-bit model, 1 for fp8).
    pub kv_element_bytes: u64,
    /// Tokens of one request of the workload (prompt + generated).
    pub request_tokens: u64,
    /// Requests the workload runs at once.
    pub concurrent_requests: u64,
    /// vLLM's CUDA-graph memory; `None` = the estimate below.
    pub cuda_graph_bytes: Option<u64>,
}

impl PagedSettings {
    /// `engine` on a GPU of `gpu_total_bytes`, with the engine's own defaults
    /// for every flag (`None`), one GPU, bf16 weights and cache, and one request
    /// of [`Inference::default`]'s prompt and generated tokens.
    pub fn new(engine: PagedEngine, gpu_total_bytes: u64) -> Self {
        let request = Inference::default();
        PagedSettings {
            engine,
            gpu_total_bytes,
            gpu_is_a100: false,
            memory_fraction: None,
            tensor_parallel: 1,
            block_size: None,
            max_model_len: None,
            max_num_batched_tokens: None,
            max_num_seqs: None,
            offline: false,
            weights: request.weights,
            kv_element_bytes: request.kv_cache.bytes(),
            request_tokens: request.prompt_len + request.gen_len,
            concurrent_requests: request.batch_size,
            cuda_graph_bytes: None,
        }
    }
}

/// The per-token KV geometry of the model on one rank.
struct KvGeometry {
    /// Bytes of one token in one layer.
    token_layer_bytes: u64,
    /// Layers with full attention.
    full_layers: u64,
    /// Sliding-window layers with their window.
    sliding: Vec<u64>,
}

/// The KV geometry of `rank`, one tensor-parallel rank of the model: its KV heads
/// are the model's divided by the ranks, at least one (`max(1, kv // tp)`, whole
/// heads since `estimate_paged` checks the division); a latent entry is not divided
/// (`MLAAttentionSpec`; SGLang's MLA cell).
fn kv_geometry(rank: &ModelSpec, element: u64) -> Result<KvGeometry, CoreError> {
    let mut token_layer_bytes = None;
    let mut full_layers = 0;
    let mut sliding = Vec::new();
    for group in &rank.layers {
        let attention = &group.layer.attention;
        let (keys, values) = attention.kv_cache_widths();
        let width = keys + values;
        let bytes = width.checked_mul(element).ok_or(CoreError::Overflow { what: "KV page" })?;
        if *token_layer_bytes.get_or_insert(bytes) != bytes {
            return Err(CoreError::InvalidWorkload {
                setting: Setting::Engine,
                reason: "layers with different KV widths are not modelled for paged engines".into(),
            });
        }
        match attention.sliding_window {
            Some(window) => sliding
                .extend(std::iter::repeat_n(window, usize::try_from(group.count).unwrap_or(0))),
            None => full_layers += group.count,
        }
    }
    Ok(KvGeometry { token_layer_bytes: token_layer_bytes.unwrap_or(0), full_layers, sliding })
}

/// The rank's weights in the engine's storage.
///
/// Both engines quantize the experts of a MoE layer like every other linear
/// weight (vLLM's `FusedMoE` with the checkpoint's quant method, SGLang's the
/// same), whereas transformers keeps fused expert banks as plain parameters:
/// so the banks (`experts.gate_up_proj`, `experts.down_proj`) are counted here
/// as `experts` linear weights each in the chosen format.
fn rank_weights(spec: &ModelSpec, settings: &PagedSettings) -> Result<u64, CoreError> {
    let overflow = CoreError::Overflow { what: "weight bytes" };
    let rank = tensor_parallel_rank_padded(spec, settings.tensor_parallel, VLLM_VOCAB_PADDING);
    let format = settings.weights;
    let compute = u128::from(format.compute_type().bytes());
    let mut bytes = weight_bytes(&param_tensors(&rank), format, format.compute_type())
        .ok_or(overflow.clone())?;
    if format.is_quantized() {
        let hidden = rank.hidden_size;
        for group in &rank.layers {
            let FeedForward::Moe(moe) = &group.layer.feed_forward else { continue };
            if moe.expert_tensors.is_empty() {
                continue;
            }
            let size = moe.expert_intermediate_size;
            let up = if moe.gated { 2 * size } else { size };
            let float = (u128::from(up) * u128::from(hidden)
                + u128::from(hidden) * u128::from(size))
                * compute;
            let quantized = u128::from(
                linear_weight_bytes(up, hidden, format)
                    .and_then(|a| linear_weight_bytes(hidden, size, format).map(|b| a + b))
                    .ok_or(overflow.clone())?,
            );
            let per_layer = u128::from(moe.num_experts) * float.saturating_sub(quantized);
            bytes = bytes.saturating_sub(per_layer * u128::from(group.count));
        }
    }
    u64::try_from(bytes).map_err(|_| overflow)
}

/// Activation bytes of one forward pass over `tokens` tokens with attention
/// skipped (vLLM's profile run builds no attention metadata): the largest of
/// a layer's MLP point (input and residual, the fused gate/up output and the
/// activation's output; for a MoE layer the fused-MoE kernel's three
/// intermediate caches over the routed tokens) and its attention point
/// (input, residual, the qkv output and the attention output).
#[expect(
    clippy::many_single_char_names,
    reason = "the formula's own symbols: tokens, hidden, bytes"
)]
fn forward_activation(rank: &ModelSpec, tokens: u64, element: u64) -> u64 {
    let (t, h, e) = (u128::from(tokens), u128::from(rank.hidden_size), u128::from(element));
    let mut worst = 0u128;
    for group in &rank.layers {
        let layer = &group.layer;
        let a = &layer.attention;
        let qkv_width = match a.kind {
            AttentionKind::Latent(dims) => {
                u128::from(a.num_heads) * u128::from(dims.qk_nope_head_dim + dims.qk_rope_head_dim)
                    + u128::from(dims.kv_lora_rank + dims.qk_rope_head_dim)
            }
            // Gated DeltaNet is refused before this (`refuse_unmodelled`).
            AttentionKind::Standard
            | AttentionKind::GatedDeltaNet(_)
            | AttentionKind::ShortConv { .. } => {
                u128::from(a.num_heads + 2 * a.num_kv_heads) * u128::from(a.head_dim)
            }
        };
        let attention =
            t * (2 * h + qkv_width + u128::from(a.num_heads) * u128::from(a.head_dim)) * e;
        let mlp = match &layer.feed_forward {
            FeedForward::Dense { intermediate_size, .. } => {
                t * (2 * h + 3 * u128::from(*intermediate_size)) * e
            }
            FeedForward::Moe(moe) => {
                let routed = t * u128::from(moe.experts_per_token);
                let i = u128::from(moe.expert_intermediate_size);
                t * 2 * h * e + routed * (3 * i + h) * e
            }
        };
        worst = worst.max(attention).max(mlp);
    }
    u64::try_from(worst).unwrap_or(u64::MAX)
}

/// The sampler's peak in the profile run: logits of `rows` rows in the model's
/// type, their fp32 copy and the softmax probabilities, over the whole
/// vocabulary on every rank: vLLM V1's `LogitsProcessor._gather_logits`
/// all-gathers the vocabulary-parallel logits (`use_all_gather`), so the
/// sampler does not shrink with tensor parallelism (logs of Qwen3-32B show
/// the same activation peak at TP 1 and TP 2, issue #19).
fn sampler_activation(spec: &ModelSpec, rows: u64, element: u64) -> u64 {
    let cells = u128::from(rows) * u128::from(spec.vocab_size);
    u64::try_from(cells * u128::from(element + 4 + 4)).unwrap_or(u64::MAX)
}

fn fraction_in_range(value: f64, setting: Setting) -> Result<f64, CoreError> {
    if value > 0.0 && value <= 1.0 {
        Ok(value)
    } else {
        Err(CoreError::InvalidWorkload {
            setting,
            reason: format!("must be in (0, 1], got {value}"),
        })
    }
}

fn at_least_one(value: u64, setting: Setting) -> Result<u64, CoreError> {
    if value == 0 {
        Err(CoreError::InvalidWorkload { setting, reason: "must be at least 1".into() })
    } else {
        Ok(value)
    }
}

#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "fractions of byte counts far below 2^53"
)]
fn times(bytes: u64, fraction: f64) -> u64 {
    (bytes as f64 * fraction).ceil() as u64
}

#[expect(clippy::cast_precision_loss, reason = "block and request counts far below 2^53")]
fn ratio(a: u64, b: u64) -> f64 {
    if b == 0 { 0.0 } else { a as f64 / b as f64 }
}

/// Estimates what a paged engine holds per GPU and how many requests it serves.
///
/// # Errors
/// A tensor-parallel size that does not divide the attention heads, settings
/// out of range, or sizes that overflow.
pub fn estimate_paged(
    spec: &ModelSpec,
    settings: &PagedSettings,
    runtime: &Runtime,
) -> Result<ServingEstimate, CoreError> {
    let context = match settings.engine {
        PagedEngine::Vllm => "vLLM",
        PagedEngine::Sglang => "SGLang",
    };
    crate::memory::refuse_unmodelled(spec, context, false)?;
    let tp = at_least_one(settings.tensor_parallel, Setting::TensorParallel)?;
    if !tp_divides(spec, tp) {
        let (heads, kv_heads) = spec
            .layers
            .first()
            .map_or((0, 0), |g| (g.layer.attention.num_heads, g.layer.attention.num_kv_heads));
        return Err(CoreError::InvalidWorkload {
            setting: Setting::TensorParallel,
            reason: format!(
                "{tp} must divide the {heads} attention heads, and the {kv_heads} KV heads when \
                 there are more of them than ranks (both engines require it)"
            ),
        });
    }
    at_least_one(settings.request_tokens, Setting::RequestTokens)?;
    at_least_one(settings.kv_element_bytes, Setting::KvCacheType)?;
    match settings.engine {
        PagedEngine::Vllm => vllm(spec, settings, runtime, tp),
        PagedEngine::Sglang => sglang(spec, settings, runtime, tp),
    }
}

/// Whether both engines accept `tp` ranks for `spec`: it divides every layer's
/// attention heads, and its KV heads when there are more of them than ranks
/// (vLLM's `QKVParallelLinear` replicates fewer KV heads than ranks, else
/// divides them; SGLang the same).
fn tp_divides(spec: &ModelSpec, tp: u64) -> bool {
    spec.layers.iter().all(|g| {
        let a = &g.layer.attention;
        a.num_heads % tp == 0 && (a.num_kv_heads <= tp || a.num_kv_heads % tp == 0)
    })
}

/// vLLM's scheduler limits as it settles them: the flags given, else its
/// defaults for the GPU.
struct VllmLimits {
    utilization: f64,
    block: u64,
    max_model_len: u64,
    max_num_seqs: u64,
    /// Tokens of one scheduler step (`--max-num-batched-tokens`).
    batched: u64,
}

impl VllmLimits {
    fn new(spec: &ModelSpec, settings: &PagedSettings) -> Result<Self, CoreError> {
        let utilization = fraction_in_range(
            settings.memory_fraction.unwrap_or(VLLM_DEFAULT_UTILIZATION),
            Setting::GpuMemoryUtilization,
        )?;
        let block = at_least_one(
            settings.block_size.unwrap_or(VLLM_DEFAULT_BLOCK_SIZE),
            Setting::BlockSize,
        )?;
        let max_model_len = at_least_one(
            settings
                .max_model_len
                .or(spec.max_position_embeddings)
                .unwrap_or(FALLBACK_MAX_MODEL_LEN),
            Setting::MaxModelLen,
        )?;
        // `get_batch_defaults` (`engine/arg_utils.py`): GPUs of ≥ 70 GiB other than the A100.
        let large = settings.gpu_total_bytes >= 70 * 1024 * MIB && !settings.gpu_is_a100;
        let (default_tokens, default_seqs) = match (large, settings.offline) {
            (true, false) => (8192, 1024),
            (true, true) => (16384, 1024),
            (false, false) => (2048, 256),
            (false, true) => (8192, 256),
        };
        let max_num_seqs =
            at_least_one(settings.max_num_seqs.unwrap_or(default_seqs), Setting::MaxNumSeqs)?;
        let batched = at_least_one(
            settings
                .max_num_batched_tokens
                .unwrap_or_else(|| default_tokens.min(max_num_seqs.saturating_mul(max_model_len))),
            Setting::MaxNumBatchedTokens,
        )?;
        Ok(VllmLimits { utilization, block, max_model_len, max_num_seqs, batched })
    }
}

/// CUDA graphs, unless given: the graph pool holds one forward's activations
/// at the largest capture size, and every further graph at least 1 MiB
/// (vLLM's own floor in `profile_cudagraph_memory`); sizes [1, 2, 4] + 8..256
/// by 8 + 256.. by 16, captured for the piecewise and the full decode mode.
/// Returns the bytes, the largest capture size and the count of sizes.
fn vllm_cuda_graphs(
    rank: &ModelSpec,
    settings: &PagedSettings,
    limits: &VllmLimits,
    element: u64,
) -> (u64, u64, u64) {
    let capture = limits.max_num_seqs.saturating_mul(2).min(VLLM_MAX_CAPTURE).min(limits.batched);
    let sizes = [1, 2, 4].iter().filter(|s| **s <= capture).count()
        + (8..(capture + 1).min(256)).step_by(8).count()
        + (256..=capture).step_by(16).count();
    let sizes = sizes as u64;
    let graphs = settings
        .cuda_graph_bytes
        .unwrap_or_else(|| forward_activation(rank, capture, element) + 2 * sizes * MIB);
    (graphs, capture, sizes)
}

/// vLLM's KV-cache groups (`get_kv_cache_groups`): one per layer type, or
/// groups of equal size when full and sliding layers mix; the layers per group.
fn vllm_group_size(full: u64, sliding: u64) -> u64 {
    match (full, sliding) {
        (0, n) | (n, 0) => n,
        (f, s) => {
            let (small, big) = (f.min(s), f.max(s));
            if 2 * big < 3 * small { big } else { small }
        }
    }
    .max(1)
}

/// What vLLM's budget is made of, in bytes.
struct VllmBudget {
    /// `ceil(total × --gpu-memory-utilization)`.
    requested: u64,
    /// Free at start-up, after the CUDA context and NCCL.
    free_at_start: u64,
    nccl: u64,
    /// Weights, activations and CUDA graphs.
    non_kv: u64,
    /// What is left of the budget for the KV cache.
    available: u64,
}

/// The KV cache in blocks: allocated, and needed by the longest and the asked request.
struct VllmBlocks {
    num_blocks: u64,
    per_max: u64,
    per_request: u64,
}

/// Whether vLLM starts (its checks at start-up, in their order) and serves
/// the asked requests at once, with the notes that say why not.
fn vllm_verdict(
    settings: &PagedSettings,
    limits: &VllmLimits,
    budget: &VllmBudget,
    blocks: &VllmBlocks,
) -> (bool, bool, Vec<String>) {
    let &VllmBudget { requested, free_at_start, nccl, non_kv, available } = budget;
    let &VllmBlocks { num_blocks, per_max, per_request } = blocks;
    let (utilization, max_model_len) = (limits.utilization, limits.max_model_len);
    let mut notes = Vec::new();
    let starts = requested <= free_at_start && available > 0 && num_blocks >= per_max;
    if requested > free_at_start {
        notes.push(format!(
            "vLLM refuses to start: it asks for {:.2} GiB ({utilization} of the GPU) but only {:.2} GiB are free after the CUDA context{}; lower --gpu-memory-utilization",
            gib(requested),
            gib(free_at_start),
            if nccl > 0 { " and NCCL" } else { "" }
        ));
    } else if available == 0 {
        notes.push(format!(
            "vLLM refuses to start: weights, activations and CUDA graphs ({:.2} GiB) leave nothing of the {:.2} GiB budget for the KV cache",
            gib(non_kv),
            gib(requested)
        ));
    } else if num_blocks < per_max {
        notes.push(format!(
            "vLLM refuses to start: one request of --max-model-len {max_model_len} tokens needs {per_max} blocks, the cache has {num_blocks}; lower --max-model-len"
        ));
    }
    // A request past the window is refused with a 400 (`_validate_model_input`,
    // vllm/v1/engine/processor.py): it is never queued.
    let too_long = settings.request_tokens > max_model_len;
    let serves = !too_long
        && settings.concurrent_requests <= limits.max_num_seqs
        && num_blocks >= per_request.saturating_mul(settings.concurrent_requests);
    if too_long {
        notes.push(format!(
            "vLLM rejects a request of {} tokens: it is longer than --max-model-len {max_model_len}",
            settings.request_tokens
        ));
    } else if starts && !serves {
        notes.push(format!(
            "{} requests of {} tokens need {} blocks at once; the cache has {num_blocks} (the scheduler queues the rest)",
            settings.concurrent_requests,
            settings.request_tokens,
            per_request.saturating_mul(settings.concurrent_requests)
        ));
    }
    notes.push("activations and CUDA graphs are measured by vLLM at start-up; here they are estimated (see their formulas): read the real figures from the log's 'Available KV cache memory' and 'Estimated CUDA graph memory' lines and pass --cuda-graph-mib to match".to_owned());
    (starts, serves, notes)
}

fn vllm(
    spec: &ModelSpec,
    settings: &PagedSettings,
    runtime: &Runtime,
    tp: u64,
) -> Result<ServingEstimate, CoreError> {
    let total = settings.gpu_total_bytes;
    let limits = VllmLimits::new(spec, settings)?;
    let VllmLimits { utilization, block, max_model_len, max_num_seqs, batched } = limits;

    let element = settings.weights.compute_type().bytes();
    let rank = tensor_parallel_rank_padded(spec, tp, VLLM_VOCAB_PADDING);
    let weights = rank_weights(spec, settings)?;
    let rows = batched.min(max_num_seqs);
    let forward = forward_activation(&rank, batched, element);
    let sampler = sampler_activation(spec, rows, element);
    let activation = forward.max(sampler);
    let (graphs, capture, sizes) = vllm_cuda_graphs(&rank, settings, &limits, element);
    let requested = times(total, utilization);
    let nccl = if tp > 1 { runtime.nccl_bytes } else { 0 };
    let free_at_start = total.saturating_sub(runtime.cuda_context_bytes).saturating_sub(nccl);

    let geometry = kv_geometry(&rank, settings.kv_element_bytes)?;
    let page = geometry.token_layer_bytes.saturating_mul(block);
    let full = geometry.full_layers;
    let swa = geometry.sliding.len() as u64;
    let group_size = vllm_group_size(full, swa);
    let non_kv = weights.saturating_add(activation).saturating_add(graphs);
    let available = requested.saturating_sub(non_kv);
    let num_blocks = available / page.max(1) / group_size;
    let kv_bytes = num_blocks * page * group_size;
    // Blocks one request of `len` tokens takes per group layer (`max_memory_usage_bytes`).
    let window = geometry.sliding.iter().copied().max().unwrap_or(0);
    let blocks_for = |len: u64| -> u64 {
        let full_groups = full.div_ceil(group_size);
        let swa_groups = swa.div_ceil(group_size);
        let swa_blocks =
            window.saturating_sub(1).saturating_add(batched).min(len).div_ceil(block) + 1;
        full_groups * len.div_ceil(block) + swa_groups * swa_blocks
    };
    let per_max = blocks_for(max_model_len);
    let max_concurrency = ratio(num_blocks, per_max);
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss,
        reason = "a token count"
    )]
    let kv_tokens = (max_concurrency * max_model_len as f64) as u64;
    let per_request = blocks_for(settings.request_tokens);
    let at_request = ratio(num_blocks, per_request).min(max_num_seqs as f64);

    let budget = VllmBudget { requested, free_at_start, nccl, non_kv, available };
    let blocks = VllmBlocks { num_blocks, per_max, per_request };
    let (starts, serves, notes) = vllm_verdict(settings, &limits, &budget, &blocks);

    let gpu_parts = vec![
        part(
            C::CudaContext,
            runtime.cuda_context_bytes,
            "outside the budget: vLLM takes its memory snapshot after creating it",
        ),
        part(
            C::Weights,
            weights,
            if tp > 1 {
                format!(
                    "{}, this rank's 1/{tp} of heads, MLP columns and vocabulary; norms whole",
                    settings.weights.name()
                )
            } else {
                format!("all weights in {}", settings.weights.name())
            },
        ),
        part(
            C::ActivationProfile,
            activation,
            format!(
                "peak of the profile run: forward of --max-num-batched-tokens {batched} tokens without attention ({:.2} GiB), or the sampler's logits, fp32 copy and probabilities over min({batched}, --max-num-seqs {max_num_seqs}) rows ({:.2} GiB)",
                gib(forward),
                gib(sampler)
            ),
        ),
        part(
            C::CudaGraphs,
            graphs,
            if settings.cuda_graph_bytes.is_some() {
                "as given".to_owned()
            } else {
                format!(
                    "one forward at the largest capture size ({capture} tokens) + 1 MiB for each of 2 × {sizes} graphs (estimate)"
                )
            },
        ),
        part(
            C::KvCache,
            kv_bytes,
            format!(
                "{num_blocks} blocks × {block} tokens × {} B per token and layer × {group_size} layers per group: what is left of ceil(total × {utilization})",
                geometry.token_layer_bytes
            ),
        ),
    ];
    Ok(ServingEstimate {
        kv_capacity_tokens: kv_tokens,
        max_concurrency: Some(max_concurrency),
        concurrency_at_request: at_request,
        settings: vec![
            ("--gpu-memory-utilization".into(), utilization.to_string()),
            ("--tensor-parallel-size".into(), tp.to_string()),
            ("--block-size".into(), block.to_string()),
            ("--max-model-len".into(), max_model_len.to_string()),
            ("--max-num-batched-tokens".into(), batched.to_string()),
            ("--max-num-seqs".into(), max_num_seqs.to_string()),
        ],
        fits: starts && serves,
        notes,
        ..ServingEstimate::from_parts(
            "vllm",
            VLLM_VERSION,
            gpu_parts,
            Vec::new(),
            (nccl, "communicator buffers (before the snapshot, outside the budget)"),
        )
    })
}

/// SGLang's default `--mem-fraction-static` for a GPU of `gpu_mib` MiB
/// (`_handle_gpu_memory_settings`), with the chunked-prefill size it implies.
pub fn sglang_default_fraction(gpu_mib: u64, tp: u64, latent: bool) -> (f64, u64) {
    let (chunked, decode_bs) = match gpu_mib {
        0..20_480 => (2048, 8),
        20_480..35_840 => (2048, if tp < 4 { 24 } else { 80 }),
        35_840..61_440 => (4096, if tp < 4 { 32 } else { 160 }),
        61_440..163_840 => (8192, if tp < 4 { 256 } else { 512 }),
        _ => (16384, 512),
    };
    // Prefill CUDA-graph batch sizes up to the chunk (2048 for MLA models).
    let prefill_max = if latent { 2048 } else { chunked };
    let prefill_sizes = (4..=32)
        .step_by(4)
        .chain((48..=256).step_by(16))
        .chain((288..=512).step_by(32))
        .chain((576..=1024).step_by(64))
        .chain((1280..=4096).step_by(256))
        .chain((4608..=prefill_max.max(4608)).step_by(512))
        .filter(|size| *size <= prefill_max)
        .count() as u64;
    let mut reserved = 512 + chunked.max(2048) * 3 / 2 + decode_bs * 2 + tp * 128;
    reserved += if latent { 1536 } else { prefill_sizes * 8 };
    if gpu_mib > 61_440 {
        reserved = reserved.max(10_240);
    }
    #[expect(clippy::cast_precision_loss, reason = "MiB counts far below 2^53")]
    let fraction = ((gpu_mib.saturating_sub(reserved)) as f64 / gpu_mib.max(1) as f64 * 1000.0)
        .round()
        / 1000.0;
    (fraction, chunked)
}

fn sglang(
    spec: &ModelSpec,
    settings: &PagedSettings,
    runtime: &Runtime,
    tp: u64,
) -> Result<ServingEstimate, CoreError> {
    let total = settings.gpu_total_bytes;
    let latent =
        spec.layers.iter().any(|g| matches!(g.layer.attention.kind, AttentionKind::Latent(_)));
    let (default_fraction, chunked) = sglang_default_fraction(total / MIB, tp, latent);
    let fraction = fraction_in_range(
        settings.memory_fraction.unwrap_or(default_fraction),
        Setting::MemFractionStatic,
    )?;
    let page = at_least_one(settings.block_size.unwrap_or(1), Setting::PageSize)?;
    let context = at_least_one(
        settings.max_model_len.or(spec.max_position_embeddings).unwrap_or(FALLBACK_MAX_MODEL_LEN),
        Setting::ContextLength,
    )?;
    let weights = rank_weights(spec, settings)?;
    let nccl = if tp > 1 { runtime.nccl_bytes } else { 0 };
    // Free memory measured before the weights load: after the CUDA context and NCCL.
    let free_before = total.saturating_sub(runtime.cuda_context_bytes).saturating_sub(nccl);
    let budget = times(free_before, fraction);
    let available = budget.saturating_sub(weights);
    let rank = tensor_parallel_rank_padded(spec, tp, VLLM_VOCAB_PADDING);
    let mut geometry = kv_geometry(&rank, settings.kv_element_bytes)?;
    let layers = geometry.full_layers + geometry.sliding.len() as u64;
    // A model whose every layer slides (Mistral v0.1, StarCoder2) gets one plain pool.
    if geometry.full_layers == 0 {
        geometry.full_layers = layers;
        geometry.sliding.clear();
    }
    // Hybrid sliding-window models: full-attention tokens plus 0.8 as many in the
    // sliding layers' own pool (`HybridSWAPoolConfigurator`, swa_full_tokens_ratio).
    let swa = geometry.sliding.len() as u64;
    let cell_tenths = geometry.token_layer_bytes * (10 * geometry.full_layers + 8 * swa);
    let tokens = (available.saturating_mul(10) / cell_tenths.max(1)) / page * page;
    let kv_bytes = (tokens + page).saturating_mul(geometry.token_layer_bytes)
        * geometry.full_layers
        + ((tokens * 8 / 10) / page * page + page).saturating_mul(geometry.token_layer_bytes) * swa;
    let max_running = (tokens.saturating_mul(512) / context).clamp(2048, 4096).min(tokens / 2);
    let request = settings.request_tokens;
    let at_request = ratio(tokens, request).min(max_running as f64);
    let starts = tokens > 0;
    // A request past `--context-length` is refused (`validate_input_length`,
    // sglang/srt/managers/tokenizer_manager.py), never queued.
    let too_long = request > context;
    let serves = !too_long
        && tokens >= request.saturating_mul(settings.concurrent_requests)
        && settings.concurrent_requests <= max_running;
    let mut notes = Vec::new();
    if too_long {
        notes.push(format!(
            "SGLang rejects a request of {request} tokens: it is longer than --context-length {context}"
        ));
    }
    if available == 0 {
        notes.push(format!(
            "SGLang refuses to start: the weights ({:.2} GiB) exceed {fraction} of the free memory ({:.2} GiB)",
            gib(weights),
            gib(budget)
        ));
    } else if !serves && !too_long {
        notes.push(format!(
            "{} requests of {request} tokens need {} tokens of cache at once; the pool has {tokens}",
            settings.concurrent_requests,
            request.saturating_mul(settings.concurrent_requests)
        ));
    }
    notes.push(format!("SGLang does not profile activations: they and the CUDA graphs live in the remaining {:.1} % of the GPU", (1.0 - fraction) * 100.0));
    // What SGLang's own rule would leave for activations and CUDA graphs; far less
    // than that (a hand-set fraction) runs out of memory under load.
    let leftover = total.saturating_sub(runtime.cuda_context_bytes + nccl).saturating_sub(budget);
    let default_leftover = times(total, 1.0 - default_fraction);
    let starved = leftover < default_leftover / 2;
    if starved {
        notes.push(format!(
            "--mem-fraction-static {fraction} leaves {:.2} GiB for activations and CUDA graphs, less than half of what SGLang's default ({default_fraction}) leaves ({:.2} GiB): expect out-of-memory errors under load",
            gib(leftover),
            gib(default_leftover)
        ));
    }
    let gpu_parts = vec![
        part(C::CudaContext, runtime.cuda_context_bytes, "before SGLang measures free memory"),
        part(
            C::Weights,
            weights,
            format!(
                "all weights in {}{}",
                settings.weights.name(),
                if tp > 1 { format!(", 1/{tp} per rank") } else { String::new() }
            ),
        ),
        part(
            C::KvCache,
            kv_bytes,
            format!(
                "{tokens} tokens (+1 padding page) × {} B per token and layer × {layers} layers: free × {fraction} − weights",
                geometry.token_layer_bytes
            ),
        ),
        part(
            C::ActivationsAndCudaGraphs,
            total.saturating_sub(runtime.cuda_context_bytes + nccl).saturating_sub(budget),
            format!(
                "the rest of the GPU outside --mem-fraction-static {fraction} (chunked prefill {chunked} tokens), an upper bound"
            ),
        ),
    ];
    Ok(ServingEstimate {
        kv_capacity_tokens: tokens,
        max_concurrency: Some(ratio(tokens, context)),
        concurrency_at_request: at_request,
        settings: vec![
            ("--mem-fraction-static".into(), fraction.to_string()),
            ("--tp".into(), tp.to_string()),
            ("--page-size".into(), page.to_string()),
            ("--context-length".into(), context.to_string()),
            ("--chunked-prefill-size".into(), chunked.to_string()),
            ("max_running_requests".into(), max_running.to_string()),
        ],
        fits: starts && serves && !starved,
        notes,
        ..ServingEstimate::from_parts(
            "sglang",
            SGLANG_VERSION,
            gpu_parts,
            Vec::new(),
            (nccl, "communicator buffers (before SGLang measures free memory)"),
        )
    })
}

/// The smallest tensor-parallel size (a power of two up to `max_gpus`, dividing
/// the attention heads) at which the engine starts and serves the workload, with
/// its estimate; `None` if none does.
///
/// # Errors
/// See [`estimate_paged`].
pub fn fewest_gpus_paged(
    spec: &ModelSpec,
    settings: &PagedSettings,
    runtime: &Runtime,
    max_gpus: u64,
) -> Result<Option<(u64, ServingEstimate)>, CoreError> {
    let mut tp = 1;
    while tp <= max_gpus {
        if tp_divides(spec, tp) {
            let attempt = PagedSettings { tensor_parallel: tp, ..settings.clone() };
            // SGLang's default fraction shrinks as tp grows (it reserves memory
            // per rank): once a small GPU has none left, larger tp cannot start
            // either, and SGLang itself would refuse.
            if settings.engine == PagedEngine::Sglang && settings.memory_fraction.is_none() {
                let latent = spec
                    .layers
                    .iter()
                    .any(|g| matches!(g.layer.attention.kind, AttentionKind::Latent(_)));
                let (fraction, _) =
                    sglang_default_fraction(settings.gpu_total_bytes / MIB, tp, latent);
                if fraction <= 0.0 {
                    break;
                }
            }
            let estimate = estimate_paged(spec, &attempt, runtime)?;
            if estimate.fits {
                return Ok(Some((tp, estimate)));
            }
        }
        tp *= 2;
    }
    Ok(None)
}

#[cfg(test)]
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    clippy::cast_precision_loss,
    reason = "test arithmetic on small byte counts"
)]
mod tests {
    use super::*;
    use crate::dtype::FloatType;
    use crate::spec::LatentDims;
    use crate::toy;

    const GIB: u64 = 1 << 30;

    fn vllm_settings() -> PagedSettings {
        PagedSettings {
            engine: PagedEngine::Vllm,
            gpu_total_bytes: 80 * GIB,
            gpu_is_a100: false,
            memory_fraction: Some(0.9),
            tensor_parallel: 1,
            block_size: None,
            max_model_len: Some(8192),
            max_num_batched_tokens: Some(2048),
            max_num_seqs: Some(256),
            offline: false,
            weights: WeightFormat::Float(FloatType::Bf16),
            kv_element_bytes: 2,
            request_tokens: 1024,
            concurrent_requests: 1,
            cuda_graph_bytes: Some(GIB),
        }
    }

    fn bytes(e: &ServingEstimate, name: &str) -> u64 {
        e.gpu_parts.iter().find(|p| p.name == name).map_or(0, |p| p.bytes)
    }

    #[test]
    fn vllm_blocks_capacity_and_concurrency_follow_its_formulas() {
        let spec = toy::llama_8b();
        let e = estimate_paged(&spec, &vllm_settings(), &Runtime::HOPPER).unwrap();
        // Llama-3-8B has 8,030,261,248 parameters: 2 bytes each (plus 512-B rounding).
        let weights = bytes(&e, "weights");
        assert!((16_060_522_496..16_060_522_496 + (1 << 20)).contains(&weights), "{weights}");
        // available = ceil(80 GiB × 0.9) − weights − activation − CUDA graphs.
        let requested = (80.0 * 0.9 * GIB as f64).ceil() as u64;
        let available = requested - weights - bytes(&e, "activation profile") - GIB;
        // A page: 16 tokens × 2 (K, V) × 8 KV heads × 128 × 2 B = 64 KiB; 32 layers per group.
        let blocks = available / 65_536 / 32;
        assert_eq!(bytes(&e, "kv cache"), blocks * 65_536 * 32);
        // Logged: int(num_blocks / cdiv(8192, 16) × 8192) tokens, concurrency num_blocks / 512.
        assert_eq!(e.kv_capacity_tokens, (blocks as f64 / 512.0 * 8192.0) as u64);
        assert!((e.max_concurrency.unwrap() - blocks as f64 / 512.0).abs() < 1e-9);
        // Requests of 1024 tokens take 64 blocks each; no more than --max-num-seqs run at once.
        let expected = (blocks as f64 / 64.0).min(256.0);
        assert!((e.concurrency_at_request - expected).abs() < 1e-9);
        let many = PagedSettings { max_num_seqs: Some(100_000), ..vllm_settings() };
        let e = estimate_paged(&spec, &many, &Runtime::HOPPER).unwrap();
        let blocks = bytes(&e, "kv cache") / 65_536 / 32;
        assert!((e.concurrency_at_request - blocks as f64 / 64.0).abs() < 1e-9);
        assert!(e.fits);
    }

    #[test]
    fn tensor_parallelism_splits_weights_and_kv_heads() {
        let spec = toy::llama_8b();
        let one = estimate_paged(&spec, &vllm_settings(), &Runtime::HOPPER).unwrap();
        let two = PagedSettings { tensor_parallel: 2, ..vllm_settings() };
        let two = estimate_paged(&spec, &two, &Runtime::HOPPER).unwrap();
        let (w1, w2) = (bytes(&one, "weights"), bytes(&two, "weights"));
        // Norms stay whole: a little over half.
        assert!(w2 > w1 / 2 && w2 < w1 / 2 + (1 << 20), "{w1} {w2}");
        assert!(bytes(&two, "NCCL") > 0);
        // The sampler works on all-gathered logits: with a large --max-num-seqs its
        // peak (rows × the whole 128,256-token vocabulary × (2 + 4 + 4) B) is the
        // activation peak on every rank, at TP 1 and TP 2 alike.
        let sampled = |tp| {
            let s = PagedSettings {
                tensor_parallel: tp,
                max_num_batched_tokens: Some(1024),
                max_num_seqs: Some(1024),
                ..vllm_settings()
            };
            bytes(&estimate_paged(&spec, &s, &Runtime::HOPPER).unwrap(), "activation profile")
        };
        assert_eq!(sampled(1), 1024 * 128_256 * 10);
        assert_eq!(sampled(2), sampled(1));
        // 4 KV heads per rank: 32 KiB pages, so about twice the blocks per rank.
        let kv = bytes(&two, "kv cache");
        assert_eq!(kv % (32_768 * 32), 0);
        // 16 ranks and 8 KV heads: one head per rank (replicated), not zero.
        let sixteen = PagedSettings { tensor_parallel: 16, ..vllm_settings() };
        let e = estimate_paged(&spec, &sixteen, &Runtime::HOPPER).unwrap();
        assert_eq!(bytes(&e, "kv cache") % (8192 * 32), 0);
        assert!(bytes(&e, "kv cache") > 0);
        // 3 does not divide 32 heads.
        let three = PagedSettings { tensor_parallel: 3, ..vllm_settings() };
        let err = estimate_paged(&spec, &three, &Runtime::HOPPER).unwrap_err();
        assert!(
            matches!(err, CoreError::InvalidWorkload { setting: Setting::TensorParallel, .. }),
            "{err}"
        );
        // 8 ranks divide 32 heads but not 12 KV heads; 16 ranks replicate them.
        let mut twelve = spec.clone();
        twelve.layers[0].layer.attention.num_kv_heads = 12;
        let eight = PagedSettings { tensor_parallel: 8, ..vllm_settings() };
        assert!(estimate_paged(&twelve, &eight, &Runtime::HOPPER).is_err());
        assert!(estimate_paged(&twelve, &sixteen, &Runtime::HOPPER).is_ok());
    }

    #[test]
    fn latent_attention_caches_one_entry_per_token() {
        let mut spec = toy::llama_8b();
        let dims = LatentDims {
            q_lora_rank: Some(1536),
            kv_lora_rank: 512,
            qk_nope_head_dim: 128,
            qk_rope_head_dim: 64,
            v_head_dim: 128,
        };
        spec.layers[0].layer.attention.kind = AttentionKind::Latent(dims);
        let e = estimate_paged(&spec, &vllm_settings(), &Runtime::HOPPER).unwrap();
        // 16 tokens × (512 + 64) × 2 B = 18 KiB pages, not divided by TP.
        assert_eq!(bytes(&e, "kv cache") % (18_432 * 32), 0);
        let tp = PagedSettings { tensor_parallel: 4, block_size: Some(16), ..vllm_settings() };
        let e4 = estimate_paged(&spec, &tp, &Runtime::HOPPER).unwrap();
        assert_eq!(bytes(&e4, "kv cache") % (18_432 * 32), 0);
    }

    #[test]
    fn vllm_refuses_when_the_budget_is_exceeded_or_a_request_cannot_fit() {
        let spec = toy::llama_8b();
        let small = PagedSettings { gpu_total_bytes: 16 * GIB, ..vllm_settings() };
        let e = estimate_paged(&spec, &small, &Runtime::HOPPER).unwrap();
        assert!(!e.fits && e.notes[0].contains("refuses to start"), "{:?}", e.notes);
        let long = PagedSettings { max_model_len: Some(10_000_000), ..vllm_settings() };
        let e = estimate_paged(&spec, &long, &Runtime::HOPPER).unwrap();
        assert!(!e.fits && e.notes[0].contains("--max-model-len"), "{:?}", e.notes);
        // Asking for more than the whole GPU's free memory.
        let greedy = PagedSettings { memory_fraction: Some(1.0), ..vllm_settings() };
        let e = estimate_paged(&spec, &greedy, &Runtime::HOPPER).unwrap();
        assert!(!e.fits && e.notes[0].contains("--gpu-memory-utilization"));
    }

    #[test]
    fn fewest_gpus_is_the_smallest_tensor_parallel_size_that_serves() {
        let spec = toy::llama_8b();
        // 64 requests of 32K tokens need 2 × 32 × 8 × 128 × 2 B × 32768 × 64 = 256 GiB of cache.
        let settings = PagedSettings {
            max_model_len: Some(32_768),
            request_tokens: 32_768,
            concurrent_requests: 64,
            ..vllm_settings()
        };
        let (tp, e) = fewest_gpus_paged(&spec, &settings, &Runtime::HOPPER, 64).unwrap().unwrap();
        assert!(e.fits && tp > 1);
        let fewer = PagedSettings { tensor_parallel: tp / 2, ..settings.clone() };
        assert!(!estimate_paged(&spec, &fewer, &Runtime::HOPPER).unwrap().fits);
        assert!(fewest_gpus_paged(&spec, &settings, &Runtime::HOPPER, tp / 2).unwrap().is_none());
    }

    #[test]
    fn quantized_engines_quantize_the_experts_too() {
        // A Mixtral-8x7B-shaped MoE (8 experts of 14336 on hidden 4096, 32 layers):
        // the expert banks hold 32 × 8 × 3 × 14336 × 4096 elements, 90.2 GB in bf16.
        let mut spec = toy::llama_8b();
        let (experts, size, hidden) = (8u64, 14_336u64, 4_096u64);
        spec.layers[0].layer.feed_forward = FeedForward::Moe(crate::spec::Moe {
            num_experts: experts,
            experts_per_token: 2,
            expert_intermediate_size: size,
            gated: true,
            expert_linears: Vec::new(),
            expert_tensors: vec![
                crate::spec::Tensor::new("experts.gate_up_proj", experts * 2 * size * hidden),
                crate::spec::Tensor::new("experts.down_proj", experts * size * hidden),
            ],
            router_linears: Vec::new(),
            router_tensors: vec![crate::spec::Tensor::new("gate.weight", experts * hidden)],
            shared: Vec::new(),
            shared_intermediate_size: 0,
            peft_names: None,
        });
        let expert_bf16 = 32 * experts * 3 * size * hidden * 2;
        let big = PagedSettings { gpu_total_bytes: 400 * GIB, ..vllm_settings() };
        let bf16 = estimate_paged(&spec, &big, &Runtime::HOPPER).unwrap();
        let fp8 = PagedSettings { weights: WeightFormat::Fp8, ..big };
        let fp8 = estimate_paged(&spec, &fp8, &Runtime::HOPPER).unwrap();
        let (w16, w8) = (bytes(&bf16, "weights"), bytes(&fp8, "weights"));
        // FP8 keeps one byte per expert weight (and a 4-byte scale per 128 × 128 block):
        // at least 49 % of the experts' bf16 bytes are saved, on top of attention's.
        assert!(w16 - w8 > expert_bf16 / 100 * 49, "{w16} {w8}");
        assert!(w8 > expert_bf16 / 2, "{w8}");
    }

    #[test]
    fn sglang_with_no_room_left_for_activations_does_not_fit() {
        let spec = toy::llama_8b();
        let greedy = PagedSettings {
            engine: PagedEngine::Sglang,
            memory_fraction: Some(1.0),
            ..vllm_settings()
        };
        let e = estimate_paged(&spec, &greedy, &Runtime::HOPPER).unwrap();
        assert!(!e.fits && e.notes.iter().any(|n| n.contains("out-of-memory")), "{:?}", e.notes);
        let default = PagedSettings { memory_fraction: None, ..greedy };
        assert!(estimate_paged(&spec, &default, &Runtime::HOPPER).unwrap().fits);
    }

    #[test]
    fn a_request_past_the_window_is_rejected_not_queued() {
        let spec = toy::llama_8b();
        for engine in [PagedEngine::Vllm, PagedEngine::Sglang] {
            let at_window = PagedSettings {
                engine,
                request_tokens: 8192,
                memory_fraction: None,
                ..vllm_settings()
            };
            let e = estimate_paged(&spec, &at_window, &Runtime::HOPPER).unwrap();
            assert!(e.fits, "{engine:?}: {:?}", e.notes);
            let past = PagedSettings { request_tokens: 8193, ..at_window };
            let e = estimate_paged(&spec, &past, &Runtime::HOPPER).unwrap();
            assert!(!e.fits, "{engine:?}");
            assert!(
                e.notes.iter().any(|n| n.contains("rejects a request of 8193 tokens")),
                "{:?}",
                e.notes
            );
            assert!(!e.notes.iter().any(|n| n.contains("queues")), "{:?}", e.notes);
        }
    }

    #[test]
    fn sglang_default_fraction_follows_the_gpu_size_rule() {
        // Worked from `_handle_gpu_memory_settings`: reserved 13904 MiB on an H100 80GB
        // (81559 MiB) and on an H200 (143771 MiB); 4096 MiB on a 24 GB card.
        assert_eq!(sglang_default_fraction(81_559, 1, false), (0.83, 8192));
        assert_eq!(sglang_default_fraction(143_771, 1, false), (0.903, 8192));
        assert_eq!(sglang_default_fraction(24_564, 1, false), (0.833, 2048));
    }

    #[test]
    fn sglang_pool_is_the_fraction_of_free_memory_less_weights() {
        let spec = toy::llama_8b();
        let settings = PagedSettings {
            engine: PagedEngine::Sglang,
            memory_fraction: None,
            max_model_len: None,
            ..vllm_settings()
        };
        let e = estimate_paged(&spec, &settings, &Runtime::HOPPER).unwrap();
        let weights = bytes(&e, "weights");
        let (fraction, _) = sglang_default_fraction(80 * 1024, 1, false);
        let free = 80 * GIB - Runtime::HOPPER.cuda_context_bytes;
        let budget = (free as f64 * fraction).ceil() as u64;
        // 128 KiB per token: 32 layers × 2 × 8 heads × 128 × 2 B.
        assert_eq!(e.kv_capacity_tokens, (budget - weights) / 131_072);
    }
}
