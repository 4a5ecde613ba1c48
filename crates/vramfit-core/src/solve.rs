//! Solvers: the estimate inverted. Given a GPU's memory, the fewest GPUs (and
//! the layout) a training job needs, the largest batch, the longest sequence.
//!
//! Every answer is an exact search over [`estimate`] itself, never a separate
//! approximation: a job *fits* when its device total (what `nvidia-smi` shows at
//! the peak, the figure that decides an out-of-memory error) is at most the
//! GPU's memory. Batch and sequence searches rely on memory growing with batch
//! and sequence length, which holds for every component of the model; the
//! tests check the answers are tight (one more no longer fits).

use crate::error::CoreError;
use crate::memory::runtime::Runtime;
use crate::memory::{MemoryEstimate, estimate};
use crate::parallel::{Layout, Offload, Strategy};
use crate::spec::ModelSpec;
use crate::workload::{Training, Workload};

/// Largest batch size the searches try (sequences per micro-batch).
pub const MAX_BATCH: u64 = 1 << 16;

/// The search `vramfit fit` and the `--gpu` verdict run unless told otherwise:
/// up to 64 GPUs, in machines of 8 (the usual HGX/DGX node).
pub const DEFAULT_MAX_GPUS: u64 = 64;
/// GPUs per machine in the default search (an 8-GPU HGX/DGX node).
pub const DEFAULT_GPUS_PER_NODE: u64 = 8;

/// Most GPUs [`fewest_gpus`] considers, whatever the cluster says.
pub const MAX_GPUS: u64 = 4096;

/// Longest sequence the searches try when the model names no position limit.
pub const MAX_SEQUENCE: u64 = 1 << 21;

/// Whether `result` fits in `capacity` bytes of device memory.
pub fn fits(result: &MemoryEstimate, capacity: u64) -> bool {
    result.device_total_bytes <= capacity
}

/// GPUs needed when the model is split layer by layer over several GPUs
/// (transformers' `device_map="auto"`, pipeline without overlap): the
/// allocator's memory divides, and each GPU holds its own CUDA context.
///
/// `None` when no split can exist: a decoder layer cannot be divided, so the
/// GPU that holds one holds at least one layer's share of the peak's weights
/// and KV cache (their total over the layers: a lower bound for the largest
/// layer) with a CUDA context; and a split has no more parts than layers,
/// the embeddings and the head.
pub fn layer_split_gpus(result: &MemoryEstimate, spec: &ModelSpec, capacity: u64) -> Option<u64> {
    let usable = capacity.saturating_sub(result.cuda_context_bytes).max(1);
    let gpus =
        (result.peak_reserved_bytes + result.outside_allocator_bytes).div_ceil(usable).max(1);
    if gpus == 1 {
        return Some(1);
    }
    let layers = spec.num_layers().max(1);
    let held: u64 = result
        .peak_parts()
        .iter()
        .filter(|part| part.name == "weights" || part.name == "kv cache")
        .map(|part| part.bytes)
        .sum();
    let one_layer = held / layers;
    (one_layer.saturating_add(result.cuda_context_bytes) <= capacity && gpus <= layers + 2)
        .then_some(gpus)
}

/// A layout that fits, with its estimate (the worst rank's).
#[derive(Clone, Debug, PartialEq)]
#[non_exhaustive]
pub struct Plan {
    /// How the job is spread.
    pub layout: Layout,
    /// Per-GPU memory under that layout.
    pub estimate: MemoryEstimate,
}

impl Plan {
    /// A layout with the estimate it was checked with.
    pub fn new(layout: Layout, estimate: MemoryEstimate) -> Plan {
        Plan { layout, estimate }
    }
}

/// Where the GPUs of a training job may come from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cluster {
    /// GPU memory, bytes.
    pub capacity: u64,
    /// The most GPUs to consider.
    pub max_gpus: u64,
    /// GPUs per machine: counts above it come in whole machines.
    pub gpus_per_node: u64,
}

