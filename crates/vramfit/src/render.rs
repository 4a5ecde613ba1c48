//! Shared output helpers: number formats and tables.
//!
//! Counts are shown with SI suffixes (1 B = 10⁹ parameters); bytes, where
//! shown, always say whether they are GB (10⁹) or GiB (2³⁰).

use comfy_table::presets::UTF8_FULL_CONDENSED;
use comfy_table::{CellAlignment, ContentArrangement, Table};

/// `8030261248` → `8.03 B`; exact below a thousand.
pub(crate) fn human_count(count: u64) -> String {
    const UNITS: [(f64, &str); 4] = [(1e12, "T"), (1e9, "B"), (1e6, "M"), (1e3, "K")];
    let value = count as f64;
    for (scale, suffix) in UNITS {
        if value >= scale {
            return format!("{:.2} {suffix}", value / scale);
        }
    }
    count.to_string()
}

/// `8030261248` → `8,030,261,248`.
pub(crate) fn grouped(count: u64) -> String {
    let digits = count.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (index, digit) in digits.chars().enumerate() {
        if index > 0 && (digits.len() - index).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

/// Bytes in GiB (2³⁰) with two decimals.
pub(crate) fn gib(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / f64::from(1u32 << 30))
}

/// Bytes in GB (10⁹) with two decimals.
pub(crate) fn gb(bytes: u64) -> String {
    format!("{:.2}", bytes as f64 / 1e9)
}

/// A horizontal bar of up to `width` cells for `value` out of `max`.
pub(crate) fn bar(value: u64, max: u64, width: u64) -> String {
    if max == 0 {
        return String::new();
    }
    let eighths = (u128::from(value) * u128::from(width) * 8).div_ceil(u128::from(max));
    let full = usize::try_from(eighths / 8).unwrap_or(0);
    let rest = usize::try_from(eighths % 8).unwrap_or(0);
    let mut out = "█".repeat(full);
    if rest > 0 {
        out.push([' ', '▏', '▎', '▍', '▌', '▋', '▊', '▉'][rest]);
    }
    out
}

/// A share as a percentage with one decimal.
pub(crate) fn percent(part: u64, whole: u64) -> String {
    if whole == 0 { "-".to_owned() } else { format!("{:.1} %", part as f64 * 100.0 / whole as f64) }
}

/// A table with our style; `numeric` marks right-aligned columns.
/// The width tables wrap to: `COLUMNS` when set, else the terminal's when
/// the process's stdout is one (not a library caller's buffer), else 120.
fn table_width() -> u16 {
    if let Some(columns) = std::env::var("COLUMNS").ok().and_then(|c| c.parse::<u16>().ok()) {
        return columns;
    }
    if crate::commands::color()
        && let Some((terminal_size::Width(width), _)) =
            terminal_size::terminal_size_of(std::io::stdout())
    {
        return width;
    }
    120
}

pub(crate) fn table(header: &[&str], numeric: &[usize]) -> Table {
    let mut table = Table::new();
    table.load_preset(UTF8_FULL_CONDENSED).set_content_arrangement(ContentArrangement::Dynamic);
    // Wrap long cells (the formulas) to the terminal's width.
    table.set_width(table_width().max(60));
    table.set_header(header.to_vec());
    for index in numeric {
        if let Some(column) = table.column_mut(*index) {
            column.set_cell_alignment(CellAlignment::Right);
        }
    }
    table
}

/// The component table every estimate prints: name, GiB, GB, share of `whole`, a bar, the formula.
pub(crate) fn parts_table(parts: &[vramfit_core::memory::Part], whole: u64) -> Table {
    let mut rows = table(&["component", "GiB", "GB", "share", "", "how"], &[1, 2, 3]);
    let largest = parts.iter().map(|p| p.bytes).max().unwrap_or(1);
    for part in parts {
        rows.add_row(vec![
            part.name.clone(),
            gib(part.bytes),
            gb(part.bytes),
            percent(part.bytes, whole),
            bar(part.bytes, largest, 16),
            part.formula.clone(),
        ]);
    }
    rows
}

/// `n` things, singular or plural: "1 request", "2 requests".
pub(crate) fn count(n: u64, thing: &str) -> String {
    if n == 1 { format!("1 {thing}") } else { format!("{} {thing}s", grouped(n)) }
}

/// A flag value as the command line spells it (`vllm`, `llama.cpp`, `infer`).
pub(crate) fn flag_value<T: clap::ValueEnum>(value: &T) -> String {
    value.to_possible_value().map_or_else(String::new, |v| v.get_name().to_owned())
}

/// Requests held at once, whole: a request runs or waits (the engine's own
/// ratio, fractional, is its "maximum concurrency" figure).
#[expect(
    clippy::cast_possible_truncation,
    clippy::cast_sign_loss,
    reason = "a small non-negative count"
)]
pub(crate) fn whole_requests(ratio: f64) -> u64 {
    if ratio.is_finite() && ratio > 0.0 { ratio.floor() as u64 } else { 0 }
}

