//! Command-line types (clap). Parsing only: validation into core settings
//! happens in the commands, so that errors can name the flag at fault.

use clap::{Args, Parser, Subcommand, ValueEnum};
use vramfit_core::serving::llamacpp::LlamaCppSettings;
use vramfit_core::workload::{Inference, Training};

/// Will this model fit, on which GPUs, and how many?
///
/// vramfit estimates the GPU memory of running and training transformer models
/// from their architecture. MODEL is, in this order: a path to a `config.json`,
/// a model folder or a `.gguf` file; a catalog name or repo id (`vramfit
/// models`, works offline); a repo id in the local Hugging Face cache
/// (`HF_HUB_CACHE`, else `HF_HOME/hub`, else `~/.cache/huggingface/hub`); a
/// repo id on the Hub (`HF_ENDPOINT`, `HF_TOKEN`), unless --offline or
/// `HF_HUB_OFFLINE=1`. --verbose shows each step.
#[derive(Debug, Parser)]
#[command(name = "vramfit", version, propagate_version = true, max_term_width = 100)]
// Each global flag is an independent switch, as clap parses it.
#[allow(clippy::struct_excessive_bools)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
    /// Revision (branch, tag or commit) of a model read from the Hugging Face cache or the Hub [default: main].
    #[arg(long, global = true, value_name = "REV", help_heading = "Global options")]
    pub(crate) revision: Option<String>,
    /// Never use the network (as `HF_HUB_OFFLINE=1`): MODEL must be a path, a catalog name or cached.
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) offline: bool,
    /// Show how MODEL was resolved and each request made to the Hub (on stderr).
    #[arg(long, short = 'v', global = true, help_heading = "Global options")]
    pub(crate) verbose: bool,
    /// Exit with code 3 when the job does not fit the chosen --gpu (for CI and scripts).
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) check: bool,
    /// Make the warning about the workload an error (exit 2): a sequence past the model's context window.
    #[arg(long, global = true, help_heading = "Global options")]
    pub(crate) strict: bool,
    /// Seconds all of a run's Hub requests may take together.
    #[arg(long, global = true, value_name = "SECS", default_value_t = vramfit_sources::hub::HubLimits::default().deadline.as_secs(), help_heading = "Global options")]
    pub(crate) hub_deadline: u64,
    /// Hub requests a run may make (a checkpoint's headers take two per shard).
    #[arg(long, global = true, value_name = "N", default_value_t = vramfit_sources::hub::HubLimits::default().max_requests, help_heading = "Global options")]
    pub(crate) hub_max_requests: u64,
    /// Shards (safetensors or split GGUF files) a checkpoint read from the Hub may have.
    #[arg(long, global = true, value_name = "N", default_value_t = vramfit_sources::hub::HubLimits::default().max_shards, help_heading = "Global options")]
    pub(crate) hub_max_shards: u64,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// GPU memory of text generation (Hugging Face `generate()`: prefill, then decode with a KV cache).
    #[command(
        before_help = "Examples:\n  vramfit infer mistral-7b --dtype nf4 --batch-size 8 --prompt-len 4096 --gpu l4\n  vramfit infer llama-3.1-8b --engine vllm --gpu h100-80gb --tp 2\n  vramfit infer ./model-Q4_K_M.gguf --gpu rtx-4090      (a placeholder path: your .gguf)"
    )]
    Infer(InferArgs),
    /// GPU memory of one training step (full fine-tuning, LoRA or QLoRA, as the HF Trainer runs it).
    #[command(
        before_help = "Examples:\n  vramfit train llama-3.1-8b --method lora --grad-ckpt --gpu rtx-4090\n  vramfit train qwen2.5-7b --method qlora --seq-len 4096 --gpu a10g --check\n  vramfit train llama-3.1-70b --grad-ckpt --gpus 32 --nodes 4 --strategy zero3 --gpu h100-80gb"
    )]
    Train(TrainArgs),
    /// Exact parameter counts of a model, by component; with LoRA/DoRA, the trainable adapters.
    #[command(
        before_help = "Examples:\n  vramfit params llama-3.1-8b\n  vramfit params llama-3.1-8b --lora-r 16 --lora-targets q_proj,v_proj --dora"
    )]
    Params(ParamsArgs),
    /// How many GPUs, the largest batch, the longest sequence: on one GPU kind (--gpu) or across the catalog.
    #[command(
        before_help = "Examples:\n  vramfit fit llama-3.1-70b --method lora --grad-ckpt\n  vramfit fit llama-3.1-8b --mode infer --gpu l4\n  vramfit fit llama-3.1-8b --mode infer --engine vllm"
    )]
    Fit(FitArgs),
    /// The popular rules of thumb beside vramfit's estimate, for the same workload.
    #[command(
        before_help = "Examples:\n  vramfit rules llama-2-7b --mode train --gpu a100-80gb\n  vramfit rules mistral-7b --mode infer"
    )]
    Rules(RulesArgs),
    /// What a checkpoint stores (safetensors, sharded safetensors, GGUF), from its headers alone.
    #[command(
        before_help = "Examples:\n  vramfit inspect ./Llama-3.1-8B-Instruct/      (a placeholder path: your checkpoint folder)\n  vramfit inspect Qwen/Qwen2.5-7B-Instruct      (headers only, by HTTP range requests)"
    )]
    Inspect(InspectArgs),
    /// List the models embedded in vramfit (usable offline by name).
    Models(ModelsArgs),
    /// List the accelerators `--gpu` knows (or, with --local, this machine's).
    #[command(
        before_help = "Examples:\n  vramfit gpus --vendor amd\n  vramfit gpus --min-memory 48GiB\n  vramfit gpus --local"
    )]
    Gpus(GpusArgs),
    /// Compare estimates with measured peaks (JSON-lines files from the oracle or validation/).
    Accuracy(AccuracyArgs),
    /// Print a shell completion script (bash, zsh, fish, powershell, elvish) to stdout.
    Completions(CompletionsArgs),
    /// Print the man page (roff) to stdout: `vramfit man > vramfit.1`.
    Man,
}

