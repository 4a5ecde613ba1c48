/*!
The embedded catalog: real `config.json` files of popular models, compiled
into the binary so that vramfit answers offline on its first run.

`data/catalog.toml` lists each model's Hugging Face id, short aliases, and its
published parameter count with the source (used by the tests as an independent
check); `data/models/ORG/NAME/config.json` holds the config itself. The index
is parsed on first use, not at start-up.
*/

use std::collections::BTreeMap;
use std::sync::{Mutex, OnceLock, PoisonError};

use serde::Deserialize;

use crate::config::{ParsedConfig, parse_config_str};
use crate::error::SourceError;

include!(concat!(env!("OUT_DIR"), "/embedded_configs.rs"));

/// One catalog model.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CatalogEntry {
    /// Hugging Face repository id (`meta-llama/Llama-3.1-8B`).
    pub id: String,
    /// Year and month of the first public release (`2025-07`), from the
    /// model card or the maker's announcement.
    pub release: String,
    /// Short names (`llama-3.1-8b`).
    #[serde(default)]
    pub aliases: Vec<String>,
    /// Where the config's values were verified.
    pub config_source: String,
    /// The parameter count its authors publish.
    pub published_params: u64,
    /// `exact`; `rounded:N` (N significant digits, last one rounded or
    /// truncated); or `nominal` (only the size in the model's name is published).
    pub published_params_precision: String,
    /// Where that count is published.
    pub published_params_source: String,
    /// Why the published figure differs from the parameters transformers
    /// instantiates, where it does (a different counting convention, an error).
    #[serde(default)]
    pub published_params_discrepancy: Option<String>,
    /// Remarks (what the count includes, how the config was obtained).
    #[serde(default)]
    pub note: Option<String>,
}

impl CatalogEntry {
    /// The embedded `config.json` text.
    pub fn config_text(&self) -> Option<&'static str> {
        EMBEDDED_CONFIGS
            .binary_search_by(|(id, _)| (*id).cmp(self.id.as_str()))
            .ok()
            .map(|index| EMBEDDED_CONFIGS[index].1)
    }

    /// Parses the embedded config (once per process: the result is kept, as
    /// the embedded text never changes and a library caller asks again and again).
    pub fn parse(&self) -> Result<ParsedConfig, SourceError> {
        static PARSED: OnceLock<Mutex<BTreeMap<String, ParsedConfig>>> = OnceLock::new();
        let cache = PARSED.get_or_init(Mutex::default);
        if let Some(parsed) = cache.lock().unwrap_or_else(PoisonError::into_inner).get(&self.id) {
            return Ok(parsed.clone());
        }
        let text = self.config_text().ok_or_else(|| SourceError::UnknownModel {
            name: self.id.clone(),
            suggestions: Vec::new(),
            cache: None,
        })?;
        let parsed = parse_config_str(text, &format!("catalog:{}", self.id))?;
        cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(self.id.clone(), parsed.clone());
        Ok(parsed)
    }

    /// The short name shown in listings (first alias, else the id).
    pub fn short_name(&self) -> &str {
        self.aliases.first().map_or(self.id.as_str(), String::as_str)
    }

    /// Whether the entry belongs to `family` (ASCII case ignored): its
    /// `model_type` (as read, e.g. `qwen3_moe`) starts with it, or its
    /// repository id contains it (`kimi`, `devstral`).
    pub fn in_family(&self, model_type: &str, family: &str) -> bool {
        let family = family.to_ascii_lowercase();
        !family.is_empty()
            && (model_type.to_ascii_lowercase().starts_with(&family)
                || self.id.to_ascii_lowercase().contains(&family))
    }

    /// Whether the model was released in or after `since` (`2025` or `2025-06`,
    /// see [`parse_since`]).
    pub fn released_since(&self, since: &str) -> bool {
        // `YYYY-MM` strings order as dates; a bare year sorts before its months.
        self.release.as_str() >= since
    }

    /// Significant digits of the published count, `None` when it is exact.
    pub fn published_significant_digits(&self) -> Option<u32> {
        self.published_params_precision.strip_prefix("rounded:").and_then(|n| n.parse().ok())
    }
}

