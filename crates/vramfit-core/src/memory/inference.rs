/*!
Memory of a Hugging Face `generate()` run (transformers 5, `DynamicCache`,
no gradients): the KV cache and the largest set of tensors alive at once
during the prefill and the decode steps.

What is alive was read off the transformers 5 modeling code and checked to
the byte against the oracle's inference cases (`../shared/ground-truth`):
in the prefill of the last layer, beside the weights and the cache of every
layer, the model's `inputs_embeds`, the layer's input, the post-attention
residual and the MLP input (four hidden-size tensors), plus the MLP's
`act(gate)`, `up` and their product (three intermediate-size tensors).
*/

use crate::dtype::FloatType;
use crate::memory::trace::rounded;
use crate::spec::{
    Activation, Attention, AttentionKind, DeltaNetDims, FeedForward, Layer, ModelSpec, Moe,
    PositionEncoding,
};
use crate::workload::{AttentionImpl, Inference};

/// KV-cache bytes of one layer holding `tokens` tokens per sequence.
///
/// Standard attention caches keys and values of `num_kv_heads × head_dim`
/// per token. A sliding-window layer (`DynamicSlidingWindowLayer.update`)
/// keeps the last `window − 1` tokens as a slice of the concatenated states:
/// after the prefill that slice is a view, so the whole prompt's storage stays
/// alive (`windowed = false`); decoding replaces it with window-sized tensors
/// (`windowed = true`). Latent attention caches the compressed latent and the
/// shared rotary key (see below).
pub(crate) fn layer_kv_bytes(
    attention: &Attention,
    batch: u128,
    tokens: u128,
    element: u128,
    windowed: bool,
) -> (u128, u128) {
    let kept = match attention.sliding_window {
        Some(window) if windowed => tokens.min(u128::from(window)),
        _ => tokens,
    };
    let (key_width, value_width) = attention.kv_cache_widths();
    let (key_width, value_width) = (u128::from(key_width), u128::from(value_width));
    (rounded(batch * kept * key_width * element), rounded(batch * kept * value_width * element))
}

/// KV-cache bytes of the whole model at `tokens` tokens per sequence.
pub(crate) fn kv_cache_bytes(
    spec: &ModelSpec,
    batch: u128,
    tokens: u128,
    element: u128,
    windowed: bool,
) -> u128 {
    spec.layers
        .iter()
        .map(|group| {
            let (keys, values) =
                layer_kv_bytes(&group.layer.attention, batch, tokens, element, windowed);
            (keys + values) * u128::from(group.count)
        })
        .sum()
}

/// The per-sequence state one gated `DeltaNet` layer keeps in the cache
/// (transformers 5.24 `LinearAttentionLayer`): the convolution's last
/// `kernel` inputs, `(batch, conv_dim, kernel)` in the model's type
/// (`lazy_initialization` zeros them in the input's dtype), and the recurrent
/// state `(batch, value_heads, key_head_dim, value_head_dim)` in fp32 (the
/// chunked rule computes it in fp32 and the cache keeps `zeros_like` of it).
/// Neither grows with the context.
pub(crate) fn layer_state_bytes(dims: &DeltaNetDims, batch: u128, element: u128) -> u128 {
    let conv =
        rounded(batch * u128::from(dims.conv_dim()) * u128::from(dims.conv_kernel) * element);
    let recurrent = rounded(
        batch
            * u128::from(dims.value_heads)
            * u128::from(dims.key_head_dim)
            * u128::from(dims.value_head_dim)
            * 4,
    );
    conv + recurrent
}

/// The recurrent states of every gated `DeltaNet` layer of the model.
pub(crate) fn state_bytes(spec: &ModelSpec, batch: u128, element: u128) -> u128 {
    spec.layers
        .iter()
        .map(|group| match group.layer.attention.kind {
            AttentionKind::GatedDeltaNet(dims) => {
                layer_state_bytes(&dims, batch, element) * u128::from(group.count)
            }
            _ => 0,
        })
        .sum()
}

/// The chunk length of transformers 5.24's `torch_chunk_gated_delta_rule`.
const DELTA_RULE_CHUNK: u128 = 64;

