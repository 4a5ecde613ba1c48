//! The documents, one struct each, and the blocks they share.

use schemars::JsonSchema;
use serde::Serialize;
use vramfit_core::lora::{LoraConfig, LoraParams, LoraTargets};
use vramfit_core::memory::runtime::Runtime;
use vramfit_core::memory::{MemoryEstimate, Part};
use vramfit_core::parallel::Layout;
use vramfit_core::params::ParamCounts;
use vramfit_core::rules::{RuleEstimate, gpu_count};
use vramfit_core::serving::ServingEstimate;
use vramfit_core::solve::Plan;
use vramfit_core::workload::Workload;
use vramfit_sources::checkpoint::{Checkpoint, CheckpointFormat};
use vramfit_sources::gpus::Gpu;
use vramfit_sources::{CatalogEntry, ResolvedModel};

use crate::{MODELLED_VERSIONS, OrderedMap, SCHEMA_VERSION};

// ---------------------------------------------------------------- shared blocks

/// The model a document is about, with its `model_type`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ModelRef {
    /// What the user asked for.
    pub name: String,
    /// Where it was found (`catalog:ORG/NAME`, a path, `hf-cache:…`, `hub:…`).
    pub source: String,
    /// The config's `model_type`.
    pub model_type: String,
}

impl ModelRef {
    /// The resolved model's name, origin and type.
    pub fn new(model: &ResolvedModel) -> Self {
        ModelRef {
            name: model.name.clone(),
            source: model.origin.describe(),
            model_type: model.parsed.spec.model_type.clone(),
        }
    }
}

/// The model a search is about.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ModelName {
    /// What the user asked for.
    pub name: String,
    /// Where it was found.
    pub source: String,
}

impl ModelName {
    /// The resolved model's name and origin.
    pub fn new(model: &ResolvedModel) -> Self {
        ModelName { name: model.name.clone(), source: model.origin.describe() }
    }
}

/// A framework version the estimate models.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct FrameworkVersion {
    /// `torch`, `transformers`, `peft`, `bitsandbytes`.
    pub framework: String,
    /// Major and minor version.
    pub version: String,
}

fn modelled_versions() -> Vec<FrameworkVersion> {
    MODELLED_VERSIONS
        .iter()
        .map(|(framework, version)| FrameworkVersion {
            framework: (*framework).to_owned(),
            version: (*version).to_owned(),
        })
        .collect()
}

/// An engine's own command-line flag and the value vramfit assumed for it.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineFlag {
    /// The engine's flag (`--gpu-memory-utilization`, `-ngl`, …).
    pub flag: String,
    /// Its value.
    pub value: String,
}

fn engine_flags(settings: &[(String, String)]) -> Vec<EngineFlag> {
    settings
        .iter()
        .map(|(flag, value)| EngineFlag { flag: flag.clone(), value: value.clone() })
        .collect()
}

/// What a serving engine is asked to hold.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct RequestLoad {
    /// Requests served at once.
    pub concurrent_requests: u64,
    /// Tokens of one request: prompt plus generated.
    pub request_tokens: u64,
}

// ---------------------------------------------------------------- params

/// `params`: the model's shape.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ParamsModel {
    /// What the user asked for.
    pub name: String,
    /// Where it was found.
    pub source: String,
    /// The config's `model_type`.
    pub model_type: String,
    /// Decoder layers.
    pub num_layers: u64,
    /// Hidden size.
    pub hidden_size: u64,
    /// Vocabulary size.
    pub vocab_size: u64,
    /// The output head shares the token embeddings.
    pub tied_embeddings: bool,
}

/// `params`: the counts.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ParamsBlock {
    /// Parameters with the adapters, if any.
    pub total: u64,
    /// Trained parameters: the adapters with LoRA, else all.
    pub trainable: u64,
    /// The base model's parameters.
    pub base: u64,
    /// The base model's parameters by component, in the core's order.
    pub by_component: OrderedMap<u64>,
}

/// LoRA's targets: `"all-linear"` or module names.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum TargetsBlock {
    /// `"all-linear"`: every linear layer but the output head.
    AllLinear(String),
    /// Module names (`q_proj`, `v_proj`, …).
    Modules(Vec<String>),
}

impl From<&LoraTargets> for TargetsBlock {
    fn from(targets: &LoraTargets) -> Self {
        match targets {
            LoraTargets::AllLinear => TargetsBlock::AllLinear("all-linear".to_owned()),
            LoraTargets::Modules(names) => TargetsBlock::Modules(names.clone()),
        }
    }
}

