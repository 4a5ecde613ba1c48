/*!
Trainable parameters of LoRA and DoRA adapters, as PEFT 0.21 creates them on
transformers 5 models.

- **Linear layers.** LoRA (Hu et al. 2021, arXiv 2106.09685) adds to each
  adapted linear of `in × out` weights `A: in → r` and `B: r → out`, so
  `r · (in + out)` trainable parameters (`peft.tuners.lora.layer.Linear`;
  `bias="none"` adds no bias). DoRA (Liu et al. 2024, arXiv 2402.09353) adds a
  magnitude vector of `out` elements per adapted layer (`DoraLinearLayer`).
- **Target names.** A target matches a module whose name is the target (PEFT
  also accepts dotted suffixes; vramfit matches their last component).
  `all-linear` is resolved, as PEFT does, to the names of every linear (and
  GPT-2 `Conv1D`) layer except the output head
  (`tuners_utils._maybe_include_all_linear_layers`), and then matched by name.
- **Fused experts.** transformers 5 stores MoE experts as 3-D parameters. For
  the model types of [`PeftMoeNames`](crate::spec::PeftMoeNames), PEFT redirects the transformers-4 names
  (`w1`/`w3`/`w2`/`gate`, or `gate_proj`/`up_proj`/`down_proj`/`gate`) to
  those parameters (`utils/transformers_weight_conversion.py`,
  `_convert_peft_config_moe`) and removes them from the module targets, so a
  dense MLP or shared expert of the same names gets no adapter. Each adapted
  parameter of shape `[E, a, b]` gets `A: b → r·E` and `B: r·E → a`, i.e.
  `r · E · (a + b)` parameters, a 2-D router weight `r · (E + H)`
  (`lora.layer.ParamWrapper.update_layer`); the fused `gate_up_proj` gets rank
  `2r` (its `rank_pattern`). DoRA does not support these wrappers: PEFT raises.
*/

use serde::{Deserialize, Serialize};

use crate::error::CoreError;
use crate::params::{Entry, add, mul, visit_entries};
use crate::spec::{FeedForward, ModelSpec};

/// Which modules get adapters.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum LoraTargets {
    /// PEFT's `"all-linear"`: every linear layer but the output head.
    #[serde(rename = "all-linear")]
    AllLinear,
    /// Module names (`q_proj`, `v_proj`, ...).
    Modules(Vec<String>),
}

/// A LoRA or DoRA adapter setting.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct LoraConfig {
    /// Rank `r` of the update matrices.
    pub rank: u64,
    /// Adapted modules.
    pub targets: LoraTargets,
    /// DoRA: adds a magnitude vector per adapted layer.
    pub dora: bool,
}

/// PEFT 0.21's default rank (`LoraConfig.r = 8`, `peft/tuners/lora/config.py`)
/// on every linear layer but the output head (`target_modules="all-linear"`;
/// PEFT's own default is a per-architecture list, which vramfit does not guess).
impl Default for LoraConfig {
    fn default() -> Self {
        LoraConfig { rank: 8, targets: LoraTargets::AllLinear, dora: false }
    }
}

impl LoraConfig {
    /// LoRA of rank `rank` on `targets` (DoRA off).
    pub fn new(rank: u64, targets: LoraTargets) -> Self {
        LoraConfig { rank, targets, dora: false }
    }
}

/// The adapter parameters a LoRA setting creates.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[non_exhaustive]
pub struct LoraParams {
    /// Trainable parameters (A and B matrices, plus DoRA magnitudes).
    pub trainable: u64,
    /// Number of layers or parameters that received an adapter (an expert bank counts once).
    pub adapted_layers: u64,
    /// Elements of the frozen weights the adapters act on.
    pub adapted_weights: u64,
    /// Named targets that matched no module (PEFT ignores them when others match).
    pub unmatched_targets: Vec<String>,
}

/// The names PEFT remaps onto fused experts, if the model has such a MoE block.
fn peft_moe_names(spec: &ModelSpec) -> Option<crate::spec::PeftMoeNames> {
    spec.layers.iter().find_map(|group| match &group.layer.feed_forward {
        FeedForward::Moe(moe) => moe.peft_names,
        FeedForward::Dense { .. } => None,
    })
}

