//! A checkpoint on disk, measured from its headers alone: one safetensors file,
//! a sharded safetensors checkpoint (`model.safetensors.index.json`), a GGUF
//! file or a split GGUF model, or a folder holding one of them.
//!
//! Only the headers are read (see [`crate::safetensors`] and [`crate::gguf`]
//! for the bounds): a 140 GB checkpoint is measured in milliseconds.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::gguf::{self, GgufError, GgufHeader};
use crate::safetensors::{
    self, FormatTotals, SafetensorsError, SafetensorsHeader, StorageFormat,
    count_logical_parameters,
};

/// Why a checkpoint could not be read.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    /// A safetensors header or index is invalid.
    #[error(transparent)]
    Safetensors(#[from] SafetensorsError),
    /// A GGUF header is invalid.
    #[error(transparent)]
    Gguf(#[from] GgufError),
    /// The path holds no checkpoint, or an ambiguous one.
    #[error("`{path}`: {reason}")]
    NotACheckpoint {
        /// The path given.
        path: String,
        /// What was found instead.
        reason: String,
    },
}

/// The file format.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CheckpointFormat {
    /// safetensors (one file or shards).
    Safetensors,
    /// GGUF (one file or a split).
    Gguf,
}

/// Bytes and elements stored in one element type (a safetensors dtype or a ggml type).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TypeTotals {
    /// Tensors of this type.
    pub tensors: u64,
    /// Their elements (as stored: packed formats count their containers).
    pub elements: u64,
    /// Their bytes.
    pub bytes: u64,
}

/// What a checkpoint's headers say.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// The format.
    pub format: CheckpointFormat,
    /// The files read, in order.
    pub files: Vec<PathBuf>,
    /// Tensors in all files.
    pub tensors: u64,
    /// Bytes of all tensor data: what loading the checkpoint as stored puts in memory.
    pub stored_bytes: u64,
    /// Parameters of the unquantized model (packed formats seen through).
    pub logical_parameters: u64,
    /// Bytes of quantization companions (scales, zeros, quant state); part of `stored_bytes`.
    pub auxiliary_bytes: u64,
    /// Totals per element type, by name (`BF16`, `Q4_K`, …).
    pub by_type: BTreeMap<String, TypeTotals>,
    /// Totals per packed storage format (safetensors only; empty for GGUF).
    pub by_format: BTreeMap<&'static str, FormatTotals>,
    /// GGUF: `general.architecture` and the architecture's shape keys, as text.
    pub metadata: Vec<(String, String)>,
    /// GGUF tensors of a type this build does not know (their bytes are not counted).
    pub unknown_type_tensors: u64,
    /// The folder holding the checkpoint, when a `config.json` sits beside it.
    pub config_dir: Option<PathBuf>,
}

/// Whether `file`'s extension is `extension`, ignoring ASCII case (`.GGUF` too).
pub fn has_extension(file: impl AsRef<Path>, extension: &str) -> bool {
    file.as_ref().extension().is_some_and(|e| e.eq_ignore_ascii_case(extension))
}

/// The safetensors files among `names` (file names of one folder or of a Hub
/// repo's top level), sorted; a PEFT adapter saved beside its base
/// (`adapter_model.safetensors`) is not part of the base.
pub fn safetensors_files<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut files: Vec<&str> = names
        .into_iter()
        .filter(|n| has_extension(n, "safetensors") && *n != "adapter_model.safetensors")
        .collect();
    files.sort_unstable();
    files
}

/// The GGUF models among `names`, each by its first file (a single file, or the
/// `-00001-of-N` part of a split), sorted. Folders and repos often hold several
/// quantizations of one model; callers take only an unambiguous one.
pub fn gguf_models<'a>(names: impl IntoIterator<Item = &'a str>) -> Vec<&'a str> {
    let mut firsts: Vec<&str> = names
        .into_iter()
        .filter(|n| has_extension(n, "gguf"))
        .filter(|n| match gguf::sibling_shard_paths(Path::new(n)) {
            Some(parts) => parts.first().is_some_and(|p| p.as_os_str() == *n),
            None => true,
        })
        .collect();
    firsts.sort_unstable();
    firsts
}

/// The file names in `dir` (not descending into subfolders' contents).
fn file_names(dir: &Path) -> std::io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        if let Some(name) = entry?.file_name().to_str() {
            names.push(name.to_owned());
        }
    }
    Ok(names)
}

/// The GGUF models in folder `dir`, each by its first file's path.
///
/// # Errors
/// The folder cannot be listed.
pub fn gguf_models_in(dir: &Path) -> std::io::Result<Vec<PathBuf>> {
    let names = file_names(dir)?;
    Ok(gguf_models(names.iter().map(String::as_str)).into_iter().map(|n| dir.join(n)).collect())
}