/// The GPU counts worth trying: every count up to one machine, then whole machines.
fn gpu_counts(cluster: &Cluster) -> impl Iterator<Item = (u64, u64)> {
    let per_node = cluster.gpus_per_node.clamp(1, MAX_GPUS);
    let max = cluster.max_gpus.min(MAX_GPUS);
    (1..=max.min(per_node)).map(|n| (n, 1)).chain(
        (2..)
            .map_while(move |nodes: u64| nodes.checked_mul(per_node).map(|n| (n, nodes)))
            .take_while(move |&(n, _)| n <= max),
    )
}

/// Powers of two up to `limit` that divide `n`.
fn power_divisors(n: u64, limit: u64) -> impl Iterator<Item = u64> {
    (0..63)
        .map(|k| 1u64 << k)
        .take_while(move |&d| d <= limit.min(n))
        .filter(move |d| n.is_multiple_of(*d))
}

/// The layouts tried for `gpus` GPUs over `nodes` machines, simplest first:
/// less model parallelism before more (pipeline, then tensor), then lighter
/// sharding (DDP, ZeRO-1, ZeRO-2, FSDP, ZeRO-3, hybrid). Tensor parallelism
/// stays inside a machine, as its all-reduces need the fast links inside one. No host offload:
/// it trades memory for a much slower step, a choice for the user to make.
pub fn candidate_layouts(gpus: u64, nodes: u64, gpus_per_node: u64) -> Vec<Layout> {
    let mut layouts = Vec::new();
    if gpus == 1 {
        layouts.push(Layout::SINGLE);
        return layouts;
    }
    let strategies: &[Strategy] = if nodes >= 2 {
        &[
            Strategy::Ddp,
            Strategy::Zero1,
            Strategy::Zero2,
            Strategy::Fsdp,
            Strategy::Zero3,
            Strategy::Hybrid,
        ]
    } else {
        &[Strategy::Ddp, Strategy::Zero1, Strategy::Zero2, Strategy::Fsdp, Strategy::Zero3]
    };
    for pp in power_divisors(gpus, gpus) {
        for tp in power_divisors(gpus / pp, gpus_per_node) {
            for &strategy in strategies {
                let layout = Layout { gpus, nodes, strategy, tp, pp, offload: Offload::None };
                // With no data parallelism left, the strategies coincide: keep one.
                if layout.data_parallel() == 1 && strategy != Strategy::Ddp {
                    continue;
                }
                layouts.push(layout);
            }
        }
    }
    layouts
}

/// The fewest GPUs (up to `cluster.max_gpus`) on which `training` fits, with
/// the simplest layout that achieves it; `None` when none does. QLoRA is only
/// spread data-parallel. The micro-batch
/// stays per GPU, as data parallelism keeps it. Layouts the model cannot take
/// (tensor parallelism not dividing the heads, more stages than layers) are
/// skipped.
pub fn fewest_gpus(
    spec: &ModelSpec,
    training: &Training,
    runtime: &Runtime,
    cluster: &Cluster,
) -> Result<Option<Plan>, CoreError> {
    // A lower bound on the count: sharded or not, the GPUs together hold at
    // least the one-GPU model state (DeepSpeed's fp32 masters only add to it;
    // tensor and pipeline parallelism divide it, replicating norms).
    let single = estimate(
        spec,
        &Workload::Training(Training { layout: Layout::SINGLE, ..training.clone() }),
        runtime,
    )?;
    let usable = cluster.capacity.saturating_sub(single.cuda_context_bytes).max(1);
    let at_least = single.model_state_bytes.div_ceil(usable).max(1);
    let quantized = training.method == crate::workload::Method::Qlora;
    for (gpus, nodes) in gpu_counts(cluster) {
        if gpus < at_least {
            continue;
        }
        for layout in candidate_layouts(gpus, nodes, cluster.gpus_per_node) {
            // bitsandbytes' 4-bit weights are trained data-parallel (DDP, FSDP,
            // ZeRO-3), not split by Megatron-style tensor or pipeline parallelism.
            let model_parallel = layout.tp > 1 || layout.pp > 1;
            if layout.validate(spec).is_err() || (quantized && model_parallel) {
                continue;
            }
            let workload = Workload::Training(Training { layout, ..training.clone() });
            let result = estimate(spec, &workload, runtime)?;
            if fits(&result, cluster.capacity) {
                return Ok(Some(Plan { layout, estimate: result }));
            }
        }
    }
    Ok(None)
}