/// `params`: the adapters PEFT would create.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct LoraBlock {
    /// Rank `r`.
    pub rank: u64,
    /// `lora_alpha`, when given (it changes no count).
    pub alpha: Option<f64>,
    /// Adapted modules.
    pub targets: TargetsBlock,
    /// DoRA's magnitude vectors too.
    pub dora: bool,
    /// Trainable adapter parameters.
    pub trainable: u64,
    /// Linear layers (and expert banks) adapted.
    pub adapted_layers: u64,
    /// Targets that match no module of this model.
    pub unmatched_targets: Vec<String>,
}

/// `vramfit params --json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ParamsDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The model.
    pub model: ParamsModel,
    /// Its parameters.
    pub params: ParamsBlock,
    /// The adapters, when asked for.
    pub lora: Option<LoraBlock>,
    /// How the config was read, where the user should know.
    pub warnings: Vec<String>,
}

impl ParamsDocument {
    /// The counts of `model`, with the adapters `lora` adds (its config, its
    /// counts and the `lora_alpha` given, if any).
    pub fn new(
        model: &ResolvedModel,
        counts: &ParamCounts,
        lora: Option<(&LoraConfig, &LoraParams, Option<f64>)>,
    ) -> Self {
        let spec = &model.parsed.spec;
        let adapters = lora.map_or(0, |(_, params, _)| params.trainable);
        ParamsDocument {
            schema_version: SCHEMA_VERSION,
            model: ParamsModel {
                name: model.name.clone(),
                source: model.origin.describe(),
                model_type: spec.model_type.clone(),
                num_layers: spec.num_layers(),
                hidden_size: spec.hidden_size,
                vocab_size: spec.vocab_size,
                tied_embeddings: spec.lm_head.tied,
            },
            params: ParamsBlock {
                total: counts.total + adapters,
                trainable: lora.map_or(counts.total, |(_, params, _)| params.trainable),
                base: counts.total,
                by_component: counts
                    .by_component
                    .iter()
                    .map(|(component, count)| (component.name(), *count))
                    .collect(),
            },
            lora: lora.map(|(config, params, alpha)| LoraBlock {
                rank: config.rank,
                alpha,
                targets: (&config.targets).into(),
                dora: config.dora,
                trainable: params.trainable,
                adapted_layers: params.adapted_layers,
                unmatched_targets: params.unmatched_targets.clone(),
            }),
            warnings: model.parsed.warnings.clone(),
        }
    }
}

// ---------------------------------------------------------------- train / infer

/// Parameters of an estimate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct ParamTotals {
    /// All parameters (adapters included).
    pub total: u64,
    /// Trained parameters.
    pub trainable: u64,
}

/// One phase's memory.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct PhaseBytes {
    /// `forward`, `backward.recompute`, `decode`, …
    pub name: String,
    /// Bytes held at its worst moment.
    pub bytes: u64,
}

/// An estimate's three levels, its peak and its components.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EstimateMemory {
    /// `torch.cuda.max_memory_allocated`.
    pub peak_allocated_bytes: u64,
    /// Live tensor bytes at the peak, each storage rounded to 512 B (what a
    /// CPU or fake-tensor measurement sees).
    pub tensor_peak_bytes: u64,
    /// `torch.cuda.max_memory_reserved`: with the allocator's cache.
    pub peak_reserved_bytes: u64,
    /// What `nvidia-smi` shows and what decides an out-of-memory error.
    pub device_total_bytes: u64,
    /// The CUDA context, outside the allocator.
    pub cuda_context_bytes: u64,
    /// Other memory outside PyTorch's allocator (NCCL).
    pub outside_allocator_bytes: u64,
    /// Memory offloaded to the host.
    pub host_bytes: u64,
    /// The phase where the peak falls.
    pub peak_phase: String,
    /// What the peak holds, each with its formula.
    pub components: Vec<Part>,
    /// Every phase's worst moment.
    pub phases: Vec<PhaseBytes>,
}

impl From<&MemoryEstimate> for EstimateMemory {
    fn from(result: &MemoryEstimate) -> Self {
        EstimateMemory {
            peak_allocated_bytes: result.peak_allocated_bytes,
            tensor_peak_bytes: result.tensor_peak_bytes,
            peak_reserved_bytes: result.peak_reserved_bytes,
            device_total_bytes: result.device_total_bytes,
            cuda_context_bytes: result.cuda_context_bytes,
            outside_allocator_bytes: result.outside_allocator_bytes,
            host_bytes: result.host_bytes,
            peak_phase: result.peak_phase.clone(),
            components: result.peak_parts().to_vec(),
            phases: result
                .phases
                .iter()
                .map(|phase| PhaseBytes { name: phase.name.clone(), bytes: phase.bytes })
                .collect(),
        }
    }
}