/// The prefill's worst moment inside a gated `DeltaNet` layer, beside the
/// layer's hidden states: the end of transformers 5.24's
/// `torch_chunk_gated_delta_rule` (the torch fallback that runs without
/// flash-linear-attention, on the CPU as on a GPU), at `core_attn_out.reshape`.
///
/// Over the prompt padded to the 64-token chunk (`tokens_p`), all fp32 with
/// the queries and keys repeated to the value heads: the queries and keys
/// (decayed), values, `k_beta`, `v_beta`, the decayed `k_beta`, the
/// triangular solves' `new_values` and `k_cumdecay`, `core_attn_out` and the
/// copy its reshape makes (the solves return column-major batches, so it is
/// not contiguous): five key-width and five value-width tensors; the pairwise
/// decays, the UT system and the intra-chunk attention (`chunk × chunk` per
/// position and head); `beta`, the decay and its cumulative sum (three padded,
/// one not, one value per position and head). In the model's type, from the
/// layer's forward: the convolution's output (`conv_dim` wide; queries, keys
/// and values are views of it), the output gate `z`, `b`, `a` and `beta`, and
/// two `value_heads × key_head_dim × value_head_dim` products of the scan;
/// with the new recurrent state (fp32) and this layer's convolution state,
/// already in the cache. Not counted: the rotary `cos`/`sin` the model keeps
/// for its attention layers (`batch × prompt × rotary_dim` each, under 0.1 %
/// of these activations for Qwen3.5).
///
/// Measured on the fake backend (Qwen3.5-9B, 27B and 35B-A3B at 1–2 sequences,
/// 1000–4096 tokens): within 0.03 % of the activations.
fn delta_net_point(dims: &DeltaNetDims, sizes: &Prefill) -> u128 {
    let &Prefill { batch, prompt, element, .. } = sizes;
    let heads = u128::from(dims.value_heads);
    let (dk, dv) = (u128::from(dims.key_head_dim), u128::from(dims.value_head_dim));
    let padded = prompt.div_ceil(DELTA_RULE_CHUNK) * DELTA_RULE_CHUNK;
    let fp32 = |width: u128, tokens: u128| rounded(batch * heads * tokens * width * 4);
    let chunked = 5 * fp32(dk, padded) + 5 * fp32(dv, padded) + 3 * fp32(DELTA_RULE_CHUNK, padded);
    let gates =
        3 * fp32(1, padded) + fp32(1, prompt) + 3 * rounded(batch * prompt * heads * element);
    let forward = rounded(batch * prompt * u128::from(dims.conv_dim()) * element)
        + rounded(batch * prompt * heads * dv * element);
    let scan = 2 * rounded(batch * heads * dk * dv * element)
        + rounded(batch * heads * dk * dv * 4)
        + rounded(batch * u128::from(dims.conv_dim()) * u128::from(dims.conv_kernel) * element);
    chunked + gates + forward + scan
}