/// The largest `value` in `1..=limit` for which `probe(value)` fits, and its
/// estimate; `None` when 1 does not fit. Starting from `start` (the value the
/// user gave, usually near the answer): doubling up from it when it fits, else
/// halving down from it, then bisection — O(log) estimates, assuming memory
/// grows with `value`.
fn largest<F>(
    limit: u64,
    capacity: u64,
    start: u64,
    mut probe: F,
) -> Result<Option<(u64, MemoryEstimate)>, CoreError>
where
    F: FnMut(u64) -> Result<MemoryEstimate, CoreError>,
{
    if limit == 0 {
        return Ok(None);
    }
    let start = start.clamp(1, limit);
    let at_start = probe(start)?;
    let mut fail = None;
    let mut best = if fits(&at_start, capacity) {
        (start, at_start)
    } else {
        // Halving down until a value fits.
        let mut value = start;
        loop {
            if value == 1 {
                return Ok(None);
            }
            let high = value;
            value /= 2;
            let result = probe(value)?;
            if fits(&result, capacity) {
                fail = Some(high);
                break (value, result);
            }
        }
    };
    // Doubling until a value does not fit (or the limit is reached).
    while fail.is_none() && best.0 < limit {
        let next = best.0.saturating_mul(2).min(limit);
        let result = probe(next)?;
        if fits(&result, capacity) {
            best = (next, result);
        } else {
            fail = Some(next);
        }
    }
    // Bisection between the last fit and the first failure.
    if let Some(mut high) = fail {
        while high - best.0 > 1 {
            let mid = best.0 + (high - best.0) / 2;
            let result = probe(mid)?;
            if fits(&result, capacity) {
                best = (mid, result);
            } else {
                high = mid;
            }
        }
    }
    Ok(Some(best))
}

/// The largest batch (per micro-batch when training; concurrent sequences when
/// generating) that fits in `capacity` bytes, up to [`MAX_BATCH`].
pub fn largest_batch(
    spec: &ModelSpec,
    workload: &Workload,
    runtime: &Runtime,
    capacity: u64,
) -> Result<Option<(u64, MemoryEstimate)>, CoreError> {
    let start = match workload {
        Workload::Inference(inference) => inference.batch_size,
        Workload::Training(training) => training.batch_size,
    };
    largest(MAX_BATCH, capacity, start, |batch| {
        let mut probe = workload.clone();
        match &mut probe {
            Workload::Inference(inference) => inference.batch_size = batch,
            Workload::Training(training) => training.batch_size = batch,
        }
        estimate(spec, &probe, runtime)
    })
}

/// The longest training sequence, or prompt (with the generated tokens
/// unchanged), the model's context window allows: `max_position_embeddings`
/// (the rope-scaled window where the config extends it). A learned position
/// table holds the prompt and every generated token but the last
/// (`generate()` never feeds the last); a rotary window holds them all.
/// `None` when the config names no window.
pub fn context_limit(spec: &ModelSpec, workload: &Workload) -> Option<u64> {
    position_limit(
        spec,
        match workload {
            Workload::Training(_) => None,
            Workload::Inference(inference) => Some(inference.gen_len),
        },
    )
}