/// Whether the job fits a chosen GPU.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct GpuVerdict {
    /// The GPU's catalog name.
    pub name: String,
    /// The memory a job may use on it (Apple: Metal's working set; with
    /// `--gpu-limit`, that), which `fits` is decided against.
    pub memory_bytes: u64,
    /// The device total fits in it.
    pub fits: bool,
    /// Memory left (negative: missing).
    pub headroom_bytes: i128,
    /// Inference: GPUs for a layer-by-layer split. Training on one GPU: the
    /// fewest GPUs the `fit` search finds (null beyond it). Training already
    /// spread: null (the estimate is per GPU).
    pub gpus_needed: Option<u64>,
    /// The layout behind `gpus_needed` when training.
    pub plan: Option<Layout>,
}

/// `vramfit train --json` and `vramfit infer --json` (transformers).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EstimateDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The model.
    pub model: ModelRef,
    /// The job, as the core took it.
    pub workload: Workload,
    /// Its parameters.
    pub params: ParamTotals,
    /// Its memory, per GPU.
    pub memory: EstimateMemory,
    /// The runtime overheads assumed.
    pub runtime: Runtime,
    /// The verdict on `--gpu`, if one was chosen.
    pub gpu: Option<GpuVerdict>,
    /// What the estimate assumed or left out.
    pub notes: Vec<String>,
    /// How the config was read.
    pub warnings: Vec<String>,
    /// The framework versions modelled.
    pub modelled_versions: Vec<FrameworkVersion>,
}

impl EstimateDocument {
    /// The estimate `result` of `workload` on `model` under `runtime`.
    pub fn new(
        model: &ResolvedModel,
        workload: &Workload,
        result: &MemoryEstimate,
        runtime: &Runtime,
        gpu: Option<GpuVerdict>,
    ) -> Self {
        EstimateDocument {
            schema_version: SCHEMA_VERSION,
            model: ModelRef::new(model),
            workload: workload.clone(),
            params: ParamTotals { total: result.params_total, trainable: result.params_trainable },
            memory: result.into(),
            runtime: *runtime,
            gpu,
            notes: result.notes.clone(),
            warnings: model.parsed.warnings.clone(),
            modelled_versions: modelled_versions(),
        }
    }
}

// ---------------------------------------------------------------- engines

/// The engine and the flags vramfit assumed.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineBlock {
    /// `vllm`, `sglang`, `llama.cpp`.
    pub name: String,
    /// The release modelled.
    pub version: String,
    /// Its flags, as its command line takes them.
    pub settings: Vec<EngineFlag>,
}

/// An engine's memory.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineMemory {
    /// On each GPU (llama.cpp over several GPUs: on the one with the least memory left).
    pub device_total_bytes: u64,
    /// On the host.
    pub host_bytes: u64,
    /// The GPU's share, each with its formula.
    pub components: Vec<Part>,
    /// The host's share.
    pub host_components: Vec<Part>,
    /// llama.cpp over several GPUs (`--gpu a,b`): what each holds, in device
    /// order; empty on one GPU.
    pub devices: Vec<EngineDevice>,
}

/// One GPU of a model split layer by layer.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineDevice {
    /// The GPU's catalog name (or size).
    pub name: String,
    /// The memory llama.cpp sees on it (`cudaMemGetInfo`'s total where the
    /// catalog has it, else the driver's), which decides `fits`.
    pub memory_bytes: u64,
    /// Its share of the layers (`--tensor-split`, normalised).
    pub split: f64,
    /// Repeating layers on it.
    pub layers: u64,
    /// It holds the output layer.
    pub output_layer: bool,
    /// What it holds, each with its formula.
    pub components: Vec<Part>,
    /// Their sum.
    pub total_bytes: u64,
    /// The sum fits in its memory.
    pub fits: bool,
}

/// The KV cache an engine allocates.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct KvCacheBlock {
    /// Tokens it holds.
    pub capacity_tokens: u64,
    /// Requests of the longest length it holds at once, as the engine logs it.
    pub max_concurrency: Option<f64>,
    /// Requests of the asked length it holds at once.
    pub concurrency_at_request: f64,
}

/// Whether an engine starts on the chosen GPU.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineGpu {
    /// The GPU's catalog name (several GPUs: their names joined by commas).
    pub name: String,
    /// Its memory (several GPUs: that of the one with the least memory left).
    pub memory_bytes: u64,
    /// The engine starts and serves the load.
    pub fits: bool,
}

