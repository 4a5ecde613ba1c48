//! Invariants the solvers rely on, over random small models of several
//! families (parsed from generated `config.json` values, so the families'
//! own readings are exercised) and random workloads:
//! - memory never decreases as the batch, the sequence, the prompt, the
//!   generated tokens (from one on) or the LoRA rank grow (`largest_batch` and
//!   `longest_sequence` search by bisection, which is only right if it holds);
//! - `fit` answers are tight: the answer fits, one more does not.
//!
//! Found and fixed through them: the longest prompt stopped one token short
//! of a learned position table (generation feeds `prompt + gen - 1`
//! positions), and with accumulation or sharded gradients the worst moment
//! inside a layer's backward was chosen as if gradients appeared op by op, so
//! a longer sequence could show less memory.

use proptest::prelude::*;
use serde_json::{Value, json};
use vramfit_core::ModelSpec;
use vramfit_core::dtype::{FloatType, WeightFormat};
use vramfit_core::lora::{LoraConfig, LoraTargets};
use vramfit_core::memory::runtime::Runtime;
use vramfit_core::memory::{MemoryEstimate, estimate};
use vramfit_core::solve::{MAX_BATCH, context_limit, fits, largest_batch, longest_sequence};
use vramfit_core::workload::{
    AttentionImpl, Inference, KvCacheType, Method, Optimizer, OptimizerImpl, Precision, Training,
    Workload,
};
use vramfit_sources::parse_config_value;

/// A small config of one of several families.
fn config() -> impl Strategy<Value = Value> {
    let family = prop::sample::select(vec![
        "llama",
        "qwen2",
        "qwen3",
        "mistral",
        "gemma2",
        "mixtral",
        "qwen3_moe",
        "gpt2",
        "phi3",
    ]);
    (
        family,
        prop::sample::select(vec![1u64, 2, 4, 8]), // kv heads
        prop::sample::select(vec![1u64, 2, 4]),    // heads per kv head
        prop::sample::select(vec![8u64, 16, 32]),  // head dim
        1u64..4,                                   // layers
        64u64..3000,                               // vocabulary
        16u64..300,                                // intermediate size
        any::<bool>(),                             // tied head
        2u64..6,                                   // experts
        prop::sample::select(vec![8u64, 32, 100]), // sliding window
    )
        .prop_map(
            |(family, kv, group, head_dim, layers, vocab, inter, tied, experts, window)| {
                let heads = kv * group;
                let hidden = heads * head_dim;
                if family == "gpt2" {
                    return json!({
                        "model_type": "gpt2", "vocab_size": vocab, "n_embd": hidden,
                        "n_head": heads, "n_layer": layers, "n_positions": 4096,
                    });
                }
                let mut config = json!({
                    "model_type": family, "vocab_size": vocab, "hidden_size": hidden,
                    "intermediate_size": inter, "num_hidden_layers": layers,
                    "num_attention_heads": heads, "num_key_value_heads": kv, "head_dim": head_dim,
                    "tie_word_embeddings": tied, "max_position_embeddings": 4096,
                });
                match family {
                    "mistral" | "gemma2" => config["sliding_window"] = json!(window),
                    "mixtral" => {
                        config["num_local_experts"] = json!(experts);
                        config["num_experts_per_tok"] = json!(2);
                    }
                    "qwen3_moe" => {
                        config["num_experts"] = json!(experts);
                        config["num_experts_per_tok"] = json!(2);
                        config["moe_intermediate_size"] = json!(inter / 2 + 1);
                    }
                    _ => {}
                }
                config
            },
        )
}

fn spec_of(config: &Value) -> ModelSpec {
    parse_config_value(config, "generated").expect("the generated config parses").spec
}

