/*!
A symbolic autograd: tensors with an element count, a type and a
`requires_grad` flag, and for each operation the rule of what PyTorch's
autograd keeps for the backward pass.

Every rule comes from PyTorch's `tools/autograd/derivatives.yaml` (which
inputs or outputs an op's backward formula uses) and from autocast's op lists
(`aten/src/ATen/autocast_mode.cpp`): an op saves a tensor only when the
gradient of some input that requires grad needs it. Tensors are identified,
so a storage saved by several ops (a norm output feeding `q_proj`, `k_proj`
and `v_proj`) counts once, and views share their base's storage.

Sizes are bytes rounded up to the CUDA caching allocator's 512-byte block
(`kMinBlockSize` in `c10/cuda/CUDACachingAllocator.cpp`), so totals compare
with `torch.cuda.max_memory_allocated`. Arithmetic is in `u128`: a workload
too large for `u64` is reported by the caller, never wrapped.
*/

use crate::dtype::FloatType;

/// The CUDA caching allocator's smallest block: every allocation is rounded up to it.
pub(crate) const ALLOCATOR_BLOCK: u128 = crate::dtype::ALLOCATOR_BLOCK as u128;

/// Bytes an allocation of `bytes` occupies (rounded up to 512).
pub(crate) fn rounded(bytes: u128) -> u128 {
    bytes.div_ceil(ALLOCATOR_BLOCK) * ALLOCATOR_BLOCK
}

/// A tensor's element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// A float type.
    Float(FloatType),
    /// 64-bit integers (token ids, labels, expert indices).
    I64,
    /// Booleans, one byte each (CUDA dropout masks).
    Bool,
}

impl Ty {
    fn bytes(self) -> u128 {
        match self {
            Ty::Float(float) => u128::from(float.bytes()),
            Ty::I64 => 8,
            Ty::Bool => 1,
        }
    }
}

/// A tensor in the trace: its storage id, element count, type, and whether it requires grad.
#[derive(Clone, Copy, Debug)]
pub(crate) struct T {
    id: usize,
    pub(crate) elems: u128,
    pub(crate) ty: Ty,
    pub(crate) rg: bool,
}

impl T {
    /// Its float type (integers count as fp32 where a float is needed).
    pub(crate) fn float(self) -> FloatType {
        match self.ty {
            Ty::Float(float) => float,
            Ty::I64 | Ty::Bool => FloatType::F32,
        }
    }
}

/// The state of one traced forward pass.
#[derive(Debug, Default)]
pub(crate) struct Tracer {
    sizes: Vec<u128>,
    saved: Vec<bool>,
    saved_bytes: u128,
    /// Half-precision weight copies autocast caches for the whole forward
    /// (`cache_enabled=True`), counted until autocast exits.
    pub(crate) autocast_cache_bytes: u128,
    /// Half-precision weight copies autocast made that autograd keeps (part of the saved bytes).
    pub(crate) autocast_saved_bytes: u128,
    /// Every half-precision copy of a trainable fp32 weight autocast made, saved or not:
    /// autocast caches a cast of a leaf that requires grad until autocast exits
    /// (`cached_cast` in PyTorch's `autocast_mode.cpp`), so under checkpointing, where
    /// nothing saves them, the forward still holds every layer's copies at the loss.
    pub(crate) autocast_trainable_copies: u128,
    /// The largest short-lived allocation seen inside an op (dequantized weights).
    pub(crate) largest_transient: u128,
    /// Saved bytes when the current decoder layer began.
    pub(crate) layer_start: u128,
    /// The gradient of the residual stream, alive through the current decoder layer's
    /// whole backward (the layer output's gradient, passed on to its input by the
    /// residual additions), in the stream's bytes; every backward moment counts it.
    pub(crate) stream_grad: u128,
    /// Whether the block's output linears (attention output, MLP down) add straight
    /// into the residual stream, so that their output's gradient is the stream's.
    pub(crate) outputs_feed_stream: bool,
    /// Set while such an output linear is traced.
    pub(crate) into_stream: bool,
    /// The residual stream's type: an output linear's gradient is the stream's own
    /// tensor only when the addition does not change its type.
    pub(crate) stream_ty: Option<FloatType>,
    /// Gradient bytes of the trained weights the current decoder layer has used so far
    /// (full fine-tuning), in forward order: at an op's backward, the gradients of the
    /// weights used before it do not exist yet.
    pub(crate) layer_grads: u128,
    /// The worst moment of the current layer's backward seen so far: the layer's
    /// saved bytes up to the op, and the gradients the op's backward holds.
    pub(crate) backward_moment: LayerMoment,
    /// The same moment chosen by its own bytes alone ([`LayerMoment::larger`]),
    /// for a step whose layer gradients do not appear op by op.
    pub(crate) backward_moment_by_bytes: LayerMoment,
    /// The worst moment of the current layer's forward seen so far: the layer's
    /// saved bytes up to the op, and the unsaved tensors alive in it.
    pub(crate) forward_moment: LayerMoment,
    /// The hidden states the Python frames hold while the current block runs (the
    /// decoder layer's input, its residual, the block's normed input), alive whether
    /// or not anything saves them.
    pub(crate) held: Vec<T>,
    /// The model's `inputs_embeds`, a local of its forward until it returns.
    pub(crate) inputs_embeds: Option<T>,
}