/// `vramfit infer --engine vllm|sglang|llama.cpp --json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The model.
    pub model: ModelRef,
    /// The engine.
    pub engine: EngineBlock,
    /// The load asked for.
    pub workload: RequestLoad,
    /// Its memory.
    pub memory: EngineMemory,
    /// Its KV cache.
    pub kv_cache: KvCacheBlock,
    /// The verdict on `--gpu`, if one was chosen.
    pub gpu: Option<EngineGpu>,
    /// What the estimate assumed or left out.
    pub notes: Vec<String>,
    /// How the config was read.
    pub warnings: Vec<String>,
}

impl EngineDocument {
    /// The engine estimate `estimate` of `model` under `load`, on `gpu` if
    /// chosen; with llama.cpp over several GPUs, `split` names them in device
    /// order (and `gpu` is the one with the least memory left).
    pub fn new(
        model: &ResolvedModel,
        estimate: &ServingEstimate,
        load: RequestLoad,
        gpu: Option<&Gpu>,
        split: &[Gpu],
    ) -> Self {
        EngineDocument {
            schema_version: SCHEMA_VERSION,
            model: ModelRef::new(model),
            engine: EngineBlock {
                name: estimate.engine.clone(),
                version: estimate.engine_version.clone(),
                settings: engine_flags(&estimate.settings),
            },
            workload: load,
            memory: EngineMemory {
                device_total_bytes: estimate.device_total_bytes,
                host_bytes: estimate.host_bytes,
                components: estimate.gpu_parts.clone(),
                host_components: estimate.host_parts.clone(),
                devices: estimate
                    .devices
                    .iter()
                    .zip(split)
                    .map(|(d, g)| EngineDevice {
                        name: g.name.clone(),
                        memory_bytes: d.memory_bytes,
                        split: d.split,
                        layers: d.layers,
                        output_layer: d.output_layer,
                        components: d.parts.clone(),
                        total_bytes: d.total_bytes,
                        fits: d.fits,
                    })
                    .collect(),
            },
            kv_cache: KvCacheBlock {
                capacity_tokens: estimate.kv_capacity_tokens,
                max_concurrency: estimate.max_concurrency,
                concurrency_at_request: estimate.concurrency_at_request,
            },
            gpu: gpu.map(|g| EngineGpu {
                name: if split.len() > 1 {
                    split.iter().map(|g| g.name.as_str()).collect::<Vec<_>>().join(",")
                } else {
                    g.name.clone()
                },
                memory_bytes: g.memory_bytes(),
                fits: estimate.fits,
            }),
            notes: estimate.notes.clone(),
            warnings: model.parsed.warnings.clone(),
        }
    }
}

/// The engine sweep's bound.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct EngineSearch {
    /// Most GPUs tried.
    pub max_gpus: u64,
}

/// One GPU of an engine sweep.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineAnswer {
    /// The GPU's catalog name.
    pub gpu: String,
    /// GPUs the engine needs (null: none within the search).
    pub gpus_needed: Option<u64>,
    /// The flags of the answer.
    pub settings: Option<Vec<EngineFlag>>,
    /// Memory on each GPU.
    pub device_total_bytes: Option<u64>,
    /// Memory on the host.
    pub host_bytes: Option<u64>,
    /// KV-cache tokens.
    pub kv_capacity_tokens: Option<u64>,
    /// Requests of the asked length held at once.
    pub concurrency_at_request: Option<f64>,
}

impl EngineAnswer {
    /// `gpu`'s answer: the GPUs needed and the estimate on them, if any.
    pub fn new(gpu: &Gpu, gpus_needed: Option<u64>, estimate: Option<&ServingEstimate>) -> Self {
        EngineAnswer {
            gpu: gpu.name.clone(),
            gpus_needed,
            settings: estimate.map(|e| engine_flags(&e.settings)),
            device_total_bytes: estimate.map(|e| e.device_total_bytes),
            host_bytes: estimate.map(|e| e.host_bytes),
            kv_capacity_tokens: estimate.map(|e| e.kv_capacity_tokens),
            concurrency_at_request: estimate.map(|e| e.concurrency_at_request),
        }
    }
}

/// `vramfit fit --engine vllm|sglang|llama.cpp --json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineSweepDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The model.
    pub model: ModelName,
    /// `vllm`, `sglang`, `llama.cpp`.
    pub engine: String,
    /// The load asked for.
    pub workload: RequestLoad,
    /// The search's bound.
    pub search: EngineSearch,
    /// One answer per GPU.
    pub answers: Vec<EngineAnswer>,
    /// Catalog devices the engine is not modelled on, by reason.
    pub left_out: Vec<SweepGroup>,
}

