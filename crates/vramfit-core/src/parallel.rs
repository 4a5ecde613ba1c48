/*!
Training over several GPUs: how data, tensor and pipeline parallelism divide
the model, and what each data-parallel strategy shards.

A layout of `gpus = data × tensor × pipeline` ranks. Tensor parallelism
(Megatron-LM's column/row split, Shoeybi et al. 2019, arXiv 1909.08053)
divides attention heads, KV heads, MLP columns and the vocabulary by `tp`;
norms and the residual stream stay whole on every rank. Pipeline parallelism
gives each stage a contiguous run of layers (the first stage also holds the
embeddings, the last the final norm and the head) and, under the 1F1B
schedule (Narayanan et al. 2021, arXiv 2104.04473), stage `i` of `p` holds
the activations of up to `p − i` micro-batches. The data-parallel strategies
are those of PyTorch DDP and FSDP and DeepSpeed ZeRO (Rajbhandari et al.
2020, arXiv 1910.02054): what each shards over the data-parallel group is in
[`Strategy::shards`].
*/

use serde::{Deserialize, Serialize};

use crate::error::{CoreError, Setting};
use crate::spec::{AttentionKind, FeedForward, ModelSpec, Tensor};

/// A data-parallel strategy.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// PyTorch `DistributedDataParallel`: everything replicated, gradients also
    /// copied into its communication buckets.
    Ddp,
    /// DeepSpeed ZeRO stage 1: optimizer states (and fp32 master weights) sharded.
    Zero1,
    /// ZeRO stage 2: also gradients.
    Zero2,
    /// ZeRO stage 3: also parameters, gathered one layer at a time.
    Zero3,
    /// PyTorch FSDP `FULL_SHARD` (FSDP2 `fully_shard` per decoder layer).
    Fsdp,
    /// FSDP `SHARD_GRAD_OP`: gradients and states sharded, parameters kept
    /// gathered from forward to backward.
    FsdpShardGradOp,
    /// FSDP `HYBRID_SHARD`: full sharding inside a node, replication across nodes.
    Hybrid,
}

/// What a strategy divides by the sharding group.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Shards {
    /// Parameters.
    pub params: bool,
    /// Gradients.
    pub grads: bool,
    /// Optimizer states (and master weights).
    pub states: bool,
}

impl Strategy {
    /// What the strategy shards.
    pub fn shards(self) -> Shards {
        match self {
            Strategy::Ddp => Shards { params: false, grads: false, states: false },
            Strategy::Zero1 => Shards { params: false, grads: false, states: true },
            Strategy::Zero2 | Strategy::FsdpShardGradOp => {
                Shards { params: false, grads: true, states: true }
            }
            Strategy::Zero3 | Strategy::Fsdp | Strategy::Hybrid => {
                Shards { params: true, grads: true, states: true }
            }
        }
    }

    /// The CLI's name.
    pub fn name(self) -> &'static str {
        match self {
            Strategy::Ddp => "ddp",
            Strategy::Zero1 => "zero1",
            Strategy::Zero2 => "zero2",
            Strategy::Zero3 => "zero3",
            Strategy::Fsdp => "fsdp",
            Strategy::FsdpShardGradOp => "fsdp-shard-grad-op",
            Strategy::Hybrid => "hybrid",
        }
    }
}

/// What is moved to host memory.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum Offload {
    /// Nothing.
    None,
    /// Optimizer states, the optimizer step and the sharded gradient partitions
    /// (DeepSpeed ZeRO-Offload, `offload_optimizer`).
    Optimizer,
    /// Also the sharded parameters (ZeRO-3 `offload_param`, FSDP `CPUOffload(offload_params=True)`);
    /// gathered layers still come to the GPU.
    Params,
}