/// [`context_limit`] for a training sequence (`generated` `None`) or the
/// prompt of a generation of `generated` tokens: the one place that says how
/// many positions a run takes.
pub(crate) fn position_limit(spec: &ModelSpec, generated: Option<u64>) -> Option<u64> {
    let window = spec.max_position_embeddings?;
    Some(match generated {
        None => window,
        Some(generated) if spec.positions == crate::spec::PositionEncoding::Learned => {
            window.saturating_sub(generated.saturating_sub(1))
        }
        Some(generated) => window.saturating_sub(generated),
    })
}

/// The longest sequence that fits in `capacity` bytes: the training sequence
/// length, or for generation the prompt length (with the generated tokens
/// unchanged), up to the model's context window ([`context_limit`]; else
/// [`MAX_SEQUENCE`] tokens).
pub fn longest_sequence(
    spec: &ModelSpec,
    workload: &Workload,
    runtime: &Runtime,
    capacity: u64,
) -> Result<Option<(u64, MemoryEstimate)>, CoreError> {
    let limit = context_limit(spec, workload).unwrap_or(MAX_SEQUENCE).min(MAX_SEQUENCE);
    let start = match workload {
        Workload::Inference(inference) => inference.prompt_len,
        Workload::Training(training) => training.seq_len,
    };
    largest(limit, capacity, start, |tokens| {
        let mut probe = workload.clone();
        match &mut probe {
            Workload::Inference(inference) => inference.prompt_len = tokens,
            Workload::Training(training) => training.seq_len = tokens,
        }
        estimate(spec, &probe, runtime)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::{FloatType, WeightFormat};
    use crate::memory::runtime::Runtime;
    use crate::toy;
    use crate::workload::{AttentionImpl, Inference, KvCacheType, Method};

    const GIB: u64 = 1 << 30;

    /// The default step (full fine-tuning, bf16-mixed, AdamW) at 512 tokens.
    fn training() -> Training {
        Training { seq_len: 512, ..Training::default() }
    }

    fn inference() -> Inference {
        Inference {
            weights: WeightFormat::Float(FloatType::Bf16),
            kv_cache: KvCacheType::Float(FloatType::Bf16),
            batch_size: 1,
            prompt_len: 256,
            gen_len: 64,
            attention: AttentionImpl::Sdpa,
        }
    }

    fn total(spec: &ModelSpec, workload: &Workload) -> u64 {
        estimate(spec, workload, &Runtime::HOPPER).unwrap().device_total_bytes
    }

    #[test]
    fn the_largest_batch_is_tight() {
        let spec = toy::llama();
        for workload in [Workload::Training(training()), Workload::Inference(inference())] {
            let one = total(&spec, &workload);
            let capacity = one + 3 * GIB / 2;
            let (batch, result) =
                largest_batch(&spec, &workload, &Runtime::HOPPER, capacity).unwrap().unwrap();
            assert!(batch > 1 && batch < MAX_BATCH, "batch {batch}");
            assert!(result.device_total_bytes <= capacity);
            // The same answer whatever the search starts from: above, at, below.
            for start in [1000, batch, batch + 1, 3] {
                let mut from = workload.clone();
                match &mut from {
                    Workload::Inference(i) => i.batch_size = start,
                    Workload::Training(t) => t.batch_size = start,
                }
                let again = largest_batch(&spec, &from, &Runtime::HOPPER, capacity).unwrap();
                assert_eq!(again.map(|a| a.0), Some(batch), "from {start}");
            }
            let mut more = workload.clone();
            match &mut more {
                Workload::Inference(i) => i.batch_size = batch + 1,
                Workload::Training(t) => t.batch_size = batch + 1,
            }
            assert!(total(&spec, &more) > capacity, "batch {} still fits", batch + 1);
            assert_eq!(
                result,
                estimate(
                    &spec,
                    &{
                        let mut w = workload.clone();
                        match &mut w {
                            Workload::Inference(i) => i.batch_size = batch,
                            Workload::Training(t) => t.batch_size = batch,
                        }
                        w
                    },
                    &Runtime::HOPPER
                )
                .unwrap()
            );
        }
    }

    #[test]
    fn the_longest_sequence_is_tight_or_the_position_limit() {
        let spec = toy::llama();
        let workload = Workload::Training(training());
        let one = total(&spec, &workload);
        let capacity = one + GIB / 4;
        let (seq, result) =
            longest_sequence(&spec, &workload, &Runtime::HOPPER, capacity).unwrap().unwrap();
        assert!(result.device_total_bytes <= capacity);
        let limit = spec.max_position_embeddings.unwrap();
        if seq < limit {
            let more = Workload::Training(Training { seq_len: seq + 1, ..training() });
            assert!(total(&spec, &more) > capacity, "seq {} still fits", seq + 1);
        }
        // With room to spare, the context window stops a rotary model (the
        // search says so through `context_limit`), as a learned table does.
        let (seq, _) =
            longest_sequence(&spec, &workload, &Runtime::HOPPER, u64::MAX).unwrap().unwrap();
        assert_eq!(Some(seq), context_limit(&spec, &workload));
        assert_eq!(seq, limit);
        let unbounded = ModelSpec { max_position_embeddings: None, ..spec.clone() };
        let (seq, _) =
            longest_sequence(&unbounded, &workload, &Runtime::HOPPER, u64::MAX).unwrap().unwrap();
        assert_eq!(seq, MAX_SEQUENCE);
        let learned =
            ModelSpec { positions: crate::spec::PositionEncoding::Learned, ..spec.clone() };
        let (seq, _) =
            longest_sequence(&learned, &workload, &Runtime::HOPPER, u64::MAX).unwrap().unwrap();
        assert_eq!(seq, limit);
        // Generation keeps the positions it feeds within the table: the prompt and
        // every generated token but the last (`generate()` never feeds the last).
        let generating = Workload::Inference(inference());
        let (prompt, _) =
            longest_sequence(&learned, &generating, &Runtime::HOPPER, u64::MAX).unwrap().unwrap();
        assert_eq!(prompt + 64 - 1, limit);
        let one_more = Workload::Inference(Inference { prompt_len: prompt + 1, ..inference() });
        assert!(estimate(&learned, &one_more, &Runtime::HOPPER).is_err());
    }

    #[test]
    fn nothing_fits_in_too_little_memory() {
        let spec = toy::llama();
        let workload = Workload::Training(training());
        assert!(largest_batch(&spec, &workload, &Runtime::HOPPER, GIB / 4).unwrap().is_none());
        let cluster = Cluster { capacity: GIB / 4, max_gpus: 16, gpus_per_node: 8 };
        assert!(fewest_gpus(&spec, &training(), &Runtime::HOPPER, &cluster).unwrap().is_none());
    }

    #[test]
    fn the_count_bound_skips_only_counts_that_cannot_fit() {
        // Brute force without the bound finds the same answer.
        let spec = toy::llama_8b();
        for (batch, divisor) in [(1, 3), (4, 20), (2, 2)] {
            let job = Training { batch_size: batch, ..training() };
            let single = total(&spec, &Workload::Training(job.clone()));
            let capacity = single - single / divisor;
            let cluster = Cluster { capacity, max_gpus: 32, gpus_per_node: 8 };
            let plan = fewest_gpus(&spec, &job, &Runtime::HOPPER, &cluster).unwrap();
            let brute = gpu_counts(&cluster).find_map(|(gpus, nodes)| {
                candidate_layouts(gpus, nodes, 8).into_iter().find(|layout| {
                    layout.validate(&spec).is_ok()
                        && total(
                            &spec,
                            &Workload::Training(Training { layout: *layout, ..job.clone() }),
                        ) <= capacity
                })
            });
            assert_eq!(plan.map(|p| p.layout), brute);
        }
    }

    #[test]
    fn the_fewest_gpus_are_tight() {
        let spec = toy::llama_8b();
        let job = Training { batch_size: 4, ..training() };
        let single = total(&spec, &Workload::Training(job.clone()));
        // A GPU a little smaller than the one-GPU job needs.
        let capacity = single - single / 20;
        let cluster = Cluster { capacity, max_gpus: 64, gpus_per_node: 8 };
        let plan = fewest_gpus(&spec, &job, &Runtime::HOPPER, &cluster).unwrap().unwrap();
        assert!(plan.layout.gpus > 1);
        assert!(plan.estimate.device_total_bytes <= capacity);
        // No layout of one GPU fewer fits.
        let fewer = plan.layout.gpus - 1;
        let nodes = if fewer <= 8 { 1 } else { fewer / 8 };
        for layout in candidate_layouts(fewer, nodes, 8) {
            if layout.validate(&spec).is_ok() {
                let t = total(&spec, &Workload::Training(Training { layout, ..job.clone() }));
                assert!(t > capacity, "{layout:?} fits on {fewer} GPUs");
            }
        }
    }

    #[test]
    fn qlora_is_spread_data_parallel_only() {
        let spec = toy::llama_8b();
        let job = Training {
            method: Method::Qlora,
            grad_checkpointing: true,
            lora: Some(crate::lora::LoraConfig {
                rank: 16,
                targets: crate::lora::LoraTargets::AllLinear,
                dora: false,
            }),
            ..training()
        };
        let single = total(&spec, &Workload::Training(job.clone()));
        for capacity in [single - single / 10, single / 2, single / 3] {
            let cluster = Cluster { capacity, max_gpus: 64, gpus_per_node: 8 };
            if let Some(plan) = fewest_gpus(&spec, &job, &Runtime::HOPPER, &cluster).unwrap() {
                assert_eq!((plan.layout.tp, plan.layout.pp), (1, 1), "{:?}", plan.layout);
            }
        }
    }

    #[test]
    fn layouts_are_valid_products_and_simplest_first() {
        let layouts = candidate_layouts(16, 2, 8);
        assert_eq!(layouts[0].strategy, Strategy::Ddp);
        assert_eq!((layouts[0].tp, layouts[0].pp), (1, 1));
        for layout in &layouts {
            assert_eq!(layout.gpus % (layout.tp * layout.pp), 0);
            assert!(layout.tp <= 8, "tensor parallelism crosses machines");
        }
        assert!(layouts.iter().any(|l| l.strategy == Strategy::Hybrid));
        assert!(!candidate_layouts(8, 1, 8).iter().any(|l| l.strategy == Strategy::Hybrid));
        assert_eq!(candidate_layouts(1, 1, 8), vec![Layout::SINGLE]);
        let counts: Vec<u64> = gpu_counts(&Cluster { capacity: 0, max_gpus: 40, gpus_per_node: 8 })
            .map(|c| c.0)
            .collect();
        assert_eq!(counts, vec![1, 2, 3, 4, 5, 6, 7, 8, 16, 24, 32, 40]);
    }

    #[test]
    fn layer_split_divides_the_allocator_memory() {
        let spec = toy::llama();
        let result = estimate(&spec, &Workload::Inference(inference()), &Runtime::HOPPER).unwrap();
        let capacity = result.device_total_bytes;
        assert_eq!(layer_split_gpus(&result, &spec, capacity), Some(1));
        let usable = (result.peak_reserved_bytes + result.outside_allocator_bytes).div_ceil(2);
        assert_eq!(layer_split_gpus(&result, &spec, usable + result.cuda_context_bytes), Some(2));
        // A GPU smaller than one layer's weights and cache: no split exists,
        // however many GPUs share the rest.
        let held: u64 = result
            .peak_parts()
            .iter()
            .filter(|p| p.name == "weights" || p.name == "kv cache")
            .map(|p| p.bytes)
            .sum();
        let one_layer = held / spec.num_layers();
        let too_small = result.cuda_context_bytes + one_layer - 1;
        assert_eq!(layer_split_gpus(&result, &spec, too_small), None);
    }
}