/// Catalog devices a sweep set apart for one reason.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct SweepGroup {
    /// Why.
    pub reason: String,
    /// Their `--gpu` names.
    pub gpus: Vec<String>,
}

// ---------------------------------------------------------------- fit

/// The fit search's bounds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FitSearch {
    /// Most GPUs tried.
    pub max_gpus: u64,
    /// GPUs per machine.
    pub gpus_per_node: u64,
}

/// How the GPUs share the job: a training layout, or transformers'
/// layer split (`"device_map=auto"`) for inference.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
#[serde(untagged)]
pub enum FitLayout {
    /// Training: the parallel layout.
    Layout(Layout),
    /// Inference: `"device_map=auto"`.
    DeviceMap(String),
}

/// The fewest GPUs of one kind.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct FitGpus {
    /// How many.
    pub gpus: u64,
    /// How they share the job.
    pub layout: FitLayout,
    /// Memory on each (null for a layer split over several).
    pub device_total_bytes_per_gpu: Option<u64>,
}

/// The largest batch that fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FitBatch {
    /// Sequences per (micro-)batch.
    pub batch_size: u64,
    /// Memory at that batch.
    pub device_total_bytes: u64,
}

/// The longest sequence (training) or prompt (inference) that fits.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FitSequence {
    /// Tokens.
    pub tokens: u64,
    /// Memory at that length.
    pub device_total_bytes: u64,
    /// The search stopped at the model's context window, not at the GPU's
    /// memory: longer would still fit.
    pub at_context_window: bool,
}

/// One GPU kind's answer.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct FitAnswer {
    /// The GPU's catalog name.
    pub gpu: String,
    /// Its memory.
    pub memory_bytes: u64,
    /// The fewest GPUs (null: none within the search).
    pub gpus_needed: Option<FitGpus>,
    /// The largest batch on them.
    pub largest_batch: Option<FitBatch>,
    /// The longest sequence on them.
    pub longest_sequence: Option<FitSequence>,
}

impl FitAnswer {
    /// `gpu`'s answer from the searches' results; `training` decides how the
    /// GPUs share the job; `context_limit` is where the sequence search stops
    /// ([`vramfit_core::solve::context_limit`]).
    pub fn new(
        gpu: &Gpu,
        plan: Option<&Plan>,
        batch: Option<&(u64, MemoryEstimate)>,
        sequence: Option<&(u64, MemoryEstimate)>,
        training: bool,
        context_limit: Option<u64>,
    ) -> Self {
        FitAnswer {
            gpu: gpu.name.clone(),
            memory_bytes: gpu.memory_bytes(),
            gpus_needed: plan.map(|p| FitGpus {
                gpus: p.layout.gpus,
                layout: if training {
                    FitLayout::Layout(p.layout)
                } else {
                    FitLayout::DeviceMap("device_map=auto".to_owned())
                },
                device_total_bytes_per_gpu: (training || p.layout.gpus == 1)
                    .then_some(p.estimate.device_total_bytes),
            }),
            largest_batch: batch.map(|(batch_size, e)| FitBatch {
                batch_size: *batch_size,
                device_total_bytes: e.device_total_bytes,
            }),
            longest_sequence: sequence.map(|(tokens, e)| FitSequence {
                tokens: *tokens,
                device_total_bytes: e.device_total_bytes,
                at_context_window: Some(*tokens) == context_limit,
            }),
        }
    }
}

/// `vramfit fit --json` (transformers).
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct FitDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The model.
    pub model: ModelName,
    /// The job searched around.
    pub workload: Workload,
    /// The search's bounds.
    pub search: FitSearch,
    /// One answer per GPU kind.
    pub answers: Vec<FitAnswer>,
    /// The model's context window in tokens (`max_position_embeddings`,
    /// rope-scaled where the config says so), where the sequence search stops.
    pub context_window: Option<u64>,
    /// How the config was read, and a workload past the context window.
    pub warnings: Vec<String>,
    /// Catalog devices left out because they cannot run the job, by reason.
    pub left_out: Vec<SweepGroup>,
    /// Devices answered although no source says they run a feature the job
    /// uses, by feature.
    pub unchecked: Vec<SweepGroup>,
}

// ---------------------------------------------------------------- rules

/// vramfit's own figures beside the rules.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct VramfitTotals {
    /// What decides an out-of-memory error.
    pub device_total_bytes: u64,
    /// `torch.cuda.max_memory_allocated`.
    pub peak_allocated_bytes: u64,
}

