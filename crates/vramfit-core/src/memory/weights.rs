/*!
Bytes of parameters, gradients and optimizer states.

Parameters are listed one tensor at a time (each is its own allocation, so
each is rounded up to the allocator's 512-byte block), from the same
inventory the parameter count uses.
*/

use crate::dtype::{FloatType, WeightFormat, linear_weight_bytes};
use crate::memory::trace::rounded;
use crate::params::{Entry, visit_entries};
use crate::spec::{Component, ModelSpec};
use crate::workload::{Optimizer, OptimizerImpl};

/// One parameter tensor: its element count, how many such tensors exist,
/// and, for linear weights, the `out × in` shape quantization acts on.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ParamTensor {
    pub(crate) numel: u128,
    pub(crate) count: u128,
    /// `(rows, cols)` of a linear weight outside the output head.
    pub(crate) quantizable: Option<(u64, u64)>,
    /// For a 2-D weight, `(rows, cols)`: the sizes of Adafactor's factored statistics
    /// (`exp_avg_sq_row` over `shape[:-1]`, `exp_avg_sq_col` over `shape[-1:]`).
    pub(crate) factored: Option<(u128, u128)>,
    /// An `nn.Embedding` table.
    pub(crate) embedding: bool,
    /// Part of a vision tower or projector: a text-only batch never runs it.
    pub(crate) vision: bool,
    /// A fused bank of expert weights (`experts.gate_up_proj`, `experts.down_proj`,
    /// one matrix per expert in one parameter): transformers never quantizes it,
    /// llama.cpp and the serving engines store it like any linear weight.
    pub(crate) expert_bank: bool,
}

/// Every parameter tensor of the model (tied weights once).
pub(crate) fn param_tensors(spec: &ModelSpec) -> Vec<ParamTensor> {
    let hidden = u128::from(spec.hidden_size);
    let mut tensors = Vec::new();
    visit_entries(spec, |component, entry, occurrences| {
        let first = tensors.len();
        param_entry(&mut tensors, hidden, component, entry, occurrences);
        for tensor in &mut tensors[first..] {
            tensor.vision = component == Component::Vision;
        }
    });
    tensors
}

fn param_entry(
    tensors: &mut Vec<ParamTensor>,
    hidden: u128,
    component: Component,
    entry: Entry<'_>,
    occurrences: u64,
) {
    match entry {
        Entry::Linear { linear, output_head, tied_weight } => {
            let count = u128::from(linear.copies) * u128::from(occurrences);
            if !tied_weight {
                tensors.push(ParamTensor {
                    numel: u128::from(linear.in_features) * u128::from(linear.out_features),
                    count,
                    quantizable: (!output_head)
                        .then_some((linear.out_features, linear.in_features)),
                    factored: Some((
                        u128::from(linear.out_features),
                        u128::from(linear.in_features),
                    )),
                    embedding: false,
                    vision: false,
                    expert_bank: false,
                });
            }
            if linear.bias {
                tensors.push(ParamTensor {
                    numel: u128::from(linear.out_features),
                    count,
                    ..ParamTensor::default()
                });
            }
        }
        Entry::Tensor(tensor) => {
            let numel = u128::from(tensor.numel);
            // Token and position tables: `rows × hidden` matrices.
            let table = component == Component::Embeddings && hidden > 0 && numel % hidden == 0;
            tensors.push(ParamTensor {
                numel,
                count: u128::from(occurrences),
                quantizable: None,
                factored: table.then(|| (numel / hidden, hidden)),
                embedding: table,
                vision: false,
                expert_bank: component == Component::Experts && !tensor.name.ends_with("bias"),
            });
        }
    }
}

/// Bytes of all weights stored in `format`; tensors that are not quantized
/// (embeddings, norms, biases, the output head) are kept in `other`.
pub(crate) fn weight_bytes(
    tensors: &[ParamTensor],
    format: WeightFormat,
    other: FloatType,
) -> Option<u128> {
    let mut total = 0u128;
    for tensor in tensors {
        let one = match (tensor.quantizable, format) {
            (Some((rows, cols)), WeightFormat::Float(float)) => {
                u128::from(linear_weight_bytes(rows, cols, WeightFormat::Float(float))?)
            }
            (Some((rows, cols)), quantized) => {
                u128::from(linear_weight_bytes(rows, cols, quantized)?)
            }
            (None, _) => tensor.numel * u128::from(other.bytes()),
        };
        total += rounded(one) * tensor.count;
    }
    Some(total)
}

/// Bytes of one copy of `tensors` in `ty` (gradients, one optimizer state).
pub(crate) fn copy_bytes(tensors: &[ParamTensor], ty: FloatType) -> u128 {
    tensors.iter().map(|t| rounded(t.numel * u128::from(ty.bytes())) * t.count).sum()
}