/// How a training job is spread over GPUs.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct Layout {
    /// GPUs in all.
    pub gpus: u64,
    /// Machines; the GPUs are spread evenly.
    pub nodes: u64,
    /// Data-parallel strategy.
    pub strategy: Strategy,
    /// Tensor-parallel degree.
    pub tp: u64,
    /// Pipeline stages.
    pub pp: u64,
    /// Host offload.
    pub offload: Offload,
}

impl Layout {
    /// One GPU, nothing sharded.
    pub const SINGLE: Layout =
        Layout { gpus: 1, nodes: 1, strategy: Strategy::Ddp, tp: 1, pp: 1, offload: Offload::None };

    /// Data-parallel degree: `gpus / (tp × pp)`.
    pub fn data_parallel(&self) -> u64 {
        self.gpus / self.tp.saturating_mul(self.pp).max(1)
    }

    /// The group a strategy shards over: the whole data-parallel group, or for
    /// `hybrid` the data-parallel ranks of one node.
    pub fn shard_group(&self) -> u64 {
        match self.strategy {
            Strategy::Hybrid => (self.data_parallel() / self.nodes).max(1),
            _ => self.data_parallel(),
        }
    }

    /// Checks the layout against the model, naming the setting at fault.
    pub fn validate(&self, spec: &ModelSpec) -> Result<(), CoreError> {
        let invalid =
            |setting: Setting, reason: String| Err(CoreError::InvalidWorkload { setting, reason });
        if self.gpus == 0 || self.nodes == 0 || self.tp == 0 || self.pp == 0 {
            return invalid(
                Setting::Gpus,
                "GPU, node, tensor- and pipeline-parallel counts must be at least 1".into(),
            );
        }
        if !self.gpus.is_multiple_of(self.nodes) {
            return invalid(
                Setting::Nodes,
                format!("{} GPUs do not split evenly over {} nodes", self.gpus, self.nodes),
            );
        }
        let layers = spec.num_layers();
        if self.pp > layers {
            return invalid(
                Setting::PipelineParallel,
                format!("{} pipeline stages for {layers} layers", self.pp),
            );
        }
        match self.tp.checked_mul(self.pp) {
            Some(product) if self.gpus.is_multiple_of(product) => {}
            _ => {
                return invalid(
                    Setting::Gpus,
                    format!(
                        "{} GPUs are not a multiple of tp × pp = {} × {}",
                        self.gpus, self.tp, self.pp
                    ),
                );
            }
        }
        if self.strategy == Strategy::Hybrid && self.nodes < 2 {
            return invalid(
                Setting::Strategy,
                "hybrid sharding replicates across nodes: it needs 2 nodes or more".into(),
            );
        }
        if self.strategy == Strategy::Hybrid && !self.data_parallel().is_multiple_of(self.nodes) {
            return invalid(
                Setting::Nodes,
                "hybrid sharding needs the data-parallel ranks to split evenly over nodes".into(),
            );
        }
        if self.offload != Offload::None && self.strategy == Strategy::Ddp {
            return invalid(
                Setting::Offload,
                "DDP has no host offload; use zero1/zero2/zero3 (ZeRO-Offload) or fsdp".into(),
            );
        }
        if self.offload == Offload::Optimizer
            && matches!(
                self.strategy,
                Strategy::Fsdp | Strategy::FsdpShardGradOp | Strategy::Hybrid
            )
        {
            return invalid(
                Setting::Offload,
                "FSDP's CPUOffload moves parameters and gradients together (the optimizer then steps on the host): offload the parameters instead".into(),
            );
        }
        if self.offload == Offload::Params && !self.strategy.shards().params {
            return invalid(
                Setting::Offload,
                format!(
                    "parameter offload needs a strategy that shards parameters (zero3, fsdp), not {}",
                    self.strategy.name()
                ),
            );
        }
        for group in &spec.layers {
            let attention = &group.layer.attention;
            if attention.num_heads % self.tp != 0 {
                return invalid(
                    Setting::TensorParallel,
                    format!(
                        "tensor parallelism {} does not divide the {} attention heads",
                        self.tp, attention.num_heads
                    ),
                );
            }
            if matches!(attention.kind, AttentionKind::Standard)
                && attention.num_kv_heads % self.tp != 0
            {
                return invalid(
                    Setting::TensorParallel,
                    format!(
                        "tensor parallelism {} does not divide the {} key/value heads (Megatron-LM requires it)",
                        self.tp, attention.num_kv_heads
                    ),
                );
            }
        }
        Ok(())
    }
}