/// GPUs a rule asks for.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct RuleGpuCount {
    /// The rule's name.
    pub rule: String,
    /// GPUs its figure fills (rounded up).
    pub gpus: u64,
}

/// The rules on a chosen GPU.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct RulesGpu {
    /// The GPU's catalog name.
    pub name: String,
    /// Each rule's count.
    pub rule_gpu_counts: Vec<RuleGpuCount>,
    /// vramfit's count from its device total.
    pub vramfit_gpus: u64,
}

/// `vramfit rules --json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct RulesDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// Where the model was found.
    pub model: String,
    /// vramfit's figures.
    pub vramfit: VramfitTotals,
    /// The rules of thumb, with their sources.
    pub rules: Vec<RuleEstimate>,
    /// The counts on `--gpu`, if one was chosen.
    pub gpu: Option<RulesGpu>,
}

impl RulesDocument {
    /// The rules beside vramfit's `result` for `model`, on `gpu` if chosen.
    pub fn new(
        model: &ResolvedModel,
        result: &MemoryEstimate,
        rules: Vec<RuleEstimate>,
        gpu: Option<&Gpu>,
    ) -> Self {
        let vramfit_total = result.device_total_bytes;
        let gpu = gpu.map(|g| RulesGpu {
            name: g.name.clone(),
            rule_gpu_counts: rules
                .iter()
                .map(|r| RuleGpuCount {
                    rule: r.name.to_owned(),
                    gpus: gpu_count(r.bytes, g.memory_bytes()),
                })
                .collect(),
            vramfit_gpus: gpu_count(vramfit_total, g.memory_bytes()),
        });
        RulesDocument {
            schema_version: SCHEMA_VERSION,
            model: model.origin.describe(),
            vramfit: VramfitTotals {
                device_total_bytes: vramfit_total,
                peak_allocated_bytes: result.peak_allocated_bytes,
            },
            rules,
            gpu,
        }
    }
}

// ---------------------------------------------------------------- inspect

/// Totals of one element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct TypeBlock {
    /// Tensors.
    pub tensors: u64,
    /// Elements.
    pub elements: u64,
    /// Stored bytes.
    pub bytes: u64,
}

/// Totals of one packed storage format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, JsonSchema)]
pub struct FormatBlock {
    /// Packed weights.
    pub weights: u64,
    /// Parameters they hold.
    pub logical_parameters: u64,
    /// Their stored bytes.
    pub stored_bytes: u64,
    /// Scales, zero points and other auxiliary tensors.
    pub auxiliary_bytes: u64,
}

/// vramfit's count for the `config.json` beside a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ConfigCheck {
    /// The config read.
    pub path: String,
    /// vramfit's count from it.
    pub params_total: u64,
    /// It equals the checkpoint's logical parameters.
    pub matches: bool,
}

/// `vramfit inspect --json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct InspectDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// What the user named.
    pub path: String,
    /// `safetensors` or `gguf`.
    pub format: String,
    /// The files read.
    pub files: Vec<String>,
    /// Tensors.
    pub tensors: u64,
    /// Stored bytes.
    pub stored_bytes: u64,
    /// Parameters, seen through packing.
    pub logical_parameters: u64,
    /// Scales and other auxiliary bytes.
    pub auxiliary_bytes: u64,
    /// GGUF tensors of a type this build does not know.
    pub unknown_type_tensors: u64,
    /// Totals per element type.
    pub by_type: OrderedMap<TypeBlock>,
    /// Totals per packed format (safetensors).
    pub by_format: OrderedMap<FormatBlock>,
    /// GGUF metadata shown.
    pub metadata: OrderedMap<String>,
    /// vramfit's count for a `config.json` beside it.
    pub config: Option<ConfigCheck>,
}

impl InspectDocument {
    /// `checkpoint`, as `path` named it, with vramfit's count of the config
    /// beside it (its path and total) if there is one.
    pub fn new(path: &str, checkpoint: &Checkpoint, config: Option<(String, u64)>) -> Self {
        InspectDocument {
            schema_version: SCHEMA_VERSION,
            path: path.to_owned(),
            format: match checkpoint.format {
                CheckpointFormat::Safetensors => "safetensors",
                CheckpointFormat::Gguf => "gguf",
            }
            .to_owned(),
            files: checkpoint.files.iter().map(|f| f.display().to_string()).collect(),
            tensors: checkpoint.tensors,
            stored_bytes: checkpoint.stored_bytes,
            logical_parameters: checkpoint.logical_parameters,
            auxiliary_bytes: checkpoint.auxiliary_bytes,
            unknown_type_tensors: checkpoint.unknown_type_tensors,
            by_type: checkpoint
                .by_type
                .iter()
                .map(|(name, t)| {
                    (
                        name.clone(),
                        TypeBlock { tensors: t.tensors, elements: t.elements, bytes: t.bytes },
                    )
                })
                .collect(),
            by_format: checkpoint
                .by_format
                .iter()
                .map(|(name, t)| {
                    (
                        *name,
                        FormatBlock {
                            weights: t.weights,
                            logical_parameters: t.logical_parameters,
                            stored_bytes: t.stored_bytes,
                            auxiliary_bytes: t.auxiliary_bytes,
                        },
                    )
                })
                .collect(),
            metadata: checkpoint.metadata.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            config: config.map(|(path, total)| ConfigCheck {
                path,
                params_total: total,
                matches: total == checkpoint.logical_parameters,
            }),
        }
    }
}

