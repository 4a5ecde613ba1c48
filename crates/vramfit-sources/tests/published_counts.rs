//! Every catalog model's count against the figure its authors publish
//! (`data/catalog.toml` cites each source). These figures were gathered from
//! model cards and papers, independently of vramfit's formulas.

use vramfit_core::params::count_params;
use vramfit_sources::Catalog;

/// 10^(digits(value) − n): the unit of the n-th significant digit of `value`.
fn unit_of_digit(value: u64, significant: u32) -> u64 {
    let digits = value.checked_ilog10().unwrap_or(0) + 1;
    10u64.pow(digits.saturating_sub(significant))
}

#[test]
fn counts_match_published_figures() {
    let mut failures = Vec::new();
    let mut exact_matches = 0;
    for entry in Catalog::embedded().entries() {
        let spec = entry.parse().unwrap_or_else(|e| panic!("{}: {e}", entry.id)).spec;
        let ours = count_params(&spec).expect("counts").total;
        let published = entry.published_params;
        let difference = ours.abs_diff(published);
        let ok = if entry.published_params_discrepancy.is_some() {
            // A documented convention difference: the figure must still be close.
            difference * 20 <= published
        } else {
            match entry.published_params_precision.as_str() {
                "exact" => {
                    exact_matches += u32::from(difference == 0);
                    difference == 0
                }
                // Only the size in the name ("40B") is published.
                "nominal" => difference * 10 <= published,
                _ => {
                    // Rounded or truncated to N significant digits: within one unit of the last.
                    let digits = entry.published_significant_digits().expect("rounded:N");
                    difference <= unit_of_digit(published, digits)
                }
            }
        };
        if !ok {
            failures.push(format!(
                "{}: vramfit {ours}, published {published} ({}; {})",
                entry.id, entry.published_params_precision, entry.published_params_source
            ));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert!(exact_matches >= 15, "only {exact_matches} exact published counts matched");
}

#[test]
fn the_issue_examples_match_to_the_parameter() {
    // The counts quoted in the project's first issue, from the models' cards.
    for (name, expected) in [
        ("meta-llama/Llama-2-7b-hf", 6_738_415_616),
        ("meta-llama/Llama-3.1-8B", 8_030_261_248),
        ("mistralai/Mistral-7B-v0.1", 7_241_732_096),
        ("TinyLlama/TinyLlama-1.1B-Chat-v1.0", 1_100_048_384),
        ("microsoft/phi-2", 2_779_683_840),
        ("openai-community/gpt2", 124_439_808),
        ("Qwen/Qwen2.5-0.5B", 494_032_768),
        ("mistralai/Mixtral-8x7B-v0.1", 46_702_792_704),
    ] {
        let entry = Catalog::embedded().find(name).unwrap_or_else(|| panic!("{name} in catalog"));
        let total = count_params(&entry.parse().expect("parses").spec).expect("counts").total;
        assert_eq!(total, expected, "{name}");
    }
}

#[test]
fn unit_of_digit_is_the_last_significant_place() {
    assert_eq!(unit_of_digit(1_230_000_000, 3), 10_000_000);
    assert_eq!(unit_of_digit(70_000_000_000, 1), 10_000_000_000);
    assert_eq!(unit_of_digit(5, 3), 1);
}