/// The largest single tensor in `ty`.
pub(crate) fn largest_bytes(tensors: &[ParamTensor], ty: FloatType) -> u128 {
    tensors.iter().map(|t| rounded(t.numel * u128::from(ty.bytes()))).max().unwrap_or(0)
}

/// Optimizer memory on the GPU: persistent states and the step's temporaries.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct OptimizerBytes {
    /// States kept between steps, in the caching allocator.
    pub(crate) states: u128,
    /// States in paged (unified) memory: on the device, outside the allocator.
    pub(crate) paged_states: u128,
    /// Extra memory during `optimizer.step()`.
    pub(crate) step_temporaries: u128,
}

/// bitsandbytes 8-bit optimizers keep tensors smaller than this in 32 bits
/// (`min_8bit_size=4096` in `bitsandbytes.optim.optimizer.Optimizer8bit`).
const BNB_MIN_8BIT_SIZE: u128 = 4096;
/// bitsandbytes' block-wise state quantization: one fp32 absmax per 256
/// elements (`Optimizer2State.init_state`, `blocksize = 256`).
const BNB_STATE_BLOCK: u128 = 256;

/// The optimizer's memory for `tensors` trained in `ty`.
///
/// Sources: `torch/optim/adamw.py` and `sgd.py` (torch 2.11: states are
/// `zeros_like(param)`, so in the parameter's type; the `foreach` AdamW step
/// makes `exp_avg_sq_sqrt = _foreach_sqrt(exp_avg_sqs)`, one temporary as
/// large as all parameters; the for-loop step makes `exp_avg_sq.sqrt()` and
/// its quotient for one parameter at a time; `fused` works in place; the
/// `step` counters of foreach/for-loop live on the CPU);
/// `bitsandbytes/optim/optimizer.py` (8-bit and Lion states);
/// `transformers/optimization.py` `Adafactor.step` (factored row/column
/// statistics in fp32, per-parameter fp32 temporaries).
pub(crate) fn optimizer_bytes(
    optimizer: Optimizer,
    implementation: OptimizerImpl,
    tensors: &[ParamTensor],
    ty: FloatType,
) -> OptimizerBytes {
    let one_state = copy_bytes(tensors, ty);
    let largest = largest_bytes(tensors, ty);
    let fused_steps = if implementation == OptimizerImpl::Fused {
        // Fused kernels keep the step counter on the GPU: one small tensor per parameter.
        tensors.iter().map(|t| u128::from(crate::dtype::ALLOCATOR_BLOCK) * t.count).sum()
    } else {
        0
    };
    let torch_temporary = |full: u128| match implementation {
        OptimizerImpl::Foreach => full,
        OptimizerImpl::Forloop => 2 * largest,
        OptimizerImpl::Fused => 0,
    };
    match optimizer {
        Optimizer::Adamw => OptimizerBytes {
            states: 2 * one_state + fused_steps,
            paged_states: 0,
            step_temporaries: torch_temporary(one_state),
        },
        Optimizer::SgdMomentum => {
            OptimizerBytes { states: one_state + fused_steps, paged_states: 0, step_temporaries: 0 }
        }
        Optimizer::Sgd => OptimizerBytes::default(),
        Optimizer::Lion => OptimizerBytes {
            states: copy_bytes(tensors, FloatType::F32),
            paged_states: 0,
            step_temporaries: 0,
        },
        Optimizer::Adamw8bit | Optimizer::PagedAdamw8bit => {
            let states: u128 = tensors
                .iter()
                .map(|t| {
                    // The HF Trainer keeps embeddings' states in 32 bits
                    // (`register_module_override(nn.Embedding, "weight", {"optim_bits": 32})`).
                    let per_tensor = if t.numel >= BNB_MIN_8BIT_SIZE && !t.embedding {
                        2 * (rounded(t.numel) + rounded(t.numel.div_ceil(BNB_STATE_BLOCK) * 4))
                    } else {
                        2 * rounded(t.numel * 4)
                    };
                    per_tensor * t.count
                })
                .sum();
            if optimizer == Optimizer::PagedAdamw8bit {
                OptimizerBytes { states: 0, paged_states: states, step_temporaries: 0 }
            } else {
                OptimizerBytes { states, paged_states: 0, step_temporaries: 0 }
            }
        }
        Optimizer::Adafactor => {
            // Matrices keep a row and a column statistic; vectors a full second moment.
            let states: u128 = tensors
                .iter()
                .map(|t| {
                    let per_tensor = match t.factored {
                        Some((rows, cols)) => rounded(rows * 4) + rounded(cols * 4),
                        None => rounded(t.numel * 4),
                    };
                    per_tensor * t.count
                })
                .sum();
            // `Adafactor.step` works one parameter at a time: the fp32 update (`grad**2 + eps`)
            // and its factored approximation, plus fp32 copies of the gradient and of the
            // parameter when they are 16-bit (`grad.float()`, `p.float()`).
            let largest_fp32 = largest_bytes(tensors, FloatType::F32);
            let copies = if ty == FloatType::F32 { 2 } else { 4 };
            OptimizerBytes { states, paged_states: 0, step_temporaries: copies * largest_fp32 }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::{self, H, I, V};

    fn tensors() -> Vec<ParamTensor> {
        param_tensors(&toy::llama())
    }

    #[test]
    fn tensors_cover_every_parameter_once() {
        let total: u128 = tensors().iter().map(|t| t.numel * t.count).sum();
        let counted = crate::params::count_params(&toy::llama()).unwrap().total;
        assert_eq!(total, u128::from(counted));
        // Embedding and head are the two V × H tables; the embedding is marked as one.
        assert_eq!(tensors().iter().filter(|t| t.embedding).count(), 1);
    }

    #[test]
    fn adamw_keeps_two_states_and_foreach_one_full_temporary() {
        let t = tensors();
        let one = copy_bytes(&t, FloatType::F32);
        let foreach = optimizer_bytes(Optimizer::Adamw, OptimizerImpl::Foreach, &t, FloatType::F32);
        assert_eq!(foreach.states, 2 * one);
        assert_eq!(foreach.step_temporaries, one);
        let fused = optimizer_bytes(Optimizer::Adamw, OptimizerImpl::Fused, &t, FloatType::F32);
        assert_eq!(fused.step_temporaries, 0);
        // Fused keeps one 512-byte step counter per tensor on the GPU.
        let tensor_count: u128 = t.iter().map(|t| t.count).sum();
        assert_eq!(fused.states, 2 * one + 512 * tensor_count);
        // The for-loop step's temporaries: `sqrt` and its quotient of the largest tensor (V × H).
        let forloop = optimizer_bytes(Optimizer::Adamw, OptimizerImpl::Forloop, &t, FloatType::F32);
        assert_eq!(forloop.step_temporaries, 2 * rounded(u128::from(V * H) * 4));
    }

    #[test]
    fn sgd_lion_and_bf16_states() {
        let t = tensors();
        assert_eq!(
            optimizer_bytes(Optimizer::Sgd, OptimizerImpl::Foreach, &t, FloatType::F32),
            OptimizerBytes::default()
        );
        let momentum =
            optimizer_bytes(Optimizer::SgdMomentum, OptimizerImpl::Foreach, &t, FloatType::Bf16);
        assert_eq!(momentum.states, copy_bytes(&t, FloatType::Bf16));
        // bitsandbytes' Lion keeps its state in fp32 whatever the parameter type.
        let lion = optimizer_bytes(Optimizer::Lion, OptimizerImpl::Foreach, &t, FloatType::Bf16);
        assert_eq!(lion.states, copy_bytes(&t, FloatType::F32));
    }

    #[test]
    fn eight_bit_adam_blocks_small_tensors_and_embeddings() {
        let t = tensors();
        let states =
            optimizer_bytes(Optimizer::Adamw8bit, OptimizerImpl::Foreach, &t, FloatType::F32)
                .states;
        let expected: u128 = t
            .iter()
            .map(|t| {
                let per = if t.numel >= 4096 && !t.embedding {
                    2 * (rounded(t.numel) + rounded(t.numel.div_ceil(256) * 4))
                } else {
                    2 * rounded(t.numel * 4)
                };
                per * t.count
            })
            .sum();
        assert_eq!(states, expected);
        // The q projection (64 × 64 = 4,096 elements) is 8-bit: 4,096 B per state + 16 absmax;
        // everything together is below two fp32 copies.
        assert!(states < 2 * copy_bytes(&t, FloatType::F32));
        let paged =
            optimizer_bytes(Optimizer::PagedAdamw8bit, OptimizerImpl::Foreach, &t, FloatType::F32);
        assert_eq!((paged.states, paged.paged_states), (0, states));
    }

    #[test]
    fn adafactor_factors_matrices() {
        let t = tensors();
        let states =
            optimizer_bytes(Optimizer::Adafactor, OptimizerImpl::Forloop, &t, FloatType::F32)
                .states;
        // Each row and column statistic is its own fp32 tensor (512-byte blocks): per layer
        // q, k, v, o (≤ 64 rows/cols: 512 + 512 each), gate and up (176 rows: 1,024 + 512),
        // down (1,024 for its 176 columns + 512), two norm vectors; the embedding and the
        // head (1,000 rows: 4,096 + 512 each); the final norm.
        let rows_cols = |n: u64| rounded(u128::from(n) * 4);
        let per_layer = 4 * (512 + 512)
            + 2 * (rows_cols(I) + rows_cols(H))
            + (rows_cols(H) + rows_cols(I))
            + 2 * rows_cols(H);
        let expected = 2 * per_layer + 2 * (rows_cols(V) + rows_cols(H)) + rows_cols(H);
        assert_eq!(states, expected);
    }
}
