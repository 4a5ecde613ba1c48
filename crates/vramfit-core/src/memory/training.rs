/*!
The activations a training step keeps: the forward pass of a Hugging Face
transformers 5 decoder, traced op by op through [`Tracer`].

Each function below follows the `forward` of the transformers module it
names, and lets the tracer apply PyTorch's saving rules. What this yields,
checked against `../shared/ground-truth` and `validation/data`:

- the bytes autograd keeps at the end of the forward (all layers' saved
  tensors, the fp32 log-softmax of the loss);
- the short-lived logits at the loss, and the two fp32 logit gradients that
  open the backward pass;
- with gradient checkpointing, the layer inputs kept and the largest layer
  recomputed during backward.

The loss is `ForCausalLMLoss` (transformers 5): logits upcast to fp32, then
`cross_entropy`, whose `log_softmax` keeps its fp32 output.
*/

use crate::dtype::FloatType;
use crate::lora::{ExpertTargets, Resolution};
use crate::memory::trace::{self, LayerMoment, T, Tracer, Ty, wider};
use crate::spec::{
    Activation, Attention, AttentionKind, BlockStyle, FeedForward, Layer, Linear, ModelSpec, Moe,
    NormStyle, PositionEncoding,
};
use crate::workload::AttentionImpl;

/// What the trace of one training forward pass found, in bytes.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct ActivationTrace {
    /// Everything autograd keeps at the end of the forward, the loss's log-softmax included.
    pub(crate) saved: u128,
    /// The fp32 log-softmax output of the loss (part of `saved`; freed first in backward).
    pub(crate) log_softmax: u128,
    /// Logits alive at the loss besides the log-softmax: the model-dtype logits and their fp32 copy.
    pub(crate) loss_transient: u128,
    /// The gradients of the fp32 logits alive when backward starts (two of them).
    pub(crate) logit_grads: u128,
    /// With checkpointing: the largest layer's saved tensors while it is recomputed.
    pub(crate) recomputed_layer: u128,
    /// With checkpointing: the largest single layer input kept (part of `saved`).
    pub(crate) checkpoint: u128,
    /// Half-precision weight copies autocast holds until the forward ends without saving them.
    pub(crate) autocast_cache: u128,
    /// Half-precision weight copies autocast made and autograd keeps (part of `saved`).
    pub(crate) autocast_saved: u128,
    /// The largest short-lived buffer inside one op (a dequantized 4-bit weight).
    pub(crate) largest_transient: u128,
    /// What the decoder layers keep (part of `saved`): what is left once backward
    /// has passed the loss, the head and the final norm.
    pub(crate) layers_saved: u128,
    /// Autocast's weight copies among `layers_saved`.
    pub(crate) layers_autocast_saved: u128,
    /// The worst moment inside a decoder layer's backward, when an op's backward
    /// runs: the saved bytes still kept then (without checkpointing, all that the
    /// layers saved up to that op, the later ops' released; with checkpointing, the
    /// recomputed layer's part only), the gradients that op's backward holds at once
    /// beside the residual stream's (an adapted linear's, see
    /// `Forward::adapted_input_grads`; an MLP product's; an attention softmax's; an
    /// adapted expert bank's), and its layer's weight gradients before and in all.
    pub(crate) backward: LayerMoment,
    /// The same, chosen by the moment's own bytes (kept and working) alone: the
    /// worst one when the layer's gradients do not appear op by op (all exist
    /// from the first micro-batch under accumulation; sharded ones are counted
    /// apart). Found by the property test of memory growing with the sequence.
    pub(crate) backward_by_bytes: LayerMoment,
    /// The worst moment inside a decoder layer's forward: what the layers saved up
    /// to it (with checkpointing, the recomputed layer's part only: the moment
    /// comes again in the recompute, inside backward) and the tensors alive then
    /// that nothing saves (an adapted linear's input, peft's fp32 copy of it, the
    /// base's and the branch's outputs, the hidden states the Python frames hold).
    pub(crate) forward: LayerMoment,
    /// With checkpointing and trained weights: the gradient bytes of the recomputed
    /// layer's weights (the largest layer's).
    pub(crate) layer_grads: u128,
    /// With checkpointing: the residual stream's gradient, alive while a layer is
    /// recomputed inside backward (its backward moments count it already).
    pub(crate) stream_grad: u128,
}

/// How the traced model is trained.
#[expect(clippy::struct_excessive_bools, reason = "independent switches of one training setup")]
pub(crate) struct TraceSetup<'a> {
    /// Sequences per micro-batch.
    pub(crate) batch: u128,
    /// Tokens per sequence.
    pub(crate) seq: u128,
    /// Type of parameters (and of the residual stream and norms).
    pub(crate) param_ty: FloatType,
    /// Autocast's half type under mixed precision.
    pub(crate) autocast: Option<FloatType>,
    /// Whether base weights are trained (full fine-tuning).
    pub(crate) full: bool,
    /// Adapted modules, for LoRA/QLoRA.
    pub(crate) lora: Option<(&'a Resolution, u64, bool)>,
    /// QLoRA: frozen base linears are bitsandbytes 4-bit, computing in this type.
    pub(crate) quantized_compute: Option<FloatType>,
    /// The token-embedding output requires grad although the embeddings are
    /// frozen (peft's `enable_input_require_grads`, used by QLoRA recipes).
    pub(crate) input_requires_grad: bool,
    /// Attention implementation.
    pub(crate) attention: AttentionImpl,
    /// Gradient checkpointing of every decoder layer.
    pub(crate) checkpointing: bool,
    /// The traced part starts with the token embeddings (else it receives hidden states).
    pub(crate) first: bool,
    /// The traced part ends with the final norm, the head and the loss.
    pub(crate) last: bool,
    /// Follow PyTorch's CPU kernel choices instead of CUDA's (to compare with CPU measurements).
    pub(crate) cpu_kernels: bool,
    /// Dropout masks in the input's type (real CPU kernels) instead of bool.
    pub(crate) typed_dropout_masks: bool,
    /// A dispatch-mode tracker watches the run ([`crate::memory::runtime::Runtime::watched`]).
    pub(crate) watched: bool,
}

/// The head geometry of one attention call: query and key/value heads, the
/// query/key head size and the value head size.
#[derive(Clone, Copy)]
struct HeadShape {
    heads: u128,
    kv_heads: u128,
    head_dim: u128,
    v_dim: u128,
}

/// One SDPA call ([`Forward::sdpa`]): its heads and whether a mask is passed.
#[derive(Clone, Copy)]
struct SdpaShape {
    heads: HeadShape,
    /// An explicit attention mask is passed (a sliding window no longer than the
    /// sequence, or Falcon's own mask).
    masked: bool,
    /// Keys and values go through transformers' `repeat_kv` (its SDPA wrapper with a
    /// mask); Falcon lays out its own heads before calling SDPA.
    repeat_kv: bool,
}

struct Forward<'a> {
    spec: &'a ModelSpec,
    setup: &'a TraceSetup<'a>,
    tokens: u128,
}

/// Traces the forward pass of `spec` under `setup`.
pub(crate) fn trace_training(spec: &ModelSpec, setup: &TraceSetup<'_>) -> ActivationTrace {
    let tokens = setup.batch * setup.seq;
    let forward = Forward { spec, setup, tokens };
    let mut tracer = Tracer::default();
    let hidden = u128::from(spec.hidden_size);
    // Token embeddings (`nn.Embedding`): a new tensor in the parameter type;
    // the backward needs only the token ids, which are inputs already counted.
    let mut x = if setup.first {
        let embedded = tracer.tensor(
            tokens * hidden,
            Ty::Float(setup.param_ty),
            setup.full || setup.input_requires_grad,
        );
        tracer.inputs_embeds = Some(embedded);
        forward.dropout(&mut tracer, embedded, spec.dropout.embedding)
    } else {
        // A later pipeline stage receives the previous stage's hidden states, whose
        // gradient it sends back.
        tracer.tensor(tokens * hidden, Ty::Float(setup.param_ty), true)
    };
    let mut recomputed_layer = 0;
    let mut checkpoint = 0;
    let mut layer_grads = 0;
    let mut stream_grad = 0;
    // The worst moments inside a layer's backward and forward (see
    // `ActivationTrace::backward` and `forward`).
    let mut backward_moment = LayerMoment::default();
    let mut backward_by_bytes = LayerMoment::default();
    let mut forward_moment = LayerMoment::default();
    for group in &spec.layers {
        let mut remaining = u128::from(group.count);
        while remaining > 0 {
            let before = tracer.saved_bytes();
            let autocast_before = tracer.autocast_saved_bytes;
            let cache_before = tracer.autocast_cache_bytes;
            let input_rg = x.rg;
            let (output, layer_saved, (moment, by_bytes), in_forward) = if setup.checkpointing {
                // `torch.utils.checkpoint` (non-reentrant, as `gradient_checkpointing_enable`
                // sets it): the layer's input is kept; its saved tensors are recomputed in
                // backward, one layer at a time.
                let kept = tracer.saved_bytes();
                tracer.save(x);
                checkpoint = checkpoint.max(tracer.saved_bytes() - kept);
                let mut inner = Tracer::default();
                // The recomputed layer's input is the checkpoint, counted by the caller:
                // entered as saved already, so the layer's own bytes leave it out.
                let inner_x = inner.tensor(x.elems, x.ty, x.rg);
                inner.save(inner_x);
                inner.layer_start = inner.saved_bytes();
                inner.stream_grad = inner.bytes(inner_x);
                let out = forward.layer(&mut inner, inner_x, &group.layer, false);
                // the recomputed layer's ops run again in backward, with their transients
                tracer.largest_transient = tracer.largest_transient.max(inner.largest_transient);
                // the layer's casts of trainable weights stay in autocast's cache until the
                // forward ends (measured: TinyLlama at batch 8 × 2K peaks at the loss)
                tracer.autocast_cache_bytes += inner.autocast_trainable_copies;
                // the layer's forward moments happen again in the recompute, inside backward
                let output = tracer.tensor(out.elems, out.ty, out.rg);
                layer_grads = layer_grads.max(inner.layer_grads);
                stream_grad = stream_grad.max(inner.stream_grad);
                let backward =
                    LayerMoment { layer_grads: inner.layer_grads, ..inner.backward_moment };
                let by_bytes = LayerMoment {
                    layer_grads: inner.layer_grads,
                    ..inner.backward_moment_by_bytes
                };
                (
                    output,
                    inner.saved_bytes() - inner.layer_start,
                    (backward, by_bytes),
                    inner.forward_moment,
                )
            } else {
                tracer.layer_start = before;
                tracer.layer_grads = 0;
                tracer.stream_grad = tracer.bytes(x);
                tracer.backward_moment = LayerMoment::default();
                tracer.backward_moment_by_bytes = LayerMoment::default();
                tracer.forward_moment = LayerMoment::default();
                let out = forward.layer(&mut tracer, x, &group.layer, false);
                let backward =
                    LayerMoment { layer_grads: tracer.layer_grads, ..tracer.backward_moment };
                let by_bytes = LayerMoment {
                    layer_grads: tracer.layer_grads,
                    ..tracer.backward_moment_by_bytes
                };
                (out, tracer.saved_bytes() - before, (backward, by_bytes), tracer.forward_moment)
            };
            recomputed_layer = recomputed_layer.max(layer_saved);
            let per_layer = tracer.saved_bytes() - before;
            x = output;
            remaining -= 1;
            // Identical layers after the first save the same; a layer whose input
            // changed from frozen to trainable is traced once more before repeating.
            if remaining > 0 && input_rg == x.rg {
                tracer.add_saved_bytes(per_layer * remaining);
                tracer.autocast_saved_bytes +=
                    (tracer.autocast_saved_bytes - autocast_before) * remaining;
                tracer.autocast_cache_bytes +=
                    (tracer.autocast_cache_bytes - cache_before) * remaining;
                remaining = 0;
            }
            // Backward reaches the last of these layers first, and the forward's worst
            // moment is in it too, with every earlier layer's saved tensors kept; with
            // checkpointing, both count the recomputed layer's own part (the forward's
            // comes again in the recompute) and the caller adds the checkpoints.
            let before_last = tracer.saved_bytes() - per_layer;
            let place = |m: LayerMoment| {
                if setup.checkpointing {
                    m
                } else {
                    LayerMoment { kept_in_layer: before_last + m.kept_in_layer, ..m }
                }
            };
            backward_moment = backward_moment.worse(place(moment));
            backward_by_bytes = backward_by_bytes.larger(place(by_bytes));
            forward_moment = forward_moment.worse(place(in_forward));
        }
    }
    let layers = ActivationTrace {
        saved: tracer.saved_bytes(),
        recomputed_layer,
        checkpoint,
        autocast_cache: tracer.autocast_cache_bytes,
        autocast_saved: tracer.autocast_saved_bytes,
        largest_transient: tracer.largest_transient,
        layers_saved: tracer.saved_bytes(),
        layers_autocast_saved: tracer.autocast_saved_bytes,
        backward: backward_moment,
        backward_by_bytes,
        forward: forward_moment,
        layer_grads,
        stream_grad,
        ..ActivationTrace::default()
    };
    if !setup.last {
        return layers;
    }
    // Final norm, output head, loss.
    let head = &spec.lm_head.linear;
    let normed = forward.norm(&mut tracer, x, spec.hidden_size);
    let mut logits = forward.linear(&mut tracer, normed, head, false);
    if spec.softcapping.logits {
        // Gemma 2: `cap · tanh(logits / cap)`; `tanh` keeps its output.
        logits = tracer.unary_saving(logits, true);
        logits = tracer.pointwise(logits.elems, logits.float(), logits.rg);
    }
    // `logits.float()`: a copy unless the logits are fp32 already.
    let upcast = tracer.cast(logits, FloatType::F32);
    let before = tracer.saved_bytes();
    tracer.softmax(upcast, FloatType::F32);
    let log_softmax = tracer.saved_bytes() - before;
    // `nll_loss` keeps the shifted labels.
    let labels = tracer.tensor(tokens, Ty::I64, false);
    tracer.save(labels);
    // At `log_softmax`, the logits and their fp32 copy are alive beside its output,
    // and so is the final norm's output, which the base model returns as
    // `last_hidden_state` (kept by nothing else under autocast, where the head keeps
    // its half copy; measured: TinyLlama at batch 8 × 2K with checkpointing peaks there).
    let logits_bytes = if logits.ty == upcast.ty {
        tracer.bytes(logits)
    } else {
        tracer.bytes(logits) + tracer.bytes(upcast)
    };
    let loss_transient = logits_bytes + tracer.unsaved_bytes(&[normed]);
    // Backward opens with `nll_loss_backward`'s gradient and `_log_softmax_backward_data`'s
    // result, both fp32 logits-sized.
    let logit_grads = 2 * tracer.bytes(upcast);
    ActivationTrace {
        saved: tracer.saved_bytes(),
        log_softmax,
        loss_transient,
        logit_grads,
        autocast_cache: tracer.autocast_cache_bytes,
        autocast_saved: tracer.autocast_saved_bytes,
        largest_transient: tracer.largest_transient,
        ..layers
    }
}

