/*!
llama.cpp (`llama-server`, `llama-cli`): weights per GGUF tensor type, a KV
cache of `n_ctx` cells per layer, ggml's compute buffer, and partial offload.

Sources, read at [`LLAMA_CPP_VERSION`]:
- Placement (`llama_model::load_tensors`, `src/llama-model.cpp`): with
  `-ngl N`, the output layer (final norm and head) is offloaded first, then
  the repeating layers from the last backwards; the token embeddings always
  stay in host memory. A head tied to the embeddings is loaded a second time
  for the output layer (`TENSOR_DUPLICATED`). Each layer's KV cache sits on
  its layer's device unless `--no-kv-offload`.
- Context (`llama_context`, `src/llama-context.cpp`): `n_ctx` rounded up to
  a multiple of 256; `-c 0` (the default) means the model's training context.
- KV cache (`llama_kv_cache`, `src/llama-kv-cache.cpp`): per layer a K
  tensor of `ggml_row_size(type_k, n_embd_k_gqa) × cells` and a V tensor
  likewise (none for multi-head latent attention); sliding-window layers hold
  `pad256(min(n_ctx, n_swa × n_seq + n_ubatch))` cells unless `--swa-full`
  (`llama-kv-cache-iswa.cpp`). A quantized V cache needs flash attention.
- `--fit` (on by default, `common/fit.cpp`): when the projected use exceeds
  the free memory less a 1 GiB margin, first the context shrinks (to a
  multiple of 256, not below 4096), then layers leave the GPU from the front.
- Compute buffer (`sched_reserve`): ggml-alloc's peak over a worst-case graph
  of `n_ubatch` tokens and outputs against the full KV length. It is not a
  closed formula; it is approximated here by its largest live set: the f32
  logits of the ubatch with the final hidden states, or a layer's attention
  (flash attention: f16 mask and output; without: the f32 `KQ` scores of all
  heads, soft-maxed in place, and the mask), or its feed-forward.
*/

use crate::error::{CoreError, Setting};
use crate::memory::layers_only;
use crate::memory::ledger::MemoryComponent as C;
use crate::memory::runtime::{MIB, Runtime};
use crate::memory::weights::param_tensors;
use crate::spec::{Attention, AttentionKind, FeedForward, ModelSpec};
use crate::workload::Inference;

use super::{DeviceShare, Part, ServingEstimate, StoredWeights, gib, part, sum};

/// The llama.cpp source this profile follows.
pub const LLAMA_CPP_VERSION: &str = "llama.cpp b10573+13 (commit b21e4de, 2026-08-22)";

/// Most sequences one llama.cpp context serves (`LLAMA_MAX_SEQ`, `src/llama-cparams.h`).
pub const LLAMA_MAX_SEQ: u64 = 256;

/// The context padding (`GGML_PAD(n_ctx, 256)` since PR #17046).
const CTX_PAD: u64 = 256;
/// `--fit-target`: free memory `--fit` leaves on each device.
const FIT_MARGIN: u64 = 1024 * MIB;
/// `--fit-ctx`: the smallest context `--fit` shrinks to.
const FIT_MIN_CTX: u64 = 4096;

/// A ggml tensor type for weights or the KV cache: `(elements per block, bytes per block)`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GgmlStorage {
    /// 32-bit float.
    F32,
    /// 16-bit float.
    F16,
    /// bfloat16.
    Bf16,
    /// 8-bit blocks of 32 with an f16 scale (34 bytes).
    Q8_0,
    /// 5-bit blocks of 32 with scale and minimum (24 bytes).
    Q5_1,
    /// 5-bit blocks of 32 with a scale (22 bytes).
    Q5_0,
    /// 4-bit blocks of 32 with scale and minimum (20 bytes).
    Q4_1,
    /// 4-bit blocks of 32 with a scale (18 bytes).
    Q4_0,
    /// 4-bit non-linear blocks of 32 (18 bytes).
    Iq4Nl,
}

impl GgmlStorage {
    /// Every type, for checks against the GGUF reader's table of ggml types.
    pub const ALL: [GgmlStorage; 9] = [
        GgmlStorage::F32,
        GgmlStorage::F16,
        GgmlStorage::Bf16,
        GgmlStorage::Q8_0,
        GgmlStorage::Q5_1,
        GgmlStorage::Q5_0,
        GgmlStorage::Q4_1,
        GgmlStorage::Q4_0,
        GgmlStorage::Iq4Nl,
    ];

    /// `(block size, bytes per block)` from ggml's type traits (`ggml.c`); the
    /// GGUF reader's full table (`vramfit_sources::gguf::GGML_TYPES`) holds the
    /// same figures, and a test keeps the two equal.
    pub fn block(self) -> (u64, u64) {
        match self {
            GgmlStorage::F32 => (1, 4),
            GgmlStorage::F16 | GgmlStorage::Bf16 => (1, 2),
            GgmlStorage::Q8_0 => (32, 34),
            GgmlStorage::Q5_1 => (32, 24),
            GgmlStorage::Q5_0 => (32, 22),
            GgmlStorage::Q4_1 => (32, 20),
            GgmlStorage::Q4_0 | GgmlStorage::Iq4Nl => (32, 18),
        }
    }

    /// llama.cpp's name (`-ctk q8_0`).
    pub fn name(self) -> &'static str {
        match self {
            GgmlStorage::F32 => "f32",
            GgmlStorage::F16 => "f16",
            GgmlStorage::Bf16 => "bf16",
            GgmlStorage::Q8_0 => "q8_0",
            GgmlStorage::Q5_1 => "q5_1",
            GgmlStorage::Q5_0 => "q5_0",
            GgmlStorage::Q4_1 => "q4_1",
            GgmlStorage::Q4_0 => "q4_0",
            GgmlStorage::Iq4Nl => "iq4_nl",
        }
    }

    fn quantized(self) -> bool {
        self.block().0 > 1
    }

    /// `ggml_row_size`: bytes of a row of `n` elements.
    fn row(self, n: u64, what: &str) -> Result<u64, CoreError> {
        let (block, bytes) = self.block();
        if !n.is_multiple_of(block) {
            return Err(CoreError::InvalidWorkload {
                setting: Setting::CacheTypes,
                reason: format!(
                    "{what} rows of {n} are not a multiple of {}'s block of {block}",
                    self.name()
                ),
            });
        }
        Ok(n / block * bytes)
    }
}

/// How llama.cpp is started (its command-line switches are booleans).
#[derive(Clone, Debug, PartialEq)]
#[expect(clippy::struct_excessive_bools, reason = "one field per llama.cpp switch")]
#[non_exhaustive]
pub struct LlamaCppSettings {
    /// `-c`: context cells; `None` = 0 = the model's training context.
    pub n_ctx: Option<u64>,
    /// Sequences decoded in parallel, sharing one unified cache of `n_ctx` cells
    /// (`-np N -kvu`; llama-cli runs 1, llama-server 4 by default).
    pub n_seq: u64,
    /// `-b`: logical batch (2048).
    pub n_batch: u64,
    /// `-ub`: physical batch (512).
    pub n_ubatch: u64,
    /// `-ctk`.
    pub cache_k: GgmlStorage,
    /// `-ctv`.
    pub cache_v: GgmlStorage,
    /// `-fa` (auto = on under CUDA when every layer's attention is on the GPU).
    pub flash_attn: bool,
    /// `-ngl`; `None` = auto: all layers, lowered by `--fit`.
    pub n_gpu_layers: Option<u64>,
    /// KV of offloaded layers on the GPU (no `-nkvo`).
    pub kv_offload: bool,
    /// `--swa-full`: sliding-window layers keep the whole context.
    pub swa_full: bool,
    /// `--fit` (on by default): shrink the context, then the GPU layers, to fit the GPU.
    pub fit: bool,
    /// The GPU's memory, bytes, when one is named.
    pub gpu_total_bytes: Option<u64>,
    /// Several GPUs (`--split-mode layer`, llama.cpp's default): each one's
    /// memory in device order. Empty (or one): a single GPU, `gpu_total_bytes`.
    pub devices: Vec<u64>,
    /// `--tensor-split`: each device's share (any scale); `None`: in
    /// proportion to each device's free memory, llama.cpp's default.
    pub tensor_split: Option<Vec<f64>>,
    /// Tokens of one request (prompt + generated).
    pub request_tokens: u64,
}