/// Activations of a sparse MoE block with fused experts in the prefill (no
/// gradients), beyond the layer's hidden states: the largest set alive in
/// transformers 5's `*SparseMoeBlock` / `*MoE` run by `integrations/moe.py`'s
/// `grouped_mm_experts_forward` (the default `experts_implementation`).
///
/// The router's three outputs stay alive through the block (`_, weights,
/// indices = self.gate(h)`): the logits (`tokens × experts`), the top-k weights
/// and their int64 indices (`tokens × k`). Their types follow each router:
/// DeepSeek-V2/V3 (`DeepseekV3TopkRouter`) compute the logits on
/// `hidden_states.type(torch.float32)` with the fp32 weight, so logits and
/// weights are fp32; Mixtral (`MixtralTopKRouter`) keeps the logits in the
/// model's type and the weights fp32 (`softmax(router_logits.float())`, no cast
/// back); Qwen2/3-MoE cast the weights back (`router_top_value.to(router_logits.dtype)`),
/// as gpt-oss's softmax of the top logits stays in their type.
///
/// Inside `grouped_mm_experts_forward`, over `S = tokens × k` rows: `torch.sort`'s
/// expert ids and permutation (int64), the gathered rows `hidden_states[perm // k]`,
/// `sample_weights[perm]`, the `histc` input (`expert_ids_g.float()` on CPU,
/// `.int()` on CUDA: 4 bytes a row either way), the counts and int32 offsets
/// (`experts` each). Its two largest moments:
///
/// - at `_default_apply_gate`'s product, the up `grouped_mm`'s `S × 2I` output,
///   `act(gate)` and the product (`S × I` each); ungated experts hold the up
///   output and its activation;
/// - at `weighted_out[inv_perm]`, the down `grouped_mm`'s output (`S × hidden`),
///   `weighted_out = proj_out * sample_weights_g` in the promoted type (fp32 when
///   the routing weights are: DeepSeek, Mixtral), `inv_perm` (int64), and the
///   reordered copy.
///
/// gpt-oss adds the per-row biases `gate_up_proj_bias[expert_ids_g]` (alive at
/// the up point) and `down_proj_bias[expert_ids_g]` (at the down point), and its
/// `GptOssExperts._apply_gate` holds five `S × I` tensors at its last product
/// (the clamped gate and up, `glu`, `up + 1` and the product) beside `gate_up`.
///
/// Shared experts: Qwen2-MoE runs its `shared_expert` first, so its output
/// (`tokens × hidden`) is alive during the routed experts; DeepSeek runs
/// `shared_experts(residuals)` after them, beside the experts' output, with the
/// dense MLP's `act(gate)`, `up` and product alive. Measured on
/// `deepseek-v3-tiny` (CPU, to the byte) and Qwen3-30B-A3B (fake backend).
fn moe_prefill_bytes(spec: &ModelSpec, moe: &Moe, tokens: u128, element: u128) -> u128 {
    let hidden = u128::from(spec.hidden_size);
    let experts = u128::from(moe.num_experts);
    let k = u128::from(moe.experts_per_token);
    let size = u128::from(moe.expert_intermediate_size);
    let rows = tokens * k;
    let (logit_bytes, weight_bytes) = match spec.model_type.as_str() {
        "deepseek_v2" | "deepseek_v3" => (4, 4),
        // MiniMax-M2's router: logits in the model's type, `sigmoid(logits.float())`
        // routing weights in fp32, as Mixtral's softmax.
        "mixtral" | "minimax_m2" => (element, 4),
        _ => (element, element),
    };
    let promoted = element.max(weight_bytes);
    let router = rounded(tokens * experts * logit_bytes)
        + rounded(tokens * k * weight_bytes)
        + rounded(tokens * k * 8);
    let gpt_oss = spec.model_type == "gpt_oss";
    // Sorted ids and permutation, gathered rows, gathered weights, histc input, counts, offsets.
    let sorted = 2 * rounded(rows * 8)
        + rounded(rows * hidden * element)
        + rounded(rows * weight_bytes)
        + rounded(rows * 4)
        + 2 * rounded(experts * 4);
    let intermediate = rounded(rows * size * element);
    let (up_bias, down_bias) =
        if gpt_oss { (2 * intermediate, rounded(rows * hidden * element)) } else { (0, 0) };
    let up_point = if gpt_oss {
        7 * intermediate
    } else if moe.gated {
        4 * intermediate
    } else {
        2 * intermediate
    } + up_bias;
    let down_point = rounded(rows * hidden * element)
        + 2 * rounded(rows * hidden * promoted)
        + rounded(rows * 8)
        + down_bias;
    let hidden_tensor = rounded(tokens * hidden * element);
    let shared_size = u128::from(moe.shared_intermediate_size);
    let (before, after) = if shared_size == 0 {
        (0, 0)
    } else if spec.model_type == "qwen2_moe" {
        (hidden_tensor, 0)
    } else {
        (0, hidden_tensor + 3 * rounded(tokens * shared_size * element))
    };
    router + (before + sorted + up_point.max(down_point)).max(after)
}

/// The parts of an inference peak, in bytes (weights excluded).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct InferencePeak {
    /// The KV cache at the peak.
    pub(crate) kv_cache: u128,
    /// Gated `DeltaNet` layers' convolution and recurrent states at the peak.
    pub(crate) state: u128,
    /// Activations alive at the peak (hidden states, MLP or attention intermediates, logits).
    pub(crate) activations: u128,
    /// Token ids, attention mask, position ids.
    pub(crate) inputs: u128,
    /// Where the peak falls.
    pub(crate) phase: &'static str,
}