// ---------------------------------------------------------------- catalogs

/// One catalog model.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ModelEntry {
    /// The Hugging Face repo id.
    pub id: String,
    /// Short names.
    pub aliases: Vec<String>,
    /// Year and month of the first public release (`2025-07`).
    pub release: String,
    /// The memory estimates vramfit makes for it: `all`, `generate` (transformers'
    /// `generate()` only), or `none` (its parameters only; every memory command
    /// says what is not modelled).
    pub memory: String,
    /// The config's `model_type`.
    pub model_type: String,
    /// vramfit's count.
    pub params_total: u64,
    /// The count its model card or checkpoint publishes.
    pub published_params: u64,
    /// `exact` or how it was rounded.
    pub published_params_precision: String,
}

impl ModelEntry {
    /// `entry`, read as `model_type` with `params_total` parameters, whose
    /// memory vramfit estimates as `memory` says (`all`, `generate`, `none`).
    pub fn new(entry: &CatalogEntry, model_type: &str, params_total: u64, memory: &str) -> Self {
        ModelEntry {
            id: entry.id.clone(),
            aliases: entry.aliases.clone(),
            release: entry.release.clone(),
            memory: memory.to_owned(),
            model_type: model_type.to_owned(),
            params_total,
            published_params: entry.published_params,
            published_params_precision: entry.published_params_precision.clone(),
        }
    }
}

/// `vramfit models --json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct ModelsDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The embedded catalog.
    pub models: Vec<ModelEntry>,
}

/// One catalog accelerator.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct GpuEntry {
    /// Its `--gpu` name.
    pub name: String,
    /// Other names `--gpu` takes for it.
    pub aliases: Vec<String>,
    /// `nvidia`, `amd`, `apple` or `intel`.
    pub vendor: String,
    /// What drives it: `cuda`, `rocm`, `metal`, `xpu` or `gaudi`.
    pub platform: String,
    /// The vendor's name.
    pub display: String,
    /// Total memory, bytes (on unified-memory machines, the whole RAM).
    pub memory_bytes: u64,
    /// The same in MiB.
    pub memory_mib: u64,
    /// Where the total comes from: `driver` (the driver's reported total),
    /// `spec` (the vendor's stated capacity), `given` (typed as a size) or
    /// `local` (read from this machine).
    pub memory_from: String,
    /// What a job may use, bytes: Metal's working set on Apple silicon, the
    /// `--gpu-limit` if given, else the total.
    pub usable_bytes: u64,
    /// What CUDA itself reports (nvidia-smi's total less its Reserved line), MiB.
    pub cuda_total_mib: Option<u64>,
    /// CPU and GPU share one memory.
    pub unified_memory: bool,
    /// Peak memory bandwidth, GB/s (10⁹ bytes per second); null where not known.
    pub bandwidth_gbs: Option<f64>,
    /// Architecture.
    pub arch: String,
    /// NVIDIA's compute capability.
    pub compute_capability: Option<String>,
    /// AMD's LLVM target.
    pub gfx_target: Option<String>,
    /// Native bf16 (null: not known).
    pub bf16: Option<bool>,
    /// FP8 (null: not known).
    pub fp8: Option<bool>,
    /// FlashAttention-2 kernels (null: not known).
    pub flash_attention_2: Option<bool>,
    /// bitsandbytes (null: not known).
    pub bitsandbytes: Option<bool>,
    /// One citation per figure.
    pub sources: Vec<String>,
}