/// llama-server's defaults (`common/common.h`, `common_params`, late 2026):
/// the training context shrunk by `--fit` (on), every layer on the GPU
/// unless `--fit` lowers it, one sequence, `-b 2048`, `-ub 512`, f16 K and V
/// caches, flash attention (`-fa auto`, on under CUDA), the KV cache on the
/// GPU, no `--swa-full`; no GPU named, and one request of
/// [`Inference::default`]'s prompt and generated tokens.
impl Default for LlamaCppSettings {
    fn default() -> Self {
        let request = Inference::default();
        LlamaCppSettings {
            n_ctx: None,
            n_seq: 1,
            n_batch: 2048,
            n_ubatch: 512,
            cache_k: GgmlStorage::F16,
            cache_v: GgmlStorage::F16,
            flash_attn: true,
            n_gpu_layers: None,
            kv_offload: true,
            swa_full: false,
            fit: true,
            gpu_total_bytes: None,
            devices: Vec::new(),
            tensor_split: None,
            request_tokens: request.prompt_len + request.gen_len,
        }
    }
}

/// Weights stored in one ggml type for a model known only by its config, as
/// `convert_hf_to_gguf.py --outtype` writes them: linear weights, expert banks
/// and the token table in `weight_type`; norms, biases, MoE routers and learned
/// position tables in f32 (checked to the byte on the converter's output for 16
/// architectures in `vramfit-sources/tests/gguf_models.rs`).
pub fn stored_weights_from_spec(spec: &ModelSpec, weight_type: GgmlStorage) -> StoredWeights {
    let (block, block_bytes) = weight_type.block();
    let bytes_of = |s: &ModelSpec| -> u64 {
        let total: u128 = param_tensors(s)
            .iter()
            .map(|t| {
                // Linear weights and expert banks in the weight type; vectors (norms,
                // biases, sinks) and MoE routers (`ffn_gate_inp`, which the converter
                // keeps in F32) in f32.
                let matrix = t.quantizable.is_some() || t.expert_bank;
                let one = if matrix {
                    t.numel.div_ceil(u128::from(block)) * u128::from(block_bytes)
                } else {
                    t.numel * 4
                };
                one * t.count
            })
            .sum();
        u64::try_from(total).unwrap_or(u64::MAX)
    };
    let mut layer_bytes = Vec::new();
    for group in &spec.layers {
        let one = bytes_of(&layers_only(spec, group, 1));
        layer_bytes.extend(std::iter::repeat_n(one, usize::try_from(group.count).unwrap_or(0)));
    }
    let numel = |n: u64| {
        u64::try_from(u128::from(n).div_ceil(u128::from(block)) * u128::from(block_bytes))
            .unwrap_or(u64::MAX)
    };
    // The token table in the weight type; learned position tables stay F32.
    let token_table = spec.vocab_size.saturating_mul(spec.hidden_size);
    let embed: u64 = spec
        .embeddings
        .iter()
        .map(|t| if t.numel == token_table { numel(t.numel) } else { t.numel.saturating_mul(4) })
        .sum();
    let head = if spec.lm_head.tied {
        0
    } else {
        numel(spec.lm_head.linear.in_features.saturating_mul(spec.lm_head.linear.out_features))
    };
    let norm: u64 = spec.final_norm.iter().map(|t| t.numel * 4).sum();
    StoredWeights { layer_bytes, token_embd_bytes: embed, output_bytes: head, other_bytes: norm }
}

/// One layer's KV bytes at `cells` cells.
fn layer_kv(
    attention: &Attention,
    cells: u64,
    settings: &LlamaCppSettings,
) -> Result<u64, CoreError> {
    let (keys, values) = attention.kv_cache_widths();
    let (k_width, v_width) = match attention.kind {
        // Latent and rotary key in one K row, and no V tensor (`has_v = !is_mla`).
        AttentionKind::Latent(_) => (keys + values, 0),
        // Gated DeltaNet caches no rows (and is refused before this).
        AttentionKind::Standard
        | AttentionKind::GatedDeltaNet(_)
        | AttentionKind::ShortConv { .. } => (keys, values),
    };
    let k = settings.cache_k.row(k_width, "K")?;
    let v = if v_width == 0 { 0 } else { settings.cache_v.row(v_width, "V")? };
    k.checked_add(v)
        .and_then(|row| row.checked_mul(cells))
        .ok_or(CoreError::Overflow { what: "KV cache bytes" })
}

/// Cells a layer holds at context `n_ctx` (already padded).
fn layer_cells(attention: &Attention, n_ctx: u64, settings: &LlamaCppSettings) -> u64 {
    match attention.sliding_window {
        Some(window) if !settings.swa_full => {
            let need = window.saturating_mul(settings.n_seq).saturating_add(settings.n_ubatch);
            n_ctx.min(need).div_ceil(CTX_PAD) * CTX_PAD
        }
        _ => n_ctx,
    }
}

/// What sits where for a context and a number of GPU layers.
struct Placement {
    gpu_weights: u64,
    host_weights: u64,
    gpu_kv: u64,
    host_kv: u64,
    compute: u64,
    host_compute: u64,
    output_on_gpu: bool,
    gpu_layers: u64,
}

fn place(
    spec: &ModelSpec,
    weights: &StoredWeights,
    n_ctx: u64,
    n_gpu_layers: u64,
    settings: &LlamaCppSettings,
) -> Result<Placement, CoreError> {
    let layers: Vec<&crate::spec::Layer> = spec
        .layers
        .iter()
        .flat_map(|g| std::iter::repeat_n(&g.layer, usize::try_from(g.count).unwrap_or(0)))
        .collect();
    let n_layer = layers.len() as u64;
    let ngl = n_gpu_layers.min(n_layer + 1);
    let first_gpu = n_layer + 1 - ngl;
    let output_on_gpu = ngl >= 1;
    let (mut gpu_weights, mut host_weights) = (0u64, weights.token_embd_bytes);
    let (mut gpu_kv, mut host_kv) = (0u64, 0u64);
    let mut n_kv = 0u64;
    for (index, layer) in layers.iter().enumerate() {
        let on_gpu = index as u64 >= first_gpu;
        let stored = weights.layer_bytes.get(index).copied().unwrap_or(0);
        let cells = layer_cells(&layer.attention, n_ctx, settings);
        let kv = layer_kv(&layer.attention, cells, settings)?;
        if on_gpu {
            gpu_weights = gpu_weights.saturating_add(stored);
            n_kv = n_kv.max(cells);
        } else {
            host_weights = host_weights.saturating_add(stored);
        }
        if on_gpu && settings.kv_offload {
            gpu_kv = gpu_kv.saturating_add(kv);
        } else {
            host_kv = host_kv.saturating_add(kv);
        }
    }
    // The output layer: the head (a second copy of a tied embedding table) and the final norm.
    let head =
        if weights.output_bytes == 0 { weights.token_embd_bytes } else { weights.output_bytes };
    if output_on_gpu {
        gpu_weights = gpu_weights.saturating_add(head).saturating_add(weights.other_bytes);
    } else {
        // On the host a tied head reads the same mapped pages as the embeddings.
        host_weights =
            host_weights.saturating_add(weights.output_bytes).saturating_add(weights.other_bytes);
    }
    let tokens = n_ctx.min(settings.n_ubatch).min(settings.n_batch).max(1);
    let gpu_layers: Vec<&&crate::spec::Layer> =
        layers.iter().enumerate().filter(|(i, _)| *i as u64 >= first_gpu).map(|(_, l)| l).collect();
    let any_gpu = output_on_gpu || !gpu_layers.is_empty();
    let compute = if any_gpu {
        compute_bytes(spec, &gpu_layers, output_on_gpu, tokens, n_kv, settings.flash_attn)
    } else {
        0
    };
    let cpu_layers: Vec<&&crate::spec::Layer> = layers
        .iter()
        .enumerate()
        .filter(|(i, _)| (*i as u64) < first_gpu)
        .map(|(_, l)| l)
        .collect();
    let cpu_kv_len =
        cpu_layers.iter().map(|l| layer_cells(&l.attention, n_ctx, settings)).max().unwrap_or(0);
    // The host always computes the embedding lookup; with layers or the head on the
    // host it computes those too.
    let host_compute =
        compute_bytes(spec, &cpu_layers, !output_on_gpu, tokens, cpu_kv_len, settings.flash_attn)
            .max(spec.hidden_size.saturating_mul(tokens).saturating_mul(4));
    Ok(Placement {
        gpu_weights,
        host_weights,
        gpu_kv,
        host_kv,
        compute,
        host_compute,
        output_on_gpu,
        gpu_layers: gpu_layers.len() as u64,
    })
}