impl Forward<'_> {
    /// Whether base weights are trained.
    fn base_trainable(&self) -> bool {
        self.setup.full
    }

    /// `nn.Dropout` in training (`native_dropout`): a new output, and the mask
    /// kept for backward — one byte per element on CUDA (bool), the input's
    /// type on the CPU.
    fn dropout(&self, tracer: &mut Tracer, x: T, active: bool) -> T {
        if !active {
            return x;
        }
        let out = tracer.tensor(x.elems, x.ty, x.rg);
        if x.rg {
            let mask_ty = if self.setup.typed_dropout_masks { x.ty } else { Ty::Bool };
            let mask = tracer.tensor(x.elems, mask_ty, false);
            tracer.save(mask);
            // Its backward holds the incoming gradient and its result at once.
            tracer.backward_moment(2 * tracer.bytes(out));
        }
        out
    }

    /// The MLP's activation ([`Activation`]): what its backward keeps.
    fn activation(&self, tracer: &mut Tracer, x: T) -> T {
        match self.spec.activation {
            Activation::Silu | Activation::Gelu => tracer.unary_saving(x, false),
            Activation::Relu => tracer.unary_saving(x, true),
            Activation::GeluNew => {
                // `0.5 * x * (1 + tanh(√(2/π) * (x + 0.044715 * x³)))`: `pow` keeps x,
                // `tanh` its output, the final product `0.5·x` and `1 + tanh`.
                if x.rg {
                    tracer.save(x);
                }
                let tanh = tracer.unary_saving(x, true);
                let one_plus = tracer.pointwise(x.elems, x.float(), x.rg);
                let half_x = tracer.pointwise(x.elems, x.float(), x.rg);
                let _ = tanh;
                tracer.mul(half_x, one_plus)
            }
        }
    }

    /// A linear layer (`nn.Linear`, peft's `lora.Linear`, bitsandbytes' `Linear4bit`).
    ///
    /// `torch.nn.functional.linear` keeps its input when the weight is
    /// trained (weight gradient = `grad_outᵀ · input`) and the weight when the
    /// input requires grad (a parameter, not counted here). Under autocast the
    /// input is cast to the half type first (that copy is what is kept) and
    /// the weight's half copy is cached for the forward (`cache_enabled`).
    fn linear(&self, tracer: &mut Tracer, x: T, linear: &Linear, quantizable: bool) -> T {
        let trainable = self.base_trainable();
        let out = match self.setup.quantized_compute {
            Some(compute) if quantizable => {
                // bitsandbytes `Linear4bit.forward`: the input cast to the compute type,
                // `matmul_4bit` dequantizing the whole weight for the product (a transient),
                // nothing kept for the frozen weight, the output cast back to the input's type.
                let x_used = tracer.cast(x, compute);
                let dequantized = u128::from(linear.in_features)
                    * u128::from(linear.out_features)
                    * u128::from(compute.bytes());
                tracer.largest_transient = tracer.largest_transient.max(dequantized);
                let out = tracer.tensor(
                    x.elems / u128::from(linear.in_features).max(1)
                        * u128::from(linear.out_features),
                    Ty::Float(compute),
                    x_used.rg,
                );
                tracer.cast(out, x.float())
            }
            _ => self.plain_linear(
                tracer,
                x,
                u128::from(linear.in_features),
                u128::from(linear.out_features),
                trainable,
                self.setup.param_ty,
            ),
        };
        if trainable {
            tracer.layer_grads += trace::rounded(
                u128::from(linear.in_features)
                    * u128::from(linear.out_features)
                    * u128::from(self.setup.param_ty.bytes()),
            );
        }
        match self.setup.lora {
            Some((resolution, rank, dora)) if resolution.adapts(&linear.name) => {
                let quantized = self.setup.quantized_compute.filter(|_| quantizable);
                if x.rg {
                    let stream = if tracer.into_stream { tracer.stream_ty } else { None };
                    tracer.backward_moment(self.adapted_input_grads(x, linear, quantized, stream));
                }
                self.lora_branch(tracer, x, out, linear, rank, dora, quantized.is_some())
            }
            _ => out,
        }
    }

    /// Whether an adapted linear's LoRA branch takes its input as it is, without
    /// peft's `_cast_input_dtype` copy to the adapters' fp32. peft's bitsandbytes
    /// layers convert only when `torch.is_autocast_enabled()` is false, and that call
    /// (no device argument) asks about CUDA's autocast: under CUDA autocast the
    /// input goes in as it is; under CPU autocast it is still copied (measured).
    fn bnb_keeps_input_type(&self, quantized: bool) -> bool {
        quantized && self.setup.autocast.is_some() && !self.setup.cpu_kernels
    }

    /// The gradients an adapted linear's input `x` holds at once in backward
    /// (`quantized`: the 4-bit base's compute type).
    ///
    /// Autograd runs newer nodes first, so the LoRA branch's backward runs before
    /// the frozen base's. Its gradient goes back through the branch's casts:
    /// `lora_A`'s input (the autocast half type, else fp32), peft's
    /// `_cast_input_dtype` copy in fp32 (see [`Self::bnb_keeps_input_type`]), `x`'s
    /// type; each cast's backward holds its gradient and the
    /// converted one. That gradient then waits in autograd's `InputBuffer` while the
    /// base's runs: a 4-bit base dequantizes its weight (`MatMul4Bit.backward`) beside
    /// the product's gradient in the compute type, which is cast back to `x`'s type.
    /// A real run adds the second gradient into the first; a watched one
    /// ([`TraceSetup::watched`]) puts their sum in a third tensor. Measured on
    /// wide-MLP QLoRA and LoRA (validation/data/harness-bnb-cpu.jsonl), whose
    /// tracker shows the watched sum.
    fn adapted_input_grads(
        &self,
        x: T,
        linear: &Linear,
        quantized: Option<FloatType>,
        stream: Option<FloatType>,
    ) -> u128 {
        let grad = |ty: FloatType| trace::rounded(x.elems * u128::from(ty.bytes()));
        let x_ty = x.float();
        let adapter_ty = FloatType::F32;
        let mut chain = vec![self.setup.autocast.unwrap_or(adapter_ty)];
        let peft_copies = !self.bnb_keeps_input_type(quantized.is_some());
        for ty in peft_copies.then_some(adapter_ty).into_iter().chain([x_ty]) {
            if chain.last() != Some(&ty) {
                chain.push(ty);
            }
        }
        let branch = if chain.len() == 1 {
            grad(chain[0])
        } else {
            chain.windows(2).map(|pair| grad(pair[0]) + grad(pair[1])).max().unwrap_or(0)
        };
        let base_ty = quantized.or(self.setup.autocast).unwrap_or(x_ty);
        let dequantized = quantized.map_or(0, |compute| {
            trace::rounded(
                u128::from(linear.in_features)
                    * u128::from(linear.out_features)
                    * u128::from(compute.bytes()),
            )
        });
        let cast_back = if base_ty == x_ty { 0 } else { grad(x_ty) };
        let waiting = grad(x_ty);
        // The output side, measured with a storage ledger on peft 0.21 (bf16 with and
        // without autocast, 4-bit bases). The wrapper returns the base's output type
        // (a 4-bit base's output is cast back to the input's); its gradient arrives in
        // that type, unless it is the residual stream's own tensor (`stream`: an output
        // linear adding into a stream of the same type), which every moment counts.
        // peft sums the base's output and `lora_B(..) * scaling` (the half type under
        // autocast, else the fp32 adapters'; peft's bitsandbytes layers outside CUDA
        // autocast convert it to the result's type first) in the wider type, and casts
        // the sum back: backward widens the gradient, casts a copy for the side whose
        // type differs, and the scaling makes one more in the branch's type.
        let out_elems =
            x.elems / u128::from(linear.in_features).max(1) * u128::from(linear.out_features);
        let out = |ty: FloatType| trace::rounded(out_elems * u128::from(ty.bytes()));
        let out_ty = if quantized.is_some() { x_ty } else { self.setup.autocast.unwrap_or(x_ty) };
        let branch_ty = self.setup.autocast.unwrap_or(adapter_ty);
        let converts = quantized.is_some() && !self.bnb_keeps_input_type(true);
        let branch_at_sum = if converts { out_ty } else { branch_ty };
        let sum_ty = wider(out_ty, branch_at_sum);
        let incoming = if stream == Some(out_ty) { 0 } else { out(out_ty) };
        let (widened, sum_grad) =
            if sum_ty == out_ty { (0, incoming) } else { (incoming + out(sum_ty), out(sum_ty)) };
        let base_copy = if out_ty == sum_ty { 0 } else { out(out_ty) };
        let branch_copy = if branch_at_sum == sum_ty { 0 } else { out(branch_at_sum) };
        let converted_back =
            if converts && branch_at_sum != branch_ty { out(branch_ty) } else { 0 };
        // Alive until the base's backward has read it: the sum's gradient and the base's copy.
        let held = sum_grad + base_copy;
        let scaling = held + branch_copy + converted_back + out(branch_ty);
        let base_read = if base_copy > 0 { base_copy } else { sum_grad };
        let (cast_in, base_in) = match quantized {
            Some(compute) if compute != x_ty => {
                let cast = out(compute);
                (waiting + held + cast, cast)
            }
            _ => (0, base_read),
        };
        // In order: the output gradient widened; the scaling's gradient beside the
        // sum's; the branch's input gradients beside what the base will read; that
        // gradient cast to the compute type; the base's product, beside its input
        // gradient and a dequantized weight; that gradient cast back to the input's
        // type; a watched run's out-of-place sum.
        let mut working = widened
            .max(scaling)
            .max(branch + held)
            .max(cast_in)
            .max(waiting + base_in + dequantized + grad(base_ty))
            .max(waiting + grad(base_ty) + cast_back);
        if self.setup.watched {
            working = working.max(3 * grad(x_ty));
        }
        working
    }

    /// `y = x Wᵀ` for a weight of `in_f × out_f` elements stored in `weight_ty`.
    fn plain_linear(
        &self,
        tracer: &mut Tracer,
        x: T,
        in_f: u128,
        out_f: u128,
        trainable: bool,
        weight_ty: FloatType,
    ) -> T {
        let tokens = x.elems / in_f.max(1);
        let x_used = match self.setup.autocast {
            Some(half) => {
                let cast = tracer.cast(x, half);
                if weight_ty != half {
                    let copy = tracer.tensor(in_f * out_f, Ty::Float(half), trainable);
                    if trainable {
                        tracer.autocast_trainable_copies += tracer.bytes(copy);
                    }
                    if cast.rg {
                        tracer.save(copy);
                        tracer.autocast_saved_bytes += tracer.bytes(copy);
                    } else if trainable {
                        // autocast caches only casts of leaves that require grad
                        tracer.autocast_cache_bytes += tracer.bytes(copy);
                    }
                }
                cast
            }
            None => x,
        };
        if trainable {
            tracer.save(x_used);
        }
        tracer.tensor(tokens * out_f, x_used.ty, x_used.rg || trainable)
    }

    /// peft `lora.Linear.forward`: `result + lora_B(lora_A(x)) * scaling`, with `x`
    /// cast to the adapters' type (fp32: `autocast_adapter_dtype=True`), the sum
    /// cast back to the base output's type. DoRA (`DoraLinearLayer.forward`)
    /// also multiplies the base output by the magnitude scale, keeping it.
    #[expect(clippy::too_many_arguments, reason = "one adapted linear's shape and kind")]
    fn lora_branch(
        &self,
        tracer: &mut Tracer,
        x: T,
        base_out: T,
        linear: &Linear,
        rank: u64,
        dora: bool,
        quantized: bool,
    ) -> T {
        let adapter_ty = FloatType::F32;
        let in_f = u128::from(linear.in_features);
        let out_f = u128::from(linear.out_features);
        let xa = if self.bnb_keeps_input_type(quantized) { x } else { tracer.cast(x, adapter_ty) };
        let a = self.plain_linear(tracer, xa, in_f, u128::from(rank), true, adapter_ty);
        // While `lora_A` runs, beside what is saved: the input and its fp32 copy, the
        // base's output, and the hidden states the Python frames hold (the decoder
        // layer's input, its residual, the block's normed input, `inputs_embeds`),
        // each counted once and only when nothing saves it. Measured on wide-MLP
        // LoRA (Llama, GPT-J).
        let frames: Vec<T> = tracer.held.iter().chain(&tracer.inputs_embeds).copied().collect();
        let moment = |tracer: &mut Tracer, now: &[T]| {
            let alive: Vec<T> = now.iter().chain(&frames).copied().collect();
            let working = tracer.unsaved_bytes(&alive);
            tracer.forward_moment(working);
        };
        moment(tracer, &[x, xa, base_out, a]);
        let b = self.plain_linear(tracer, a, u128::from(rank), out_f, true, adapter_ty);
        // The adapters' gradients (and DoRA's magnitude's), in forward order with the
        // base weights' (`Tracer::layer_grads`).
        let adapter_bytes = u128::from(adapter_ty.bytes());
        tracer.layer_grads += trace::rounded(u128::from(rank) * in_f * adapter_bytes)
            + trace::rounded(out_f * u128::from(rank) * adapter_bytes)
            + if dora { trace::rounded(out_f * adapter_bytes) } else { 0 };
        if dora {
            tracer.save(base_out);
            tracer.save(b);
        }
        let mut scaled = tracer.pointwise(b.elems, b.float(), true);
        // `lora_B(..) * scaling`, then `result + ...`: output-sized tensors alive.
        moment(tracer, &[x, xa, base_out, b, scaled]);
        if quantized && !self.bnb_keeps_input_type(quantized) {
            // peft's bitsandbytes layers outside CUDA autocast: `output.to(result.dtype)`
            // before the sum (measured: wide Phi-3 QLoRA on the CPU peaks at that sum).
            let converted = tracer.cast(scaled, base_out.float());
            moment(tracer, &[x, xa, base_out, scaled, converted]);
            scaled = converted;
        }
        let sum = tracer.pointwise(base_out.elems, wider(base_out.float(), scaled.float()), true);
        moment(tracer, &[x, xa, base_out, scaled, sum]);
        tracer.cast(sum, base_out.float())
    }

    /// A norm over `dim` features (the family's [`NormStyle`]).
    fn norm(&self, tracer: &mut Tracer, x: T, dim: u64) -> T {
        let trainable = self.base_trainable();
        let rows = x.elems / u128::from(dim).max(1);
        match self.spec.norm_style {
            NormStyle::RmsCastBeforeWeight | NormStyle::RmsFp32Weight => {
                // `x.to(float32)`; `pow(2)` and `x * rsqrt(var)` keep the fp32 input and the rsqrt.
                let x32 = tracer.cast(x, FloatType::F32);
                let rsqrt = tracer.tensor(rows, Ty::Float(FloatType::F32), x.rg);
                if x.rg {
                    tracer.save(x32);
                    tracer.save(rsqrt);
                }
                let y32 = tracer.tensor(x.elems, Ty::Float(FloatType::F32), x.rg);
                if self.spec.norm_style == NormStyle::RmsCastBeforeWeight {
                    // `self.weight * y.to(input_dtype)`: keeps `y` when the weight trains.
                    let y = tracer.cast(y32, x.float());
                    if trainable {
                        tracer.save(y);
                    }
                    tracer.tensor(
                        x.elems,
                        Ty::Float(wider(self.setup.param_ty, y.float())),
                        y.rg || trainable,
                    )
                } else {
                    // Gemma / OLMo 2 / gpt-oss: the weight multiplies in fp32, then `.to(input_dtype)`.
                    if trainable {
                        tracer.save(y32);
                    }
                    let out32 =
                        tracer.tensor(x.elems, Ty::Float(FloatType::F32), y32.rg || trainable);
                    tracer.cast(out32, x.float())
                }
            }
            NormStyle::LayerNorm => {
                // `native_layer_norm` keeps its input, mean and rstd. CUDA's autocast runs
                // it in fp32 (`layer_norm` is in `autocast_mode.cpp`'s CUDA fp32 list, and
                // the CUDA kernel's mean/rstd are fp32 for half inputs); CPU autocast has no
                // rule for it, so a half input stays half, and the CPU kernel
                // (`layer_norm_cpu` in `aten/src/ATen/native/layer_norm.cpp`) returns mean
                // and rstd in the input's type. Measured on StarCoder2-7B LoRA (fake
                // backend): each norm keeps the bf16 residual and bf16 `(batch, seq, 1)`
                // statistics, not an fp32 copy.
                let input = match self.setup.autocast {
                    Some(_) if !self.setup.cpu_kernels => tracer.cast(x, FloatType::F32),
                    _ => x,
                };
                let stats_ty =
                    if self.setup.cpu_kernels { input.ty } else { Ty::Float(FloatType::F32) };
                if input.rg || trainable {
                    tracer.save(input);
                    let mean = tracer.tensor(rows, stats_ty, false);
                    let rstd = tracer.tensor(rows, stats_ty, false);
                    tracer.save(mean);
                    tracer.save(rstd);
                }
                tracer.tensor(x.elems, input.ty, input.rg || trainable)
            }
        }
    }

    /// One decoder layer (`*DecoderLayer.forward`), arranged by its [`BlockStyle`].
    /// `with_cache`: whether keys and values pass through `DynamicCache`'s `cat`.
    /// Training is traced with `use_cache=False` (what the Trainer sets under
    /// gradient checkpointing and fine-tuning recipes set generally); with the
    /// cache on, models with a fused QKV projection keep a copy of keys and values
    /// instead of a view of the projection.
    fn layer(&self, tracer: &mut Tracer, x: T, layer: &Layer, with_cache: bool) -> T {
        let hidden = self.spec.hidden_size;
        let residual_dropout = self.spec.dropout.residual;
        let add = |tracer: &mut Tracer, a: T, b: T| {
            tracer.pointwise(a.elems, wider(a.float(), b.float()), a.rg || b.rg)
        };
        let hold = |tracer: &mut Tracer, tensors: &[T]| tracer.held = tensors.to_vec();
        // Without residual dropout, a pre-norm or parallel block adds its outputs into
        // the stream as they are; a post-norm or sandwich block normalizes them first.
        tracer.stream_ty = Some(x.float());
        tracer.outputs_feed_stream = !residual_dropout
            && matches!(
                layer.block,
                BlockStyle::PreNorm | BlockStyle::Parallel | BlockStyle::ParallelTwoNorms
            );
        match layer.block {
            BlockStyle::PreNorm => {
                let h = self.norm(tracer, x, hidden);
                hold(tracer, &[x, h]);
                let attn = self.attention(tracer, h, &layer.attention, x.float(), with_cache);
                let attn = self.dropout(tracer, attn, residual_dropout);
                let x1 = add(tracer, x, attn);
                let h2 = self.norm(tracer, x1, hidden);
                hold(tracer, &[x, x1, h2]);
                let mlp = self.feed_forward(tracer, h2, &layer.feed_forward);
                let mlp = self.dropout(tracer, mlp, residual_dropout);
                add(tracer, x1, mlp)
            }
            BlockStyle::Sandwich => {
                let h = self.norm(tracer, x, hidden);
                hold(tracer, &[x, h]);
                let attn = self.attention(tracer, h, &layer.attention, x.float(), with_cache);
                let attn = self.dropout(tracer, attn, residual_dropout);
                let attn = self.norm(tracer, attn, hidden);
                let x1 = add(tracer, x, attn);
                let h2 = self.norm(tracer, x1, hidden);
                hold(tracer, &[x, x1, h2]);
                let mlp = self.feed_forward(tracer, h2, &layer.feed_forward);
                let mlp = self.dropout(tracer, mlp, residual_dropout);
                let mlp = self.norm(tracer, mlp, hidden);
                add(tracer, x1, mlp)
            }
            BlockStyle::PostNorm => {
                hold(tracer, &[x]);
                let attn = self.attention(tracer, x, &layer.attention, x.float(), with_cache);
                let attn = self.dropout(tracer, attn, residual_dropout);
                let attn = self.norm(tracer, attn, hidden);
                let x1 = add(tracer, x, attn);
                hold(tracer, &[x, x1]);
                let mlp = self.feed_forward(tracer, x1, &layer.feed_forward);
                let mlp = self.dropout(tracer, mlp, residual_dropout);
                let mlp = self.norm(tracer, mlp, hidden);
                add(tracer, x1, mlp)
            }
            BlockStyle::Parallel => {
                let h = self.norm(tracer, x, hidden);
                hold(tracer, &[x, h]);
                let attn = self.attention(tracer, h, &layer.attention, x.float(), with_cache);
                let attn = self.dropout(tracer, attn, residual_dropout);
                hold(tracer, &[x, h, attn]);
                let mlp = self.feed_forward(tracer, h, &layer.feed_forward);
                let mlp = self.dropout(tracer, mlp, residual_dropout);
                let x1 = add(tracer, x, attn);
                add(tracer, x1, mlp)
            }
            BlockStyle::ParallelTwoNorms => {
                let h1 = self.norm(tracer, x, hidden);
                let h2 = self.norm(tracer, x, hidden);
                hold(tracer, &[x, h1, h2]);
                let attn = self.attention(tracer, h1, &layer.attention, x.float(), with_cache);
                let attn = self.dropout(tracer, attn, residual_dropout);
                hold(tracer, &[x, h2, attn]);
                let mlp = self.feed_forward(tracer, h2, &layer.feed_forward);
                let mlp = self.dropout(tracer, mlp, residual_dropout);
                let x1 = add(tracer, x, attn);
                add(tracer, x1, mlp)
            }
        }
    }

    /// Rotary embedding (`apply_rotary_pos_emb`): `q * cos + rotate_half(q) * sin`
    /// makes a new tensor; the products keep only `cos`/`sin` (shared, small).
    /// `cos` has the residual stream's type, so under autocast the result is fp32.
    fn rotary(&self, tracer: &mut Tracer, q: T, residual_ty: FloatType) -> T {
        match self.spec.positions {
            PositionEncoding::Rotary | PositionEncoding::PartialRotary => {
                tracer.pointwise(q.elems, wider(q.float(), residual_ty), q.rg)
            }
            PositionEncoding::Learned | PositionEncoding::Sinusoidal => q,
        }
    }

    /// Self-attention: projections, q/k norms, rotary, cache, the attention op, output projection.
    fn attention(
        &self,
        tracer: &mut Tracer,
        h: T,
        attention: &Attention,
        residual_ty: FloatType,
        with_cache: bool,
    ) -> T {
        let tokens = self.tokens;
        let heads = u128::from(attention.num_heads);
        let kv_heads = u128::from(attention.num_kv_heads);
        let head_dim = u128::from(attention.head_dim);
        let projections = &attention.projections;
        let (q, k, v, v_dim, output) = match attention.kind {
            // Gated DeltaNet is refused before any trace (`refuse_unmodelled`).
            AttentionKind::Standard
            | AttentionKind::GatedDeltaNet(_)
            | AttentionKind::ShortConv { .. } => {
                if projections.len() >= 4 {
                    let q = self.linear(tracer, h, &projections[0], true);
                    let k = self.linear(tracer, h, &projections[1], true);
                    let v = self.linear(tracer, h, &projections[2], true);
                    (q, k, v, head_dim, &projections[3])
                } else {
                    // One fused projection, split into views.
                    let qkv = self.linear(tracer, h, &projections[0], true);
                    let q = Tracer::view(qkv, tokens * heads * head_dim);
                    let k = Tracer::view(qkv, tokens * kv_heads * head_dim);
                    let v = Tracer::view(qkv, tokens * kv_heads * head_dim);
                    (q, k, v, head_dim, &projections[1])
                }
            }
            AttentionKind::Latent(dims) => {
                // `DeepseekV3Attention`: low-rank q and kv paths with RMSNorms, rotary on
                // the rope part, then full per-head keys/values built by `cat`/`expand`.
                let mut index = 0;
                let q = if dims.q_lora_rank.is_some() {
                    let qa = self.linear(tracer, h, &projections[0], true);
                    let qa = self.rms_inner(tracer, qa, dims.q_lora_rank.unwrap_or(1));
                    index = 2;
                    self.linear(tracer, qa, &projections[1], true)
                } else {
                    index += 1;
                    self.linear(tracer, h, &projections[0], true)
                };
                let kva = self.linear(tracer, h, &projections[index], true);
                let latent = Tracer::view(kva, tokens * u128::from(dims.kv_lora_rank));
                let latent = self.rms_inner(tracer, latent, dims.kv_lora_rank);
                let kvb = self.linear(tracer, latent, &projections[index + 1], true);
                let qk = u128::from(dims.qk_nope_head_dim + dims.qk_rope_head_dim);
                // The rotated part of the queries: a new tensor, allocated and not kept.
                tracer.pointwise(
                    tokens * heads * u128::from(dims.qk_rope_head_dim),
                    q.float(),
                    q.rg,
                );
                let query = tracer.pointwise(tokens * heads * qk, q.float(), q.rg || kvb.rg);
                let key = tracer.pointwise(tokens * heads * qk, kvb.float(), kvb.rg || kva.rg);
                let value = Tracer::view(kvb, tokens * heads * u128::from(dims.v_head_dim));
                (query, key, value, u128::from(dims.v_head_dim), &projections[index + 2])
            }
        };
        let (q, k) = self.qk_norms(tracer, q, k, attention);
        let (q, k) = match attention.kind {
            AttentionKind::Standard if attention.rope => {
                (self.rotary(tracer, q, residual_ty), self.rotary(tracer, k, residual_ty))
            }
            AttentionKind::Standard
            | AttentionKind::Latent(_)
            | AttentionKind::GatedDeltaNet(_)
            | AttentionKind::ShortConv { .. } => (q, k),
        };
        // Ministral 3 scales the rotated queries by Llama 4's position-dependent
        // temperature (`query_states * get_llama_4_attn_scale(...).to(dtype)`,
        // transformers 5.24 `Ministral3Attention`): a new query tensor; the product
        // keeps only the small scale, so the rotated queries are not saved.
        let q =
            if attention.scaled_queries { tracer.pointwise(q.elems, q.float(), q.rg) } else { q };
        let (k, v) = if with_cache {
            // `DynamicLayer.update`: `torch.cat` of the (empty) cache and the new keys/values.
            (tracer.tensor(k.elems, k.ty, k.rg), tracer.tensor(v.elems, v.ty, v.rg))
        } else {
            (k, v)
        };
        let shape = HeadShape { heads, kv_heads, head_dim, v_dim };
        let out = match self.setup.attention {
            _ if self.spec.model_type == "xglm" => {
                self.xglm_attention(tracer, q, k, v, heads, head_dim)
            }
            // On the CPU, SDPA has no fused kernel for attention dropout or an explicit
            // mask (Falcon passes one): it runs the math path.
            // A sliding window shorter than the sequence also needs an explicit mask.
            // Nor has it one for queries and keys of another head size than the values
            // (DeepSeek's MLA: `qk_nope + qk_rope` vs `v_head_dim`): the CPU flash kernel
            // requires `q.size(-1) == k.size(-1) == v.size(-1)` (`check_head_dim_size_cpp`
            // in `aten/src/ATen/native/transformers/sdp_utils_cpp.cpp`), measured on
            // `deepseek-v3-tiny` as the math path's fp32 `bmm`/`_safe_softmax` saves.
            AttentionImpl::Sdpa
                if self.setup.cpu_kernels
                    && (self.spec.dropout.attention
                        || self.spec.model_type == "falcon"
                        || q.elems != tokens * heads * v_dim) =>
            {
                self.math_sdpa(tracer, q, k, v, shape)
            }
            AttentionImpl::Sdpa | AttentionImpl::Flash => {
                // A sliding window the sequence reaches gets an explicit mask
                // (`Attention::window_needs_sdpa_mask`); flash_attention_2 applies the
                // window itself.
                // Falcon always passes an explicit mask (`FalconModel` builds it with
                // `allow_is_causal_skip=False`); on CUDA the fused kernel keeps it as
                // `attn_bias` like any other (on the CPU it takes the math path, above).
                let falcon = self.spec.model_type == "falcon";
                let masked = self.setup.attention == AttentionImpl::Sdpa
                    && (falcon || attention.window_needs_sdpa_mask(self.setup.seq));
                let out = self.sdpa(
                    tracer,
                    q,
                    k,
                    v,
                    SdpaShape { heads: shape, masked, repeat_kv: !falcon },
                );
                if self.spec.positions == PositionEncoding::PartialRotary && attention.rope {
                    // Contiguous (batch, heads, seq, dim) queries give an output in that
                    // layout, so `transpose(1, 2).contiguous()` copies it.
                    tracer.tensor(out.elems, out.ty, out.rg)
                } else {
                    out
                }
            }
            AttentionImpl::Eager if attention.has_sinks() => {
                self.eager_with_sinks(tracer, q, k, v, shape)
            }
            AttentionImpl::Eager => self.eager(tracer, q, k, v, shape),
        };
        self.output_linear(tracer, out, output)
    }

    /// A block's output linear (attention output, MLP down): when it adds straight
    /// into the residual stream, its output's gradient is the stream's.
    fn output_linear(&self, tracer: &mut Tracer, x: T, linear: &Linear) -> T {
        tracer.into_stream = tracer.outputs_feed_stream;
        let out = self.linear(tracer, x, linear, true);
        tracer.into_stream = false;
        out
    }

    /// An RMSNorm inside attention (DeepSeek's `q_a_layernorm`, `kv_a_layernorm`).
    fn rms_inner(&self, tracer: &mut Tracer, x: T, dim: u64) -> T {
        self.norm(tracer, x, dim)
    }

    /// q/k norms (Qwen3, Gemma 3, OLMo 2): a norm over each head (or all heads).
    fn qk_norms(&self, tracer: &mut Tracer, q: T, k: T, attention: &Attention) -> (T, T) {
        if attention.tensors.iter().any(|t| t.name.starts_with("q_norm")) {
            let dim = attention.head_dim;
            (self.norm(tracer, q, dim), self.norm(tracer, k, dim))
        } else {
            (q, k)
        }
    }

    /// `scaled_dot_product_attention` with a fused kernel (flash on CPU and
    /// CUDA, memory-efficient on CUDA): keeps q, k, v, the output and the fp32
    /// logsumexp (`batch × heads × seq`); the output is laid out so that
    /// `transpose(1, 2).contiguous()` copies nothing. Autocast casts q/k/v.
    ///
    /// With an explicit mask (`shape.masked`, a sliding-window layer), transformers'
    /// `sdpa_attention_forward` gives up SDPA's own GQA (`use_gqa_in_sdpa` needs
    /// `attention_mask is None`) and copies keys and values up to the query heads
    /// with `repeat_kv` (`expand` + `reshape`), before autocast's casts; SDPA then
    /// keeps those copies instead of the kv-head tensors. With one kv head (MQA) the
    /// `reshape` merges a size-1 dimension into the expanded one and is a view: no
    /// copy (measured on Gemma-3-1B). The boolean
    /// `(batch, 1, seq, seq)` mask is turned into an additive one in the query's
    /// type by `convert_boolean_attn_mask` (`at::where`, at the top of
    /// `scaled_dot_product_attention` in `aten/src/ATen/native/transformers/attention.cpp`),
    /// one per layer, and the fused kernel keeps it for backward (`attn_mask` of
    /// `_scaled_dot_product_flash_attention_for_cpu`, `attn_bias` of
    /// `_scaled_dot_product_efficient_attention` in derivatives.yaml). Measured on
    /// Gemma-3-4B LoRA (fake backend, window 1024 = seq): each sliding layer keeps a
    /// bf16 `where` mask and two `clone`s of `(batch, kv_heads, groups, seq, 256)`.
    fn sdpa(&self, tracer: &mut Tracer, q: T, k: T, v: T, shape: SdpaShape) -> T {
        let SdpaShape { heads: shape, masked, repeat_kv } = shape;
        let HeadShape { heads, kv_heads, v_dim, .. } = shape;
        // One kv head: `repeat_kv`'s reshape is a view (see above).
        let (k, v) = if masked && repeat_kv && kv_heads > 1 {
            self.repeat_kv(tracer, k, v, shape)
        } else {
            (k, v)
        };
        let (q, k, v) = match self.setup.autocast {
            Some(half) => (tracer.cast(q, half), tracer.cast(k, half), tracer.cast(v, half)),
            None => (q, k, v),
        };
        let rg = q.rg || k.rg || v.rg;
        let out = tracer.tensor(self.tokens * heads * v_dim, q.ty, rg);
        if rg {
            let lse = tracer.tensor(
                self.setup.batch * heads * self.setup.seq,
                Ty::Float(FloatType::F32),
                false,
            );
            for kept in [q, k, v, out, lse] {
                tracer.save(kept);
            }
            if masked {
                let mask =
                    tracer.tensor(self.setup.batch * self.setup.seq * self.setup.seq, q.ty, false);
                tracer.save(mask);
            }
        }
        out
    }

    /// `repeat_kv`: keys and values copied up to the query heads (`expand` +
    /// `reshape`), unless every query head has its own.
    fn repeat_kv(&self, tracer: &mut Tracer, k: T, v: T, shape: HeadShape) -> (T, T) {
        if shape.kv_heads == shape.heads {
            return (k, v);
        }
        (
            tracer.tensor(self.tokens * shape.heads * shape.head_dim, k.ty, k.rg),
            tracer.tensor(self.tokens * shape.heads * shape.v_dim, v.ty, v.rg),
        )
    }

    /// What both eager paths do first: autocast's casts of q, k and v, keys
    /// and values repeated to the query heads (`repeat_kv`), and q and k kept
    /// by the score product when anything needs a gradient. Returns q, the
    /// values and whether attention needs a gradient.
    fn eager_inputs(
        &self,
        tracer: &mut Tracer,
        q: T,
        k: T,
        v: T,
        shape: HeadShape,
    ) -> (T, T, bool) {
        let (q, k, v) = match self.setup.autocast {
            Some(half) => (tracer.cast(q, half), tracer.cast(k, half), tracer.cast(v, half)),
            None => (q, k, v),
        };
        let (k, v) = self.repeat_kv(tracer, k, v, shape);
        let rg = q.rg || k.rg || v.rg;
        if rg {
            tracer.save(q);
            tracer.save(k);
        }
        (q, v, rg)
    }

    /// `eager_attention_forward`: `repeat_kv` copies keys/values up to the
    /// query heads, `q·kᵀ` keeps both, softmax runs in fp32 and keeps its
    /// output, the cast back to the query type is kept by `probs·v`, and the
    /// transposed output is copied by `.contiguous()`.
    fn eager(&self, tracer: &mut Tracer, q: T, k: T, v: T, shape: HeadShape) -> T {
        let HeadShape { heads, v_dim, .. } = shape;
        let (q, v, rg) = self.eager_inputs(tracer, q, k, v, shape);
        let scores = self.setup.batch * heads * self.setup.seq * self.setup.seq;
        if self.spec.softcapping.attention {
            // Gemma 2 caps the scores with `tanh`, which keeps its output.
            let raw = tracer.tensor(scores, q.ty, rg);
            tracer.unary_saving(raw, true);
        }
        if self.spec.model_type == "gpt2" && self.setup.autocast.is_none() {
            // GPT-2's `eager_attention_forward` (transformers 5.24): `softmax(dim=-1)`
            // with no dtype runs in the scores' own type and keeps its output, and
            // `.type(value.dtype)` is then a no-op (issue 13: GPT-2 LoRA all-linear in
            // bf16 with eager attention was over by 13 %, an fp32 softmax per layer).
            let probs = tracer.tensor(scores, q.ty, rg);
            if rg {
                tracer.save(probs);
            }
            Self::softmax_moment(tracer, probs, q.float());
            let attended = self.dropout(tracer, probs, self.spec.dropout.attention);
            return self.probabilities_times_values(tracer, attended, v, heads * v_dim, q.ty, rg);
        }
        let probs32 = tracer.tensor(scores, Ty::Float(FloatType::F32), rg);
        if rg {
            tracer.save(probs32);
        }
        // `softmax(x, dtype=float32)` of a half input is `_softmax(x.float())`, whose
        // backward returns fp32, except CUDA's fused fp16 path (`half_to_float`).
        let result_ty = if q.float() == FloatType::F16 && !self.setup.cpu_kernels {
            FloatType::F16
        } else {
            FloatType::F32
        };
        Self::softmax_moment(tracer, probs32, result_ty);
        let probs = tracer.cast(probs32, q.float());
        let attended = self.dropout(tracer, probs, self.spec.dropout.attention);
        self.probabilities_times_values(tracer, attended, v, heads * v_dim, q.ty, rg)
    }

    /// `matmul(probabilities, values)`, which keeps both when they need a gradient,
    /// then `transpose(1, 2).contiguous()`, a copy of the `(batch, seq, heads ×
    /// v_dim)` output in `ty`.
    fn probabilities_times_values(
        &self,
        tracer: &mut Tracer,
        attended: T,
        v: T,
        width: u128,
        ty: Ty,
        rg: bool,
    ) -> T {
        if rg {
            tracer.save(attended);
            tracer.save(v);
            // Its backward makes the probabilities' gradient beside everything the
            // attention kept (measured: StarCoder2's math-path SDPA at 4K tokens).
            tracer.backward_moment(tracer.bytes(attended));
        }
        let out = tracer.tensor(self.tokens * width, ty, rg);
        tracer.tensor(out.elems, out.ty, out.rg)
    }

    /// The backward of an attention softmax (`_softmax_backward_data`): the
    /// incoming gradient (the probabilities' shape and type) and its result (in
    /// the scores' type `scores_ty`) are alive together, beside what the layer
    /// kept up to it, the probabilities included.
    fn softmax_moment(tracer: &mut Tracer, probs: T, scores_ty: FloatType) {
        if probs.rg {
            let result = trace::rounded(probs.elems * u128::from(scores_ty.bytes()));
            tracer.backward_moment(tracer.bytes(probs) + result);
        }
    }

    /// XGLM's own attention (`XGLMAttention.forward` in `modeling_xglm.py`, taken
    /// whatever `attn_implementation` says): `bmm(q, kᵀ)` keeps both (`bmm` in
    /// derivatives.yaml), the additive mask (in the model's type, so fp32 under
    /// autocast) is added, then `torch.max(scores, torch.full((), finfo.min))`
    /// clamps them: `maximum` keeps both inputs for its backward, the masked
    /// scores and the 0-d floor. The softmax runs in the scores' type (fp16 only
    /// is upcast, `softmax(..., dtype=float32).to(float16)`) and keeps its output;
    /// dropout follows, and `bmm(attn_probs, v)` keeps the probabilities (cast to
    /// the half type under autocast) and the values. The output's
    /// `transpose(1, 2).reshape(...)` copies it. Measured on `xglm-tiny` (fp32,
    /// CPU): the masked scores are the one `batch × heads × seq²` tensor per layer
    /// beyond what `eager_attention_forward` keeps.
    fn xglm_attention(
        &self,
        tracer: &mut Tracer,
        q: T,
        k: T,
        v: T,
        heads: u128,
        head_dim: u128,
    ) -> T {
        let (q, k, v) = match self.setup.autocast {
            Some(half) => (tracer.cast(q, half), tracer.cast(k, half), tracer.cast(v, half)),
            None => (q, k, v),
        };
        let rg = q.rg || k.rg || v.rg;
        if rg {
            tracer.save(q);
            tracer.save(k);
        }
        let scores = self.setup.batch * heads * self.setup.seq * self.setup.seq;
        let masked_ty = wider(q.float(), self.setup.param_ty);
        let masked = tracer.tensor(scores, Ty::Float(masked_ty), rg);
        if rg {
            tracer.save(masked);
            let floor = tracer.tensor(1, Ty::Float(masked_ty), false);
            tracer.save(floor);
        }
        let clamped = tracer.tensor(scores, masked.ty, rg);
        let probs = if masked_ty == FloatType::F16 {
            let probs32 = tracer.softmax(clamped, FloatType::F32);
            let result_ty = if self.setup.cpu_kernels { FloatType::F32 } else { FloatType::F16 };
            Self::softmax_moment(tracer, probs32, result_ty);
            tracer.cast(probs32, FloatType::F16)
        } else if self.setup.autocast.is_some() && !self.setup.cpu_kernels {
            // CUDA autocast runs `softmax` (no dtype given here) in fp32
            // (`fp32_set_opt_dtype` in `autocast_mode.h`); CPU autocast has no such rule.
            let probs = tracer.softmax(clamped, FloatType::F32);
            Self::softmax_moment(tracer, probs, FloatType::F32);
            probs
        } else {
            let probs = tracer.softmax(clamped, masked_ty);
            Self::softmax_moment(tracer, probs, masked_ty);
            probs
        };
        let attended = self.dropout(tracer, probs, self.spec.dropout.attention);
        let attended = match self.setup.autocast {
            Some(half) => tracer.cast(attended, half),
            None => attended,
        };
        self.probabilities_times_values(tracer, attended, v, heads * head_dim, attended.ty, rg)
    }

    /// gpt-oss's eager attention with sinks (transformers' `gpt_oss`
    /// `eager_attention_forward`): the logits get one sink column
    /// (`torch.cat`), the row max is subtracted (`max` keeps its int64
    /// indices), and the softmax runs in the logits' own type
    /// (`dtype=combined_logits.dtype`, no fp32 upcast) and keeps its output;
    /// the probabilities without the sink column are a view of it, which the
    /// product with the values keeps.
    fn eager_with_sinks(&self, tracer: &mut Tracer, q: T, k: T, v: T, shape: HeadShape) -> T {
        let HeadShape { heads, v_dim, .. } = shape;
        let (q, v, rg) = self.eager_inputs(tracer, q, k, v, shape);
        let rows = self.setup.batch * heads * self.setup.seq;
        let combined = tracer.tensor(rows * (self.setup.seq + 1), q.ty, rg);
        if rg {
            let indices = tracer.tensor(rows, Ty::I64, false);
            tracer.save(indices);
        }
        let probs = tracer.tensor(combined.elems, q.ty, rg);
        if rg {
            tracer.save(probs);
        }
        Self::softmax_moment(tracer, probs, q.float());
        let attended = self.dropout(tracer, probs, self.spec.dropout.attention);
        self.probabilities_times_values(tracer, attended, v, heads * v_dim, q.ty, rg)
    }

    /// SDPA's math path on the CPU (`_scaled_dot_product_attention_math`), taken
    /// when no fused CPU kernel applies: half inputs are upcast to fp32, keys and
    /// values repeated to the query heads; the scaled queries and keys, the fp32
    /// softmax, the (dropped-out) probabilities and the values are kept; the output is
    /// cast back. CUDA's memory-efficient kernel handles these cases without any
    /// `seq × seq` tensor.
    fn math_sdpa(&self, tracer: &mut Tracer, q: T, k: T, v: T, shape: HeadShape) -> T {
        let HeadShape { heads, v_dim, .. } = shape;
        let out_ty = q.float();
        let rg = q.rg || k.rg || v.rg;
        let (q, k, v) = (
            tracer.cast(q, FloatType::F32),
            tracer.cast(k, FloatType::F32),
            tracer.cast(v, FloatType::F32),
        );
        let (k, v) = self.repeat_kv(tracer, k, v, shape);
        // `q kᵀ` multiplies both factors by √scale (new tensors), and `matmul` copies
        // the transposed values into its batched layout unless `repeat_kv` already made
        // them contiguous; the three copies are what it keeps (checked with saved-tensor
        // hooks; GPT-2-XL in fp32 kept a keys-sized tensor less than q, k, v as views).
        let scaled_q = tracer.pointwise(q.elems, FloatType::F32, rg);
        let scaled_k = tracer.pointwise(k.elems, FloatType::F32, rg);
        let v = if shape.kv_heads == shape.heads {
            tracer.tensor(v.elems, Ty::Float(FloatType::F32), v.rg)
        } else {
            v
        };
        if rg {
            tracer.save(scaled_q);
            tracer.save(scaled_k);
        }
        let scores = self.setup.batch * heads * self.setup.seq * self.setup.seq;
        let probs = tracer.tensor(scores, Ty::Float(FloatType::F32), rg);
        if rg {
            tracer.save(probs);
        }
        Self::softmax_moment(tracer, probs, FloatType::F32);
        let attended = self.dropout(tracer, probs, self.spec.dropout.attention);
        if rg {
            tracer.save(attended);
            tracer.save(v);
            tracer.backward_moment(tracer.bytes(attended));
        }
        let out = tracer.tensor(self.tokens * heads * v_dim, Ty::Float(FloatType::F32), rg);
        tracer.cast(out, out_ty)
    }

    /// A feed-forward block: dense MLP or mixture of experts.
    fn feed_forward(&self, tracer: &mut Tracer, h: T, feed_forward: &FeedForward) -> T {
        match feed_forward {
            FeedForward::Dense { intermediate_size, gated, linears } => {
                self.dense_mlp(tracer, h, linears, *gated, u128::from(*intermediate_size))
            }
            FeedForward::Moe(moe) => self.moe(tracer, h, moe),
        }
    }

    /// A gated MLP (`down(act(gate(x)) * up(x))`: the activation keeps its
    /// input, the product keeps both factors) or a plain one (`fc2(act(fc1(x)))`).
    fn dense_mlp(
        &self,
        tracer: &mut Tracer,
        h: T,
        linears: &[Linear],
        gated: bool,
        intermediate: u128,
    ) -> T {
        let tokens = self.tokens;
        if gated {
            let (gate, up, down) = if linears.len() == 2 {
                let fused = self.linear(tracer, h, &linears[0], true);
                if fused.rg {
                    // `chunk`'s backward joins the two halves' gradients into a new
                    // gradient of the fused output while they are still alive.
                    tracer.backward_moment(2 * tracer.bytes(fused));
                }
                (
                    Tracer::view(fused, tokens * intermediate),
                    Tracer::view(fused, tokens * intermediate),
                    &linears[1],
                )
            } else {
                let gate = self.linear(tracer, h, &linears[0], true);
                let up = self.linear(tracer, h, &linears[1], true);
                (gate, up, &linears[2])
            };
            let act = self.activation(tracer, gate);
            let product = tracer.mul(act, up);
            self.product_moment(tracer, product, true);
            self.output_linear(tracer, product, down)
        } else {
            let fc1 = self.linear(tracer, h, &linears[0], true);
            let act = self.activation(tracer, fc1);
            self.product_moment(tracer, act, false);
            self.output_linear(tracer, act, &linears[1])
        }
    }

    /// The backward of an MLP's activation output `out` (dense or routed experts):
    /// a product (`act * up`, gpt-oss's gate, `gelu_new`'s last factor) holds its
    /// incoming gradient and both factors'; a plain activation its incoming
    /// gradient and its input's. Measured without a tracker (`torch.profiler`) on
    /// wide Llama, Mixtral and GPT-J layers.
    fn product_moment(&self, tracer: &mut Tracer, out: T, gated: bool) {
        if out.rg {
            let product = gated || self.spec.activation == Activation::GeluNew;
            let tensors = if product { 3 } else { 2 };
            tracer.backward_moment(tensors * tracer.bytes(out));
        }
    }

    /// A sparse MoE block (transformers 5 `*SparseMoeBlock` with fused experts,
    /// run by `integrations/moe.py`'s `grouped_mm_experts_forward`, the default
    /// `experts_implementation`): the router, each token's hidden state gathered
    /// per chosen expert (`batch·seq·k` rows, sorted by expert), the experts'
    /// up and down `grouped_mm`s with the gate between them, the outputs scaled
    /// by the routing weights, put back in token order, summed over the k
    /// choices and cast back to the hidden states' type
    /// (`final_hidden_states.to(hidden_states.dtype)`); plus shared experts
    /// where the model has them.
    ///
    /// The three gathers (`hidden_states[perm // k]`, `sample_weights[perm]`,
    /// `weighted_out[inv_perm]`) each keep their int64 index (`index.Tensor`
    /// in derivatives.yaml), and `grouped_mm` keeps its int32 offsets.
    fn moe(&self, tracer: &mut Tracer, h: T, moe: &Moe) -> T {
        let tokens = self.tokens;
        let hidden = u128::from(self.spec.hidden_size);
        let experts = u128::from(moe.num_experts);
        let k = u128::from(moe.experts_per_token);
        let size = u128::from(moe.expert_intermediate_size);
        let trainable = self.base_trainable();
        let ty = h.float();
        let (targets, rank) = match self.setup.lora {
            Some((resolution, rank, _)) => (resolution.experts, u128::from(rank)),
            None => (ExpertTargets::default(), 0),
        };
        let gpt_oss = self.spec.model_type == "gpt_oss";
        let weights = self.router(tracer, h, experts, k, targets.router.then_some(rank), gpt_oss);
        // Experts over the routed rows.
        let rows = tokens * k;
        let gathered = tracer.tensor(rows * hidden, Ty::Float(ty), h.rg);
        let index = |tracer: &mut Tracer, needed: bool| {
            if needed {
                let index = tracer.tensor(rows, Ty::I64, false);
                tracer.save(index);
            }
        };
        index(tracer, h.rg);
        index(tracer, weights.rg);
        let up_out = if moe.gated { 2 * size } else { size };
        // peft's fused-expert LoRA adapts `gate_up_proj` with rank 2r (its `rank_pattern`).
        let gate_up_weight = targets
            .gate_up
            .then(|| self.adapted_expert_weight(tracer, experts, hidden, up_out, 2 * rank));
        let gate_up = self.grouped_mm(tracer, gathered, hidden, up_out, trainable, gate_up_weight);
        let bank_grads = |tracer: &mut Tracer, a: u128, b: u128| {
            if trainable {
                let bytes = u128::from(self.setup.param_ty.bytes());
                tracer.layer_grads += trace::rounded(experts * a * b * bytes);
            }
        };
        bank_grads(tracer, hidden, up_out);
        let product = if !moe.gated {
            self.activation(tracer, gate_up)
        } else if gpt_oss {
            Self::gpt_oss_gate(tracer, gate_up, rows * size)
        } else {
            // `_default_apply_gate`: `act_fn(gate) * up` on the two halves (views).
            let gate = Tracer::view(gate_up, rows * size);
            let act = self.activation(tracer, gate);
            tracer.mul(act, Tracer::view(gate_up, rows * size))
        };
        self.product_moment(tracer, product, moe.gated);
        let down_weight =
            targets.down.then(|| self.adapted_expert_weight(tracer, experts, size, hidden, rank));
        let down = self.grouped_mm(tracer, product, size, hidden, trainable, down_weight);
        bank_grads(tracer, size, hidden);
        if trainable || gate_up_weight.is_some() || down_weight.is_some() || h.rg {
            // int32 offsets: 4 bytes each, sized here as fp32.
            let offsets = tracer.tensor(experts, Ty::Float(FloatType::F32), false);
            tracer.save(offsets);
        }
        // `sample_weights[perm]`: the routing weights in expert order, a new tensor.
        let sample = tracer.tensor(weights.elems, weights.ty, weights.rg);
        let scaled = tracer.mul(down, sample);
        index(tracer, scaled.rg);
        let unsorted = tracer.pointwise(scaled.elems, scaled.float(), scaled.rg);
        let summed = tracer.pointwise(tokens * hidden, unsorted.float(), unsorted.rg);
        let mut out = tracer.cast(summed, ty);
        if !moe.shared.is_empty() {
            let shared_linears: Vec<Linear> =
                moe.shared.iter().filter(|l| l.name != "shared_expert_gate").cloned().collect();
            // A gated shared expert's output is multiplied before it joins the stream,
            // so its down projection's output gradient is a tensor of its own.
            let feeds = tracer.outputs_feed_stream;
            if moe.shared.iter().any(|l| l.name == "shared_expert_gate") {
                tracer.outputs_feed_stream = false;
            }
            let shared = self.dense_mlp(
                tracer,
                h,
                &shared_linears,
                true,
                u128::from(moe.shared_intermediate_size),
            );
            tracer.outputs_feed_stream = feeds;
            let shared =
                if let Some(gate) = moe.shared.iter().find(|l| l.name == "shared_expert_gate") {
                    let g = self.linear(tracer, h, gate, true);
                    let g = tracer.unary_saving(g, true);
                    tracer.mul(g, shared)
                } else {
                    shared
                };
            out = tracer.pointwise(
                out.elems,
                wider(out.float(), shared.float()),
                out.rg || shared.rg,
            );
        }
        out
    }

    /// The router of a MoE block; returns the top-k routing weights (`batch·seq·k`).
    ///
    /// - Mixtral, Qwen2/3-MoE (`*TopKRouter`): `F.linear(h, weight)`, a softmax in
    ///   fp32 (kept), `topk` (its int64 indices kept).
    /// - DeepSeek-V2/V3 (`DeepseekV2TopkRouter`, `DeepseekV3TopkRouter`): the same on
    ///   `hidden_states.type(torch.float32)` with the fp32 router weight (a softmax,
    ///   or V3's `sigmoid` and `gather`): the fp32 copy of the input is kept when the
    ///   router weight trains.
    /// - gpt-oss (`GptOssTopKRouter`): `topk` of the logits (indices kept), then a
    ///   softmax over the k values in the logits' own type (kept).
    ///
    /// `lora_rank`: the router weight is a peft `ParamWrapper` target; its
    /// `_LoraParameterProxy` adds the delta to the weight, a new `experts × hidden`
    /// tensor that requires grad, which the linear keeps with its input.
    fn router(
        &self,
        tracer: &mut Tracer,
        h: T,
        experts: u128,
        k: u128,
        lora_rank: Option<u128>,
        gpt_oss: bool,
    ) -> T {
        let tokens = self.tokens;
        let hidden = u128::from(self.spec.hidden_size);
        let deepseek = matches!(self.spec.model_type.as_str(), "deepseek_v2" | "deepseek_v3");
        let (input, weight_ty) = if deepseek {
            (tracer.cast(h, FloatType::F32), FloatType::F32)
        } else {
            (h, self.setup.param_ty)
        };
        let trained = self.base_trainable() || lora_rank.is_some();
        if lora_rank.is_some() && input.rg {
            let adapted = tracer.tensor(experts * hidden, Ty::Float(weight_ty), true);
            tracer.save(adapted);
        }
        let logits = self.plain_linear(tracer, input, hidden, experts, trained, weight_ty);
        let chosen = tracer.tensor(tokens * k, Ty::I64, false);
        if gpt_oss {
            if logits.rg {
                tracer.save(chosen);
            }
            let top = tracer.tensor(tokens * k, logits.ty, logits.rg);
            tracer.softmax(top, logits.float())
        } else {
            let probs = tracer.softmax(logits, FloatType::F32);
            if probs.rg {
                tracer.save(chosen);
            }
            let weights = tracer.tensor(tokens * k, Ty::Float(FloatType::F32), probs.rg);
            tracer.save(weights);
            weights
        }
    }

    /// A fused expert parameter adapted by peft's `ParamWrapper` (one adapter on
    /// `experts` > 1 stacked matrices of `a × b`, not fp8): `_activate_lora`
    /// registers a `_LoraFactorsProxy`, whose `torch.baddbmm(W, lhs, rhs)` makes
    /// the adapted weight, a new tensor of the parameter's size and type that
    /// requires grad. `lhs` and `rhs` are the A and B factors `.to(param.dtype)`:
    /// copies (kept by `baddbmm`) unless the parameters are fp32.
    fn adapted_expert_weight(
        &self,
        tracer: &mut Tracer,
        experts: u128,
        a: u128,
        b: u128,
        rank: u128,
    ) -> T {
        let param_ty = self.setup.param_ty;
        if param_ty != FloatType::F32 {
            for elems in [experts * rank * a, experts * rank * b] {
                let factor = tracer.tensor(elems, Ty::Float(param_ty), true);
                tracer.save(factor);
            }
        }
        tracer.tensor(experts * a * b, Ty::Float(param_ty), true)
    }

    /// One `grouped_mm` of the experts (`_grouped_linear`) on `x` (`rows × in_f`).
    /// Trained fused parameters (full fine-tuning) keep the input as any linear;
    /// a LoRA-adapted weight (`adapted`) keeps the input (its gradient's operand)
    /// and, when the input requires grad, the adapted weight itself.
    fn grouped_mm(
        &self,
        tracer: &mut Tracer,
        x: T,
        in_f: u128,
        out_f: u128,
        trainable: bool,
        adapted: Option<T>,
    ) -> T {
        match adapted {
            Some(weight) => {
                tracer.save(x);
                if x.rg {
                    tracer.save(weight);
                }
                // Backward makes the gradient of the whole adapted bank (its size and
                // type, on its way to the factors through `baddbmm`) beside the input's
                // gradient. Measured on Mixtral QLoRA (fp32 banks after peft's cast).
                let input_grad = if x.rg { tracer.bytes(x) } else { 0 };
                tracer.backward_moment(tracer.bytes(weight) + input_grad);
                tracer.tensor(x.elems / in_f.max(1) * out_f, x.ty, true)
            }
            None => self.plain_linear(tracer, x, in_f, out_f, trainable, self.setup.param_ty),
        }
    }

    /// gpt-oss's `GptOssExperts._apply_gate` on the interleaved `gate_up` rows:
    /// `gate.clamp(max=limit)` and `up.clamp(-limit, limit)` (each `clamp` keeps its
    /// input, the `gate_up` storage), `glu = gate * sigmoid(gate * alpha)` (the
    /// sigmoid keeps its output, the product both factors), and `(up + 1) * glu`
    /// (both factors kept).
    fn gpt_oss_gate(tracer: &mut Tracer, gate_up: T, elems: u128) -> T {
        let (ty, rg) = (gate_up.float(), gate_up.rg);
        if rg {
            tracer.save(gate_up);
        }
        let gate = tracer.pointwise(elems, ty, rg);
        let up = tracer.pointwise(elems, ty, rg);
        let scaled = tracer.pointwise(elems, ty, rg);
        let sigmoid = tracer.unary_saving(scaled, true);
        let glu = tracer.mul(gate, sigmoid);
        let up_plus_one = tracer.pointwise(up.elems, ty, rg);
        tracer.mul(up_plus_one, glu)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lora::{LoraConfig, LoraTargets, resolve};
    use crate::memory::trace::rounded;
    use crate::toy;

    fn setup(lora: Option<(&Resolution, u64, bool)>) -> TraceSetup<'_> {
        TraceSetup {
            batch: 2,
            seq: 64,
            param_ty: FloatType::Bf16,
            autocast: None,
            full: false,
            lora,
            quantized_compute: None,
            input_requires_grad: false,
            attention: AttentionImpl::Sdpa,
            checkpointing: false,
            first: true,
            last: true,
            cpu_kernels: false,
            typed_dropout_masks: false,
            watched: false,
        }
    }

    /// The first layer's `down_proj` of a dense toy.
    fn down_proj(spec: &ModelSpec) -> Linear {
        let FeedForward::Dense { linears, .. } = &spec.layers[0].layer.feed_forward else {
            unreachable!()
        };
        linears.iter().find(|l| l.name == "down_proj").unwrap().clone()
    }

    /// The trace of the first layer's MoE block of `spec` on 128 bf16 tokens that
    /// require grad, with LoRA (rank 4) on `targets`.
    fn traced_moe(spec: &ModelSpec, targets: LoraTargets) -> Tracer {
        let FeedForward::Moe(moe) = &spec.layers[0].layer.feed_forward else { unreachable!() };
        let resolution = lora(spec, targets);
        let setup = setup(Some((&resolution, 4, false)));
        let forward = Forward { spec, setup: &setup, tokens: 128 };
        let mut tracer = Tracer::default();
        let h = tracer.tensor(128 * u128::from(spec.hidden_size), Ty::Float(FloatType::Bf16), true);
        forward.moe(&mut tracer, h, moe);
        tracer
    }

    fn lora(spec: &ModelSpec, targets: LoraTargets) -> Resolution {
        resolve(spec, &LoraConfig { rank: 4, targets, dora: false }).unwrap()
    }

    #[test]
    fn moe_output_has_the_hidden_states_type() {
        // `grouped_mm_experts_forward` ends with `.to(hidden_states.dtype)`: fp32
        // routing weights must not turn the residual stream into fp32.
        let spec = toy::mixtral();
        let FeedForward::Moe(moe) = &spec.layers[0].layer.feed_forward else { unreachable!() };
        let resolution = lora(&spec, LoraTargets::Modules(vec!["q_proj".into()]));
        let setup = setup(Some((&resolution, 4, false)));
        let forward = Forward { spec: &spec, setup: &setup, tokens: 128 };
        let mut tracer = Tracer::default();
        let h = tracer.tensor(128 * u128::from(spec.hidden_size), Ty::Float(FloatType::Bf16), true);
        let out = forward.moe(&mut tracer, h, moe);
        assert_eq!(out.ty, Ty::Float(FloatType::Bf16));
    }

    #[test]
    fn an_adapted_linears_output_side_matches_a_ledger_measurement() {
        // Measured with validation/measure.py's StorageLedger on peft 0.21: a 256 → 1024
        // LoRA linear (rank 4), 4096 tokens, backward from `y.backward(ones)`. In bf16
        // without autocast the peak is 12288 B per token at the scaling's `mul`: the
        // caller's bf16 `ones` (2 B per output), peft's fp32 sum gradient (4), the bf16
        // copy for the base (2) and the fp32 scaled gradient (4). Under bf16 autocast
        // (fp32 weights and adapters, a bf16 input) it is 4106 B: `ones` and the bf16
        // scaled gradient, 4 B per output.
        let spec = toy::llama();
        let resolution = lora(&spec, LoraTargets::AllLinear);
        let wide = Linear::new("up_proj", 256, 1024, false);
        let tokens = 4096;
        let working = |autocast: Option<FloatType>, param_ty: FloatType| {
            let setup = TraceSetup { param_ty, autocast, ..setup(Some((&resolution, 4, false))) };
            let forward = Forward { spec: &spec, setup: &setup, tokens };
            let mut tracer = Tracer::default();
            let x = tracer.tensor(tokens * 256, Ty::Float(FloatType::Bf16), true);
            forward.linear(&mut tracer, x, &wide, true);
            tracer.backward_moment.working
        };
        // Here the caller's gradient is freed once widened, as a model's own is; the
        // test's `ones` stayed alive (2 B per output).
        assert_eq!(working(None, FloatType::Bf16) + tokens * 1024 * 2, tokens * 12288);
        let autocast = working(Some(FloatType::Bf16), FloatType::F32);
        assert!(autocast.abs_diff(tokens * 4106) <= tokens * 16, "{}", autocast / tokens);
    }

    #[test]
    fn an_adapted_linear_holds_its_input_gradients_in_backward() {
        // The frozen base's input gradient waits in autograd's `InputBuffer` while the
        // branch's runs back through its casts, then the two are summed out of place.
        // Measured on wide-MLP QLoRA and LoRA (validation/data/harness-bnb-cpu.jsonl).
        let spec = toy::llama();
        let down = down_proj(&spec);
        let resolution = lora(&spec, LoraTargets::AllLinear);
        let moment_in = |input: FloatType,
                         quantized: bool,
                         rg: bool,
                         watched: bool,
                         cpu: bool,
                         into_stream: bool| {
            let setup = TraceSetup {
                autocast: Some(FloatType::Bf16),
                param_ty: if quantized { FloatType::F32 } else { FloatType::Bf16 },
                quantized_compute: quantized.then_some(FloatType::Bf16),
                watched,
                cpu_kernels: cpu,
                ..setup(Some((&resolution, 4, false)))
            };
            let forward = Forward { spec: &spec, setup: &setup, tokens: 128 };
            let mut tracer = Tracer::default();
            tracer.into_stream = into_stream;
            tracer.stream_ty = Some(FloatType::Bf16);
            let x = tracer.tensor(128 * u128::from(down.in_features), Ty::Float(input), rg);
            forward.linear(&mut tracer, x, &down, true);
            tracer.backward_moment
        };
        let moment = |input, quantized, rg, watched, cpu| {
            moment_in(input, quantized, rg, watched, cpu, false)
        };
        let g = |bytes: u128| rounded(128 * u128::from(down.in_features) * bytes);
        // The layer's output gradient (`o`): in the sum's type, alive until the base's
        // backward has read it, unless it is the residual stream's own.
        let o = |bytes: u128| rounded(128 * u128::from(down.out_features) * bytes);
        let dequantized = rounded(u128::from(down.in_features) * u128::from(down.out_features) * 2);
        // QLoRA on CUDA: an fp32 input (peft's fp32 norms, Linear4bit's `.to(inp_dtype)`)
        // and an fp32 sum. The branch runs first (bf16 → fp32, 6 B) beside the output
        // gradient; its fp32 gradient then waits while the output gradient is cast to
        // bf16, the base dequantizes its weight beside the bf16 product gradient, and
        // that is cast to fp32; a real run sums in place.
        let qlora = moment(FloatType::F32, true, true, false, false);
        assert_eq!(qlora.kept_in_layer, 0, "a 4-bit matmul keeps nothing");
        let qlora_steps = (g(2) + g(4) + o(4))
            .max(g(4) + o(4) + o(2))
            .max(g(4) + o(2) + dequantized + g(2))
            .max(g(4) + g(2) + g(4));
        assert_eq!(qlora.working, qlora_steps);
        // Watched by a dispatch-mode tracker, the sum is a third fp32 tensor.
        let watched = moment(FloatType::F32, true, true, true, true);
        assert_eq!(watched.working, qlora_steps.max(3 * g(4)));
        // LoRA under autocast, a bf16 input: the branch's bf16 → fp32 → bf16 casts
        // (peft's fp32 copy of the input) hold 6 B beside the bf16 output gradient,
        // more than the base's bf16 product beside the waiting gradient and it.
        assert_eq!(moment(FloatType::Bf16, false, true, false, false).working, g(2) + g(4) + o(2));
        // A block output (MLP down here) adding into a bf16 stream: its output's
        // gradient is the stream's, which every moment of a layer counts once.
        assert_eq!(
            moment_in(FloatType::Bf16, false, true, false, false, true).working,
            g(2) + g(4)
        );
        // No gradient flows into a frozen input.
        assert_eq!(moment(FloatType::F32, true, false, true, true), LayerMoment::default());
    }

    #[test]
    fn an_adapted_linear_holds_its_input_and_fp32_copy_in_forward() {
        // Alive beside what is saved: the unsaved bf16 input, peft's fp32 copy of it,
        // the base's output, and, at the worst instant (`lora_B(..) * scaling`, or
        // the sum after it), two output-sized tensors; and the hidden states the
        // Python frames hold that nothing saves.
        let spec = toy::llama();
        let down = down_proj(&spec);
        let resolution = lora(&spec, LoraTargets::AllLinear);
        let setup =
            TraceSetup { autocast: Some(FloatType::Bf16), ..setup(Some((&resolution, 4, false))) };
        let forward = Forward { spec: &spec, setup: &setup, tokens: 128 };
        let mut tracer = Tracer::default();
        let (in_f, out_f) = (u128::from(down.in_features), u128::from(down.out_features));
        let x = tracer.tensor(128 * in_f, Ty::Float(FloatType::Bf16), true);
        forward.linear(&mut tracer, x, &down, true);
        // no decoder layer around it here: nothing held by the frames; the branch's
        // outputs are bf16 under autocast (the rank-4 `lora_A` output is smaller)
        let expected = rounded(128 * in_f * 2)
            + rounded(128 * in_f * 4)
            + rounded(128 * out_f * 2)
            + 2 * rounded(128 * out_f * 2);
        assert_eq!(tracer.forward_moment.working, expected);
        // the frames' hidden states count once each, and only when nothing saves them
        let mut tracer = Tracer::default();
        let hidden = 128 * u128::from(spec.hidden_size);
        let (kept, held) = (
            tracer.tensor(hidden, Ty::Float(FloatType::Bf16), true),
            tracer.tensor(hidden, Ty::Float(FloatType::Bf16), true),
        );
        tracer.save(kept);
        tracer.held = vec![kept, held, held];
        let x = tracer.tensor(128 * in_f, Ty::Float(FloatType::Bf16), true);
        forward.linear(&mut tracer, x, &down, true);
        assert_eq!(tracer.forward_moment.working, expected + rounded(hidden * 2));
        // What the adapters saved by then (`lora_A`'s bf16 copy of the input among it)
        // is counted as kept, not twice.
        let kept = tracer.forward_moment.kept_in_layer;
        assert!(kept >= rounded(128 * in_f * 2) && kept <= tracer.saved_bytes());
    }

    #[test]
    fn checkpointing_keeps_an_adapted_linears_forward_moment_for_the_recompute() {
        // The recompute runs the layer's forward again inside backward: its adapter's
        // temporaries come back beside the recomputed part (measured on wide-layer
        // LoRA with checkpointing). Without checkpointing the moment is absolute (every
        // earlier layer's saved tensors); with it, relative to the recomputed layer.
        let spec = toy::llama();
        let resolution = lora(&spec, LoraTargets::AllLinear);
        let trace = |checkpointing: bool| {
            let setup = TraceSetup {
                autocast: Some(FloatType::Bf16),
                checkpointing,
                ..setup(Some((&resolution, 4, false)))
            };
            trace_training(&spec, &setup)
        };
        let plain = trace(false);
        let ckpt = trace(true);
        assert!(plain.forward.working > 0 && ckpt.forward.working > 0);
        assert!(ckpt.forward.kept_in_layer <= ckpt.recomputed_layer);
        assert!(
            plain.forward.kept_in_layer > ckpt.forward.kept_in_layer,
            "earlier layers count without checkpointing"
        );
        // the unsaved temporaries are the same (the model's `inputs_embeds` aside, gone
        // by the time of a recompute)
        assert!(plain.forward.working >= ckpt.forward.working);
    }

    #[test]
    fn a_gated_mlp_product_holds_three_gradients_in_backward() {
        // `act * up`'s backward: its incoming gradient and both factors' gradients, beside
        // what the layer saved up to it (measured on the wide Llama with attention-only
        // LoRA, where no adapter's moment applies).
        let spec = toy::llama();
        let FeedForward::Dense { linears, gated, intermediate_size } =
            &spec.layers[0].layer.feed_forward
        else {
            unreachable!()
        };
        let resolution = lora(&spec, LoraTargets::Modules(vec!["q_proj".into()]));
        let setup = setup(Some((&resolution, 4, false)));
        let forward = Forward { spec: &spec, setup: &setup, tokens: 128 };
        let run = |rg: bool| {
            let mut tracer = Tracer::default();
            let h =
                tracer.tensor(128 * u128::from(spec.hidden_size), Ty::Float(FloatType::Bf16), rg);
            forward.dense_mlp(&mut tracer, h, linears, *gated, u128::from(*intermediate_size));
            tracer.backward_moment
        };
        let product = rounded(128 * u128::from(*intermediate_size) * 2);
        let moment = run(true);
        assert_eq!(moment.working, 3 * product);
        // the product's two factors are kept by then (the activation's input and output too)
        assert!(moment.kept_in_layer >= 3 * product);
        assert_eq!(run(false), LayerMoment::default());
    }

    #[test]
    fn frozen_experts_hold_their_products_gradients_in_backward() {
        // Attention-only LoRA sends gradients through frozen routed experts: the
        // experts' `act * up` backward holds three gradients of its size (measured on
        // the wide Mixtral, -19 % without this moment under checkpointing).
        let spec = toy::mixtral();
        let tracer = traced_moe(&spec, LoraTargets::Modules(vec!["q_proj".into()]));
        // top-2 of 128 tokens through experts of 32, bf16
        assert_eq!(tracer.backward_moment.working, 3 * rounded(128 * 2 * 32 * 2));
    }

    #[test]
    fn an_adapted_expert_bank_holds_its_gradient_beside_the_input_gradient() {
        // `grouped_mm`'s backward on an adapted bank makes the whole bank's gradient
        // (on its way through `baddbmm` to the factors) beside the input's gradient;
        // the down bank, last in the forward, is first in backward with everything
        // before it still kept.
        let spec = toy::mixtral();
        let hidden = u128::from(spec.hidden_size);
        let tracer =
            traced_moe(&spec, LoraTargets::Modules(vec!["w1".into(), "w3".into(), "w2".into()]));
        // 4 experts of 32 × 64 in bf16, top-2 of 128 tokens: the down bank (4 × 32 × 64)
        // and its routed input's gradient (256 × 32).
        let (experts, size, rows) = (4, 32, 128 * 2);
        let moment = tracer.backward_moment;
        assert_eq!(moment.working, rounded(experts * size * hidden * 2) + rounded(rows * size * 2));
        assert!(moment.kept_in_layer > 0 && moment.kept_in_layer < tracer.saved_bytes());
    }

    #[test]
    fn adapted_experts_keep_their_adapted_weights_and_inputs() {
        // peft's `_LoraFactorsProxy` makes `W + lhs·rhs` per fused parameter, which
        // `grouped_mm` keeps with its input.
        let spec = toy::mixtral();
        let saved = |targets: LoraTargets| traced_moe(&spec, targets).saved_bytes();
        let frozen = saved(LoraTargets::Modules(vec!["q_proj".into()]));
        let adapted = saved(LoraTargets::Modules(vec!["w1".into(), "w3".into(), "w2".into()]));
        let (experts, size, hidden, rows) = (4, 32, u128::from(spec.hidden_size), 128 * 2);
        let weights =
            rounded(experts * 2 * size * hidden * 2) + rounded(experts * size * hidden * 2);
        let inputs = rounded(rows * hidden * 2) + rounded(rows * size * 2);
        let factors = rounded(experts * 8 * hidden * 2)
            + rounded(experts * 8 * 2 * size * 2)
            + rounded(experts * 4 * size * 2)
            + rounded(experts * 4 * hidden * 2);
        assert_eq!(adapted - frozen, weights + inputs + factors);
    }

    #[test]
    fn cpu_autocast_leaves_layer_norm_in_the_half_type() {
        // CUDA autocast runs `layer_norm` in fp32 (kept: the fp32 copy, fp32 mean/rstd);
        // CPU autocast has no rule for it: the bf16 input and bf16 statistics are kept.
        let mut spec = toy::llama();
        spec.norm_style = NormStyle::LayerNorm;
        let saved = |cpu_kernels: bool| {
            let setup = TraceSetup { autocast: Some(FloatType::Bf16), cpu_kernels, ..setup(None) };
            let forward = Forward { spec: &spec, setup: &setup, tokens: 128 };
            let mut tracer = Tracer::default();
            let x = tracer.tensor(128 * 64, Ty::Float(FloatType::Bf16), true);
            let out = forward.norm(&mut tracer, x, 64);
            (tracer.saved_bytes(), out.ty)
        };
        assert_eq!(
            saved(false),
            (rounded(128 * 64 * 4) + 2 * rounded(128 * 4), Ty::Float(FloatType::F32))
        );
        assert_eq!(
            saved(true),
            (rounded(128 * 64 * 2) + 2 * rounded(128 * 2), Ty::Float(FloatType::Bf16))
        );
    }

    #[test]
    fn a_window_no_longer_than_the_sequence_adds_a_mask_and_repeated_kv() {
        // `_ignore_causal_mask_sdpa` keeps the mask when `kv_length >= sliding_window`;
        // SDPA then keeps the additive mask and `repeat_kv`'s copies (2 kv heads of 4).
        let saved = |window: Option<u64>| {
            let mut spec = toy::llama();
            spec.layers[0].layer.attention.sliding_window = window;
            let resolution = lora(&spec, LoraTargets::Modules(vec!["q_proj".into()]));
            let setup = setup(Some((&resolution, 4, false)));
            let forward = Forward { spec: &spec, setup: &setup, tokens: 128 };
            let mut tracer = Tracer::default();
            let h = tracer.tensor(128 * 64, Ty::Float(FloatType::Bf16), false);
            forward.attention(
                &mut tracer,
                h,
                &spec.layers[0].layer.attention,
                FloatType::Bf16,
                false,
            );
            tracer.saved_bytes()
        };
        let full = saved(None);
        assert_eq!(saved(Some(65)), full);
        // Keys and values: 2 kv heads → 4 heads of 16 over 128 tokens, in bf16.
        let kv = 2 * (rounded(128 * 4 * 16 * 2) - rounded(128 * 2 * 16 * 2));
        let mask = rounded(2 * 64 * 64 * 2);
        assert_eq!(saved(Some(64)), full + kv + mask);
    }
}