fn training() -> impl Strategy<Value = Training> {
    (
        prop::sample::select(vec![Method::Full, Method::Lora, Method::Qlora]),
        prop::sample::select(vec![
            Precision::Fp32,
            Precision::Bf16,
            Precision::Bf16Mixed,
            Precision::Fp16Mixed,
        ]),
        prop::sample::select(vec![
            Optimizer::Adamw,
            Optimizer::Adamw8bit,
            Optimizer::Adafactor,
            Optimizer::SgdMomentum,
            Optimizer::Lion,
        ]),
        prop::sample::select(vec![OptimizerImpl::Foreach, OptimizerImpl::Fused]),
        1u64..6,
        8u64..300,
        1u64..3,
        any::<bool>(),
        prop::sample::select(vec![AttentionImpl::Eager, AttentionImpl::Sdpa]),
        prop::sample::select(vec![1u64, 4, 16]),
        any::<bool>(),
    )
        .prop_map(
            |(
                method,
                precision,
                optimizer,
                optimizer_impl,
                batch,
                seq,
                accum,
                ckpt,
                attention,
                rank,
                all,
            )| {
                let precision = if method == Method::Qlora && precision == Precision::Fp32 {
                    Precision::Bf16Mixed
                } else {
                    precision
                };
                let targets = if all {
                    LoraTargets::AllLinear
                } else {
                    LoraTargets::Modules(vec!["down_proj".into(), "c_fc".into()])
                };
                Training::default().with(|t| {
                    t.method = method;
                    t.precision = precision;
                    t.optimizer = optimizer;
                    t.optimizer_impl = optimizer_impl;
                    t.batch_size = batch;
                    t.seq_len = seq;
                    t.grad_accum = accum;
                    t.grad_checkpointing = ckpt;
                    t.attention = attention;
                    t.lora = (method != Method::Full).then(|| LoraConfig::new(rank, targets));
                })
            },
        )
}

fn inference() -> impl Strategy<Value = Inference> {
    (
        prop::sample::select(vec![
            WeightFormat::Float(FloatType::Bf16),
            WeightFormat::Float(FloatType::F32),
            WeightFormat::Int8,
            WeightFormat::Nf4,
        ]),
        any::<bool>(),
        1u64..9,
        1u64..400,
        0u64..200,
        prop::sample::select(vec![AttentionImpl::Eager, AttentionImpl::Sdpa]),
    )
        .prop_map(|(weights, one_byte_kv, batch, prompt, gen_len, attention)| {
            Inference::default().with(|i| {
                i.weights = weights;
                i.kv_cache = if one_byte_kv {
                    KvCacheType::OneByte
                } else {
                    KvCacheType::Float(weights.compute_type())
                };
                i.batch_size = batch;
                i.prompt_len = prompt;
                i.gen_len = gen_len;
                i.attention = attention;
            })
        })
}

/// The estimate, or `None` where the combination is refused (for example
/// LoRA targets a family does not have).
fn run(spec: &ModelSpec, workload: &Workload) -> Option<MemoryEstimate> {
    estimate(spec, workload, &Runtime::HOPPER).ok()
}

/// `larger` holds at least what `smaller` holds, at every level.
fn not_less(smaller: &MemoryEstimate, larger: &MemoryEstimate) -> Result<(), TestCaseError> {
    prop_assert!(
        larger.peak_allocated_bytes >= smaller.peak_allocated_bytes
            && larger.peak_reserved_bytes >= smaller.peak_reserved_bytes
            && larger.device_total_bytes >= smaller.device_total_bytes,
        "memory fell: {} B ({}) -> {} B ({})",
        smaller.peak_allocated_bytes,
        smaller.peak_phase,
        larger.peak_allocated_bytes,
        larger.peak_phase
    );
    Ok(())
}