/// Checks a release filter: a year (`2025`) or a year and month (`2025-06`).
/// Returns it as given, or says what is wrong.
pub fn parse_since(text: &str) -> Result<String, String> {
    let valid = match text.split_once('-') {
        None => text.len() == 4 && text.bytes().all(|b| b.is_ascii_digit()),
        Some((year, month)) => {
            year.len() == 4
                && year.bytes().all(|b| b.is_ascii_digit())
                && month.len() == 2
                && month.parse::<u8>().is_ok_and(|m| (1..=12).contains(&m))
        }
    };
    if valid {
        Ok(text.to_owned())
    } else {
        Err(format!("`{text}` is not a year (2025) or a year and month (2025-06)"))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    model: Vec<CatalogEntry>,
}

/// The catalog of models embedded in the binary.
#[derive(Debug)]
pub struct Catalog {
    entries: Vec<CatalogEntry>,
}

impl Catalog {
    /// The embedded catalog (parsed once, on first use).
    ///
    /// # Panics
    /// Never in a released build: `data/catalog.toml` is checked by the test suite.
    pub fn embedded() -> &'static Catalog {
        static CATALOG: OnceLock<Catalog> = OnceLock::new();
        CATALOG.get_or_init(|| {
            let file: CatalogFile = toml::from_str(CATALOG_TOML)
                .expect("data/catalog.toml is valid (checked by tests)");
            Catalog { entries: file.model }
        })
    }

    /// All entries, in catalog order.
    pub fn entries(&self) -> &[CatalogEntry] {
        &self.entries
    }

    /// Finds a model by repository id or alias, ignoring ASCII case; the
    /// part after the `/` also works when it names one model only.
    pub fn find(&self, name: &str) -> Option<&CatalogEntry> {
        let exact = self.entries.iter().find(|entry| {
            entry.id.eq_ignore_ascii_case(name)
                || entry.aliases.iter().any(|a| a.eq_ignore_ascii_case(name))
        });
        if exact.is_some() {
            return exact;
        }
        let mut by_repo_name = self.entries.iter().filter(|entry| {
            entry.id.rsplit('/').next().is_some_and(|repo| repo.eq_ignore_ascii_case(name))
        });
        match (by_repo_name.next(), by_repo_name.next()) {
            (Some(entry), None) => Some(entry),
            _ => None,
        }
    }

    /// Up to three catalog names close to `name`, for "did you mean".
    pub fn suggestions(&self, name: &str) -> Vec<String> {
        let wanted = name.to_ascii_lowercase();
        let mut scored: Vec<(usize, &str)> = self
            .entries
            .iter()
            .flat_map(|entry| {
                entry.aliases.iter().map(String::as_str).chain(std::iter::once(entry.id.as_str()))
            })
            .map(|candidate| (distance(&wanted, &candidate.to_ascii_lowercase()), candidate))
            .filter(|(score, candidate)| *score <= (candidate.len() / 3).max(2))
            .collect();
        scored.sort_unstable();
        scored.dedup_by(|a, b| a.1 == b.1);
        scored.into_iter().take(3).map(|(_, candidate)| candidate.to_owned()).collect()
    }
}

/// Edit distance over bytes (names are short ASCII): insertions, deletions,
/// substitutions and swaps of two neighbours, one step each.
pub(crate) fn distance(a: &str, b: &str) -> usize {
    // Optimal string alignment: Levenshtein plus the swap of two neighbours
    // (`rtx-4900` is one step from `rtx-4090`), over three rows.
    let (a, b) = (a.as_bytes(), b.as_bytes());
    let mut before: Vec<usize> = vec![0; b.len() + 1];
    let mut last: Vec<usize> = (0..=b.len()).collect();
    for i in 1..=a.len() {
        let mut row = vec![0; b.len() + 1];
        row[0] = i;
        for j in 1..=b.len() {
            let cost = usize::from(a[i - 1] != b[j - 1]);
            let mut best = (last[j] + 1).min(row[j - 1] + 1).min(last[j - 1] + cost);
            if i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1] {
                best = best.min(before[j - 2] + 1);
            }
            row[j] = best;
        }
        before = std::mem::replace(&mut last, row);
    }
    last[b.len()]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn release_filters_take_years_and_months_only() {
        assert_eq!(parse_since("2025"), Ok("2025".to_owned()));
        assert_eq!(parse_since("2025-06"), Ok("2025-06".to_owned()));
        for bad in ["25", "2025-6", "2025-13", "2025-00", "june", "2025-06-01", ""] {
            assert!(parse_since(bad).is_err(), "{bad} accepted");
        }
        let catalog = Catalog::embedded();
        let smol = catalog.find("smollm3-3b").expect("in the catalog");
        assert!(smol.released_since("2025") && smol.released_since("2025-07"));
        assert!(!smol.released_since("2025-08") && !smol.released_since("2026"));
        let kimi = catalog.find("kimi-k2").expect("in the catalog");
        assert!(kimi.in_family("deepseek_v3", "Kimi") && kimi.in_family("deepseek_v3", "deepseek"));
        assert!(!kimi.in_family("deepseek_v3", "qwen") && !kimi.in_family("deepseek_v3", ""));
    }

    #[test]
    fn distance_counts_edits() {
        assert_eq!(distance("llama", "llama"), 0);
        assert_eq!(distance("lama", "llama"), 1);
        assert_eq!(distance("kitten", "sitting"), 3);
        assert_eq!(distance("rtx4900", "rtx4090"), 1);
        assert_eq!(distance("ab", "ba"), 1);
        assert_eq!(distance("", "abc"), 3);
    }

    #[test]
    fn every_entry_has_its_config_and_unique_names() {
        let catalog = Catalog::embedded();
        assert!(catalog.entries().len() >= 40, "the catalog promises at least 40 models");
        let mut names = std::collections::BTreeSet::new();
        for entry in catalog.entries() {
            assert!(
                entry.config_text().is_some(),
                "{}: no data/models/{}/config.json",
                entry.id,
                entry.id
            );
            for name in std::iter::once(&entry.id).chain(&entry.aliases) {
                assert!(names.insert(name.to_ascii_lowercase()), "{name} is used twice");
            }
            assert!(
                parse_since(&entry.release).is_ok() && entry.release.len() == 7,
                "{}: release must be YYYY-MM, found {}",
                entry.id,
                entry.release
            );
            assert!(
                matches!(entry.published_params_precision.as_str(), "exact" | "nominal")
                    || entry.published_significant_digits().is_some(),
                "{}: precision must be `exact`, `rounded:N` or `nominal`",
                entry.id
            );
        }
        // Every embedded config is listed in the catalog.
        for (id, _) in EMBEDDED_CONFIGS {
            assert!(
                catalog.entries().iter().any(|e| e.id == *id),
                "{id} has a config but no catalog entry"
            );
        }
    }
}