/// A moment inside one layer's pass: in backward, when an op's backward runs,
/// what the layer saved up to that op is still kept (what later ops saved is
/// released) and the op holds `working` bytes of gradients beside it; in
/// forward, what the layer saved so far, and `working` bytes of tensors alive
/// that nothing saves.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct LayerMoment {
    /// Bytes the layer saved before and at the op.
    pub(crate) kept_in_layer: u128,
    /// Gradients the op's backward holds at once.
    pub(crate) working: u128,
    /// Gradient bytes of the layer's trained weights used before the op, which
    /// backward has not reached yet (`Tracer::layer_grads`) ...
    pub(crate) grads_before: u128,
    /// ... of all the layer's trained weights (known once the layer is traced).
    pub(crate) layer_grads: u128,
}

impl LayerMoment {
    /// Gradient bytes of the moment's layer that exist at it: those of the weights
    /// used after the op, which backward has passed.
    pub(crate) fn grads_after(self) -> u128 {
        self.layer_grads.saturating_sub(self.grads_before)
    }

    /// What orders two moments: their bytes with the layer's gradients present.
    /// While the layer is traced its total is not known yet (0 in both), and the
    /// gradients not there yet still order them.
    fn key(self) -> i128 {
        let signed = |bytes: u128| i128::try_from(bytes).unwrap_or(i128::MAX / 4);
        signed(self.kept_in_layer + self.working + self.layer_grads) - signed(self.grads_before)
    }

    /// The larger of two moments by their own bytes (what the layer keeps and
    /// what works), whatever gradients exist: the worse one when every gradient
    /// is there all along (accumulation) or is counted apart (sharded). This one
    /// on a tie; a moment with nothing working is none.
    pub(crate) fn larger(self, other: LayerMoment) -> LayerMoment {
        let bytes = |m: LayerMoment| m.kept_in_layer + m.working;
        if other.working > 0 && (self.working == 0 || bytes(other) > bytes(self)) {
            other
        } else {
            self
        }
    }

    /// The larger of two moments (this one on a tie); a moment with nothing
    /// working is none.
    pub(crate) fn worse(self, other: LayerMoment) -> LayerMoment {
        if other.working > 0 && (self.working == 0 || other.key() > self.key()) {
            other
        } else {
            self
        }
    }
}

impl Tracer {
    /// A new tensor.
    pub(crate) fn tensor(&mut self, elems: u128, ty: Ty, rg: bool) -> T {
        self.sizes.push(rounded(elems * ty.bytes()));
        self.saved.push(false);
        T { id: self.sizes.len() - 1, elems, ty, rg }
    }

    /// A view of `base` with another shape: same storage.
    pub(crate) fn view(base: T, elems: u128) -> T {
        T { elems, ..base }
    }

    /// Keeps `t`'s storage for backward (once, however many ops save it).
    pub(crate) fn save(&mut self, t: T) {
        if !self.saved[t.id] {
            self.saved[t.id] = true;
            self.saved_bytes += self.sizes[t.id];
        }
    }

    /// Adds the saved bytes of tensors not traced one by one (layers identical
    /// to one already traced).
    pub(crate) fn add_saved_bytes(&mut self, bytes: u128) {
        self.saved_bytes += bytes;
    }

    /// Bytes of everything saved so far.
    pub(crate) fn saved_bytes(&self) -> u128 {
        self.saved_bytes
    }

    /// Notes that the backward of the op traced now holds `working` bytes of
    /// gradients beside what the layer saved so far.
    pub(crate) fn backward_moment(&mut self, working: u128) {
        let moment = LayerMoment {
            kept_in_layer: self.saved_bytes - self.layer_start,
            working: working + self.stream_grad,
            grads_before: self.layer_grads,
            layer_grads: 0,
        };
        self.backward_moment = self.backward_moment.worse(moment);
        self.backward_moment_by_bytes = self.backward_moment_by_bytes.larger(moment);
    }