/// The sizes one prefill works with.
struct Prefill {
    batch: u128,
    prompt: u128,
    hidden: u128,
    /// Bytes of one element of the activation type.
    element: u128,
    compute: FloatType,
    /// One `batch × prompt × hidden` tensor.
    hidden_tensor: u128,
}

/// The prefill and decode peaks of `workload`; `compute` is the activation type.
pub(crate) fn inference_peaks(
    spec: &ModelSpec,
    workload: &Inference,
    compute: FloatType,
) -> Vec<InferencePeak> {
    let element = u128::from(compute.bytes());
    let kv_element = u128::from(workload.kv_cache.bytes());
    let batch = u128::from(workload.batch_size);
    let prompt = u128::from(workload.prompt_len);
    let hidden = u128::from(spec.hidden_size);
    let vocab = u128::from(spec.vocab_size);
    let hidden_tensor = rounded(batch * prompt * hidden * element);
    let sizes = Prefill { batch, prompt, hidden, element, compute, hidden_tensor };
    // input_ids and attention_mask (int64) from the tokenizer, position_ids made by generate().
    let inputs = super::token_inputs(batch, prompt);
    // generate() keeps the last position's logits (`logits_to_keep=1`) and copies them to fp32.
    let last_logits = rounded(batch * vocab * element) + rounded(batch * vocab * 4);
    let mut peaks = Vec::new();

    // Prefill, in the last layer (every earlier layer's cache is filled).
    let cache = kv_cache_bytes(spec, batch, prompt, kv_element, false);
    let state = state_bytes(spec, batch, element);
    let layer_peak =
        spec.layers.last().map_or(0, |group| last_layer_peak(spec, &group.layer, workload, &sizes));
    // Logits: generate() keeps the last position (`logits_to_keep=1`) and copies it to
    // fp32; a plain forward (gen_len 0) returns every position's logits.
    let logits = if workload.gen_len == 0 {
        rounded(batch * prompt * vocab * element) + hidden_tensor
    } else {
        last_logits
    };
    let last = InferencePeak {
        kv_cache: cache,
        state,
        activations: layer_peak.max(logits),
        inputs,
        phase: if layer_peak >= logits { "prefill" } else { "prefill.logits" },
    };
    // In the last gated DeltaNet layer, where the caches of the layers before it
    // are filled and its chunked kernel holds its fp32 working set.
    let delta_net = last_delta_net_peak(spec, &sizes, kv_element, inputs);
    match delta_net {
        Some(peak) if peak.total() > last.total() => peaks.push(peak),
        _ => peaks.push(last),
    }
    if workload.gen_len > 1 {
        peaks.push(decode_peak(spec, workload, &sizes, kv_element, last_logits));
    }
    peaks
}

impl InferencePeak {
    fn total(&self) -> u128 {
        self.kv_cache + self.state + self.activations + self.inputs
    }
}

/// The prefill inside the last gated `DeltaNet` layer (`None` without one):
/// the KV caches and states of the layers before it, the model's
/// `inputs_embeds`, the layer's input and normed input, and
/// [`delta_net_point`].
fn last_delta_net_peak(
    spec: &ModelSpec,
    sizes: &Prefill,
    kv_element: u128,
    inputs: u128,
) -> Option<InferencePeak> {
    let &Prefill { batch, prompt, element, hidden_tensor, .. } = sizes;
    let layers: Vec<&Layer> = spec
        .layers
        .iter()
        .flat_map(|g| std::iter::repeat_n(&g.layer, usize::try_from(g.count).unwrap_or(0)))
        .collect();
    let index =
        layers.iter().rposition(|l| matches!(l.attention.kind, AttentionKind::GatedDeltaNet(_)))?;
    let AttentionKind::GatedDeltaNet(dims) = layers[index].attention.kind else { return None };
    let (mut kv_cache, mut state) = (0, 0);
    for layer in &layers[..index] {
        match layer.attention.kind {
            AttentionKind::GatedDeltaNet(before) => {
                state += layer_state_bytes(&before, batch, element);
            }
            _ => {
                let (keys, values) =
                    layer_kv_bytes(&layer.attention, batch, prompt, kv_element, false);
                kv_cache += keys + values;
            }
        }
    }
    Some(InferencePeak {
        kv_cache,
        state,
        activations: 3 * hidden_tensor + delta_net_point(&dims, sizes),
        inputs,
        phase: "prefill.delta_net",
    })
}