// 256 cases a run (proptest's default); `PROPTEST_CASES=20000` searches deeper
// (about 35 s in a debug build; that is how the two findings below were made).
proptest! {

    #[test]
    fn training_memory_grows_with_batch_sequence_and_rank(
        config in config(), step in training(), more in 1u64..64,
    ) {
        let spec = spec_of(&config);
        let base = Workload::Training(step.clone());
        let at = run(&spec, &base);
        prop_assume!(at.is_some());
        let at = at.unwrap();
        let larger = [
            step.clone().with(|t| t.batch_size += 1),
            step.clone().with(|t| t.seq_len += more),
            step.clone().with(|t| {
                if let Some(lora) = &mut t.lora {
                    lora.rank *= 2;
                }
            }),
        ];
        for bigger in larger {
            let bigger = Workload::Training(bigger);
            let after = run(&spec, &bigger);
            prop_assert!(after.is_some(), "{bigger:?} refused where {base:?} was not");
            not_less(&at, &after.unwrap())?;
        }
    }

    #[test]
    fn inference_memory_grows_with_batch_prompt_and_generation(
        config in config(), run_ in inference(), more in 1u64..64,
    ) {
        let spec = spec_of(&config);
        let base = Workload::Inference(run_.clone());
        let at = run(&spec, &base);
        prop_assume!(at.is_some());
        let at = at.unwrap();
        let mut larger = vec![
            run_.clone().with(|i| i.batch_size += 1),
            run_.clone().with(|i| i.prompt_len += more),
        ];
        // `gen_len = 0` is another job (one forward pass returning the logits of
        // every position); from one generated token on, more tokens hold more.
        if run_.gen_len > 0 {
            larger.push(run_.clone().with(|i| i.gen_len += more));
        }
        for bigger in larger {
            let bigger = Workload::Inference(bigger);
            let after = run(&spec, &bigger);
            prop_assert!(after.is_some(), "{bigger:?} refused where {base:?} was not");
            not_less(&at, &after.unwrap())?;
        }
    }

    /// The largest batch and longest sequence fit; one more does not.
    #[test]
    fn fit_answers_are_tight(
        config in config(), step in training(), serve in inference(), headroom in 0u64..4,
    ) {
        let spec = spec_of(&config);
        for workload in [Workload::Training(step), Workload::Inference(serve)] {
            let Some(at) = run(&spec, &workload) else { continue };
            // A capacity somewhere above what the workload needs as given.
            let capacity = at.device_total_bytes + headroom * (at.device_total_bytes / 8);
            let with = |batch: Option<u64>, tokens: Option<u64>| {
                let mut probe = workload.clone();
                match &mut probe {
                    Workload::Training(t) => {
                        t.batch_size = batch.unwrap_or(t.batch_size);
                        t.seq_len = tokens.unwrap_or(t.seq_len);
                    }
                    Workload::Inference(i) => {
                        i.batch_size = batch.unwrap_or(i.batch_size);
                        i.prompt_len = tokens.unwrap_or(i.prompt_len);
                    }
                }
                run(&spec, &probe)
            };
            let (batch, answer) = largest_batch(&spec, &workload, &Runtime::HOPPER, capacity)
                .expect("the search runs")
                .expect("the given batch fits");
            prop_assert!(fits(&answer, capacity));
            let again = with(Some(batch), None);
            prop_assert_eq!(Some(&answer), again.as_ref());
            if batch < MAX_BATCH {
                let next = with(Some(batch + 1), None);
                prop_assert!(next.is_none_or(|n| !fits(&n, capacity)), "batch {} also fits", batch + 1);
            }
            let (tokens, answer) = longest_sequence(&spec, &workload, &Runtime::HOPPER, capacity)
                .expect("the search runs")
                .expect("the given sequence fits");
            prop_assert!(fits(&answer, capacity));
            // At the model's context window the search stops whatever fits.
            if Some(tokens) != context_limit(&spec, &workload) {
                let next = with(None, Some(tokens + 1));
                prop_assert!(
                    next.is_none_or(|n| !fits(&n, capacity)),
                    "{} tokens also fit",
                    tokens + 1
                );
            }
        }
    }
}