/// The modules and expert parameters a LoRA setting adapts, resolved as PEFT does.
#[derive(Clone, Debug, Default)]
pub(crate) struct Resolution {
    /// Names of adapted linear layers.
    pub(crate) modules: Vec<String>,
    /// Adapted fused expert parameters.
    pub(crate) experts: ExpertTargets,
}

impl Resolution {
    /// Whether the linear layer `name` gets an adapter.
    pub(crate) fn adapts(&self, name: &str) -> bool {
        self.modules.iter().any(|m| m == name)
    }
}

/// Resolves `config`'s targets against `spec` (steps 1 and 2 of PEFT's injection).
pub(crate) fn resolve(spec: &ModelSpec, config: &LoraConfig) -> Result<Resolution, CoreError> {
    let invalid = |reason: String| CoreError::InvalidLora { reason };
    if config.rank == 0 {
        return Err(invalid("the rank r must be at least 1".into()));
    }
    let moe_names = peft_moe_names(spec);

    // 1. Resolve the targets to names, as PEFT does.
    let mut targets: Vec<String> = match &config.targets {
        LoraTargets::Modules(names) if names.is_empty() => {
            return Err(invalid("no target modules given".into()));
        }
        LoraTargets::Modules(names) => {
            // PEFT matches a dotted target as a suffix of the full module path, which can
            // select single layers (`layers.0.self_attn.q_proj`); vramfit counts by module
            // name, so it refuses paths rather than adapting every layer.
            if let Some(path) = names.iter().find(|t| t.contains('.')) {
                return Err(invalid(format!(
                    "`{path}` is a module path; give module names (q_proj, v_proj) — per-layer targets are not modelled"
                )));
            }
            names.clone()
        }
        LoraTargets::AllLinear => {
            let mut names = Vec::new();
            visit_entries(spec, |_, entry, _| {
                if let Entry::Linear { linear, output_head: false, .. } = entry
                    && !names.contains(&linear.name)
                {
                    names.push(linear.name.clone());
                }
            });
            if let Some(moe) = moe_names {
                let (router, [first, second], down) = moe.names();
                names.extend([router, first, second, down].map(str::to_owned));
            }
            names
        }
    };
    targets.dedup();

    // 2. Fused experts: old names become parameter targets and leave the module list.
    let mut experts = ExpertTargets::default();
    if let Some(moe) = moe_names {
        let (router, [first, second], down) = moe.names();
        let has = |name: &str| targets.iter().any(|t| t == name);
        match (has(first), has(second)) {
            (true, true) => experts.gate_up = true,
            (false, false) => {}
            (present, _) => {
                let (present, missing) = if present { (first, second) } else { (second, first) };
                return Err(invalid(format!(
                    "cannot adapt {present} without {missing}: transformers 5 fuses them into \
                     gate_up_proj (PEFT raises the same error)"
                )));
            }
        }
        experts.down = has(down);
        experts.router = has(router);
        targets.retain(|t| ![router, first, second, down].contains(&t.as_str()));
        if config.dora && experts.any() {
            return Err(invalid(
                "DoRA cannot adapt fused expert parameters (PEFT's ParamWrapper raises); \
                 name the attention modules instead of all-linear"
                    .into(),
            ));
        }
    }
    Ok(Resolution { modules: targets, experts })
}

/// One adapter parameter tensor (an A or B matrix, a DoRA magnitude) and how many exist.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct AdapterTensor {
    pub(crate) numel: u64,
    pub(crate) count: u64,
}

/// Counts the trainable parameters `config` adds to `spec`.
///
/// Errors where PEFT raises: rank 0, targets that match nothing, half of a
/// fused expert pair, DoRA on fused expert parameters.
pub fn lora_params(spec: &ModelSpec, config: &LoraConfig) -> Result<LoraParams, CoreError> {
    adapters(spec, config).map(|(params, _)| params)
}

