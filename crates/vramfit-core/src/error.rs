//! Errors of the pure core.

/// Why the core could not compute something.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CoreError {
    /// A count or byte total does not fit in 64 bits: the input is absurd.
    #[error("{what} overflows 64 bits: the model or workload is too large to be real")]
    Overflow {
        /// What was being computed.
        what: &'static str,
    },
    /// A workload setting that cannot be run, naming the setting.
    #[error("invalid {setting}: {reason}")]
    InvalidWorkload {
        /// The setting (as the CLI flag names it, e.g. `--batch-size`).
        setting: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// A LoRA setting that PEFT would reject.
    #[error("invalid LoRA setting: {reason}")]
    InvalidLora {
        /// What is wrong, in the user's terms.
        reason: String,
    },
}