/// Megatron-LM's `--make-vocab-size-divisible-by` default: the vocabulary is
/// padded to a multiple of 128 × tp (`megatron/training/tokenizer`, `_vocab_size_with_padding`).
pub const MEGATRON_VOCAB_DIVISOR: u64 = 128;

/// vLLM's `DEFAULT_VOCAB_PADDING_SIZE` (`vocab_parallel_embedding.py`): the
/// vocabulary is padded to a multiple of 64, then divided among the ranks.
pub const VLLM_VOCAB_PADDING: u64 = 64;

/// The part of the model one tensor-parallel rank holds under Megatron-LM:
/// see [`tensor_parallel_rank_padded`], with the vocabulary padded to a
/// multiple of 128 × tp.
pub fn tensor_parallel_rank(spec: &ModelSpec, tp: u64) -> ModelSpec {
    if tp <= 1 {
        return spec.clone();
    }
    tensor_parallel_rank_padded(spec, tp, MEGATRON_VOCAB_DIVISOR.saturating_mul(tp))
}

/// The part of the model one tensor-parallel rank holds: heads, KV heads, MLP
/// and expert columns divided by `tp`; the last projection of attention and of
/// the MLP is row-parallel (its input is divided), the others column-parallel
/// (their output is). The vocabulary (token embeddings and head) is padded to
/// a multiple of `vocab_multiple`, then divided. Whole on every rank: norms,
/// learned position tables, and the shared low-rank projections of latent
/// attention (`q_a_proj`, `kv_a_proj_with_mqa`: `ReplicatedLinear` in vLLM's
/// and SGLang's DeepSeek, whose heads start at `q_b_proj`/`kv_b_proj`).
pub fn tensor_parallel_rank_padded(spec: &ModelSpec, tp: u64, vocab_multiple: u64) -> ModelSpec {
    let tp = tp.max(1);
    let mut rank = spec.clone();
    let split = |n: u64| n.div_ceil(tp);
    let split_tensor = |t: &mut Tensor| t.numel = split(t.numel);
    let replicated = |name: &str| matches!(name, "q_a_proj" | "kv_a_proj_with_mqa");
    for group in &mut rank.layers {
        let layer = &mut group.layer;
        let attention = &mut layer.attention;
        attention.num_heads = split(attention.num_heads);
        // Fewer KV heads than ranks: each rank holds one whole head (replicated).
        let kv_width = attention.num_kv_heads.div_ceil(tp) * attention.head_dim;
        attention.num_kv_heads = split(attention.num_kv_heads);
        let standard = matches!(attention.kind, crate::spec::AttentionKind::Standard);
        let last = attention.projections.len().saturating_sub(1);
        for (index, linear) in attention.projections.iter_mut().enumerate() {
            if index == last {
                linear.in_features = split(linear.in_features);
            } else if standard && matches!(linear.name.as_str(), "k_proj" | "v_proj") {
                linear.out_features = kv_width;
            } else if !replicated(&linear.name) {
                linear.out_features = split(linear.out_features);
            }
        }
        match &mut layer.feed_forward {
            FeedForward::Dense { intermediate_size, linears, .. } => {
                *intermediate_size = split(*intermediate_size);
                let last = linears.len().saturating_sub(1);
                for (index, linear) in linears.iter_mut().enumerate() {
                    if index == last {
                        linear.in_features = split(linear.in_features);
                    } else {
                        linear.out_features = split(linear.out_features);
                    }
                }
            }
            FeedForward::Moe(moe) => {
                moe.expert_intermediate_size = split(moe.expert_intermediate_size);
                moe.expert_tensors.iter_mut().for_each(split_tensor);
                moe.shared_intermediate_size = split(moe.shared_intermediate_size);
                let last = moe.shared.len().saturating_sub(1);
                for (index, linear) in moe.shared.iter_mut().enumerate() {
                    if index == last {
                        linear.in_features = split(linear.in_features);
                    } else {
                        linear.out_features = split(linear.out_features);
                    }
                }
            }
        }
    }
    // Vocabulary-parallel token embeddings and head (and the cross-entropy over
    // them), over the padded vocabulary; position tables stay whole.
    let vocab = spec.vocab_size;
    let padded = vocab.div_ceil(vocab_multiple.max(1)).saturating_mul(vocab_multiple.max(1));
    let rank_vocab = split(padded);
    let table = vocab.saturating_mul(spec.hidden_size);
    for tensor in &mut rank.embeddings {
        if tensor.numel == table {
            tensor.numel = rank_vocab.saturating_mul(spec.hidden_size);
        }
    }
    rank.vocab_size = rank_vocab;
    rank.lm_head.linear.out_features = rank_vocab;
    rank
}