/// ggml's compute buffer, approximated by its largest live set (f32 activations).
fn compute_bytes(
    spec: &ModelSpec,
    layers: &[&&crate::spec::Layer],
    output: bool,
    tokens: u64,
    n_kv: u64,
    flash_attn: bool,
) -> u64 {
    let t = u128::from(tokens);
    let hidden = u128::from(spec.hidden_size) * t * 4;
    let mut worst = 0u128;
    if output {
        worst = u128::from(spec.vocab_size) * t * 4 + hidden;
    }
    for layer in layers {
        let a = &layer.attention;
        let heads = u128::from(a.num_heads);
        let kv = u128::from(n_kv);
        let qkv = u128::from(a.num_heads + 2 * a.num_kv_heads) * u128::from(a.head_dim) * t * 4;
        let attention = if flash_attn {
            kv * t * 2 + heads * u128::from(a.head_dim) * t * 4
        } else {
            kv * t * heads * 4 + kv * t * 4
        } + qkv
            + hidden;
        let ffn = match &layer.feed_forward {
            FeedForward::Dense { intermediate_size, .. } => {
                2 * u128::from(*intermediate_size) * t * 4
            }
            FeedForward::Moe(moe) => {
                2 * u128::from(moe.experts_per_token)
                    * u128::from(moe.expert_intermediate_size.max(moe.shared_intermediate_size))
                    * t
                    * 4
                    + u128::from(moe.num_experts) * t * 4
            }
        } + 2 * hidden;
        worst = worst.max(attention).max(ffn);
    }
    u64::try_from(worst).unwrap_or(u64::MAX)
}

/// The settings llama.cpp would refuse: a quantized V cache without flash
/// attention, zero counts, a context beyond its 32-bit size.
fn check_settings(settings: &LlamaCppSettings) -> Result<(), CoreError> {
    if settings.cache_v.quantized() && !settings.flash_attn {
        return Err(CoreError::InvalidWorkload {
            setting: Setting::CacheTypeV,
            reason: format!(
                "a quantized V cache ({}) needs flash attention (llama.cpp refuses it with -fa off)",
                settings.cache_v.name()
            ),
        });
    }
    // `LLAMA_MAX_SEQ` (`src/llama-cparams.h`): llama.cpp refuses more sequences.
    if settings.n_seq > LLAMA_MAX_SEQ {
        return Err(CoreError::InvalidWorkload {
            setting: Setting::BatchSize,
            reason: format!(
                "llama.cpp serves at most {LLAMA_MAX_SEQ} sequences at once (LLAMA_MAX_SEQ), not {}",
                settings.n_seq
            ),
        });
    }
    for (value, setting) in [
        (settings.n_seq, Setting::BatchSize),
        (settings.n_batch, Setting::LogicalBatch),
        (settings.n_ubatch, Setting::PhysicalBatch),
        (settings.request_tokens, Setting::RequestTokens),
    ] {
        if value == 0 {
            return Err(CoreError::InvalidWorkload {
                setting,
                reason: "must be at least 1".into(),
            });
        }
    }
    if let Some(asked) = settings.n_ctx
        && asked > u64::from(u32::MAX)
    {
        return Err(CoreError::InvalidWorkload {
            setting: Setting::ContextCells,
            reason: format!("{asked} exceeds llama.cpp's 32-bit context size"),
        });
    }
    Ok(())
}