#[derive(Debug, Args)]
pub(crate) struct ParamsArgs {
    /// Catalog name or id, or a path to a config.json or a model folder.
    #[arg(value_name = "MODEL")]
    pub(crate) model: String,
    #[command(flatten)]
    pub(crate) lora: LoraArgs,
    /// Print a JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "LoRA / DoRA adapters")]
pub(crate) struct LoraArgs {
    /// LoRA rank r (PEFT's default is 8). With `params`, any LoRA flag turns adapters on;
    /// `train` takes them with `--method lora` or `qlora` (which turn them on by themselves).
    #[arg(long = "lora-r", value_name = "R")]
    pub(crate) rank: Option<u64>,
    /// LoRA alpha (scales the update; does not change any count or byte).
    #[arg(long = "lora-alpha", value_name = "A")]
    pub(crate) alpha: Option<f64>,
    /// Adapted modules: comma-separated names (`q_proj,v_proj`) or `all-linear`
    /// (every linear layer but the output head) [default: all-linear].
    #[arg(long = "lora-targets", value_name = "NAMES|all-linear")]
    pub(crate) targets: Option<String>,
    /// DoRA: add a magnitude vector per adapted layer.
    #[arg(long)]
    pub(crate) dora: bool,
}

#[derive(Debug, Args)]
pub(crate) struct ModelsArgs {
    /// Only models of this family: a `model_type` prefix (`qwen3`, `gemma`) or
    /// part of the repository id (`kimi`, `devstral`); case is ignored.
    #[arg(long, value_name = "NAME")]
    pub(crate) family: Option<String>,
    /// Only models released in or after this year or month (`2025`, `2025-06`).
    #[arg(long, value_name = "YEAR[-MONTH]", value_parser = vramfit_sources::catalog::parse_since)]
    pub(crate) since: Option<String>,
    /// Print a JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct GpusArgs {
    /// List the accelerators of this machine (nvidia-smi, amd-smi or rocm-smi,
    /// sysctl on macOS, /proc/meminfo) instead of the catalog.
    #[arg(long)]
    pub(crate) local: bool,
    /// Print a JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
    #[command(flatten)]
    pub(crate) filter: GpuFilter,
}

/// Which catalog accelerators to list or search.
#[derive(Debug, Args)]
#[command(next_help_heading = "Catalog filters")]
pub(crate) struct GpuFilter {
    /// Only this vendor's accelerators: nvidia, amd, apple or intel.
    #[arg(long, value_name = "VENDOR", value_parser = parse_vendor)]
    pub(crate) vendor: Option<vramfit_sources::gpus::Vendor>,
    /// Only accelerators a job may use at least this much memory of (24GiB, 80GB;
    /// 2 % under is kept, as drivers report a little less than the stated size).
    #[arg(long, value_name = "SIZE", value_parser = parse_size_flag)]
    pub(crate) min_memory: Option<u64>,
}

fn parse_vendor(text: &str) -> Result<vramfit_sources::gpus::Vendor, String> {
    vramfit_sources::gpus::Vendor::parse(text)
        .ok_or_else(|| "expected one of nvidia, amd, apple, intel".to_owned())
}

fn parse_size_flag(text: &str) -> Result<u64, String> {
    vramfit_sources::gpus::parse_size(text).ok_or_else(|| {
        "expected a size with its unit: 24GiB, 80GB, 1.5TiB (GB = 10^9 bytes, GiB = 2^30)"
            .to_owned()
    })
}

/// Weight storage for inference.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum DtypeArg {
    Fp32,
    Bf16,
    Fp16,
    Fp8,
    Int8,
    Int4,
    Nf4,
}

