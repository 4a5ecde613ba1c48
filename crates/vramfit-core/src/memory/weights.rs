/*!
Bytes of parameters, gradients and optimizer states.

Parameters are listed one tensor at a time (each is its own allocation, so
each is rounded up to the allocator's 512-byte block), from the same
inventory the parameter count uses.
*/

use crate::dtype::{FloatType, WeightFormat, linear_weight_bytes};
use crate::memory::trace::rounded;
use crate::params::{Entry, visit_entries};
use crate::spec::ModelSpec;
use crate::workload::{Optimizer, OptimizerImpl};

/// One parameter tensor: its element count, how many such tensors exist,
/// and, for linear weights, the `out × in` shape quantization acts on.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ParamTensor {
    pub(crate) numel: u128,
    pub(crate) count: u128,
    /// `(rows, cols)` of a linear weight outside the output head.
    pub(crate) quantizable: Option<(u64, u64)>,
}

/// Every parameter tensor of the model (tied weights once).
pub(crate) fn param_tensors(spec: &ModelSpec) -> Vec<ParamTensor> {
    let mut tensors = Vec::new();
    visit_entries(spec, |_, entry, occurrences| match entry {
        Entry::Linear { linear, output_head, tied_weight } => {
            let count = u128::from(linear.copies) * u128::from(occurrences);
            if !tied_weight {
                tensors.push(ParamTensor {
                    numel: u128::from(linear.in_features) * u128::from(linear.out_features),
                    count,
                    quantizable: (!output_head)
                        .then_some((linear.out_features, linear.in_features)),
                });
            }
            if linear.bias {
                tensors.push(ParamTensor {
                    numel: u128::from(linear.out_features),
                    count,
                    quantizable: None,
                });
            }
        }
        Entry::Tensor(tensor) => tensors.push(ParamTensor {
            numel: u128::from(tensor.numel),
            count: u128::from(occurrences),
            quantizable: None,
        }),
    });
    tensors
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
        tensors.iter().map(|t| 512 * t.count).sum()
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
                    let per_tensor = if t.numel >= BNB_MIN_8BIT_SIZE {
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
                    let per_tensor = match t.quantizable {
                        Some((rows, cols)) => {
                            rounded(u128::from(rows) * 4) + rounded(u128::from(cols) * 4)
                        }
                        None => rounded(t.numel * 4),
                    };
                    per_tensor * t.count
                })
                .sum();
            // Per parameter: the fp32 update and its factored approximation, plus
            // fp32 copies of the gradient and parameter when training in 16 bits.
            let largest_fp32 = largest_bytes(tensors, FloatType::F32);
            let copies = if ty == FloatType::F32 { 2 } else { 4 };
            OptimizerBytes { states, paged_states: 0, step_temporaries: copies * largest_fp32 }
        }
    }
}