/// The files of the checkpoint at `path`.
fn locate(path: &Path) -> Result<(CheckpointFormat, Vec<PathBuf>), CheckpointError> {
    let shown = path.display().to_string();
    let not = |reason: String| CheckpointError::NotACheckpoint { path: shown.clone(), reason };
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or_default();
    let extension = path.extension().and_then(|e| e.to_str()).unwrap_or_default();
    if path.is_dir() {
        let index = path.join("model.safetensors.index.json");
        if index.is_file() {
            return locate(&index);
        }
        let names = file_names(path).map_err(|e| not(format!("cannot list: {e}")))?;
        let safetensors = safetensors_files(names.iter().map(String::as_str));
        if !safetensors.is_empty() {
            let files = safetensors.iter().map(|n| path.join(n)).collect();
            return Ok((CheckpointFormat::Safetensors, files));
        }
        let first_shards: Vec<PathBuf> =
            gguf_models(names.iter().map(String::as_str)).iter().map(|n| path.join(n)).collect();
        return match first_shards.as_slice() {
            [one] => locate(one),
            [] => Err(not("no .safetensors or .gguf files here".into())),
            many => Err(not(format!(
                "{} GGUF models here ({}); name the file",
                many.len(),
                many.iter()
                    .filter_map(|p| p.file_name().and_then(|n| n.to_str()))
                    .collect::<Vec<_>>()
                    .join(", ")
            ))),
        };
    }
    if !path.is_file() {
        return Err(not("no such file or folder".into()));
    }
    if name.ends_with(".index.json") {
        let file =
            crate::files::open_regular(path).map_err(|e| not(format!("cannot read: {e}")))?;
        let index = safetensors::read_index(file, &shown)?;
        let dir = path.parent().unwrap_or_else(|| Path::new(""));
        let files = index.shards().into_iter().map(|shard| dir.join(shard)).collect();
        return Ok((CheckpointFormat::Safetensors, files));
    }
    if extension.eq_ignore_ascii_case("gguf") {
        let files = gguf::sibling_shard_paths(path).unwrap_or_else(|| vec![path.to_path_buf()]);
        return Ok((CheckpointFormat::Gguf, files));
    }
    if extension.eq_ignore_ascii_case("safetensors") {
        return Ok((CheckpointFormat::Safetensors, vec![path.to_path_buf()]));
    }
    Err(not("not a .safetensors, .gguf or model.safetensors.index.json file".into()))
}

/// Reads the headers of the checkpoint at `path`.
///
/// # Errors
/// A missing shard, an invalid header (naming the file, offset or key), or a
/// path that holds no checkpoint.
pub fn read_checkpoint(path: &Path) -> Result<Checkpoint, CheckpointError> {
    let (format, files) = locate(path)?;
    // A bare file name's parent is "": the current folder.
    let dir = if path.is_dir() {
        Some(path)
    } else {
        path.parent().map(|p| if p.as_os_str().is_empty() { Path::new(".") } else { p })
    };
    let config_dir =
        dir.filter(|d| d.join("config.json").is_file()).map(std::path::Path::to_path_buf);
    match format {
        CheckpointFormat::Safetensors => {
            let mut headers = Vec::new();
            for file in &files {
                headers.push(safetensors::read_path(file)?);
            }
            Ok(from_safetensors(files, headers, config_dir))
        }
        CheckpointFormat::Gguf => {
            let headers: Vec<GgufHeader> =
                files.iter().map(|f| gguf::read_path(f)).collect::<Result<_, _>>()?;
            Ok(from_gguf(files, &headers, config_dir))
        }
    }
}

fn empty(format: CheckpointFormat, files: Vec<PathBuf>, config_dir: Option<PathBuf>) -> Checkpoint {
    Checkpoint {
        format,
        files,
        tensors: 0,
        stored_bytes: 0,
        logical_parameters: 0,
        auxiliary_bytes: 0,
        by_type: BTreeMap::new(),
        by_format: BTreeMap::new(),
        metadata: Vec::new(),
        unknown_type_tensors: 0,
        config_dir,
    }
}

