//! Command-line types (clap). Parsing only: validation into core settings
//! happens in the commands, so that errors can name the flag at fault.

use clap::{Args, Parser, Subcommand};

/// Will this model fit, on which GPUs, and how many?
///
/// vramfit estimates the GPU memory of running and training transformer models
/// from their architecture, offline. MODEL is a catalog name
/// (`vramfit models`), a Hugging Face repo id in the catalog, a path to a
/// `config.json`, or a folder holding one.
#[derive(Debug, Parser)]
#[command(name = "vramfit", version, propagate_version = true, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Debug, Subcommand)]
pub(crate) enum Command {
    /// Exact parameter counts of a model, by component; with LoRA/DoRA, the trainable adapters.
    Params(ParamsArgs),
    /// List the models embedded in vramfit (usable offline by name).
    Models(ModelsArgs),
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
    /// LoRA rank r (PEFT's default is 8). Any LoRA flag turns adapters on.
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
    /// Print a JSON document instead of a table.
    #[arg(long)]
    pub(crate) json: bool,
}