/// KV-cache element type.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum KvDtypeArg {
    Fp32,
    Bf16,
    Fp16,
    Fp8,
    Int8,
}

/// Attention implementation (transformers' `attn_implementation`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum AttnArg {
    Eager,
    Sdpa,
    Flash,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum MethodArg {
    Full,
    Lora,
    Qlora,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum PrecisionArg {
    Fp32,
    Bf16,
    Fp16,
    Bf16Mixed,
    Fp16Mixed,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OptimizerArg {
    Adamw,
    #[value(name = "adamw-8bit")]
    Adamw8bit,
    #[value(name = "paged-adamw-8bit")]
    PagedAdamw8bit,
    Adafactor,
    Sgd,
    SgdMomentum,
    Lion,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OptimizerImplArg {
    Foreach,
    Fused,
    Forloop,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Workload")]
pub(crate) struct CommonArgs {
    /// Sequences per batch (per micro-batch when training).
    #[arg(long, default_value_t = Training::default().batch_size, value_name = "B")]
    pub(crate) batch_size: u64,
    /// Attention implementation.
    #[arg(long, value_enum, default_value_t = AttnArg::Sdpa)]
    pub(crate) attn: AttnArg,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Inference")]
pub(crate) struct InferFlags {
    /// Weight storage: floats, or quantized (fp8, LLM.int8, GPTQ/AWQ int4, bitsandbytes nf4).
    #[arg(long, value_enum, default_value_t = DtypeArg::Bf16)]
    pub(crate) dtype: DtypeArg,
    /// Prompt tokens per sequence.
    #[arg(long, default_value_t = Inference::default().prompt_len, value_name = "P")]
    pub(crate) prompt_len: u64,
    /// Generated tokens per sequence; 0 = one forward pass returning all logits.
    #[arg(long, default_value_t = Inference::default().gen_len, value_name = "G")]
    pub(crate) gen_len: u64,
    /// KV-cache type [default: the compute type].
    #[arg(long, value_enum)]
    pub(crate) kv_dtype: Option<KvDtypeArg>,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Training")]
pub(crate) struct TrainFlags {
    /// Fine-tuning method.
    #[arg(long, value_enum, default_value_t = MethodArg::Full)]
    pub(crate) method: MethodArg,
    /// Precision; `-mixed` = fp32 master weights with autocast (HF Trainer's `bf16=True`).
    #[arg(long, value_enum, default_value_t = PrecisionArg::Bf16Mixed)]
    pub(crate) precision: PrecisionArg,
    /// Optimizer.
    #[arg(long, value_enum, default_value_t = OptimizerArg::Adamw)]
    pub(crate) optimizer: OptimizerArg,
    /// Torch optimizer implementation (foreach is torch's default on CUDA).
    #[arg(long, value_enum, default_value_t = OptimizerImplArg::Foreach)]
    pub(crate) optimizer_impl: OptimizerImplArg,
    /// Tokens per sequence.
    #[arg(long, default_value_t = Training::default().seq_len, value_name = "S")]
    pub(crate) seq_len: u64,
    /// Micro-batches per optimizer step.
    #[arg(long, default_value_t = Training::default().grad_accum, value_name = "N")]
    pub(crate) grad_accum: u64,
    /// Gradient (activation) checkpointing of every decoder layer.
    #[arg(long)]
    pub(crate) grad_ckpt: bool,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Several GPUs")]
pub(crate) struct LayoutArgs {
    /// GPUs in all (data × tensor × pipeline parallel).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub(crate) gpus: u64,
    /// Machines the GPUs are spread over.
    #[arg(long, default_value_t = 1, value_name = "M")]
    pub(crate) nodes: u64,
    /// Data-parallel strategy.
    #[arg(long, value_enum, default_value_t = StrategyArg::Ddp)]
    pub(crate) strategy: StrategyArg,
    /// Tensor-parallel degree (Megatron-style column/row split).
    #[arg(long, default_value_t = 1, value_name = "T")]
    pub(crate) tp: u64,
    /// Pipeline-parallel stages (1F1B schedule; micro-batches = --grad-accum).
    #[arg(long, default_value_t = 1, value_name = "P")]
    pub(crate) pp: u64,
    /// Host offload: `optimizer` (ZeRO-Offload: states, step and gradient partitions; zero1/2/3)
    /// or `params` (also the sharded parameters; zero3, fsdp).
    #[arg(long, value_enum, default_value_t = OffloadArg::None)]
    pub(crate) offload: OffloadArg,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum StrategyArg {
    Ddp,
    Zero1,
    Zero2,
    Zero3,
    Fsdp,
    #[value(alias = "fsdp-sgo")]
    FsdpShardGradOp,
    Hybrid,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum OffloadArg {
    None,
    Optimizer,
    Params,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "GPU and runtime")]
pub(crate) struct RuntimeArgs {
    /// Check the fit on this accelerator: a catalog name (see `vramfit gpus`: h100-80gb,
    /// rtx-4090, mi300x, m2-max-96gb, …), a memory size for a generic CUDA GPU (24GiB,
    /// 80GB, 1.5TiB), or `local` for this machine's first accelerator. llama.cpp also
    /// takes several different GPUs, comma-separated (rtx-4090,rtx-3090).
    #[arg(long, value_name = "NAME|SIZE|local")]
    pub(crate) gpu: Option<String>,
    /// The memory a job may use on that accelerator (24GiB, 100GB): Apple's GPU working
    /// set after `sysctl iogpu.wired_limit_mb`, a unified-memory machine's GPU share, a
    /// MIG slice [default: the total; on Apple, Metal's working set].
    #[arg(long, value_name = "SIZE", requires = "gpu")]
    pub(crate) gpu_limit: Option<String>,
    /// Override the CUDA context size, MiB [default: 512].
    #[arg(long, value_name = "MIB")]
    pub(crate) cuda_context_mib: Option<u64>,
    /// Override the cuBLAS workspace, MiB (fractions allowed) [default: 32 on Hopper, 8.125 before].
    #[arg(long, value_name = "MIB")]
    pub(crate) cublas_workspace_mib: Option<f64>,
    /// Override the allocator's reserved-over-allocated overhead (fraction, e.g. 0.05).
    #[arg(long, value_name = "FRACTION")]
    pub(crate) reserved_overhead: Option<f64>,
    /// Whose kernels to model: cuda (what a GPU runs), or cpu / fake-cpu to reproduce
    /// a measurement made with PyTorch on the CPU or under fake tensors.
    #[arg(long, value_enum, default_value_t = KernelsArg::Cuda)]
    pub(crate) kernels: KernelsArg,
    /// Print a JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

/// Kernels modelled.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum KernelsArg {
    Cuda,
    Cpu,
    FakeCpu,
}

#[derive(Debug, Args)]
pub(crate) struct InferArgs {
    /// Catalog name or id, or a path to a config.json, a model folder or a .gguf file.
    #[arg(value_name = "MODEL")]
    pub(crate) model: String,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) infer: InferFlags,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) runtime: RuntimeArgs,
}

/// Which program runs the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum EngineArg {
    /// Hugging Face transformers' `generate()`.
    Transformers,
    /// vLLM's V1 engine (`vllm serve`, or the `LLM` class with --llm-class).
    Vllm,
    /// SGLang's runtime.
    Sglang,
    /// llama.cpp (`llama-server`, `llama-cli`).
    #[value(name = "llama.cpp", alias = "llamacpp")]
    LlamaCpp,
}

/// llama.cpp's KV-cache and weight types.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum GgmlTypeArg {
    F32,
    F16,
    Bf16,
    #[value(name = "q8_0")]
    Q8_0,
    #[value(name = "q5_1")]
    Q5_1,
    #[value(name = "q5_0")]
    Q5_0,
    #[value(name = "q4_1")]
    Q4_1,
    #[value(name = "q4_0")]
    Q4_0,
    #[value(name = "iq4_nl")]
    Iq4Nl,
}

/// On or off.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum Switch {
    On,
    Off,
}

#[derive(Debug, Args)]
#[command(next_help_heading = "Serving engines")]
#[expect(clippy::struct_excessive_bools, reason = "one field per engine switch")]
pub(crate) struct EngineArgs {
    /// The program that serves the model [default: transformers; llama.cpp for a GGUF model].
    /// vLLM and SGLang need --gpu: they size their KV cache from its memory.
    #[arg(long, value_enum)]
    pub(crate) engine: Option<EngineArg>,
    /// vLLM/SGLang: tensor-parallel GPUs (`--tensor-parallel-size`, `--tp`).
    #[arg(long, value_name = "T")]
    pub(crate) tp: Option<u64>,
    /// vLLM: fraction of the GPU the engine may use [default: 0.92].
    #[arg(long, help_heading = "vLLM and SGLang", value_name = "F")]
    pub(crate) gpu_memory_utilization: Option<f64>,
    /// SGLang: fraction of free memory for weights and KV cache [default: from the GPU's size].
    #[arg(long, help_heading = "vLLM and SGLang", value_name = "F")]
    pub(crate) mem_fraction_static: Option<f64>,
    /// vLLM/SGLang: longest request (`--max-model-len`, `--context-length`) [default: the model's].
    #[arg(long, help_heading = "vLLM and SGLang", value_name = "N")]
    pub(crate) max_model_len: Option<u64>,
    /// vLLM: tokens per scheduler step [default: 8192 on ≥70 GiB GPUs but A100, else 2048].
    #[arg(long, help_heading = "vLLM and SGLang", value_name = "N")]
    pub(crate) max_num_batched_tokens: Option<u64>,
    /// vLLM: requests per step [default: 1024 on ≥70 GiB GPUs but A100, else 256].
    #[arg(long, help_heading = "vLLM and SGLang", value_name = "N")]
    pub(crate) max_num_seqs: Option<u64>,
    /// vLLM `--block-size` / SGLang `--page-size`: tokens per KV page [default: 16 / 1].
    #[arg(long, help_heading = "vLLM and SGLang", value_name = "N")]
    pub(crate) block_size: Option<u64>,
    /// vLLM: the offline `LLM` class (larger batch defaults) instead of `vllm serve`.
    #[arg(long, help_heading = "vLLM and SGLang")]
    pub(crate) llm_class: bool,
    /// vLLM: CUDA-graph memory as its log reports it, MiB [default: estimated].
    #[arg(long, help_heading = "vLLM and SGLang", value_name = "MIB")]
    pub(crate) cuda_graph_mib: Option<u64>,
    /// llama.cpp `-c`: context cells [default: the model's training context, shrunk by --fit].
    #[arg(long, help_heading = "llama.cpp", value_name = "N")]
    pub(crate) ctx_size: Option<u64>,
    /// llama.cpp `-ngl`: layers on the GPU, the output layer first [default: all, lowered by --fit].
    #[arg(long, help_heading = "llama.cpp", value_name = "N")]
    pub(crate) n_gpu_layers: Option<u64>,
    /// llama.cpp `-b`: logical batch.
    #[arg(long, help_heading = "llama.cpp", default_value_t = LlamaCppSettings::default().n_batch, value_name = "N")]
    pub(crate) n_batch: u64,
    /// llama.cpp `-ub`: physical batch.
    #[arg(long, help_heading = "llama.cpp", default_value_t = LlamaCppSettings::default().n_ubatch, value_name = "N")]
    pub(crate) n_ubatch: u64,
    /// llama.cpp `-ctk`: K-cache type.
    #[arg(long, help_heading = "llama.cpp", value_enum, default_value_t = GgmlTypeArg::F16)]
    pub(crate) cache_type_k: GgmlTypeArg,
    /// llama.cpp `-ctv`: V-cache type (quantized types need flash attention).
    #[arg(long, help_heading = "llama.cpp", value_enum, default_value_t = GgmlTypeArg::F16)]
    pub(crate) cache_type_v: GgmlTypeArg,
    /// llama.cpp `-fa` (auto is on under CUDA).
    #[arg(long, help_heading = "llama.cpp", value_enum, default_value_t = Switch::On)]
    pub(crate) flash_attn: Switch,
    /// llama.cpp `-nkvo`: keep the KV cache in host memory.
    #[arg(long, help_heading = "llama.cpp")]
    pub(crate) no_kv_offload: bool,
    /// llama.cpp `--swa-full`: sliding-window layers cache the whole context.
    #[arg(long, help_heading = "llama.cpp")]
    pub(crate) swa_full: bool,
    /// llama.cpp `--fit off`: keep -c and -ngl even when they do not fit.
    #[arg(long, help_heading = "llama.cpp")]
    pub(crate) no_fit: bool,
    /// llama.cpp over several GPUs (`--gpu rtx-4090,rtx-3090`): each one's share of the
    /// layers, e.g. `3,1` [default: in proportion to each GPU's free memory].
    #[arg(long, value_name = "SHARES", value_delimiter = ',', help_heading = "llama.cpp")]
    pub(crate) tensor_split: Option<Vec<f64>>,
}

#[derive(Debug, Args)]
pub(crate) struct TrainArgs {
    /// Catalog name or id, or a path to a config.json or a model folder.
    #[arg(value_name = "MODEL")]
    pub(crate) model: String,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) train: TrainFlags,
    #[command(flatten)]
    pub(crate) lora: LoraArgs,
    #[command(flatten)]
    pub(crate) layout: LayoutArgs,
    #[command(flatten)]
    pub(crate) runtime: RuntimeArgs,
}

/// Which workload `rules` describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub(crate) enum ModeArg {
    Infer,
    Train,
}

/// Either workload's flags, for commands that take `--mode`.
#[derive(Debug, Args)]
pub(crate) struct WorkloadArgs {
    /// Catalog name or id, or a path to a config.json or a model folder.
    #[arg(value_name = "MODEL")]
    pub(crate) model: String,
    /// Training or inference.
    #[arg(long, value_enum, default_value_t = ModeArg::Train)]
    pub(crate) mode: ModeArg,
    #[command(flatten)]
    pub(crate) common: CommonArgs,
    #[command(flatten)]
    pub(crate) infer: InferFlags,
    #[command(flatten)]
    pub(crate) engine: EngineArgs,
    #[command(flatten)]
    pub(crate) train: TrainFlags,
    #[command(flatten)]
    pub(crate) lora: LoraArgs,
    #[command(flatten)]
    pub(crate) runtime: RuntimeArgs,
}

#[derive(Debug, Args)]
pub(crate) struct RulesArgs {
    #[command(flatten)]
    pub(crate) workload: WorkloadArgs,
}

#[derive(Debug, Args)]
pub(crate) struct FitArgs {
    #[command(flatten)]
    pub(crate) workload: WorkloadArgs,
    /// The most GPUs to consider (training layouts; tensor-parallel serving with --engine).
    #[arg(long, default_value_t = vramfit_core::solve::DEFAULT_MAX_GPUS, value_name = "N")]
    pub(crate) max_gpus: u64,
    /// GPUs per machine; larger counts come in whole machines.
    #[arg(long, default_value_t = vramfit_core::solve::DEFAULT_GPUS_PER_NODE, value_name = "N")]
    pub(crate) gpus_per_node: u64,
    #[command(flatten)]
    pub(crate) filter: GpuFilter,
}

#[derive(Debug, Args)]
pub(crate) struct InspectArgs {
    /// A .safetensors or .gguf file (a split GGUF by any of its files), a
    /// model.safetensors.index.json, or a folder holding one of them; or a Hub
    /// repo ORG/NAME (or one file of it, ORG/NAME/FILE.gguf), read with range requests.
    #[arg(value_name = "PATH")]
    pub(crate) path: std::path::PathBuf,
    /// Print a JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct AccuracyArgs {
    /// Measured JSON-lines files or folders of them [default: the measurements built into this binary, from the repository's validation/data].
    #[arg(value_name = "PATH")]
    pub(crate) paths: Vec<std::path::PathBuf>,
    /// Compare the serving engines with the start-up logs users published
    /// (validation/engine-logs/compare.jsonl, built in) instead.
    #[arg(long)]
    pub(crate) engines: bool,
    /// Print the report as Markdown (what docs/accuracy.md holds).
    #[arg(long)]
    pub(crate) markdown: bool,
    /// Print a JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Debug, Args)]
pub(crate) struct CompletionsArgs {
    /// The shell: `vramfit completions bash > /etc/bash_completion.d/vramfit`.
    #[arg(value_enum)]
    pub(crate) shell: clap_complete::Shell,
}

/// The command line as help, completions and the man page show it: flags a
/// subcommand always refuses are hidden from it (still parsed, so that the
/// refusal names them): `fit` searches `--tp` itself, and `rules` compares
/// transformers' estimate only, so the serving engines' flags are not its.
pub(crate) fn command() -> clap::Command {
    use clap::CommandFactory as _;
    let engine_flags: Vec<clap::Id> =
        <EngineArgs as Args>::augment_args(clap::Command::new("engine"))
            .get_arguments()
            .map(|arg| arg.get_id().clone())
            .collect();
    Cli::command()
        .mut_subcommand("fit", |fit| fit.mut_arg("tp", |arg| arg.hide(true)))
        .mut_subcommand("rules", |mut rules| {
            for id in &engine_flags {
                rules = rules.mut_arg(id, |arg| arg.hide(true));
            }
            rules
        })
}