/// The prefill's worst moment in the last layer: at the MLP or in attention.
fn last_layer_peak(spec: &ModelSpec, layer: &Layer, workload: &Inference, sizes: &Prefill) -> u128 {
    let &Prefill { batch, prompt, element, hidden_tensor, .. } = sizes;
    let attention = &layer.attention;
    let heads = u128::from(attention.num_heads);
    let head_dim = u128::from(attention.head_dim);
    // cos and sin of the rotary embedding, `(batch, seq, head_dim)` each; latent
    // attention rotates only its `qk_rope_head_dim` part (`DeepseekV3RotaryEmbedding`
    // is built on that width).
    let rotary_dim = match attention.kind {
        AttentionKind::Latent(dims) => u128::from(dims.qk_rope_head_dim),
        // Gated DeltaNet is refused before this (`refuse_unmodelled`).
        AttentionKind::Standard
        | AttentionKind::GatedDeltaNet(_)
        | AttentionKind::ShortConv { .. } => head_dim,
    };
    let rotary =
        if matches!(spec.positions, PositionEncoding::Sinusoidal | PositionEncoding::Learned) {
            // XGLM adds a sinusoidal table's rows to the embeddings, GPT-2 a learned
            // table's: no cos/sin (measured: GPT-2's eager fp32 prefill, exact without them).
            0
        } else {
            2 * rounded(batch * prompt * rotary_dim * element)
        };
    // MLP point: embeds, layer input, residual, MLP input + the MLP's intermediates.
    let mlp = mlp_intermediates(spec, layer, sizes);
    // A learned position table's output stays alive beside `inputs_embeds` (GPT-2).
    let embeds = if spec.positions == PositionEncoding::Learned { 2 } else { 1 } * hidden_tensor;
    let eager = workload.attention == AttentionImpl::Eager;
    // Eager attention materializes an additive mask `(batch, 1, seq, seq)` in the
    // model's type for each kind of layer (`create_causal_mask`, and
    // `create_sliding_window_causal_mask` when some layers are windowed: Gemma 2 and 3,
    // gpt-oss build both), alive through the whole forward.
    let masks = if eager {
        let windowed = spec.layers.iter().any(|g| g.layer.attention.sliding_window.is_some());
        let full = spec.layers.iter().any(|g| g.layer.attention.sliding_window.is_none());
        u128::from(windowed) + u128::from(full)
    } else {
        0
    } * rounded(batch * prompt * prompt * element);
    // SDPA: once the prompt reaches a layer's sliding window, that layer kind gets an
    // explicit mask (`Attention::window_needs_sdpa_mask`): a boolean
    // `(1, 1, prompt, prompt)` built once and broadcast over the batch, alive through
    // the whole forward (measured on the fake backend: Mistral-7B and Phi-3 at 16K,
    // Gemma-3-4B at 32K, Mistral-7B at 8K with batch 2, all a prompt² bytes).
    let sdpa_masks = if workload.attention == AttentionImpl::Sdpa
        && spec.layers.iter().any(|g| g.layer.attention.window_needs_sdpa_mask(prompt))
    {
        rounded(prompt * prompt)
    } else {
        0
    };
    // Eager attention also returns its probabilities (`attn_weights`, the query's type;
    // gpt-oss's with sinks are a view of the `seq + 1`-wide softmax), and every decoder
    // layer holds them in `hidden_states, _ = self.self_attn(...)` until it returns, so
    // they stay alive through the MLP (measured on Gemma-2-2B, fake backend).
    let kept_probs = if eager {
        let keys = if attention.has_sinks() { prompt + 1 } else { prompt };
        rounded(batch * heads * prompt * keys * element)
    } else {
        0
    };
    let mlp_point = embeds + 3 * hidden_tensor + mlp + rotary + masks + sdpa_masks + kept_probs;
    let q = rounded(batch * prompt * heads * head_dim * element);
    // An output gate (Qwen3.5's `attn_output_gate`): `gate.reshape(...)` copies the
    // gate half of `q_proj`'s output, alive through the attention (measured on
    // Qwen3.5-9B with eager attention at 8K tokens).
    let gate = if attention.output_gate { q } else { 0 };
    let attention_point = if eager {
        // A fused projection (GPT-2's `c_attn`): the queries, keys and values are
        // views of one output, alive whole while the eager scores are made
        // (measured: GPT-2 at batch 16 × 1K in fp32).
        let queries = if attention.projections.len() < 4 {
            let kv_heads = u128::from(attention.num_kv_heads);
            rounded(batch * prompt * (heads + 2 * kv_heads) * head_dim * element)
        } else {
            q
        };
        let held = embeds + 2 * hidden_tensor + queries + masks + gate;
        held + eager_scores(spec, attention, sizes, q, rotary)
    } else {
        // Embeds, layer input, normed input, the rotated queries and the attention output.
        embeds + 2 * hidden_tensor + 2 * q + rotary + sdpa_masks + gate
    };
    mlp_point.max(attention_point)
}