    /// Notes that `working` bytes of unsaved tensors are alive in the forward now,
    /// beside what the layer saved so far.
    pub(crate) fn forward_moment(&mut self, working: u128) {
        // No gradient of the layer exists while it runs forward (or is recomputed).
        let moment = LayerMoment {
            kept_in_layer: self.saved_bytes - self.layer_start,
            working,
            grads_before: 0,
            layer_grads: 0,
        };
        self.forward_moment = self.forward_moment.worse(moment);
    }

    /// Bytes of the distinct storages among `tensors` that nothing saves.
    pub(crate) fn unsaved_bytes(&self, tensors: &[T]) -> u128 {
        let mut seen: Vec<usize> = Vec::with_capacity(tensors.len());
        let mut total = 0;
        for t in tensors {
            if !self.saved[t.id] && !seen.contains(&t.id) {
                seen.push(t.id);
                total += self.sizes[t.id];
            }
        }
        total
    }

    /// Bytes of `t`'s storage.
    pub(crate) fn bytes(&self, t: T) -> u128 {
        self.sizes[t.id]
    }

    /// `x.to(ty)`: the same tensor when the type already matches, else a copy.
    /// `_to_copy` saves nothing (its backward only converts the type back).
    pub(crate) fn cast(&mut self, x: T, ty: FloatType) -> T {
        if x.ty == Ty::Float(ty) { x } else { self.tensor(x.elems, Ty::Float(ty), x.rg) }
    }

    /// An elementwise op whose backward needs no tensor (`add`, `sub`, `neg`,
    /// `cat`, multiplication by a Python scalar): a new tensor of `ty`.
    pub(crate) fn pointwise(&mut self, elems: u128, ty: FloatType, rg: bool) -> T {
        self.tensor(elems, Ty::Float(ty), rg)
    }

    /// `a * b` for tensors: the gradient of `a` needs `b` and that of `b`
    /// needs `a` (`mul.Tensor` in derivatives.yaml). Type promotion picks the
    /// wider type.
    pub(crate) fn mul(&mut self, a: T, b: T) -> T {
        if a.rg {
            self.save(b);
        }
        if b.rg {
            self.save(a);
        }
        let ty = wider(a.float(), b.float());
        self.tensor(a.elems.max(b.elems), Ty::Float(ty), a.rg || b.rg)
    }

    /// An activation whose backward needs its input (`silu`, `gelu`, `tanh`'s
    /// output for `tanh`, `sigmoid`'s output): saves the given tensor.
    pub(crate) fn unary_saving(&mut self, x: T, saves_output: bool) -> T {
        let out = self.tensor(x.elems, x.ty, x.rg);
        if x.rg {
            self.save(if saves_output { out } else { x });
        }
        out
    }

    /// `softmax`/`log_softmax` computed in `ty`: backward needs the result.
    pub(crate) fn softmax(&mut self, x: T, ty: FloatType) -> T {
        let out = self.tensor(x.elems, Ty::Float(ty), x.rg);
        if x.rg {
            self.save(out);
        }
        out
    }
}

/// The wider of two float types (fp32 wins; bf16 and fp16 mix to fp32).
pub(crate) fn wider(a: FloatType, b: FloatType) -> FloatType {
    if a == b { a } else { FloatType::F32 }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn saved_storages_count_once_and_round_to_512() {
        let mut tracer = Tracer::default();
        let x = tracer.tensor(10, Ty::Float(FloatType::F32), true);
        tracer.save(x);
        tracer.save(x);
        tracer.save(Tracer::view(x, 5));
        assert_eq!(tracer.saved_bytes(), 512);
    }

    #[test]
    fn mul_saves_what_the_other_gradient_needs() {
        let mut tracer = Tracer::default();
        let frozen = tracer.tensor(1024, Ty::Float(FloatType::Bf16), false);
        let trained = tracer.tensor(1024, Ty::Float(FloatType::Bf16), true);
        let out = tracer.mul(trained, frozen);
        // d/d trained needs `frozen`; nothing needs `trained`.
        assert_eq!(tracer.saved_bytes(), 2048);
        assert!(out.rg);
        let mut tracer = Tracer::default();
        let a = tracer.tensor(1024, Ty::Float(FloatType::Bf16), false);
        let b = tracer.tensor(1024, Ty::Float(FloatType::Bf16), false);
        let out = tracer.mul(a, b);
        assert_eq!(tracer.saved_bytes(), 0);
        assert!(!out.rg);
    }

    #[test]
    fn casts_to_the_same_type_are_free() {
        let mut tracer = Tracer::default();
        let x = tracer.tensor(1024, Ty::Float(FloatType::F32), true);
        let same = tracer.cast(x, FloatType::F32);
        tracer.save(same);
        tracer.save(x);
        assert_eq!(tracer.saved_bytes(), 4096);
    }
}