/// The checkpoint the parsed headers of its safetensors `files` describe
/// (from disk or from the Hub).
pub fn from_safetensors(
    files: Vec<PathBuf>,
    headers: Vec<SafetensorsHeader>,
    config_dir: Option<PathBuf>,
) -> Checkpoint {
    let mut checkpoint = empty(CheckpointFormat::Safetensors, files, config_dir);
    let tensors: Vec<_> = headers.into_iter().flat_map(|h| h.tensors).collect();
    for tensor in &tensors {
        let name = tensor.dtype.name();
        // Look up before inserting: one String per type, not per tensor.
        if !checkpoint.by_type.contains_key(name) {
            checkpoint.by_type.insert(name.to_owned(), TypeTotals::default());
        }
        let Some(totals) = checkpoint.by_type.get_mut(name) else { continue };
        totals.tensors += 1;
        totals.elements = totals.elements.saturating_add(tensor.elements());
        totals.bytes = totals.bytes.saturating_add(tensor.byte_len);
    }
    let summary = count_logical_parameters(&tensors);
    checkpoint.tensors = tensors.len() as u64;
    checkpoint.stored_bytes = summary.stored_bytes;
    checkpoint.logical_parameters = summary.logical_parameters;
    checkpoint.auxiliary_bytes = summary.auxiliary_bytes;
    checkpoint.by_format = summary
        .by_format
        .iter()
        .filter(|(format, _)| **format != StorageFormat::Plain)
        .map(|(format, totals)| (format.name(), *totals))
        .collect();
    checkpoint
}

/// The checkpoint the parsed headers of its GGUF `files` describe (from disk or from the Hub).
pub fn from_gguf(
    files: Vec<PathBuf>,
    headers: &[GgufHeader],
    config_dir: Option<PathBuf>,
) -> Checkpoint {
    let mut checkpoint = empty(CheckpointFormat::Gguf, files, config_dir);
    for header in headers {
        for tensor in &header.tensors {
            let name = tensor.ggml_type.name();
            if !checkpoint.by_type.contains_key(name) {
                checkpoint.by_type.insert(name.to_owned(), TypeTotals::default());
            }
            let Some(totals) = checkpoint.by_type.get_mut(name) else { continue };
            totals.tensors += 1;
            totals.elements = totals.elements.saturating_add(tensor.elements);
            totals.bytes = totals.bytes.saturating_add(tensor.byte_len.unwrap_or(0));
        }
        checkpoint.tensors += header.tensors.len() as u64;
        checkpoint.stored_bytes = checkpoint.stored_bytes.saturating_add(header.known_bytes);
        checkpoint.logical_parameters =
            checkpoint.logical_parameters.saturating_add(header.total_elements);
        checkpoint.unknown_type_tensors += header.unknown_type_tensors;
    }
    if let Some(first) = headers.first() {
        checkpoint.metadata = gguf_metadata(first);
    }
    checkpoint
}

/// The architecture and its shape keys from a GGUF header, as text.
fn gguf_metadata(header: &GgufHeader) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let Some(arch) = header.architecture() else { return out };
    out.push(("general.architecture".to_owned(), arch.to_owned()));
    if let Some(name) = header.get_str("general.name") {
        out.push(("general.name".to_owned(), name.to_owned()));
    }
    for suffix in [
        "block_count",
        "context_length",
        "embedding_length",
        "feed_forward_length",
        "attention.head_count",
        "attention.head_count_kv",
        "attention.key_length",
        "attention.value_length",
        "expert_count",
        "expert_used_count",
    ] {
        let key = format!("{arch}.{suffix}");
        if let Some(value) = header.get_u64(&key) {
            out.push((key, value.to_string()));
        } else if let Some(values) = header.get_u64_array(&key) {
            // Per-layer values (hybrid models): the range.
            if let (Some(min), Some(max)) = (values.iter().min(), values.iter().max()) {
                out.push((key, format!("{min}–{max} (per layer)")));
            }
        }
    }
    if let Some(vocab) = header.array_len("tokenizer.ggml.tokens") {
        out.push(("tokenizer.ggml.tokens".to_owned(), format!("{vocab} tokens")));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listings_give_the_checkpoint_files_and_one_entry_per_gguf_model() {
        let names = [
            "config.json",
            "model-00002-of-00002.safetensors",
            "adapter_model.safetensors",
            "model-00001-of-00002.safetensors",
            "m-Q8_0.GGUF",
            "m-Q4_K_M-00002-of-00002.gguf",
            "m-Q4_K_M-00001-of-00002.gguf",
            "README.md",
        ];
        assert_eq!(
            safetensors_files(names),
            ["model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors"]
        );
        // Two models: the Q8_0 file and the Q4_K_M split (by its first part).
        assert_eq!(gguf_models(names), ["m-Q4_K_M-00001-of-00002.gguf", "m-Q8_0.GGUF"]);
        assert!(gguf_models(["a.safetensors"]).is_empty());
    }
}