/// The MLP's intermediates alive at its worst moment in the prefill.
fn mlp_intermediates(spec: &ModelSpec, layer: &Layer, sizes: &Prefill) -> u128 {
    let &Prefill { batch, prompt, hidden, element, hidden_tensor, .. } = sizes;
    match &layer.feed_forward {
        FeedForward::Dense { intermediate_size, gated, linears } => {
            let intermediate = rounded(batch * prompt * u128::from(*intermediate_size) * element);
            match (*gated, spec.activation) {
                // `down(act(gate(x)) * up(x))` at the product: act, up and the product;
                // a fused `gate_up_proj` keeps its 2I output alive instead of `up`.
                (true, _) => {
                    if linears.len() == 2 {
                        4 * intermediate
                    } else {
                        3 * intermediate
                    }
                }
                // `NewGELUActivation`'s Python formula: its input, `0.5·x`, and two
                // temporaries of the chain are alive at once.
                (false, Activation::GeluNew) => 4 * intermediate,
                // `fc2(act(fc1(x)))` at the activation: its input and output.
                (false, _) => 2 * intermediate,
            }
        }
        FeedForward::Moe(moe) if moe.expert_linears.is_empty() => {
            moe_prefill_bytes(spec, moe, batch * prompt, element)
        }
        FeedForward::Moe(moe) => {
            // Experts as one module each (remote-code models): an eager loop over the
            // experts, one expert's routed rows at a time (uniform routing), router
            // logits and their fp32 softmax.
            let rows = (batch * prompt * u128::from(moe.experts_per_token))
                .div_ceil(u128::from(moe.num_experts).max(1));
            let size = u128::from(moe.expert_intermediate_size);
            let experts = rounded(rows * (hidden + 4 * size) * element);
            let router = rounded(batch * prompt * u128::from(moe.num_experts) * (element + 4));
            let shared =
                rounded(batch * prompt * u128::from(moe.shared_intermediate_size) * element) * 3;
            experts + router + shared + hidden_tensor
        }
    }
}

/// Eager attention at `softmax(scores, dtype=float32).to(query.dtype)`: the
/// masked scores, their fp32 softmax and its cast (none in fp32) coexist, with the keys and
/// values repeated to the query heads and the rotated queries (`rotary`), on
/// top of what the layer holds (the caller's embeds, hidden states, queries
/// and masks).
fn eager_scores(
    spec: &ModelSpec,
    attention: &Attention,
    sizes: &Prefill,
    q: u128,
    rotary: u128,
) -> u128 {
    let &Prefill { batch, prompt, element, compute, .. } = sizes;
    let heads = u128::from(attention.num_heads);
    let scores = batch * heads * prompt * prompt;
    if spec.model_type == "xglm" {
        // `XGLMAttention.forward`: the masked scores and `torch.max(scores, floor)`
        // coexist (the `bmm` output is dropped by the addition), and the softmax
        // runs in their type, so fp32 appears only for fp16 (`softmax(...,
        // dtype=float32).to(float16)`, beside the clamped scores). Its keys and
        // values are the cache's own tensors. Measured at `max` on `xglm-tiny` (CPU).
        let upcast = if compute == FloatType::F16 { rounded(scores * 4) } else { 0 };
        return 2 * rounded(scores * element) + upcast;
    }
    let kv_heads = u128::from(attention.num_kv_heads);
    let repeated = if kv_heads == heads { 0 } else { 2 * q };
    let probabilities = if attention.has_sinks() {
        // gpt-oss (`eager_attention_forward` with sinks): the masked scores
        // stay alive (`attn_weights` is not reassigned) beside the
        // `seq + 1`-wide logits with the sink column and their max-subtracted
        // copy; the softmax runs in their type, with no fp32 copy. Measured at
        // `sub` on gpt-oss-20b (fake backend, batch 8 × 2K).
        let wide = rounded(batch * heads * prompt * (prompt + 1) * element);
        rounded(scores * element) + 2 * wide
    } else if spec.model_type == "gpt2" {
        // GPT-2's softmax has no dtype: it runs in the scores' type, whatever it
        // is; the masked scores and the softmax's output.
        2 * rounded(scores * element)
    } else if compute == FloatType::F32 {
        // In fp32, `.to(query.dtype)` returns the softmax's own output: no cast
        // copy, so the masked scores and the softmax alone (issue 13's eager fp32
        // misses: Llama-3.2-1B at batch 8 × 1K was +13.7 %, GPT-2 at 16 × 1K +19.6 %).
        rounded(scores * element) + rounded(scores * 4)
    } else {
        2 * rounded(scores * element) + rounded(scores * 4)
    };
    repeated + rotary + probabilities
}