/// The adapters `config` adds to `spec`: their counts and each tensor.
pub(crate) fn adapters(
    spec: &ModelSpec,
    config: &LoraConfig,
) -> Result<(LoraParams, Vec<AdapterTensor>), CoreError> {
    const WHAT: &str = "LoRA parameter count";
    let invalid = |reason: String| CoreError::InvalidLora { reason };
    let moe_names = peft_moe_names(spec);
    let Resolution { modules: targets, experts: expert_targets } = resolve(spec, config)?;
    let mut tensors: Vec<AdapterTensor> = Vec::new();
    let mut counts = Counts::default();
    // An adapter of rank `rank` on `banks` stacked `in_f × out_f` weights, `occurrences` times:
    // `A: in → rank·banks`, `B: rank·banks → out`.
    let mut adapt = |rank: u64, in_f: u64, out_f: u64, banks: u64, occurrences: u64, dora: bool| {
        let a = mul(mul(rank, banks, WHAT)?, in_f, WHAT)?;
        let b = mul(mul(rank, banks, WHAT)?, out_f, WHAT)?;
        tensors.push(AdapterTensor { numel: a, count: occurrences });
        tensors.push(AdapterTensor { numel: b, count: occurrences });
        let mut per_layer = add(a, b, WHAT)?;
        if dora {
            tensors.push(AdapterTensor { numel: out_f, count: occurrences });
            per_layer = add(per_layer, out_f, WHAT)?;
        }
        counts.add(per_layer, occurrences, mul(mul(in_f, out_f, WHAT)?, banks, WHAT)?)
    };

    // 3. Linear layers selected by name.
    let mut matched: Vec<String> = Vec::new();
    let mut result = Ok(());
    visit_entries(spec, |_, entry, occurrences| {
        let Entry::Linear { linear, .. } = entry else { return };
        if result.is_err() || !targets.contains(&linear.name) {
            return;
        }
        if !matched.contains(&linear.name) {
            matched.push(linear.name.clone());
        }
        result = mul(linear.copies, occurrences, WHAT).and_then(|layers| {
            adapt(config.rank, linear.in_features, linear.out_features, 1, layers, config.dora)
        });
    });
    result?;

    // 4. Fused expert parameters of every MoE layer.
    if expert_targets.any() {
        let hidden = spec.hidden_size;
        for group in &spec.layers {
            let FeedForward::Moe(moe) = &group.layer.feed_forward else { continue };
            let experts = moe.num_experts;
            let size = moe.expert_intermediate_size;
            if expert_targets.gate_up {
                adapt(2 * config.rank, hidden, 2 * size, experts, group.count, false)?;
            }
            if expert_targets.down {
                adapt(config.rank, size, hidden, experts, group.count, false)?;
            }
            if expert_targets.router {
                adapt(config.rank, hidden, experts, 1, group.count, false)?;
            }
        }
        if let Some(moe) = moe_names {
            let (router, [first, second], down) = moe.names();
            for (wanted, names) in [
                (expert_targets.gate_up, vec![first, second]),
                (expert_targets.down, vec![down]),
                (expert_targets.router, vec![router]),
            ] {
                if wanted {
                    matched.extend(names.into_iter().map(str::to_owned));
                }
            }
        }
    }

    let unmatched_targets = match &config.targets {
        LoraTargets::AllLinear => Vec::new(),
        LoraTargets::Modules(names) => {
            names.iter().filter(|t| !matched.iter().any(|m| m == *t)).cloned().collect()
        }
    };
    if counts.layers == 0 {
        return Err(invalid(match &config.targets {
            LoraTargets::AllLinear => "the model has no linear layers to adapt".to_owned(),
            LoraTargets::Modules(names) => format!(
                "target modules {} not found in the model (PEFT raises the same error)",
                names.join(", ")
            ),
        }));
    }
    let params = LoraParams {
        trainable: counts.trainable,
        adapted_layers: counts.layers,
        adapted_weights: counts.weights,
        unmatched_targets,
    };
    Ok((params, tensors))
}

/// Fused expert parameters that receive adapters.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct ExpertTargets {
    pub(crate) gate_up: bool,
    pub(crate) down: bool,
    pub(crate) router: bool,
}

impl ExpertTargets {
    pub(crate) fn any(self) -> bool {
        self.gate_up || self.down || self.router
    }
}

#[derive(Default)]
struct Counts {
    trainable: u64,
    layers: u64,
    weights: u64,
}