/// A verdict's words, green when it fits and red when it does not, on a
/// terminal: the CLI's streams (anstream) drop the colour when piped and
/// follow `NO_COLOR` and `CLICOLOR_FORCE`; a captured run (the Python API)
/// gets none.
pub(crate) fn verdict_word(fits: bool, words: &str) -> String {
    if !crate::commands::color() {
        return words.to_owned();
    }
    let colour = if fits { anstyle::AnsiColor::Green } else { anstyle::AnsiColor::Red };
    let style = anstyle::Style::new().fg_color(Some(colour.into())).bold();
    format!("{style}{words}{style:#}")
}

/// Writes a `--json` document: pretty-printed, or, when a library caller asked
/// for the document itself (`run_captured` with `as_value`), kept as a value
/// for it without a round trip through text.
pub(crate) fn write_json<T: serde::Serialize>(
    out: &mut dyn std::io::Write,
    document: &T,
) -> anyhow::Result<()> {
    if crate::commands::capturing_documents() {
        crate::commands::store_document(serde_json::to_value(document)?);
    } else {
        writeln!(out, "{}", serde_json::to_string_pretty(document)?)?;
    }
    Ok(())
}

/// A progress line on stderr (`searched 12/40 GPU kinds`) for a sweep that
/// runs past a second, only when stderr is the process's own terminal;
/// `VRAMFIT_PROGRESS_AFTER_MS` sets the delay. The line is wiped when the
/// sweep ends, so that the answer follows on a clean line.
pub(crate) struct Progress {
    start: std::time::Instant,
    after: std::time::Duration,
    total: usize,
    enabled: bool,
    shown: bool,
}

impl Progress {
    pub(crate) fn new(total: usize) -> Self {
        use std::io::IsTerminal as _;
        let after = std::env::var("VRAMFIT_PROGRESS_AFTER_MS")
            .ok()
            .and_then(|ms| ms.parse().ok())
            .unwrap_or(1000);
        Progress {
            start: std::time::Instant::now(),
            after: std::time::Duration::from_millis(after),
            total,
            enabled: total > 1 && crate::commands::color() && std::io::stderr().is_terminal(),
            shown: false,
        }
    }

    /// `done` of the sweep's GPU kinds are searched.
    pub(crate) fn step(&mut self, done: usize) {
        if self.enabled && self.start.elapsed() >= self.after {
            use std::io::Write as _;
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\rsearched {done}/{} GPU kinds", self.total);
            let _ = stderr.flush();
            self.shown = true;
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        if self.shown {
            use std::io::Write as _;
            let mut stderr = std::io::stderr().lock();
            let _ = write!(stderr, "\r\x1b[K");
            let _ = stderr.flush();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_counts() {
        assert_eq!(grouped(8_030_261_248), "8,030,261,248");
        assert_eq!(grouped(999), "999");
        assert_eq!(grouped(1000), "1,000");
        assert_eq!(human_count(8_030_261_248), "8.03 B");
        assert_eq!(human_count(124_439_808), "124.44 M");
        assert_eq!(human_count(512), "512");
        assert_eq!(percent(1, 4), "25.0 %");
        assert_eq!(percent(1, 0), "-");
        assert_eq!(gib(1 << 30), "1.00");
        assert_eq!(gb(1_500_000_000), "1.50");
        assert_eq!(bar(8, 8, 4), "████");
        assert_eq!(bar(1, 8, 4), "▌");
        assert_eq!(bar(0, 8, 4), "");
    }
}
