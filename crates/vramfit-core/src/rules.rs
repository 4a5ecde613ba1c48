/*!
The rules of thumb people use instead of an estimator, computed exactly as
they are usually stated, so `vramfit rules` can show them beside vramfit's
estimate and the accuracy report can score them on measured cases.

Each rule names its source. They ignore, variously, the KV cache,
activations, logits, the optimizer's temporaries, the CUDA context and the
allocator — which is why they disagree with each other and with measurements.
*/

use serde::{Deserialize, Serialize};

use crate::workload::Method;

/// A rule of thumb's estimate.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct RuleEstimate {
    /// Short name.
    pub name: &'static str,
    /// The formula as usually written.
    pub formula: &'static str,
    /// Where it comes from.
    pub source: &'static str,
    /// Its answer in bytes.
    pub bytes: u64,
}

/// What the rules take: counts and a few shapes.
#[derive(Clone, Copy, Debug)]
pub struct RuleInputs {
    /// Total parameters.
    pub params: u64,
    /// Trainable parameters (LoRA adapters, or all).
    pub trainable: u64,
    /// Bytes per parameter of the weights as run (2 for bf16, 0.5 for 4-bit ...), ×1000.
    pub weight_millibytes: u64,
    /// Micro-batch size.
    pub batch: u64,
    /// Tokens per sequence.
    pub seq: u64,
    /// Hidden size.
    pub hidden: u64,
    /// Decoder layers.
    pub layers: u64,
}

fn scaled(value: f64) -> u64 {
    #[expect(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        reason = "non-negative, far below 2^64"
    )]
    let bytes = value.max(0.0).round() as u64;
    bytes
}

/// The inference rules.
pub fn inference_rules(inputs: &RuleInputs) -> Vec<RuleEstimate> {
    let p = inputs.params as f64;
    let bytes_per_param = inputs.weight_millibytes as f64 / 1000.0;
    vec![
        RuleEstimate {
            name: "fp16 weights + 25 %",
            formula: "params × 2 B × 1.25",
            source: "common blog rule (fp16 weights plus a quarter for KV cache and overhead)",
            bytes: scaled(p * 2.0 * 1.25),
        },
        RuleEstimate {
            name: "fp16 weights",
            formula: "params × 2 B",
            source: "accelerate estimate-memory (weights only, at fp16/bf16)",
            bytes: scaled(p * 2.0),
        },
        RuleEstimate {
            name: "weights × 1.2",
            formula: "params × bytes per param × 1.2",
            source: "'M = P × 4B / (32/Q) × 1.2' (Substratus/“Calculating GPU memory for serving LLMs”)",
            bytes: scaled(p * bytes_per_param * 1.2),
        },
    ]
}

/// The training rules for `method`: the full fine-tuning ones, or the one for
/// adapters on a frozen fp16 (LoRA) or 4-bit (QLoRA) base.
pub fn training_rules(inputs: &RuleInputs, method: Method) -> Vec<RuleEstimate> {
    let p = inputs.params as f64;
    let t = inputs.trainable as f64;
    let activations_2bshl =
        2.0 * inputs.batch as f64 * inputs.seq as f64 * inputs.hidden as f64 * inputs.layers as f64;
    match method {
        Method::Lora => {
            return vec![RuleEstimate {
                name: "LoRA: frozen fp16 + 18 B/trainable",
                formula: "params × 2 × 1.25 + trainable × 18 × 1.25",
                source: "common LoRA rule (frozen fp16 base, mixed-precision AdamW on adapters, +25 %)",
                bytes: scaled(p * 2.0 * 1.25 + t * 18.0 * 1.25),
            }];
        }
        Method::Qlora => {
            return vec![RuleEstimate {
                name: "QLoRA: NF4 0.55 B/param + 18 B/trainable",
                formula: "params × 0.55 × 1.25 + trainable × 18 × 1.25",
                source: "the LoRA rule with the base at NF4's ≈ 0.55 B/param, as web fine-tuning calculators count it (e.g. inventivehq's)",
                bytes: scaled(p * 0.55 * 1.25 + t * 18.0 * 1.25),
            }];
        }
        Method::Full => {}
    }
    vec![
        RuleEstimate {
            name: "18 B/param + 25 %",
            formula: "params × 18 B × 1.25",
            source: "HF 'Anatomy of model training': 18 B/param for mixed-precision AdamW, plus a quarter",
            bytes: scaled(p * 18.0 * 1.25),
        },
        RuleEstimate {
            name: "fp32 weights",
            formula: "params × 4 B",
            source: "the weights alone in fp32",
            bytes: scaled(p * 4.0),
        },
        RuleEstimate {
            name: "model states + activations",
            formula: "(2 + 4 + 8) × params + b·s·h·L × 2 B",
            source: "fp16 weights, fp32 grads, Adam states, one activation per layer (popular blog form)",
            bytes: scaled(14.0 * p + activations_2bshl),
        },
        RuleEstimate {
            name: "mixed precision + activations",
            formula: "(6 + 4 + 12) B × params + 2·tokens·h·L",
            source: "fp32+fp16 weights, fp32 grads, fp32 Adam with master copy (ZeRO paper accounting)",
            bytes: scaled(22.0 * p + activations_2bshl),
        },
        RuleEstimate {
            name: "Adam ≈ 4 × weights",
            formula: "params × bytes per param × 4",
            source: "accelerate estimate-memory's training figure",
            bytes: scaled(p * inputs.weight_millibytes as f64 / 1000.0 * 4.0),
        },
    ]
}

/// The GPU-count rule: `ceil(estimate / GPU memory)`.
pub fn gpu_count(estimate_bytes: u64, gpu_bytes: u64) -> u64 {
    estimate_bytes.div_ceil(gpu_bytes.max(1))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn inputs() -> RuleInputs {
        RuleInputs {
            params: 1_000_000_000,
            trainable: 10_000_000,
            weight_millibytes: 2000,
            batch: 1,
            seq: 1000,
            hidden: 1000,
            layers: 10,
        }
    }

    #[test]
    fn rules_compute_as_written() {
        let infer = inference_rules(&inputs());
        assert_eq!(infer[0].bytes, 2_500_000_000);
        assert_eq!(infer[1].bytes, 2_000_000_000);
        assert_eq!(infer[2].bytes, 2_400_000_000);
        let train = training_rules(&inputs(), Method::Full);
        assert_eq!(train[0].bytes, 22_500_000_000);
        assert_eq!(train[1].bytes, 4_000_000_000);
        assert_eq!(train[2].bytes, 14_000_000_000 + 20_000_000);
        assert_eq!(train[3].bytes, 22_000_000_000 + 20_000_000);
        assert_eq!(train[4].bytes, 8_000_000_000);
        let lora = training_rules(&inputs(), Method::Lora);
        assert_eq!(lora.len(), 1);
        assert_eq!(lora[0].bytes, 2_500_000_000 + 225_000_000);
        let qlora = training_rules(&inputs(), Method::Qlora);
        assert_eq!(qlora.len(), 1);
        assert_eq!(qlora[0].bytes, 687_500_000 + 225_000_000);
        assert_eq!(gpu_count(81, 80), 2);
        assert_eq!(gpu_count(80, 80), 1);
    }
}