/// The layers each pipeline stage holds, first to last (as even as possible,
/// the first stages taking the remainder).
pub fn stage_layers(layers: u64, stages: u64) -> Vec<u64> {
    let stages = stages.max(1);
    (0..stages).map(|i| layers / stages + u64::from(i < layers % stages)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::params::count_params;
    use crate::toy;

    #[test]
    fn tensor_parallel_ranks_hold_a_tp_th_of_the_split_weights() {
        let spec = toy::llama();
        let whole = count_params(&spec).unwrap();
        // Without vocabulary padding (see the next test), everything but the norms
        // (2 per layer + final, 64 each) divides by 2.
        let rank = count_params(&tensor_parallel_rank_padded(&spec, 2, 1)).unwrap();
        let norms = whole.by_component[&crate::spec::Component::Norms];
        assert_eq!(rank.total, (whole.total - norms) / 2 + norms);
        let layer = &tensor_parallel_rank(&spec, 2).layers[0].layer;
        assert_eq!((layer.attention.num_heads, layer.attention.num_kv_heads), (2, 1));
    }

    #[test]
    fn vocabulary_is_padded_and_shared_projections_stay_whole() {
        // Llama-3's 128,256 tokens: Megatron pads to a multiple of 128 × 8 = 1024 → 129,024,
        // 16,128 per rank; vLLM pads to 64 (128,256 already is) → 16,032 per rank.
        let spec = toy::llama_8b();
        assert_eq!(tensor_parallel_rank(&spec, 8).vocab_size, 16_128);
        assert_eq!(tensor_parallel_rank_padded(&spec, 8, VLLM_VOCAB_PADDING).vocab_size, 16_032);
        let rank = tensor_parallel_rank(&spec, 8);
        assert_eq!(rank.embeddings[0].numel, 16_128 * 4096);
        // A learned position table is not divided.
        let mut gpt = toy::llama();
        gpt.embeddings.push(Tensor::new("wpe.weight", 1024 * gpt.hidden_size));
        let rank = tensor_parallel_rank(&gpt, 2);
        assert_eq!(rank.embeddings[1].numel, 1024 * gpt.hidden_size);
        // More ranks than KV heads: one whole head per rank.
        let rank = tensor_parallel_rank(&spec, 16);
        let k = rank.layers[0].layer.attention.projections.iter().find(|l| l.name == "k_proj");
        assert_eq!(k.unwrap().out_features, 128);
        // vLLM pads even on one GPU: GPT-2's 50,257 tokens become 50,304.
        let mut gpt2 = toy::llama();
        gpt2.vocab_size = 50_257;
        assert_eq!(tensor_parallel_rank_padded(&gpt2, 1, VLLM_VOCAB_PADDING).vocab_size, 50_304);
        assert_eq!(tensor_parallel_rank(&gpt2, 1).vocab_size, 50_257);
        // Latent attention: q_a_proj and kv_a_proj_with_mqa whole, the per-head ones divided.
        let dims = crate::spec::LatentDims {
            q_lora_rank: Some(1536),
            kv_lora_rank: 512,
            qk_nope_head_dim: 128,
            qk_rope_head_dim: 64,
            v_head_dim: 128,
        };
        let mut mla = toy::llama_8b();
        mla.layers[0].layer.attention = crate::spec::latent_attention(4096, 32, dims, false);
        let attention = &tensor_parallel_rank(&mla, 4).layers[0].layer.attention;
        let out = |name: &str| {
            attention.projections.iter().find(|l| l.name == name).unwrap().out_features
        };
        assert_eq!(out("q_a_proj"), 1536);
        assert_eq!(out("kv_a_proj_with_mqa"), 576);
        assert_eq!(out("q_b_proj"), 32 / 4 * 192);
        assert_eq!(out("kv_b_proj"), 32 / 4 * 256);
    }

    #[test]
    fn invalid_layouts_are_refused_with_the_reason() {
        let spec = toy::llama();
        let layout = |gpus, tp, pp, strategy| Layout {
            gpus,
            nodes: 1,
            strategy,
            tp,
            pp,
            offload: Offload::None,
        };
        assert!(
            layout(4, 4, 1, Strategy::Ddp)
                .validate(&spec)
                .unwrap_err()
                .to_string()
                .contains("key/value heads")
        );
        assert!(
            layout(3, 1, 2, Strategy::Ddp)
                .validate(&spec)
                .unwrap_err()
                .to_string()
                .contains("multiple")
        );
        assert!(
            layout(3, 1, 3, Strategy::Ddp)
                .validate(&spec)
                .unwrap_err()
                .to_string()
                .contains("pipeline stages")
        );
        assert!(layout(8, 2, 2, Strategy::Fsdp).validate(&spec).is_ok());
        let hybrid = Layout {
            gpus: 8,
            nodes: 1,
            strategy: Strategy::Hybrid,
            tp: 1,
            pp: 1,
            offload: Offload::None,
        };
        assert!(hybrid.validate(&spec).is_err());
        let hybrid = Layout { nodes: 2, ..hybrid };
        assert_eq!((hybrid.data_parallel(), hybrid.shard_group()), (8, 4));
        let offload = Layout { offload: Offload::Params, ..layout(2, 1, 1, Strategy::Zero2) };
        assert!(offload.validate(&spec).unwrap_err().to_string().contains("offload"));
        // DDP has no offload; FSDP offloads parameters with the states, not states alone.
        let offload = Layout { offload: Offload::Optimizer, ..layout(2, 1, 1, Strategy::Ddp) };
        assert!(offload.validate(&spec).unwrap_err().to_string().contains("DDP"));
        let offload = Layout { offload: Offload::Optimizer, ..layout(2, 1, 1, Strategy::Fsdp) };
        let error = offload.validate(&spec).unwrap_err();
        assert!(
            matches!(&error, CoreError::InvalidWorkload { setting: Setting::Offload, reason }
                if reason.contains("offload the parameters")),
            "{error}"
        );
        // Absurd degrees are an error, not an overflow.
        let huge = layout(4, 1 << 32, 1 << 32, Strategy::Ddp);
        assert!(huge.validate(&spec).is_err());
        assert_eq!(huge.data_parallel(), 0);
        let huge = Layout { pp: 1, ..huge };
        assert!(huge.validate(&spec).is_err());
    }

    #[test]
    fn stages_split_layers_evenly() {
        assert_eq!(stage_layers(32, 4), [8, 8, 8, 8]);
        assert_eq!(stage_layers(30, 4), [8, 8, 7, 7]);
        assert_eq!(stage_layers(3, 3), [1, 1, 1]);
    }
}
