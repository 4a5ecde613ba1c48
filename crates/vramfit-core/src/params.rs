/*!
Exact parameter counts.

The count is the number of unique parameters transformers instantiates for a
config, as `sum(p.numel() for p in model.parameters())` reports it (PyTorch
deduplicates shared parameters, so tied embeddings count once). Buffers such as
rotary frequencies or causal masks are not parameters and are not counted.

All arithmetic is checked: a spec whose count does not fit in `u64` gives
[`CoreError::Overflow`] instead of a wrapped number.
*/

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::spec::{Component, FeedForward, Linear, ModelSpec, Tensor};

/// One parameter-holding entry of a spec, as seen by the visitors below.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Entry<'a> {
    /// A linear layer (LoRA-able); `output_head` marks `lm_head`-like layers
    /// that PEFT's `all-linear` skips, `tied_weight` those whose weight is the
    /// embedding table's.
    Linear { linear: &'a Linear, output_head: bool, tied_weight: bool },
    /// Any other parameter tensor.
    Tensor(&'a Tensor),
}

/// Calls `visit(component, entry, occurrences)` for every parameter entry of
/// the spec; `occurrences` is how many times the entry exists in the model
/// (the number of layers of its group, or its count in an extra module).
pub(crate) fn visit_entries<'a>(
    spec: &'a ModelSpec,
    mut visit: impl FnMut(Component, Entry<'a>, u64),
) {
    for tensor in &spec.embeddings {
        visit(Component::Embeddings, Entry::Tensor(tensor), 1);
    }
    for group in &spec.layers {
        let layer = &group.layer;
        let n = group.count;
        for linear in &layer.attention.projections {
            visit(Component::Attention, plain(linear), n);
        }
        for tensor in &layer.attention.tensors {
            visit(Component::Attention, Entry::Tensor(tensor), n);
        }
        match &layer.feed_forward {
            FeedForward::Dense { linears, .. } => {
                for linear in linears {
                    visit(Component::Mlp, plain(linear), n);
                }
            }
            FeedForward::Moe(moe) => {
                for linear in &moe.expert_linears {
                    visit(Component::Experts, plain(linear), n);
                }
                for tensor in &moe.expert_tensors {
                    visit(Component::Experts, Entry::Tensor(tensor), n);
                }
                for linear in &moe.router_linears {
                    visit(Component::Router, plain(linear), n);
                }
                for tensor in &moe.router_tensors {
                    visit(Component::Router, Entry::Tensor(tensor), n);
                }
                for linear in &moe.shared {
                    visit(Component::SharedExperts, plain(linear), n);
                }
            }
        }
        for tensor in &layer.norms {
            visit(Component::Norms, Entry::Tensor(tensor), n);
        }
    }
    for tensor in &spec.final_norm {
        visit(Component::Norms, Entry::Tensor(tensor), 1);
    }
    let head = &spec.lm_head;
    visit(
        Component::LmHead,
        Entry::Linear { linear: &head.linear, output_head: true, tied_weight: head.tied },
        1,
    );
    if let Some(additional) = &head.additional {
        // IDEFICS' `lm_head.additional_fc` is a child `nn.Linear` of the head: PEFT's
        // `all-linear` skips only the module `get_output_embeddings()` returns, so it is adapted.
        visit(
            Component::LmHead,
            Entry::Linear { linear: additional, output_head: false, tied_weight: false },
            1,
        );
    }
    for module in &spec.extra_modules {
        for (linear, count) in &module.linears {
            visit(module.component, plain(linear), *count);
        }
        for (tensor, count) in &module.tensors {
            visit(module.component, Entry::Tensor(tensor), *count);
        }
    }
}

fn plain(linear: &Linear) -> Entry<'_> {
    Entry::Linear { linear, output_head: false, tied_weight: false }
}

/// Checked `a × b`, naming what overflowed.
pub(crate) fn mul(a: u64, b: u64, what: &'static str) -> Result<u64, CoreError> {
    a.checked_mul(b).ok_or(CoreError::Overflow { what })
}

/// Checked `a + b`, naming what overflowed.
pub(crate) fn add(a: u64, b: u64, what: &'static str) -> Result<u64, CoreError> {
    a.checked_add(b).ok_or(CoreError::Overflow { what })
}

