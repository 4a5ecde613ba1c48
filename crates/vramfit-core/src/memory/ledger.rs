//! Memory components, one name each, and phases assembled from typed parts: each part names its [`MemoryComponent`],
//! its bytes and the formula that gave them; the ledger checks that every
//! size fits the output's integers and finds the peak.

use crate::error::CoreError;
use crate::memory::runtime::{Runtime, reserved_bytes};
use crate::memory::{MemoryEstimate, Part, Phase, to_u64};

/// What a part of a phase's memory is. Each has one name, the one every
/// output shows (`Part::name`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum MemoryComponent {
    /// The model's parameters as stored.
    Weights,
    /// LoRA/DoRA adapters, in fp32.
    LoraAdapters,
    /// Registered buffers (rotary frequencies, sinusoidal tables).
    Buffers,
    /// The batch's integer tensors.
    Inputs,
    /// cuBLAS's workspace, allocated through the caching allocator.
    CublasWorkspace,
    /// Sharded parameters gathered for compute.
    GatheredParameters,
    /// Gradient buckets and reduce-scatter buffers.
    CommunicationBuffers,
    /// The optimizer's states (and DeepSpeed's fp32 master copy).
    OptimizerStates,
    /// Gradients of the trained parameters.
    Gradients,
    /// Tensors autograd keeps for backward (or inference's working tensors).
    Activations,
    /// Autocast's half copies of weights that backward keeps.
    AutocastWeightCopies,
    /// The logits, their fp32 copy and the final hidden states at the loss.
    LogitsAtTheLoss,
    /// Autocast's cached half copies that backward does not keep.
    AutocastWeightCache,
    /// Unsaved tensors alive inside a layer.
    LayerTemporaries,
    /// The loss's fp32 gradients of the logits.
    LogitGradients,
    /// The gradients one op's backward holds inside a layer.
    BackwardGradients,
    /// A checkpointed layer's saved tensors, rebuilt in backward.
    RecomputedLayer,
    /// A 4-bit weight dequantized for its matmul.
    DequantizedWeight,
    /// The residual stream's gradient beside a recomputed layer.
    StreamGradient,
    /// A tied table's two gradients summed out of place.
    TiedEmbeddingGradientSum,
    /// The embedding lookup's output gradient at the end of backward.
    EmbeddingOutputGradient,
    /// The optimizer step's temporaries.
    OptimizerStepTemporaries,
    /// Generation's key/value cache.
    KvCache,
    /// Linear-attention layers' per-sequence convolution and recurrent states.
    RecurrentState,
    /// The CUDA context, outside every engine's own accounting.
    CudaContext,
    /// NCCL's communicator buffers.
    Nccl,
    /// vLLM's profile-run activation peak.
    ActivationProfile,
    /// CUDA graphs' memory pool.
    CudaGraphs,
    /// SGLang's share for activations and CUDA graphs.
    ActivationsAndCudaGraphs,
    /// ggml's compute buffer.
    ComputeBuffer,
    /// llama.cpp's output (logits) buffer.
    OutputBuffer,
}

impl MemoryComponent {
    /// The name outputs show.
    pub(crate) fn name(self) -> &'static str {
        match self {
            MemoryComponent::Weights => "weights",
            MemoryComponent::LoraAdapters => "lora adapters",
            MemoryComponent::Buffers => "buffers",
            MemoryComponent::Inputs => "inputs",
            MemoryComponent::CublasWorkspace => "cuBLAS workspace",
            MemoryComponent::GatheredParameters => "gathered parameters",
            MemoryComponent::CommunicationBuffers => "communication buffers",
            MemoryComponent::OptimizerStates => "optimizer states",
            MemoryComponent::Gradients => "gradients",
            MemoryComponent::Activations => "activations",
            MemoryComponent::AutocastWeightCopies => "autocast weight copies",
            MemoryComponent::LogitsAtTheLoss => "logits at the loss",
            MemoryComponent::AutocastWeightCache => "autocast weight cache",
            MemoryComponent::LayerTemporaries => "layer temporaries",
            MemoryComponent::LogitGradients => "logit gradients",
            MemoryComponent::BackwardGradients => "backward gradients",
            MemoryComponent::RecomputedLayer => "recomputed layer",
            MemoryComponent::DequantizedWeight => "dequantized weight",
            MemoryComponent::StreamGradient => "stream gradient",
            MemoryComponent::TiedEmbeddingGradientSum => "tied-embedding gradient sum",
            MemoryComponent::EmbeddingOutputGradient => "embedding output gradient",
            MemoryComponent::OptimizerStepTemporaries => "optimizer step temporaries",
            MemoryComponent::KvCache => "kv cache",
            MemoryComponent::RecurrentState => "recurrent state",
            MemoryComponent::CudaContext => "CUDA context",
            MemoryComponent::Nccl => "NCCL",
            MemoryComponent::ActivationProfile => "activation profile",
            MemoryComponent::CudaGraphs => "CUDA graphs",
            MemoryComponent::ActivationsAndCudaGraphs => "activations and CUDA graphs",
            MemoryComponent::ComputeBuffer => "compute buffer",
            MemoryComponent::OutputBuffer => "output buffer",
        }
    }
}

/// One part of a phase: what it is, its bytes, and how they were computed.
#[derive(Clone, Debug)]
pub(crate) struct Entry {
    pub(crate) component: MemoryComponent,
    pub(crate) bytes: u128,
    pub(crate) formula: String,
}

/// A part of a phase.
pub(crate) fn entry(component: MemoryComponent, bytes: u128, formula: impl Into<String>) -> Entry {
    Entry { component, bytes, formula: formula.into() }
}

/// Assembles phases from parts, checking sizes.
#[derive(Default)]
pub(crate) struct Ledger {
    phases: Vec<Phase>,
}

impl Ledger {
    /// Adds the phase `name` holding `parts` (parts of no bytes are left out).
    pub(crate) fn phase(&mut self, name: &str, parts: Vec<Entry>) -> Result<(), CoreError> {
        let mut out = Vec::new();
        let mut total = 0u128;
        for Entry { component, bytes, formula } in parts {
            if bytes == 0 {
                continue;
            }
            total += bytes;
            out.push(Part {
                name: component.name().to_owned(),
                bytes: to_u64(bytes, "memory estimate")?,
                formula,
            });
        }
        self.phases.push(Phase {
            name: name.to_owned(),
            bytes: to_u64(total, "memory estimate")?,
            parts: out,
        });
        Ok(())
    }

    /// The estimate: the worst phase's bytes at the three levels.
    pub(crate) fn finish(
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