impl Counts {
    /// Adds `occurrences` adapted layers of `per_layer` trainable parameters
    /// over `weights_per_layer` frozen weights each.
    fn add(
        &mut self,
        per_layer: u64,
        occurrences: u64,
        weights_per_layer: u64,
    ) -> Result<(), CoreError> {
        const WHAT: &str = "LoRA parameter count";
        self.trainable = add(self.trainable, mul(per_layer, occurrences, WHAT)?, WHAT)?;
        self.layers = add(self.layers, occurrences, WHAT)?;
        self.weights = add(self.weights, mul(weights_per_layer, occurrences, WHAT)?, WHAT)?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::toy::{self, H, I, V};

    fn modules(names: &[&str]) -> LoraTargets {
        LoraTargets::Modules(names.iter().map(|n| (*n).to_owned()).collect())
    }

    fn trainable(spec: &ModelSpec, rank: u64, targets: LoraTargets, dora: bool) -> u64 {
        lora_params(spec, &LoraConfig { rank, targets, dora }).unwrap().trainable
    }

    #[test]
    fn q_and_v_by_hand() {
        // q: 64→64, v: 64→32; r·(in + out) each, two layers.
        let expected = 2 * (8 * (H + H) + 8 * (H + 32));
        assert_eq!(trainable(&toy::llama(), 8, modules(&["q_proj", "v_proj"]), false), expected);
        // Module paths are refused rather than silently adapting every layer.
        let path =
            LoraConfig { rank: 8, targets: modules(&["layers.0.self_attn.q_proj"]), dora: false };
        assert!(lora_params(&toy::llama(), &path).unwrap_err().to_string().contains("module path"));
    }

    #[test]
    fn all_linear_skips_the_head_and_dora_adds_magnitudes() {
        let per_layer = [(H, H), (H, 32), (H, 32), (H, H), (H, I), (H, I), (I, H)];
        let lora: u64 = 2 * per_layer.iter().map(|(i, o)| 4 * (i + o)).sum::<u64>();
        assert_eq!(trainable(&toy::llama(), 4, LoraTargets::AllLinear, false), lora);
        let magnitudes: u64 = 2 * per_layer.iter().map(|(_, o)| o).sum::<u64>();
        assert_eq!(trainable(&toy::llama(), 4, LoraTargets::AllLinear, true), lora + magnitudes);
        // Named explicitly, the head is adapted.
        assert_eq!(trainable(&toy::llama(), 2, modules(&["lm_head"]), false), 2 * (H + V));
    }

    #[test]
    fn peft_errors_are_errors() {
        let spec = toy::llama();
        let bad_rank = LoraConfig { rank: 0, targets: LoraTargets::AllLinear, dora: false };
        assert!(lora_params(&spec, &bad_rank).is_err());
        let nothing = LoraConfig { rank: 8, targets: modules(&["query_key_value"]), dora: false };
        let message = lora_params(&spec, &nothing).unwrap_err().to_string();
        assert!(message.contains("query_key_value"), "{message}");
        let partly = LoraConfig { rank: 8, targets: modules(&["q_proj", "c_attn"]), dora: false };
        assert_eq!(lora_params(&spec, &partly).unwrap().unmatched_targets, ["c_attn"]);
    }

    #[test]
    fn fused_experts_as_peft_converts_them() {
        let spec = toy::mixtral();
        // Attention as usual (one layer), gate_up_proj [4, 64, 64] at rank 2r,
        // down_proj [4, 32, 64] at rank r, router [4, 64] at rank r.
        let attention = 2 * (2 * H + (H + 32) * 2 + 2 * H);
        let gate_up = (2 * 2) * 4 * (H + 2 * 32);
        let down = 2 * 4 * (32 + H);
        let router = 2 * (4 + H);
        assert_eq!(
            trainable(&spec, 2, LoraTargets::AllLinear, false),
            attention + gate_up + down + router
        );
        assert_eq!(trainable(&spec, 2, modules(&["w1", "w3"]), false), gate_up);
        let half = LoraConfig { rank: 2, targets: modules(&["w1"]), dora: false };
        assert!(lora_params(&spec, &half).unwrap_err().to_string().contains("w3"));
        let dora = LoraConfig { rank: 2, targets: LoraTargets::AllLinear, dora: true };
        assert!(lora_params(&spec, &dora).unwrap_err().to_string().contains("DoRA"));
    }
}