/// Parameters of one linear layer: `in × out` weights plus `out` bias
/// elements, times its copies. A tied weight contributes only its bias.
pub(crate) fn linear_params(linear: &Linear, tied_weight: bool) -> Result<u64, CoreError> {
    const WHAT: &str = "linear layer parameters";
    let weight = if tied_weight { 0 } else { mul(linear.in_features, linear.out_features, WHAT)? };
    let bias = if linear.bias { linear.out_features } else { 0 };
    mul(add(weight, bias, WHAT)?, linear.copies, WHAT)
}

/// Parameter counts of a model, in elements (not bytes).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct ParamCounts {
    /// Unique parameters of the model (tied weights once).
    pub total: u64,
    /// Parameters by component; components without parameters are left out.
    pub by_component: BTreeMap<Component, u64>,
    /// Elements in the weight matrices of linear layers outside the output
    /// head: what weight-only quantization (bitsandbytes, GPTQ, AWQ) converts.
    pub linear_weights: u64,
}

/// Counts the parameters of `spec` exactly.
pub fn count_params(spec: &ModelSpec) -> Result<ParamCounts, CoreError> {
    const WHAT: &str = "parameter count";
    let mut by_component = BTreeMap::new();
    let mut linear_weights = 0u64;
    let mut result = Ok(());
    visit_entries(spec, |component, entry, occurrences| {
        if result.is_err() {
            return;
        }
        let step = (|| {
            let per_occurrence = match entry {
                Entry::Linear { linear, output_head, tied_weight } => {
                    if !output_head {
                        let weights = mul(linear.in_features, linear.out_features, WHAT)?;
                        let weights = mul(mul(weights, linear.copies, WHAT)?, occurrences, WHAT)?;
                        linear_weights = add(linear_weights, weights, WHAT)?;
                    }
                    linear_params(linear, tied_weight)?
                }
                Entry::Tensor(tensor) => tensor.numel,
            };
            let amount = mul(per_occurrence, occurrences, WHAT)?;
            let slot = by_component.entry(component).or_insert(0u64);
            *slot = add(*slot, amount, WHAT)?;
            Ok(())
        })();
        result = step;
    });
    result?;
    by_component.retain(|_, count| *count > 0);
    let total = by_component.values().try_fold(0u64, |sum, count| add(sum, *count, WHAT))?;
    Ok(ParamCounts { total, by_component, linear_weights })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::{self, H, I, V};

    #[test]
    fn llama_count_by_hand() {
        let counts = count_params(&toy::llama()).unwrap();
        // q and o: 64×64; k and v: 64×32; MLP: 3 × 64×176; two RMSNorms per layer.
        let attention = 2 * (2 * H * H + 2 * H * 32);
        let mlp = 2 * (3 * H * I);
        let norms = 2 * 2 * H + H;
        assert_eq!(counts.by_component[&Component::Attention], attention);
        assert_eq!(counts.by_component[&Component::Mlp], mlp);
        assert_eq!(counts.by_component[&Component::Norms], norms);
        assert_eq!(counts.by_component[&Component::Embeddings], V * H);
        assert_eq!(counts.by_component[&Component::LmHead], V * H);
        assert_eq!(counts.total, attention + mlp + norms + 2 * V * H);
        assert_eq!(counts.linear_weights, attention + mlp);
    }

    #[test]
    fn tied_head_counts_once_but_keeps_its_bias() {
        let mut spec = toy::llama();
        let untied = count_params(&spec).unwrap().total;
        spec.lm_head.tied = true;
        assert_eq!(count_params(&spec).unwrap().total, untied - V * H);
        spec.lm_head.linear.bias = true;
        assert_eq!(count_params(&spec).unwrap().total, untied - V * H + V);
    }

    #[test]
    fn moe_counts_experts_and_router() {
        let counts = count_params(&toy::mixtral()).unwrap();
        assert_eq!(counts.by_component[&Component::Experts], 4 * 3 * 32 * H);
        assert_eq!(counts.by_component[&Component::Router], 4 * H);
        assert!(!counts.by_component.contains_key(&Component::Mlp));
    }

    #[test]
    fn absurd_sizes_overflow_into_an_error_not_a_wrapped_number() {
        let mut spec = toy::llama();
        spec.layers[0].count = u64::MAX / 2;
        assert!(matches!(count_params(&spec), Err(CoreError::Overflow { .. })));
        let mut spec = toy::llama();
        spec.lm_head.linear.out_features = u64::MAX;
        assert!(matches!(count_params(&spec), Err(CoreError::Overflow { .. })));
    }
}