/// `--fit`'s context: the largest multiple of 256 cells, at least 4096
/// (`--fit-ctx`) and at most `n_ctx`, for which `fits` holds (4096 when none
/// does), found by bisection (`fits` holds for every context below one it holds for).
fn largest_context(
    n_ctx: u64,
    mut fits: impl FnMut(u64) -> Result<bool, CoreError>,
) -> Result<u64, CoreError> {
    let (mut low, mut high) = (FIT_MIN_CTX / CTX_PAD, n_ctx / CTX_PAD);
    while low < high {
        let mid = (low + high).div_ceil(2);
        if fits(mid * CTX_PAD)? {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    Ok(low * CTX_PAD)
}

/// The placement of `n_ctx` cells and `ngl` GPU layers, shrunk as llama.cpp's
/// `--fit` shrinks them to leave 1 GiB free: first the context (unless `-c`
/// was given; the largest multiple of 256, at least 4096, that fits), then the
/// GPU layers (unless `-ngl` was given).
fn fit(
    spec: &ModelSpec,
    weights: &StoredWeights,
    settings: &LlamaCppSettings,
    runtime: &Runtime,
    (mut n_ctx, mut ngl): (u64, u64),
    notes: &mut Vec<String>,
) -> Result<(Placement, u64, u64), CoreError> {
    let n_layer: u64 = spec.layers.iter().map(|g| g.count).sum();
    let shrink_ctx = settings.n_ctx.is_none();
    let used = |p: &Placement| p.gpu_weights.saturating_add(p.gpu_kv).saturating_add(p.compute);
    let mut placement = place(spec, weights, n_ctx, ngl, settings)?;
    if let (true, Some(total)) = (settings.fit, settings.gpu_total_bytes) {
        let free = total.saturating_sub(runtime.cuda_context_bytes).saturating_sub(FIT_MARGIN);
        if used(&placement) > free && shrink_ctx && n_ctx > FIT_MIN_CTX {
            let fitted = largest_context(n_ctx, |cells| {
                Ok(used(&place(spec, weights, cells, ngl, settings)?) <= free)
            })?;
            notes.push(format!(
                "--fit shrank the context from {n_ctx} to {fitted} cells to leave 1 GiB free"
            ));
            n_ctx = fitted;
            placement = place(spec, weights, n_ctx, ngl, settings)?;
        }
        if used(&placement) > free && settings.n_gpu_layers.is_none() {
            let before = ngl;
            while ngl > 0 && used(&placement) > free {
                ngl -= 1;
                placement = place(spec, weights, n_ctx, ngl, settings)?;
            }
            notes.push(format!(
                "--fit lowered the GPU layers from {before} to {ngl} (of {}); for MoE models llama.cpp first moves the experts to the host instead, which keeps more on the GPU",
                n_layer + 1
            ));
        }
    }
    Ok((placement, n_ctx, ngl))
}

/// What lands on the GPU (when any layer or the output is there) and on the host.
fn llamacpp_parts(
    spec: &ModelSpec,
    weights: &StoredWeights,
    settings: &LlamaCppSettings,
    runtime: &Runtime,
    placement: &Placement,
    n_ctx: u64,
) -> (Vec<Part>, Vec<Part>) {
    let n_layer: u64 = spec.layers.iter().map(|g| g.count).sum();
    let gpu_parts = if placement.gpu_layers > 0 || placement.output_on_gpu {
        vec![
            part(
                C::CudaContext,
                runtime.cuda_context_bytes,
                "driver and kernels, outside ggml's buffers",
            ),
            part(
                C::Weights,
                placement.gpu_weights,
                format!(
                    "stored bytes of {} of {n_layer} layers{}",
                    placement.gpu_layers,
                    match (placement.output_on_gpu, weights.output_bytes == 0) {
                        (true, true) =>
                            " and the output layer (the tied head: a second copy of the embeddings)",
                        (true, false) => " and the output layer",
                        (false, _) => "",
                    }
                ),
            ),
            part(
                C::KvCache,
                placement.gpu_kv,
                format!(
                    "K ({}) and V ({}) rows × cells per layer on the GPU; context {n_ctx} cells (sliding-window layers fewer)",
                    settings.cache_k.name(),
                    settings.cache_v.name()
                ),
            ),
            part(
                C::ComputeBuffer,
                placement.compute,
                format!(
                    "ggml's worst-case graph of {} tokens (estimate: its largest live set)",
                    n_ctx.min(settings.n_ubatch).min(settings.n_batch)
                ),
            ),
        ]
    } else {
        Vec::new()
    };
    let host = host_parts(
        spec,
        settings,
        placement.host_weights,
        placement.host_kv,
        placement.host_compute,
    );
    (gpu_parts, host)
}

/// What the host holds: its weights (the token embeddings always), its layers'
/// KV cache, its part of the graph, and the pinned f32 logits of one output per
/// sequence (`n_vocab × n_seq × 4`).
fn host_parts(
    spec: &ModelSpec,
    settings: &LlamaCppSettings,
    weights: u64,
    kv: u64,
    compute: u64,
) -> Vec<Part> {
    let output_buffer = u64::try_from(u128::from(spec.vocab_size) * u128::from(settings.n_seq) * 4)
        .unwrap_or(u64::MAX);
    vec![
        part(
            C::Weights,
            weights,
            "token embeddings (always on the host) and the layers not offloaded, memory-mapped from the file",
        ),
        part(C::KvCache, kv, "KV of the layers on the host (all of it with --no-kv-offload)"),
        part(
            C::ComputeBuffer,
            compute,
            "the host's part of the graph (at least the embedding lookup)",
        ),
        part(
            C::OutputBuffer,
            output_buffer,
            "f32 logits of one output per sequence (n_vocab × n_seq × 4), pinned host memory",
        ),
    ]
}

/// The flags in force, as llama.cpp takes them; `split` is `-ts` over several GPUs.
fn flags(
    settings: &LlamaCppSettings,
    n_ctx: u64,
    ngl: u64,
    split: Option<String>,
) -> Vec<(String, String)> {
    let mut flags: Vec<(String, String)> =
        vec![("-c".into(), n_ctx.to_string()), ("-ngl".into(), ngl.to_string())];
    if let Some(split) = split {
        flags.push(("-sm".into(), "layer".into()));
        flags.push(("-ts".into(), split));
    }
    flags.extend([
        ("-np".into(), settings.n_seq.to_string()),
        ("-kvu".into(), "true".into()),
        ("-b".into(), settings.n_batch.to_string()),
        ("-ub".into(), settings.n_ubatch.to_string()),
        ("-ctk".into(), settings.cache_k.name().into()),
        ("-ctv".into(), settings.cache_v.name().into()),
        ("-fa".into(), if settings.flash_attn { "on" } else { "off" }.into()),
        ("--swa-full".into(), settings.swa_full.to_string()),
        ("-nkvo".into(), (!settings.kv_offload).to_string()),
    ]);
    flags
}

/// Whether llama.cpp's loader (`llama_model::load_hparams`, one case per
/// architecture) applies a sliding window for `model_type`: `Some(true)` where
/// it sets `swa_type` (Gemma 2 and 3, gpt-oss as `LLM_ARCH_OPENAI_MOE`,
/// Cohere 2); `Some(false)` where it reads no window, so every cell is kept
/// whatever the config says: Llama-architecture models (Mistral v0.1 and
/// Mixtral convert to `llama`: a Mistral-7B v0.1 log keeps all cells, issue
/// #19), StarCoder2 and Qwen2/Qwen3 (their cases read no
/// `attention.sliding_window`), `SmolLM3`, and Phi-3 ("Phi SWA is currently
/// disabled"); `None` where this was not checked.
fn sliding_windows_applied(model_type: &str) -> Option<bool> {
    match model_type {
        "gemma2" | "gemma3" | "gemma3_text" | "gpt_oss" | "cohere2" => Some(true),
        "llama" | "mistral" | "mixtral" | "starcoder2" | "qwen2" | "qwen2_moe" | "qwen3"
        | "qwen3_moe" | "smollm3" | "phi3" => Some(false),
        _ => None,
    }
}

/// Estimates llama.cpp's memory on one GPU and the host.
///
/// # Errors
/// A quantized V cache without flash attention (llama.cpp refuses it), KV
/// rows that are not a whole number of blocks, or zero-sized settings.
pub fn estimate_llamacpp(
    spec: &ModelSpec,
    weights: &StoredWeights,
    settings: &LlamaCppSettings,
    runtime: &Runtime,
) -> Result<ServingEstimate, CoreError> {
    crate::memory::refuse_unmodelled(spec, "llama.cpp", false)?;
    let windowed = spec.layers.iter().any(|g| g.layer.attention.sliding_window.is_some());
    let unwindowed;
    let mut window_note = None;
    let spec = match sliding_windows_applied(&spec.model_type) {
        Some(false) if windowed => {
            let mut whole = spec.clone();
            for group in &mut whole.layers {
                group.layer.attention.sliding_window = None;
            }
            unwindowed = whole;
            window_note = Some(format!(
                "llama.cpp reads no sliding window for `{}` (its loader sets none): every layer caches the whole context, whatever the config's window",
                spec.model_type
            ));
            &unwindowed
        }
        None if windowed => {
            window_note = Some(format!(
                "the config's sliding window is applied, but whether llama.cpp's loader applies one for `{}` was not checked",
                spec.model_type
            ));
            spec
        }
        _ => spec,
    };
    check_settings(settings)?;
    let n_layer: u64 = spec.layers.iter().map(|g| g.count).sum();
    let trained = spec.max_position_embeddings.unwrap_or(FIT_MIN_CTX);
    // `-c 0` asks for the training context explicitly, and `--fit` then keeps it.
    let asked_ctx = settings.n_ctx.filter(|c| *c > 0);
    let pad = |c: u64| c.div_ceil(CTX_PAD).max(1) * CTX_PAD;
    let n_ctx = pad(asked_ctx.unwrap_or(trained));
    let ngl = settings.n_gpu_layers.unwrap_or(n_layer + 1).min(n_layer + 1);
    if settings.devices.len() > 1 {
        let mut split = estimate_split(spec, weights, settings, runtime, n_ctx, ngl)?;
        split.notes.extend(window_note);
        return Ok(split);
    }
    let mut notes: Vec<String> = window_note.iter().cloned().collect();
    let (placement, n_ctx, ngl) = fit(spec, weights, settings, runtime, (n_ctx, ngl), &mut notes)?;
    let (gpu_parts, host_parts) =
        llamacpp_parts(spec, weights, settings, runtime, &placement, n_ctx);
    // Sizes add with saturation: a part or a total at 2⁶⁴ − 1 is an overflow,
    // never a figure.
    if gpu_parts.iter().chain(&host_parts).any(|p| p.bytes == u64::MAX)
        || sum(&gpu_parts) == u64::MAX
        || sum(&host_parts) == u64::MAX
    {
        return Err(CoreError::Overflow { what: "llama.cpp memory" });
    }
    let device_total = sum(&gpu_parts);
    let fits_gpu = settings.gpu_total_bytes.is_none_or(|total| device_total <= total);
    if !fits_gpu {
        notes.push(format!(
            "needs {:.2} GiB on the GPU beyond what it has; lower -ngl or -c, or use a smaller quantization",
            gib(device_total.saturating_sub(settings.gpu_total_bytes.unwrap_or(0)))
        ));
    }
    // One unified cache of `n_ctx` cells serves every sequence (llama-server's `-kvu`).
    let needed = settings.request_tokens.saturating_mul(settings.n_seq);
    if needed > n_ctx {
        notes.push(format!(
            "{} of {} tokens need {needed} cells; the context has {n_ctx} (raise -c)",
            if settings.n_seq == 1 {
                "1 sequence".to_owned()
            } else {
                format!("{} sequences", settings.n_seq)
            },
            settings.request_tokens
        ));
    }
    #[expect(clippy::cast_precision_loss, reason = "token counts far below 2^53")]
    let at_request = (n_ctx as f64 / settings.request_tokens as f64).min(settings.n_seq as f64);
    Ok(ServingEstimate {
        kv_capacity_tokens: n_ctx,
        max_concurrency: None,
        concurrency_at_request: at_request,
        settings: flags(settings, n_ctx, ngl, None),
        fits: fits_gpu && needed <= n_ctx,
        notes,
        ..ServingEstimate::from_parts(
            "llama.cpp",
            LLAMA_CPP_VERSION,
            gpu_parts,
            host_parts,
            (0, ""),
        )
    })
}

/// The device of each offloadable layer slot (the repeating layers, then the
/// output layer as slot `n_layer`): `None` on the host. llama.cpp's
/// `llama_model::load_tensors` (`src/llama-model.cpp`): the shares become
/// cumulative split points normalised to 1 (in `f32`); slots before
/// `n_layer + 1 − ngl` stay on the host, and slot `il` goes to the first
/// device whose split point exceeds `(il − first) / ngl`
/// (`std::upper_bound`).
pub fn layer_devices(n_layer: u64, ngl: u64, shares: &[f64]) -> Vec<Option<usize>> {
    let slots = n_layer + 1;
    let ngl = ngl.min(slots);
    let first = slots - ngl;
    #[expect(clippy::cast_possible_truncation, reason = "llama.cpp computes the splits in f32")]
    let mut points: Vec<f32> = shares.iter().map(|s| *s as f32).collect();
    let mut sum = 0.0f32;
    for point in &mut points {
        sum += *point;
        *point = sum;
    }
    for point in &mut points {
        *point /= sum;
    }
    (0..slots)
        .map(|il| {
            if il < first || ngl == 0 {
                return None;
            }
            #[expect(clippy::cast_precision_loss, reason = "layer counts far below 2^24")]
            let at = (il - first) as f32 / ngl as f32;
            let device = points.partition_point(|p| *p <= at);
            Some(device.min(points.len().saturating_sub(1)))
        })
        .collect()
}

/// Each device's share of the layers, in device order, for a split estimate.
struct Split<'a> {
    assignment: Vec<Option<usize>>,
    layers: Vec<&'a crate::spec::Layer>,
    shares: Vec<f64>,
}

/// What each device holds at a context of `n_ctx` cells.
fn split_devices(
    split: &Split<'_>,
    spec: &ModelSpec,
    weights: &StoredWeights,
    settings: &LlamaCppSettings,
    runtime: &Runtime,
    n_ctx: u64,
) -> Result<Vec<DeviceShare>, CoreError> {
    let layers = &split.layers;
    let n_layer = layers.len() as u64;
    let tokens = n_ctx.min(settings.n_ubatch).min(settings.n_batch).max(1);
    let head =
        if weights.output_bytes == 0 { weights.token_embd_bytes } else { weights.output_bytes };
    let total_share: f64 = split.shares.iter().sum();
    let mut out = Vec::with_capacity(settings.devices.len());
    for (device, memory) in settings.devices.iter().enumerate() {
        let mine: Vec<usize> =
            (0..layers.len()).filter(|il| split.assignment[*il] == Some(device)).collect();
        let output = split.assignment[layers.len()] == Some(device);
        let mut weights_bytes = 0u64;
        let mut kv = 0u64;
        let mut n_kv = 0u64;
        for il in &mine {
            let layer = layers[*il];
            weights_bytes =
                weights_bytes.saturating_add(weights.layer_bytes.get(*il).copied().unwrap_or(0));
            let cells = layer_cells(&layer.attention, n_ctx, settings);
            n_kv = n_kv.max(cells);
            if settings.kv_offload {
                kv = kv.saturating_add(layer_kv(&layer.attention, cells, settings)?);
            }
        }
        if output {
            weights_bytes = weights_bytes.saturating_add(head).saturating_add(weights.other_bytes);
        }
        let refs: Vec<&&crate::spec::Layer> = mine.iter().map(|il| &layers[*il]).collect();
        let used = !mine.is_empty() || output;
        let parts = if used {
            let compute = compute_bytes(spec, &refs, output, tokens, n_kv, settings.flash_attn);
            vec![
                part(
                    C::CudaContext,
                    runtime.cuda_context_bytes,
                    "driver and kernels, outside ggml's buffers",
                ),
                part(
                    C::Weights,
                    weights_bytes,
                    format!(
                        "stored bytes of {} of {n_layer} layers{}",
                        mine.len(),
                        if output { " and the output layer" } else { "" }
                    ),
                ),
                part(
                    C::KvCache,
                    kv,
                    format!(
                        "K ({}) and V ({}) rows × cells of its layers; context {n_ctx} cells",
                        settings.cache_k.name(),
                        settings.cache_v.name()
                    ),
                ),
                part(
                    C::ComputeBuffer,
                    compute,
                    format!(
                        "its part of ggml's worst-case graph of {tokens} tokens (estimate: its largest live set)"
                    ),
                ),
            ]
        } else {
            Vec::new()
        };
        let total = sum(&parts);
        out.push(DeviceShare {
            memory_bytes: *memory,
            split: if total_share > 0.0 { split.shares[device] / total_share } else { 0.0 },
            layers: mine.len() as u64,
            output_layer: output,
            total_bytes: total,
            fits: total <= *memory,
            parts,
        });
    }
    Ok(out)
}

/// llama.cpp over several GPUs, split layer by layer: each device holds its
/// layers' weights and KV cache, the output layer's device the head, and each
/// a compute buffer for its part of the graph (the same largest-live-set
/// approximation as on one GPU) and a CUDA context. `--fit` (on by default)
/// shrinks the context as on one GPU until every device leaves its 1 GiB
/// margin; its other moves across devices (`common/fit.cpp` also lowers GPU
/// layers and rebalances the split) are not modelled, and a device still over
/// its memory makes `fits` false.
fn estimate_split(
    spec: &ModelSpec,
    weights: &StoredWeights,
    settings: &LlamaCppSettings,
    runtime: &Runtime,
    n_ctx: u64,
    ngl: u64,
) -> Result<ServingEstimate, CoreError> {
    let layers: Vec<&crate::spec::Layer> = spec
        .layers
        .iter()
        .flat_map(|g| std::iter::repeat_n(&g.layer, usize::try_from(g.count).unwrap_or(0)))
        .collect();
    let n_layer = layers.len() as u64;
    let devices = &settings.devices;
    #[expect(clippy::cast_precision_loss, reason = "a share, not a byte count")]
    let free: Vec<f64> = devices
        .iter()
        .map(|total| total.saturating_sub(runtime.cuda_context_bytes) as f64)
        .collect();
    // llama.cpp sums the shares in f32: check them as f32, so that what is
    // printed is what places the layers.
    let usable_in_f32 = |shares: &[f64]| {
        let mut sum = 0.0f32;
        for share in shares {
            #[expect(clippy::cast_possible_truncation, reason = "llama.cpp's f32")]
            let share = *share as f32;
            if !share.is_finite() || share < 0.0 {
                return false;
            }
            sum += share;
        }
        sum.is_finite() && sum > 0.0
    };
    let shares = match &settings.tensor_split {
        Some(split) => {
            if split.len() != devices.len() || !usable_in_f32(split) {
                return Err(CoreError::InvalidWorkload {
                    setting: Setting::TensorSplit,
                    reason: format!(
                        "give one non-negative share per GPU ({}), not all zero, with a sum that is a finite 32-bit float",
                        devices.len()
                    ),
                });
            }
            split.clone()
        }
        // No free memory anywhere (a context override larger than the GPUs): equal shares.
        None if !usable_in_f32(&free) => vec![1.0; devices.len()],
        None => free,
    };
    let mut ngl = ngl;
    let mut split = Split { assignment: layer_devices(n_layer, ngl, &shares), layers, shares };
    let mut notes = Vec::new();
    let mut n_ctx = n_ctx;
    let over = |devices: &[DeviceShare]| {
        devices.iter().any(|d| {
            !d.parts.is_empty() && d.total_bytes > d.memory_bytes.saturating_sub(FIT_MARGIN)
        })
    };
    if settings.fit
        && settings.n_ctx.is_none()
        && n_ctx > FIT_MIN_CTX
        && over(&split_devices(&split, spec, weights, settings, runtime, n_ctx)?)
    {
        // The largest context that leaves every device its margin.
        let fitted = largest_context(n_ctx, |cells| {
            Ok(!over(&split_devices(&split, spec, weights, settings, runtime, cells)?))
        })?;
        notes.push(format!("--fit shrank the context from {n_ctx} to {fitted} cells"));
        n_ctx = fitted;
    }
    if settings.fit
        && settings.n_gpu_layers.is_none()
        && over(&split_devices(&split, spec, weights, settings, runtime, n_ctx)?)
    {
        // Then the GPU layers, from the front, the split points kept.
        let before = ngl;
        while ngl > 0 && over(&split_devices(&split, spec, weights, settings, runtime, n_ctx)?) {
            ngl -= 1;
            split.assignment = layer_devices(n_layer, ngl, &split.shares);
        }
        notes.push(format!(
            "--fit lowered the GPU layers from {before} to {ngl} (of {}), keeping the split points; llama.cpp's own fit also moves layers between GPUs, which is not modelled, so it may keep more on them",
            n_layer + 1
        ));
    }
    let layers = &split.layers;
    let assignment = &split.assignment;
    let shares_out = split_devices(&split, spec, weights, settings, runtime, n_ctx)?;
    let tokens = n_ctx.min(settings.n_ubatch).min(settings.n_batch).max(1);
    let mut host_weights = weights.token_embd_bytes;
    let mut host_kv = 0u64;
    let mut host_layers: Vec<&crate::spec::Layer> = Vec::new();
    for (il, layer) in layers.iter().enumerate() {
        if assignment[il].is_none() {
            host_weights =
                host_weights.saturating_add(weights.layer_bytes.get(il).copied().unwrap_or(0));
            host_layers.push(layer);
        }
        if assignment[il].is_none() || !settings.kv_offload {
            let cells = layer_cells(&layer.attention, n_ctx, settings);
            host_kv = host_kv.saturating_add(layer_kv(&layer.attention, cells, settings)?);
        }
    }
    let output_on_gpu = assignment[layers.len()].is_some();
    if !output_on_gpu {
        host_weights =
            host_weights.saturating_add(weights.output_bytes).saturating_add(weights.other_bytes);
    }
    let host_refs: Vec<&&crate::spec::Layer> = host_layers.iter().collect();
    let host_kv_len =
        host_layers.iter().map(|l| layer_cells(&l.attention, n_ctx, settings)).max().unwrap_or(0);
    let host_compute =
        compute_bytes(spec, &host_refs, !output_on_gpu, tokens, host_kv_len, settings.flash_attn)
            .max(spec.hidden_size.saturating_mul(tokens).saturating_mul(4));
    let host_parts = host_parts(spec, settings, host_weights, host_kv, host_compute);
    if shares_out.iter().flat_map(|d| &d.parts).chain(&host_parts).any(|p| p.bytes == u64::MAX)
        || sum(&host_parts) == u64::MAX
        || shares_out.iter().any(|d| d.total_bytes == u64::MAX)
    {
        return Err(CoreError::Overflow { what: "llama.cpp memory" });
    }
    // The device with the least memory left decides.
    let tightest = shares_out
        .iter()
        .enumerate()
        .filter(|(_, d)| !d.parts.is_empty())
        .min_by_key(|(_, d)| i128::from(d.memory_bytes) - i128::from(d.total_bytes))
        .map_or(0, |(i, _)| i);
    let gpu_parts = shares_out.get(tightest).map(|d| d.parts.clone()).unwrap_or_default();
    notes.insert(
        0,
        format!(
            "split layer by layer over {} GPUs ({}), as llama.cpp's load_tensors assigns them; the output layer on GPU {}; --fit's moves of layers across GPUs and pipeline parallelism's extra input copies are not modelled",
            devices.len(),
            if settings.tensor_split.is_some() {
                "--tensor-split"
            } else {
                "in proportion to free memory, llama.cpp's default"
            },
            assignment[layers.len()].map_or_else(|| "none (host)".to_owned(), |d| d.to_string())
        ),
    );
    for (i, d) in shares_out.iter().enumerate() {
        if !d.fits {
            notes.push(format!(
                "GPU {i} needs {:.2} GiB beyond its memory; change --tensor-split, lower -ngl or -c",
                gib(d.total_bytes.saturating_sub(d.memory_bytes))
            ));
        }
    }
    let needed = settings.request_tokens.saturating_mul(settings.n_seq);
    if needed > n_ctx {
        notes.push(format!(
            "{needed} cells needed for the requests; the context has {n_ctx} (raise -c)"
        ));
    }
    #[expect(clippy::cast_precision_loss, reason = "token counts far below 2^53")]
    let at_request = (n_ctx as f64 / settings.request_tokens as f64).min(settings.n_seq as f64);
    let split_flag: Vec<String> = shares_out.iter().map(|d| format!("{:.3}", d.split)).collect();
    let fits = shares_out.iter().all(|d| d.fits) && needed <= n_ctx;
    Ok(ServingEstimate {
        kv_capacity_tokens: n_ctx,
        max_concurrency: None,
        concurrency_at_request: at_request,
        settings: flags(settings, n_ctx, ngl, Some(split_flag.join(","))),
        fits,
        notes,
        devices: shares_out,
        ..ServingEstimate::from_parts(
            "llama.cpp",
            LLAMA_CPP_VERSION,
            gpu_parts,
            host_parts,
            (0, ""),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy;

    const MIB_F: f64 = 1_048_576.0;

    /// llama-server's defaults with an 8K context.
    fn settings() -> LlamaCppSettings {
        LlamaCppSettings { n_ctx: Some(8192), ..LlamaCppSettings::default() }
    }

    fn gpu_part(estimate: &ServingEstimate, name: &str) -> u64 {
        estimate.gpu_parts.iter().find(|p| p.name == name).map_or(0, |p| p.bytes)
    }

    #[test]
    fn layers_split_over_devices_as_load_tensors_assigns_them() {
        // 32 layers + the output layer, all offloaded, split 1:1: slot il goes to the
        // first device whose split point (0.5, 1.0) exceeds il / 33.
        let both = layer_devices(32, 33, &[1.0, 1.0]);
        assert_eq!(both.iter().filter(|d| **d == Some(0)).count(), 17, "0/33 … 16/33 < 0.5");
        assert_eq!(both[16], Some(0));
        assert_eq!(both[17], Some(1));
        assert_eq!(both[32], Some(1), "the output layer on the last device");
        // 3:1 and partial offload (-ngl 9): the first 24 slots stay on the host.
        let partial = layer_devices(32, 9, &[3.0, 1.0]);
        assert!(partial[..24].iter().all(Option::is_none));
        // (il − 24) / 9 < 0.75 for il − 24 = 0..=6: seven slots on device 0.
        assert_eq!(partial[24..].iter().filter(|d| **d == Some(0)).count(), 7);
        assert_eq!(partial[24..].iter().filter(|d| **d == Some(1)).count(), 2);
        // A device with a zero share gets nothing.
        let skip = layer_devices(8, 9, &[1.0, 0.0, 1.0]);
        assert!(!skip.contains(&Some(1)));
        assert!(layer_devices(8, 0, &[1.0, 1.0]).iter().all(Option::is_none));
    }

    #[test]
    fn a_split_estimate_adds_up_to_the_single_gpu_one() {
        let spec = toy::llama_8b();
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q8_0);
        let one = estimate_llamacpp(&spec, &weights, &settings(), &Runtime::HOPPER).unwrap();
        let split = LlamaCppSettings {
            devices: vec![24 * 1024 * MIB, 12 * 1024 * MIB],
            tensor_split: Some(vec![2.0, 1.0]),
            ..settings()
        };
        let two = estimate_llamacpp(&spec, &weights, &split, &Runtime::HOPPER).unwrap();
        assert_eq!(two.devices.len(), 2);
        let part = |d: &DeviceShare, name: &str| {
            d.parts.iter().find(|p| p.name == name).map_or(0, |p| p.bytes)
        };
        // Weights and KV cache are divided, not duplicated: the devices' sums are
        // the single GPU's figures.
        for name in ["weights", "kv cache"] {
            let split_sum: u64 = two.devices.iter().map(|d| part(d, name)).sum();
            assert_eq!(split_sum, gpu_part(&one, name), "{name}");
        }
        // Layers 2:1 (22 + 11 of 33 slots), the output layer on the last device,
        // each device with its own CUDA context.
        assert_eq!(two.devices[0].layers + two.devices[1].layers, 32);
        assert_eq!(two.devices[0].layers, 22);
        assert!(two.devices[1].output_layer && !two.devices[0].output_layer);
        assert!(
            two.devices
                .iter()
                .all(|d| part(d, "CUDA context") == Runtime::HOPPER.cuda_context_bytes)
        );
        assert!(two.fits);
        // Too little on one device: the verdict says no, and names it.
        // (--fit off: with it, the GPU layers would be lowered until it fits, below.)
        let tight = LlamaCppSettings {
            devices: vec![24 * 1024 * MIB, 2 * 1024 * MIB],
            fit: false,
            ..split
        };
        let no = estimate_llamacpp(&spec, &weights, &tight, &Runtime::HOPPER).unwrap();
        assert!(!no.fits && !no.devices[1].fits && no.devices[0].fits);
        assert_eq!(no.device_total_bytes, no.devices[1].total_bytes, "the tightest device");
        assert!(no.notes.iter().any(|n| n.starts_with("GPU 1 needs")));
        // With no -c, --fit shrinks the context until every GPU keeps 1 GiB free.
        let shrink = LlamaCppSettings {
            n_ctx: None,
            devices: vec![10 * 1024 * MIB, 6 * 1024 * MIB],
            tensor_split: Some(vec![2.0, 1.0]),
            ..settings()
        };
        let fitted = estimate_llamacpp(&spec, &weights, &shrink, &Runtime::HOPPER).unwrap();
        assert!(
            fitted.kv_capacity_tokens < 131_072 && fitted.kv_capacity_tokens.is_multiple_of(256)
        );
        assert!(fitted.devices.iter().all(|d| d.total_bytes + 1024 * MIB <= d.memory_bytes));
        assert!(fitted.notes.iter().any(|n| n.contains("--fit shrank the context")));
        // With --fit and no -ngl, the layers leave the GPUs until each keeps its margin.
        let lowered = LlamaCppSettings { fit: true, ..tight.clone() };
        let e = estimate_llamacpp(&spec, &weights, &lowered, &Runtime::HOPPER).unwrap();
        assert!(e.fits && e.notes.iter().any(|n| n.contains("lowered the GPU layers")));
        // A split that does not match the devices is refused.
        let bad = LlamaCppSettings { tensor_split: Some(vec![1.0]), ..tight };
        assert!(estimate_llamacpp(&spec, &weights, &bad, &Runtime::HOPPER).is_err());
    }

    #[test]
    fn sliding_windows_only_where_llama_cpp_applies_them() {
        // Mistral-7B v0.1's config says `sliding_window: 4096`, but llama.cpp loads it as a
        // Llama-architecture model with no window: at -c 8192 every layer keeps 8192 cells,
        // 32 layers × 8 KV heads × 128 × 2 B × 8192 × 2 = 1024 MiB.
        let mut spec = toy::llama_8b();
        spec.model_type = "mistral".into();
        for group in &mut spec.layers {
            group.layer.attention.sliding_window = Some(4096);
        }
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q4_0);
        let e = estimate_llamacpp(&spec, &weights, &settings(), &Runtime::HOPPER).unwrap();
        assert_eq!(gpu_part(&e, "kv cache"), 1024 * MIB);
        assert!(e.notes.iter().any(|n| n.contains("reads no sliding window")));
        // Gemma-2-style windows are applied: fewer cells than the context.
        spec.model_type = "gemma2".into();
        let e = estimate_llamacpp(&spec, &weights, &settings(), &Runtime::HOPPER).unwrap();
        assert!(gpu_part(&e, "kv cache") < 1024 * MIB);
        // An architecture not checked keeps the window and says so.
        spec.model_type = "ministral3".into();
        let e = estimate_llamacpp(&spec, &weights, &settings(), &Runtime::HOPPER).unwrap();
        assert!(e.notes.iter().any(|n| n.contains("was not checked")));
    }

    #[test]
    fn kv_cache_of_llama_3_8b_matches_the_llama_cpp_log() {
        // llama.cpp logs `KV self size = 1024.00 MiB, K (f16): 512.00 MiB, V (f16): 512.00 MiB`
        // for Llama-3-8B at -c 8192: 32 layers × 8 KV heads × 128 × 2 B × 8192 cells, twice.
        let spec = toy::llama_8b();
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q4_0);
        let e = estimate_llamacpp(&spec, &weights, &settings(), &Runtime::HOPPER).unwrap();
        assert_eq!(gpu_part(&e, "kv cache"), 1024 * MIB);
        // q8_0 stores 32 values in 34 bytes instead of 64: 544 MiB.
        let q8 = LlamaCppSettings {
            cache_k: GgmlStorage::Q8_0,
            cache_v: GgmlStorage::Q8_0,
            ..settings()
        };
        let e = estimate_llamacpp(&spec, &weights, &q8, &Runtime::HOPPER).unwrap();
        assert_eq!(gpu_part(&e, "kv cache"), 544 * MIB);
        // The context is padded to 256 cells: 5000 → 5120.
        let odd = LlamaCppSettings { n_ctx: Some(5000), ..settings() };
        let e = estimate_llamacpp(&spec, &weights, &odd, &Runtime::HOPPER).unwrap();
        assert_eq!(gpu_part(&e, "kv cache"), 1024 * MIB / 8192 * 5120);
        assert_eq!(e.kv_capacity_tokens, 5120);
    }

    #[test]
    fn compute_buffer_of_llama_3_8b_with_flash_attention() {
        // The logits of a 512-token ubatch (128256 × 512 × 4 B = 250.5 MiB) and the final
        // hidden states (4096 × 512 × 4 B = 8 MiB): llama.cpp logs `CUDA0 compute buffer
        // size = 258.50 MiB` for Llama-3-8B fully offloaded with flash attention.
        let spec = toy::llama_8b();
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q4_0);
        let e = estimate_llamacpp(&spec, &weights, &settings(), &Runtime::HOPPER).unwrap();
        #[expect(clippy::cast_precision_loss, reason = "test display")]
        let mib = gpu_part(&e, "compute buffer") as f64 / MIB_F;
        assert!((mib - 258.5).abs() < 0.01, "{mib}");
        // Without flash attention the f32 scores of 32 heads over 8192 cells dominate.
        let eager = LlamaCppSettings { flash_attn: false, ..settings() };
        let e = estimate_llamacpp(&spec, &weights, &eager, &Runtime::HOPPER).unwrap();
        assert!(gpu_part(&e, "compute buffer") > 512 * MIB);
    }

    #[test]
    fn layers_offload_from_the_output_layer_backwards() {
        let spec = toy::llama_8b();
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q8_0);
        let per_layer = weights.layer_bytes[0];
        let run = |ngl| {
            let s = LlamaCppSettings { n_gpu_layers: Some(ngl), ..settings() };
            estimate_llamacpp(&spec, &weights, &s, &Runtime::HOPPER).unwrap()
        };
        // -ngl 1: only the output layer (head and final norm).
        let one = run(1);
        assert_eq!(gpu_part(&one, "weights"), weights.output_bytes + weights.other_bytes);
        assert_eq!(gpu_part(&one, "kv cache"), 0);
        // -ngl 3: the output layer and the last two repeating layers, with their KV.
        let three = run(3);
        assert_eq!(gpu_part(&three, "weights"), gpu_part(&one, "weights") + 2 * per_layer);
        assert_eq!(gpu_part(&three, "kv cache"), 2 * 1024 * MIB / 32);
        // -ngl 0: nothing on the GPU; everything on the host.
        let none = run(0);
        assert!(none.gpu_parts.is_empty());
        let host_weights = none.host_parts.iter().find(|p| p.name == "weights").unwrap().bytes;
        assert_eq!(host_weights, weights.total());
        // Token embeddings never leave the host.
        let all = run(33);
        let host_weights = all.host_parts.iter().find(|p| p.name == "weights").unwrap().bytes;
        assert_eq!(host_weights, weights.token_embd_bytes);
    }

    #[test]
    fn sliding_window_layers_cache_their_window_plus_a_ubatch() {
        // An architecture whose window llama.cpp applies (Gemma 2's loader sets it).
        let mut spec = toy::llama_8b();
        spec.model_type = "gemma2".into();
        spec.layers[0].layer.attention.sliding_window = Some(1024);
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q8_0);
        let s = LlamaCppSettings { n_seq: 4, ..settings() };
        let e = estimate_llamacpp(&spec, &weights, &s, &Runtime::HOPPER).unwrap();
        // pad256(min(8192, 1024 × 4 + 512)) = 4608 cells per layer, not 8192.
        assert_eq!(gpu_part(&e, "kv cache"), 1024 * MIB / 8192 * 4608);
        let full = LlamaCppSettings { swa_full: true, ..s };
        let e = estimate_llamacpp(&spec, &weights, &full, &Runtime::HOPPER).unwrap();
        assert_eq!(gpu_part(&e, "kv cache"), 1024 * MIB);
    }

    #[test]
    fn phi3_keeps_the_whole_context_in_every_layer() {
        let mut spec = toy::llama_8b();
        spec.model_type = "phi3".into();
        spec.layers[0].layer.attention.sliding_window = Some(2047);
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q8_0);
        let e = estimate_llamacpp(&spec, &weights, &settings(), &Runtime::HOPPER).unwrap();
        assert_eq!(gpu_part(&e, "kv cache"), 1024 * MIB);
    }

    #[test]
    fn fit_shrinks_the_context_to_the_largest_that_fits() {
        let spec = toy::llama_8b();
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q4_0);
        let gpu = 12 * 1024 * MIB;
        let s = LlamaCppSettings { n_ctx: None, gpu_total_bytes: Some(gpu), ..settings() };
        let e = estimate_llamacpp(&spec, &weights, &s, &Runtime::HOPPER).unwrap();
        let ctx = e.kv_capacity_tokens;
        assert!(ctx.is_multiple_of(256) && (4096..131_072).contains(&ctx), "{ctx}");
        let free = gpu - Runtime::HOPPER.cuda_context_bytes - FIT_MARGIN;
        let used = |c: u64| {
            let fixed = LlamaCppSettings { n_ctx: Some(c), fit: false, ..s.clone() };
            let e = estimate_llamacpp(&spec, &weights, &fixed, &Runtime::HOPPER).unwrap();
            e.device_total_bytes - Runtime::HOPPER.cuda_context_bytes
        };
        assert!(used(ctx) <= free && used(ctx + 256) > free);
        assert!(e.fits);
    }

    #[test]
    fn more_sequences_than_llama_cpp_serves_are_refused() {
        let spec = toy::llama_8b();
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q4_0);
        let at_limit = LlamaCppSettings { n_seq: LLAMA_MAX_SEQ, ..settings() };
        assert!(estimate_llamacpp(&spec, &weights, &at_limit, &Runtime::HOPPER).is_ok());
        let beyond = LlamaCppSettings { n_seq: LLAMA_MAX_SEQ + 1, ..settings() };
        let e = estimate_llamacpp(&spec, &weights, &beyond, &Runtime::HOPPER).unwrap_err();
        assert!(matches!(e, CoreError::InvalidWorkload { setting: Setting::BatchSize, .. }), "{e}");
        assert!(e.to_string().contains("LLAMA_MAX_SEQ"), "{e}");
    }

    #[test]
    fn a_size_that_saturates_is_an_overflow_not_a_figure() {
        let mut spec = toy::llama_8b();
        spec.vocab_size = u64::MAX / 2;
        let weights = stored_weights_from_spec(&toy::llama_8b(), GgmlStorage::Q4_0);
        let many = LlamaCppSettings { n_seq: 200, ..settings() };
        let e = estimate_llamacpp(&spec, &weights, &many, &Runtime::HOPPER).unwrap_err();
        assert!(matches!(e, CoreError::Overflow { .. }), "{e}");
    }

    #[test]
    fn a_quantized_v_cache_needs_flash_attention() {
        let spec = toy::llama_8b();
        let weights = stored_weights_from_spec(&spec, GgmlStorage::Q4_0);
        let s = LlamaCppSettings { flash_attn: false, cache_v: GgmlStorage::Q8_0, ..settings() };
        let e = estimate_llamacpp(&spec, &weights, &s, &Runtime::HOPPER).unwrap_err();
        assert!(
            matches!(e, CoreError::InvalidWorkload { setting: Setting::CacheTypeV, .. }),
            "{e}"
        );
    }
}