/// Decode: the cache grows by `torch.cat` one layer at a time, so the old and
/// the new tensor of one layer coexist; the last step holds prompt + gen − 1
/// tokens, one token's hidden states and the last position's logits.
fn decode_peak(
    spec: &ModelSpec,
    workload: &Inference,
    sizes: &Prefill,
    kv_element: u128,
    last_logits: u128,
) -> InferencePeak {
    let &Prefill { batch, prompt, hidden, element, .. } = sizes;
    let total = prompt + u128::from(workload.gen_len) - 1;
    let cache = kv_cache_bytes(spec, batch, total, kv_element, true);
    let growing = spec
        .layers
        .iter()
        .map(|g| {
            let (keys, values) = layer_kv_bytes(&g.layer.attention, batch, total, kv_element, true);
            keys.max(values)
        })
        .max()
        .unwrap_or(0);
    let step_tokens = rounded(batch * hidden * element) * 4;
    InferencePeak {
        kv_cache: cache,
        state: state_bytes(spec, batch, element),
        activations: growing + step_tokens + last_logits,
        inputs: super::token_inputs(batch, prompt) + rounded(batch * total * 8),
        phase: "decode",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy;
    use crate::workload::KvCacheType;

    #[test]
    fn kv_cache_is_two_tensors_per_layer() {
        let spec = toy::llama();
        // 2 KV heads × 16 dims × 100 tokens × 3 sequences × 2 B = 19,200 B → 19,456 per tensor.
        let (k, v) = layer_kv_bytes(&spec.layers[0].layer.attention, 3, 100, 2, true);
        assert_eq!((k, v), (19_456, 19_456));
        assert_eq!(kv_cache_bytes(&spec, 3, 100, 2, true), 2 * 2 * 19_456);
    }

    #[test]
    fn sliding_windows_cap_the_cache_only_after_prefill() {
        let mut spec = toy::llama();
        spec.layers[0].layer.attention.sliding_window = Some(64);
        let attention = &spec.layers[0].layer.attention;
        let full = layer_kv_bytes(attention, 1, 1000, 2, false);
        let windowed = layer_kv_bytes(attention, 1, 1000, 2, true);
        assert_eq!(full.0, rounded(1000 * 32 * 2));
        assert_eq!(windowed.0, rounded(64 * 32 * 2));
    }

    #[test]
    fn latent_attention_caches_the_latent() {
        let dims = crate::spec::LatentDims {
            q_lora_rank: None,
            kv_lora_rank: 512,
            qk_nope_head_dim: 128,
            qk_rope_head_dim: 64,
            v_head_dim: 128,
        };
        let attention = crate::spec::latent_attention(2048, 16, dims, false);
        // 512 latent and 64 rotary elements per token, whatever the heads (576 in all,
        // DeepSeek-V2 paper table 1: 4.5 × head_dim... as 2.25 GQA groups).
        let (k, v) = layer_kv_bytes(&attention, 1, 10, 2, true);
        assert_eq!((k, v), (rounded(10 * 512 * 2), rounded(10 * 64 * 2)));
    }

    #[test]
    fn prefill_and_decode_peaks() {
        let spec = toy::llama();
        let workload = Inference {
            weights: crate::dtype::WeightFormat::Float(FloatType::Bf16),
            kv_cache: KvCacheType::Float(FloatType::Bf16),
            batch_size: 1,
            prompt_len: 100,
            gen_len: 10,
            attention: AttentionImpl::Sdpa,
        };
        let peaks = inference_peaks(&spec, &workload, FloatType::Bf16);
        assert_eq!(peaks.len(), 2);
        let (prefill, decode) = (&peaks[0], &peaks[1]);
        assert_eq!(prefill.kv_cache, kv_cache_bytes(&spec, 1, 100, 2, false));
        // The cache holds 109 tokens at the last decode step.
        assert_eq!(decode.kv_cache, kv_cache_bytes(&spec, 1, 109, 2, true));
        // Prefill, at the MLP product: 4 hidden-size tensors, act/up/product, rotary cos/sin.
        let hidden = rounded(100 * 64 * 2);
        let intermediate = rounded(100 * 176 * 2);
        let rotary = 2 * rounded(100 * 16 * 2);
        assert_eq!(prefill.activations, 4 * hidden + 3 * intermediate + rotary);
    }

    #[test]
    fn a_window_the_prompt_reaches_adds_one_broadcast_sdpa_mask() {
        // `_ignore_causal_mask_sdpa` keeps the mask once `kv_length >= sliding_window`:
        // one boolean (1, 1, prompt, prompt), whatever the batch (measured: Mistral-7B at
        // 16K batch 1 and 8K batch 2, fake backend).
        let prefill = |window: Option<u64>, batch: u64| {
            let mut spec = toy::llama();
            spec.layers[0].layer.attention.sliding_window = window;
            let workload = Inference {
                weights: crate::dtype::WeightFormat::Float(FloatType::Bf16),
                kv_cache: KvCacheType::Float(FloatType::Bf16),
                batch_size: batch,
                prompt_len: 100,
                gen_len: 10,
                attention: AttentionImpl::Sdpa,
            };
            inference_peaks(&spec, &workload, FloatType::Bf16)[0].activations
        };
        for batch in [1, 2] {
            assert_eq!(prefill(Some(100), batch) - prefill(None, batch), rounded(100 * 100));
            assert_eq!(prefill(Some(101), batch), prefill(None, batch));
        }
    }

    #[test]
    fn fused_experts_peak_at_the_reordered_routed_rows() {
        // `grouped_mm_experts_forward` on 1 × 100 tokens, k = 2 of 4 experts, hidden 64,
        // expert size 32: the down point (output, fp32 `weighted_out` and its reordered
        // copy, `inv_perm`) beats the up point; Mixtral's routing weights are fp32.
        let mut spec = toy::mixtral();
        spec.model_type = "mixtral".into();
        let FeedForward::Moe(moe) = &spec.layers[0].layer.feed_forward else { unreachable!() };
        let (tokens, rows) = (100, 200);
        let router = rounded(tokens * 4 * 2) + rounded(tokens * 2 * 4) + rounded(tokens * 2 * 8);
        let sorted = 2 * rounded(rows * 8)
            + rounded(rows * 64 * 2)
            + rounded(rows * 4)
            + rounded(rows * 4)
            + 2 * rounded(4 * 4);
        let down = rounded(rows * 64 * 2) + 2 * rounded(rows * 64 * 4) + rounded(rows * 8);
        assert!(down > 4 * rounded(rows * 32 * 2));
        assert_eq!(moe_prefill_bytes(&spec, moe, tokens, 2), router + sorted + down);
        // Qwen-style routers cast the weights back: `weighted_out` stays bf16.
        spec.model_type = "qwen3_moe".into();
        let bf16_router =
            rounded(tokens * 4 * 2) + rounded(tokens * 2 * 2) + rounded(tokens * 2 * 8);
        let bf16_sorted = sorted - rounded(rows * 4) + rounded(rows * 2);
        let bf16_down = 3 * rounded(rows * 64 * 2) + rounded(rows * 8);
        assert_eq!(moe_prefill_bytes(&spec, moe, tokens, 2), bf16_router + bf16_sorted + bf16_down);
    }
}