impl From<&Gpu> for GpuEntry {
    fn from(g: &Gpu) -> Self {
        GpuEntry {
            name: g.name.clone(),
            aliases: g.aliases.clone(),
            vendor: g.vendor.name().to_owned(),
            platform: g.platform.name().to_owned(),
            display: g.display.clone(),
            memory_bytes: g.total_bytes(),
            memory_mib: g.memory_mib,
            memory_from: match g.memory_from {
                vramfit_sources::gpus::MemoryFrom::Driver => "driver",
                vramfit_sources::gpus::MemoryFrom::Spec => "spec",
                vramfit_sources::gpus::MemoryFrom::Given => "given",
                vramfit_sources::gpus::MemoryFrom::Local => "local",
            }
            .to_owned(),
            usable_bytes: g.memory_bytes(),
            cuda_total_mib: g.cuda_total_mib,
            unified_memory: g.unified_memory,
            bandwidth_gbs: (g.bandwidth_gbs > 0.0).then_some(g.bandwidth_gbs),
            arch: g.arch.clone(),
            compute_capability: g.compute_capability.clone(),
            gfx_target: g.gfx_target.clone(),
            bf16: g.bf16,
            fp8: g.fp8,
            flash_attention_2: g.flash_attention_2,
            bitsandbytes: g.bitsandbytes,
            sources: g.sources.clone(),
        }
    }
}

/// `vramfit gpus --json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct GpusDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The embedded catalog, filtered; with `--local`, this machine's accelerators.
    pub gpus: Vec<GpuEntry>,
    /// With `--local`: what was asked of this machine.
    pub local: Option<LocalProbe>,
}

/// What `vramfit gpus --local` asked of this machine.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct LocalProbe {
    /// The tool that listed the accelerators, if one did.
    pub tool: Option<String>,
    /// Each tool tried that listed none, and why.
    pub tried: Vec<String>,
    /// The machine's RAM, bytes, where it could be read.
    pub ram_bytes: Option<u64>,
}

// ---------------------------------------------------------------- accuracy

/// One measured case against vramfit's estimate.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct AccuracyCase {
    /// The record's id.
    pub id: String,
    /// The model family.
    pub family: String,
    /// `inference`, `full`, `lora`, `qlora`, …
    pub mode: String,
    /// The measured live-tensor peak.
    pub measured_bytes: u64,
    /// vramfit's tensor peak.
    pub estimated_bytes: u64,
    /// (estimate − measured) / measured.
    pub error: f64,
    /// Where vramfit puts the peak.
    pub phase: String,
    /// Where the measurement found it.
    pub measured_where: String,
}

/// The errors summarized.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct AccuracySummary {
    /// Cases compared.
    pub cases: usize,
    /// Median of |error|.
    pub median_abs_error: f64,
    /// 90th percentile of |error|.
    pub p90_abs_error: f64,
    /// Largest |error|.
    pub max_abs_error: f64,
}

/// `vramfit accuracy --json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct AccuracyDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The level compared.
    pub level: String,
    /// Every case.
    pub cases: Vec<AccuracyCase>,
    /// Their summary.
    pub summary: AccuracySummary,
    /// Records not compared, with the reason.
    pub skipped: Vec<String>,
}

// ---------------------------------------------------------------- engine logs

/// One logged figure of a serving engine against vramfit's.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineLogCase {
    /// The record's id.
    pub id: String,
    /// `vllm`, `sglang` or `llama.cpp`.
    pub engine: String,
    /// The engine release that printed the log, as far as it is known.
    pub engine_version: String,
    /// `weights`, `activation`, `kv_cache_bytes`, `kv_tokens`, `max_concurrency`, `compute_buffer`.
    pub figure: String,
    /// What the engine printed, in bytes (tokens, or a ratio, for those figures).
    pub logged: f64,
    /// vramfit's figure, in the same unit.
    pub estimated: f64,
    /// (estimated − logged) / logged.
    pub error: f64,
    /// Why the two differ, where that is known.
    pub explained: Option<String>,
    /// Where the log was published.
    pub source: String,
    /// The log line, verbatim.
    pub line: String,
}

/// One engine's figure over all records.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineLogSummary {
    /// The engine.
    pub engine: String,
    /// The figure.
    pub figure: String,
    /// How many logged values.
    pub figures: usize,
    /// Median of |error|.
    pub median_abs_error: f64,
    /// Largest |error|.
    pub max_abs_error: f64,
}

/// `vramfit accuracy --engines --json`.
#[derive(Clone, Debug, PartialEq, Serialize, JsonSchema)]
pub struct EngineLogDocument {
    /// [`SCHEMA_VERSION`].
    pub schema_version: u32,
    /// The records compared.
    pub source: String,
    /// Every figure.
    pub cases: Vec<EngineLogCase>,
    /// By engine and figure.
    pub summary: Vec<EngineLogSummary>,
}
