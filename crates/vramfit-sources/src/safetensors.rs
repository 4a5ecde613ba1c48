/*!
safetensors headers: per-tensor dtype, shape and bytes, read from the header alone.

A `.safetensors` file is an 8-byte little-endian length `N`, then `N` bytes of JSON (the
header), then the tensor data. Only the first `8 + N` bytes are read here, so a 140 GB
checkpoint is measured in milliseconds, and the same code serves a local file, an in-memory
buffer, or a range-fetched prefix from the Hub.

Every header is untrusted input: `N` is checked against [`MAX_HEADER_SIZE`] (the limit of the
`safetensors` crate and Python package) before anything is read, the header is read through
[`std::io::Read::take`] so nothing is allocated from `N` itself, arithmetic is checked, and no
byte sequence makes these functions panic.

```
use vramfit_sources::safetensors::{Dtype, parse_bytes};

// A header written by hand: one BF16 tensor of 2 × 3 elements.
let json = br#"{"w":{"dtype":"BF16","shape":[2,3],"data_offsets":[0,12]}}"#;
let mut file = (json.len() as u64).to_le_bytes().to_vec();
file.extend_from_slice(json);
let header = parse_bytes(&file, "model.safetensors")?;
assert_eq!(header.total_bytes, 12);
assert_eq!(header.tensors[0].dtype, Dtype::BF16);
# Ok::<(), vramfit_sources::safetensors::SafetensorsError>(())
```

Sharded checkpoints list their shards in `model.safetensors.index.json`: see
[`parse_index_bytes`]. Quantized checkpoints (GPTQ, AWQ, bitsandbytes, FP8, MXFP4) store
packed weights and companion tensors: [`count_logical_parameters`] sees through them.
*/

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io::Read;
use std::path::Path;

use serde_json::Value;

/// The largest header accepted, in bytes: `MAX_HEADER_SIZE` of the `safetensors` crate.
pub const MAX_HEADER_SIZE: u64 = 100_000_000;

/// The largest `model.safetensors.index.json` accepted, in bytes. Real indexes of models with
/// tens of thousands of tensors are a few MB.
pub const MAX_INDEX_SIZE: u64 = 64 * 1024 * 1024;

/// The most tensors one header may list: the largest real checkpoints (a
/// trillion-parameter MoE with every expert its own tensor) hold about 100,000
/// in all their shards. Each costs about 150 bytes parsed, so this bounds a
/// hostile header's parse near 150 MB.
pub const MAX_TENSORS: usize = 1_000_000;

/// The key of the free-form string map in a header.
pub const METADATA_KEY: &str = "__metadata__";

/// Why a safetensors header or index could not be read. Every message names the file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SafetensorsError {
    /// Reading failed.
    #[error("`{file}`: cannot read at byte {offset}: {error}")]
    Io {
        /// The file (as named by the caller).
        file: String,
        /// Byte offset of the read that failed.
        offset: u64,
        /// The operating system's reason.
        error: std::io::Error,
    },
    /// The bytes end before what the header declares.
    #[error(
        "`{file}`: truncated: expected {expected} bytes at byte offset {offset}, found {found}"
    )]
    Truncated {
        /// The file.
        file: String,
        /// Where the short read started.
        offset: u64,
        /// How many bytes were expected there.
        expected: u64,
        /// How many were there.
        found: u64,
    },
    /// The 8-byte length at offset 0 is above the limit.
    #[error(
        "`{file}`: the header length at byte offset 0 is {declared} bytes, above the limit of {limit} bytes (not a safetensors file, or a corrupt one)"
    )]
    HeaderTooLarge {
        /// The file.
        file: String,
        /// The declared header length.
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// The header is not valid JSON.
    #[error("`{file}`: the header is not valid JSON: {message} (line {line}, column {column})")]
    Json {
        /// The file.
        file: String,
        /// The JSON parser's message.
        message: String,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// A key holds a value of the wrong shape.
    #[error("`{file}`: key `{key}`: expected {expected}")]
    InvalidKey {
        /// The file.
        file: String,
        /// The key, dotted for nested keys (`model.embed.weight.shape`).
        key: String,
        /// What was expected.
        expected: String,
    },
    /// A tensor's byte range disagrees with its dtype and shape, or with its neighbours.
    #[error("`{file}`: tensor `{tensor}`: {reason}")]
    InvalidTensor {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// What is wrong and what was expected.
        reason: String,
    },
    /// The file's length disagrees with the header.
    #[error(
        "`{file}`: the header declares {expected} bytes in all (8 + header + data) but the file has {actual} bytes"
    )]
    FileLength {
        /// The file.
        file: String,
        /// `8 + N + data length`.
        expected: u64,
        /// The file's length.
        actual: u64,
    },
    /// An index file is above [`MAX_INDEX_SIZE`].
    #[error("`{file}`: the index is {declared} bytes or more, above the limit of {limit} bytes")]
    IndexTooLarge {
        /// The file.
        file: String,
        /// Its size (or a lower bound).
        declared: u64,
        /// The limit.
        limit: u64,
    },
    /// A header lists more than [`MAX_TENSORS`] tensors.
    #[error("`{file}`: the header lists about {count} tensors, above the limit of {limit}")]
    TooManyTensors {
        /// The file.
        file: String,
        /// The tensors counted before parsing.
        count: usize,
        /// The limit.
        limit: usize,
    },
}

/// A safetensors dtype, with the bit width of one element.
///
/// The names are the header's `dtype` strings. A string this crate doesn't know is kept as
/// [`Dtype::Unknown`]; its bytes are taken from the tensor's `data_offsets`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[allow(non_camel_case_types)] // the header's own spellings (F8_E4M3), not Rust's
#[non_exhaustive]
pub enum Dtype {
    /// Boolean, one byte.
    BOOL,
    /// FP4 E2M1 (MXFP4/NVFP4 element), 4 bits.
    F4,
    /// FP6 E2M3, 6 bits.
    F6_E2M3,
    /// FP6 E3M2, 6 bits.
    F6_E3M2,
    /// Unsigned 8-bit integer.
    U8,
    /// Signed 8-bit integer.
    I8,
    /// FP8 E5M2.
    F8_E5M2,
    /// FP8 E4M3 (`float8_e4m3fn`).
    F8_E4M3,
    /// FP8 E8M0 (an MX block scale).
    F8_E8M0,
    /// FP8 E4M3 without negative zero (`float8_e4m3fnuz`).
    F8_E4M3FNUZ,
    /// FP8 E5M2 without negative zero (`float8_e5m2fnuz`).
    F8_E5M2FNUZ,
    /// Signed 16-bit integer.
    I16,
    /// Unsigned 16-bit integer.
    U16,
    /// IEEE half precision.
    F16,
    /// bfloat16.
    BF16,
    /// Signed 32-bit integer.
    I32,
    /// Unsigned 32-bit integer.
    U32,
    /// IEEE single precision.
    F32,
    /// Complex of two F32.
    C64,
    /// IEEE double precision.
    F64,
    /// Signed 64-bit integer.
    I64,
    /// Unsigned 64-bit integer.
    U64,
    /// A dtype string not known here.
    Unknown(String),
}

impl Dtype {
    /// Every dtype this parser knows, in the `safetensors` crate's order.
    pub const KNOWN: [Dtype; 22] = [
        Self::BOOL,
        Self::F4,
        Self::F6_E2M3,
        Self::F6_E3M2,
        Self::U8,
        Self::I8,
        Self::F8_E5M2,
        Self::F8_E4M3,
        Self::F8_E8M0,
        Self::F8_E4M3FNUZ,
        Self::F8_E5M2FNUZ,
        Self::I16,
        Self::U16,
        Self::F16,
        Self::BF16,
        Self::I32,
        Self::U32,
        Self::F32,
        Self::C64,
        Self::F64,
        Self::I64,
        Self::U64,
    ];

    /// The dtype named by a header's `dtype` string (exact, case-sensitive as written by the
    /// writers). A test checks it agrees with [`Dtype::name`] on every dtype of
    /// [`Dtype::KNOWN`].
    pub fn from_name(name: &str) -> Self {
        match name {
            "BOOL" => Self::BOOL,
            "F4" => Self::F4,
            "F6_E2M3" => Self::F6_E2M3,
            "F6_E3M2" => Self::F6_E3M2,
            "U8" => Self::U8,
            "I8" => Self::I8,
            "F8_E5M2" => Self::F8_E5M2,
            "F8_E4M3" => Self::F8_E4M3,
            "F8_E8M0" => Self::F8_E8M0,
            "F8_E4M3FNUZ" => Self::F8_E4M3FNUZ,
            "F8_E5M2FNUZ" => Self::F8_E5M2FNUZ,
            "I16" => Self::I16,
            "U16" => Self::U16,
            "F16" => Self::F16,
            "BF16" => Self::BF16,
            "I32" => Self::I32,
            "U32" => Self::U32,
            "F32" => Self::F32,
            "C64" => Self::C64,
            "F64" => Self::F64,
            "I64" => Self::I64,
            "U64" => Self::U64,
            other => Self::Unknown(other.to_owned()),
        }
    }

    /// The header's `dtype` string.
    pub fn name(&self) -> &str {
        match self {
            Self::BOOL => "BOOL",
            Self::F4 => "F4",
            Self::F6_E2M3 => "F6_E2M3",
            Self::F6_E3M2 => "F6_E3M2",
            Self::U8 => "U8",
            Self::I8 => "I8",
            Self::F8_E5M2 => "F8_E5M2",
            Self::F8_E4M3 => "F8_E4M3",
            Self::F8_E8M0 => "F8_E8M0",
            Self::F8_E4M3FNUZ => "F8_E4M3FNUZ",
            Self::F8_E5M2FNUZ => "F8_E5M2FNUZ",
            Self::I16 => "I16",
            Self::U16 => "U16",
            Self::F16 => "F16",
            Self::BF16 => "BF16",
            Self::I32 => "I32",
            Self::U32 => "U32",
            Self::F32 => "F32",
            Self::C64 => "C64",
            Self::F64 => "F64",
            Self::I64 => "I64",
            Self::U64 => "U64",
            Self::Unknown(name) => name,
        }
    }

    /// Bits of one element (`Dtype::bitsize` of the `safetensors` crate); `None` when unknown.
    pub fn bits(&self) -> Option<u64> {
        Some(match self {
            Self::F4 => 4,
            Self::F6_E2M3 | Self::F6_E3M2 => 6,
            Self::BOOL
            | Self::U8
            | Self::I8
            | Self::F8_E5M2
            | Self::F8_E4M3
            | Self::F8_E8M0
            | Self::F8_E4M3FNUZ
            | Self::F8_E5M2FNUZ => 8,
            Self::I16 | Self::U16 | Self::F16 | Self::BF16 => 16,
            Self::I32 | Self::U32 | Self::F32 => 32,
            Self::C64 | Self::F64 | Self::I64 | Self::U64 => 64,
            Self::Unknown(_) => return None,
        })
    }

    /// Whether this is one of the 8-bit float formats.
    pub fn is_fp8(&self) -> bool {
        matches!(
            self,
            Self::F8_E5M2 | Self::F8_E4M3 | Self::F8_E8M0 | Self::F8_E4M3FNUZ | Self::F8_E5M2FNUZ
        )
    }
}

impl fmt::Display for Dtype {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One tensor of a header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorEntry {
    /// The tensor's name (`model.layers.0.self_attn.q_proj.weight`).
    pub name: String,
    /// Its dtype.
    pub dtype: Dtype,
    /// Its shape; empty for a scalar.
    pub shape: Vec<u64>,
    /// `[begin, end)` in the data section (after the header).
    pub data_offsets: (u64, u64),
    /// `end − begin`: its stored bytes.
    pub byte_len: u64,
}

impl TensorEntry {
    /// The number of elements: the product of the shape (1 for a scalar). Checked when the
    /// header was parsed, so it never overflows for a parsed entry.
    pub fn elements(&self) -> u64 {
        checked_product(&self.shape).unwrap_or(u64::MAX)
    }
}

/// A parsed safetensors header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsHeader {
    /// The file, as named by the caller.
    pub file: String,
    /// `N`: the JSON header's length in bytes. The data starts at byte `8 + N`.
    pub header_len: u64,
    /// The `__metadata__` map (empty when absent).
    pub metadata: BTreeMap<String, String>,
    /// The tensors, sorted by their data offset.
    pub tensors: Vec<TensorEntry>,
    /// The bytes of all tensors: the data section's length.
    pub total_bytes: u64,
    /// Bytes per dtype.
    pub bytes_by_dtype: BTreeMap<Dtype, u64>,
}

impl SafetensorsHeader {
    /// The file length the header implies: `8 + N + total_bytes`.
    pub fn expected_file_len(&self) -> Option<u64> {
        8u64.checked_add(self.header_len)?.checked_add(self.total_bytes)
    }

    /// Checks the file's actual length against the header (a truncated download fails here).
    pub fn check_file_len(&self, actual: u64) -> Result<(), SafetensorsError> {
        let expected = self.expected_file_len().unwrap_or(u64::MAX);
        if expected == actual {
            Ok(())
        } else {
            Err(SafetensorsError::FileLength { file: self.file.clone(), expected, actual })
        }
    }

    /// The tensor named `name`, if any.
    pub fn tensor(&self, name: &str) -> Option<&TensorEntry> {
        self.tensors.iter().find(|t| t.name == name)
    }
}

/// Reads a header from the start of `reader`: the 8-byte length, then exactly that many bytes.
/// Reads nothing past the header. `file` names the source in errors.
pub fn read_header<R: Read>(reader: R, file: &str) -> Result<SafetensorsHeader, SafetensorsError> {
    read_header_bounded(reader, file, None)
}

/// Like [`read_header`], with the file's total length known: a header longer than the file is
/// rejected before it is read.
pub fn read_header_bounded<R: Read>(
    mut reader: R,
    file: &str,
    file_len: Option<u64>,
) -> Result<SafetensorsHeader, SafetensorsError> {
    let mut len_bytes = [0u8; 8];
    let got = read_up_to(&mut reader, &mut len_bytes, file, 0)?;
    if got < 8 {
        return Err(SafetensorsError::Truncated {
            file: file.to_owned(),
            offset: 0,
            expected: 8,
            found: got as u64,
        });
    }
    let declared = u64::from_le_bytes(len_bytes);
    if declared > MAX_HEADER_SIZE {
        return Err(SafetensorsError::HeaderTooLarge {
            file: file.to_owned(),
            declared,
            limit: MAX_HEADER_SIZE,
        });
    }
    if let Some(file_len) = file_len {
        let available = file_len.saturating_sub(8);
        if declared > available {
            return Err(SafetensorsError::Truncated {
                file: file.to_owned(),
                offset: 8,
                expected: declared,
                found: available,
            });
        }
    }
    // `take` bounds the read; `read_to_end` grows the buffer as bytes arrive, so a lying
    // length costs nothing until the bytes are really there.
    let mut json = Vec::new();
    reader.take(declared).read_to_end(&mut json).map_err(|error| SafetensorsError::Io {
        file: file.to_owned(),
        offset: 8,
        error,
    })?;
    let found = json.len() as u64;
    if found < declared {
        return Err(SafetensorsError::Truncated {
            file: file.to_owned(),
            offset: 8,
            expected: declared,
            found,
        });
    }
    parse_header_json(&json, declared, file)
}

/// Parses a header from bytes that start at the file's first byte (the whole file, or any
/// prefix holding at least `8 + N` bytes).
pub fn parse_bytes(bytes: &[u8], file: &str) -> Result<SafetensorsHeader, SafetensorsError> {
    read_header(bytes, file)
}

/// Reads the header of a local file and checks the file's length against it.
pub fn read_path(path: &Path) -> Result<SafetensorsHeader, SafetensorsError> {
    let file = path.display().to_string();
    let handle = crate::files::open_regular(path).map_err(|error| SafetensorsError::Io {
        file: file.clone(),
        offset: 0,
        error,
    })?;
    let len = handle
        .metadata()
        .map_err(|error| SafetensorsError::Io { file: file.clone(), offset: 0, error })?
        .len();
    let header = read_header_bounded(std::io::BufReader::new(handle), &file, Some(len))?;
    header.check_file_len(len)?;
    Ok(header)
}

/// Parses the JSON header itself (the `N` bytes after the length). `header_len` is recorded
/// in the result; pass `json.len()` when unsure.
pub fn parse_header_json(
    json: &[u8],
    header_len: u64,
    file: &str,
) -> Result<SafetensorsHeader, SafetensorsError> {
    // Fast path: each tensor deserialized and checked straight into one vector,
    // sized beforehand (a header of a million tensors holds them once, never a
    // JSON tree of them). What it does not accept as JSON (a wrong type) goes
    // through the generic path, which names the key at fault, when the header
    // is small; a large one gets the JSON error itself (line and column), as the
    // generic path would build the very tree the fast path avoids.
    let count = count_tensors(json);
    if count > MAX_TENSORS {
        return Err(SafetensorsError::TooManyTensors {
            file: file.to_owned(),
            count,
            limit: MAX_TENSORS,
        });
    }
    let invalid = std::cell::RefCell::new(None);
    let seed = FastHeaderSeed { file, invalid: &invalid, capacity: count };
    let mut deserializer = serde_json::Deserializer::from_slice(json);
    let parsed = serde::de::DeserializeSeed::deserialize(seed, &mut deserializer)
        .and_then(|fast| deserializer.end().map(|()| fast));
    if let Some(error) = invalid.into_inner() {
        return Err(error);
    }
    let (metadata, mut tensors) = match parsed {
        Ok(fast) if fast.duplicate_name().is_some() => {
            let name = fast.duplicate_name().unwrap_or_default().to_owned();
            return Err(invalid_tensor(file, &name, "appears twice in the header".to_owned()));
        }
        Ok(fast) => (fast.metadata.unwrap_or_default(), fast.tensors),
        Err(_) if generic_path_affordable(json) => parse_generic(json, file)?,
        Err(error) => return Err(json_error(&error, file)),
    };
    // A total order (offsets, then the unique name): no stable sort's buffer needed.
    tensors.sort_unstable_by(|a, b| {
        a.data_offsets.cmp(&b.data_offsets).then_with(|| a.name.cmp(&b.name))
    });
    let mut end_of_previous = 0u64;
    let mut bytes_by_dtype: BTreeMap<Dtype, u64> = BTreeMap::new();
    for tensor in &tensors {
        let (begin, end) = tensor.data_offsets;
        if begin != end_of_previous {
            let reason = if begin < end_of_previous {
                format!(
                    "data_offsets [{begin}, {end}] overlap the previous tensor, which ends at {end_of_previous}"
                )
            } else {
                format!(
                    "data_offsets [{begin}, {end}] leave a gap: expected it to begin at {end_of_previous}"
                )
            };
            return Err(invalid_tensor(file, &tensor.name, reason));
        }
        end_of_previous = end;
        let slot = bytes_by_dtype.entry(tensor.dtype.clone()).or_insert(0);
        // Cannot overflow: the ranges are contiguous from 0, so every sum is at most `end`.
        *slot = slot.saturating_add(tensor.byte_len);
    }
    Ok(SafetensorsHeader {
        file: file.to_owned(),
        header_len,
        metadata,
        tensors,
        total_bytes: end_of_previous,
        bytes_by_dtype,
    })
}

/// The generic path: the header as a JSON value, each key checked by name.
fn parse_generic(
    json: &[u8],
    file: &str,
) -> Result<(BTreeMap<String, String>, Vec<TensorEntry>), SafetensorsError> {
    let value: Value = serde_json::from_slice(json).map_err(|e| json_error(&e, file))?;
    let Value::Object(map) = value else {
        return Err(invalid_key(file, "(header)", "a JSON object of tensors"));
    };
    let mut metadata = BTreeMap::new();
    let mut tensors = Vec::new();
    for (name, entry) in &map {
        if name == METADATA_KEY {
            metadata = parse_metadata(entry, file)?;
        } else {
            tensors.push(parse_tensor(name, entry, file)?);
        }
    }
    Ok((metadata, tensors))
}

/// The largest header or index whose malformed JSON is read again as a
/// generic tree to name the key at fault (real headers of 100,000 tensors
/// take about 10 MB) ...
const GENERIC_PATH_MAX: usize = 16 * 1024 * 1024;

/// ... and the most values that tree may hold (about 160 bytes each).
const GENERIC_PATH_VALUES: usize = 500_000;

/// Whether a malformed header or index is small enough to read again as a
/// JSON tree for a better message.
fn generic_path_affordable(json: &[u8]) -> bool {
    json.len() <= GENERIC_PATH_MAX && crate::config::json_values(json) <= GENERIC_PATH_VALUES
}

/// Tensors a header holds, counted before parsing by their `data_offsets`
/// keys (a key inside a name or the metadata only adds to the estimate), so
/// that their vector is allocated once; at most one per 40 bytes of header.
fn count_tensors(json: &[u8]) -> usize {
    let count = json.split(|byte| *byte == b'"').filter(|part| *part == b"data_offsets").count();
    count.min(json.len() / 40 + 1)
}

/// A tensor entry as the fast path reads it.
#[derive(serde::Deserialize)]
struct FastTensor {
    #[serde(deserialize_with = "dtype_by_name")]
    dtype: Dtype,
    shape: Vec<u64>,
    data_offsets: (u64, u64),
}

/// A dtype read from its name without keeping the string.
fn dtype_by_name<'de, D: serde::Deserializer<'de>>(deserializer: D) -> Result<Dtype, D::Error> {
    let name: std::borrow::Cow<'de, str> = serde::Deserialize::deserialize(deserializer)?;
    Ok(Dtype::from_name(&name))
}

/// A header as the fast path reads it: `__metadata__` as its map of strings,
/// each tensor checked as it is read.
struct FastHeader {
    metadata: Option<BTreeMap<String, String>>,
    tensors: Vec<TensorEntry>,
}

impl FastHeader {
    fn duplicate_name(&self) -> Option<&str> {
        // Writers usually list names in order: then one linear pass proves them unique
        // (sorting 100,000 names sharing long prefixes costs more than the parse).
        if self.tensors.windows(2).all(|w| w[0].name < w[1].name) {
            return None;
        }
        let mut seen = std::collections::HashSet::with_capacity(self.tensors.len());
        self.tensors.iter().map(|t| t.name.as_str()).find(|name| !seen.insert(*name))
    }
}

/// The most `__metadata__` entries read: writers put a handful there
/// (`format`, a few provenance strings); a hostile header could put millions.
pub const MAX_METADATA_ENTRIES: usize = 10_000;

/// Reads `__metadata__` as a map of strings of at most [`MAX_METADATA_ENTRIES`]
/// (more is kept in `invalid` as an error naming the key).
struct MetadataSeed<'a> {
    file: &'a str,
    invalid: &'a std::cell::RefCell<Option<SafetensorsError>>,
}

impl<'de> serde::de::DeserializeSeed<'de> for MetadataSeed<'_> {
    type Value = BTreeMap<String, String>;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<Self::Value, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for MetadataSeed<'_> {
    type Value = BTreeMap<String, String>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("an object of strings")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut out = BTreeMap::new();
        while let Some((key, value)) = map.next_entry::<String, String>()? {
            if out.len() >= MAX_METADATA_ENTRIES {
                *self.invalid.borrow_mut() = Some(invalid_key(
                    self.file,
                    METADATA_KEY,
                    &format!("an object of at most {MAX_METADATA_ENTRIES} strings"),
                ));
                return Err(serde::de::Error::custom("too many metadata entries"));
            }
            out.insert(key, value);
        }
        Ok(out)
    }
}

/// Reads a [`FastHeader`]; a tensor that fails its checks is kept in `invalid`
/// (the parse then stops with a placeholder JSON error).
struct FastHeaderSeed<'a> {
    file: &'a str,
    invalid: &'a std::cell::RefCell<Option<SafetensorsError>>,
    capacity: usize,
}

impl<'de> serde::de::DeserializeSeed<'de> for FastHeaderSeed<'_> {
    type Value = FastHeader;

    fn deserialize<D: serde::Deserializer<'de>>(
        self,
        deserializer: D,
    ) -> Result<FastHeader, D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for FastHeaderSeed<'_> {
    type Value = FastHeader;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a safetensors header object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<FastHeader, A::Error> {
        let mut header = FastHeader { metadata: None, tensors: Vec::with_capacity(self.capacity) };
        while let Some(key) = map.next_key::<String>()? {
            if key == METADATA_KEY {
                if header.metadata.is_some() {
                    return Err(serde::de::Error::custom("duplicate __metadata__"));
                }
                header.metadata =
                    Some(map.next_value_seed(MetadataSeed {
                        file: self.file,
                        invalid: self.invalid,
                    })?);
            } else {
                if header.tensors.len() >= MAX_TENSORS {
                    *self.invalid.borrow_mut() = Some(SafetensorsError::TooManyTensors {
                        file: self.file.to_owned(),
                        count: header.tensors.len() + 1,
                        limit: MAX_TENSORS,
                    });
                    return Err(serde::de::Error::custom("too many tensors"));
                }
                let t: FastTensor = map.next_value()?;
                match validate_tensor(key, t.dtype, t.shape, t.data_offsets, self.file) {
                    Ok(entry) => header.tensors.push(entry),
                    Err(error) => {
                        *self.invalid.borrow_mut() = Some(error);
                        return Err(serde::de::Error::custom("an invalid tensor"));
                    }
                }
            }
        }
        Ok(header)
    }
}

fn parse_metadata(value: &Value, file: &str) -> Result<BTreeMap<String, String>, SafetensorsError> {
    match value {
        Value::Null => Ok(BTreeMap::new()),
        Value::Object(map) => map
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), s.clone())),
                _ => Err(invalid_key(file, &format!("{METADATA_KEY}.{k}"), "a string")),
            })
            .collect(),
        _ => Err(invalid_key(file, METADATA_KEY, "an object of strings")),
    }
}

fn parse_tensor(name: &str, value: &Value, file: &str) -> Result<TensorEntry, SafetensorsError> {
    let Value::Object(fields) = value else {
        return Err(invalid_key(file, name, "an object with `dtype`, `shape` and `data_offsets`"));
    };
    let dtype = match fields.get("dtype") {
        Some(Value::String(s)) => Dtype::from_name(s),
        _ => return Err(invalid_key(file, &format!("{name}.dtype"), "a dtype string")),
    };
    let shape = match fields.get("shape") {
        Some(Value::Array(dims)) => {
            dims.iter().map(Value::as_u64).collect::<Option<Vec<u64>>>().ok_or_else(|| {
                invalid_key(file, &format!("{name}.shape"), "an array of non-negative integers")
            })?
        }
        _ => {
            return Err(invalid_key(
                file,
                &format!("{name}.shape"),
                "an array of non-negative integers",
            ));
        }
    };
    let offsets = match fields.get("data_offsets") {
        Some(Value::Array(pair)) if pair.len() == 2 => pair[0].as_u64().zip(pair[1].as_u64()),
        _ => None,
    };
    let Some((begin, end)) = offsets else {
        return Err(invalid_key(
            file,
            &format!("{name}.data_offsets"),
            "[begin, end]: two non-negative integers",
        ));
    };
    if end < begin {
        return Err(invalid_tensor(
            file,
            name,
            format!("data_offsets [{begin}, {end}] end before they begin"),
        ));
    }
    validate_tensor(name.to_owned(), dtype, shape, (begin, end), file)
}

/// Checks a tensor's offsets against its dtype and shape.
fn validate_tensor(
    owned_name: String,
    dtype: Dtype,
    shape: Vec<u64>,
    (begin, end): (u64, u64),
    file: &str,
) -> Result<TensorEntry, SafetensorsError> {
    let name = owned_name.as_str();
    if end < begin {
        return Err(invalid_tensor(
            file,
            name,
            format!("data_offsets [{begin}, {end}] end before they begin"),
        ));
    }
    let byte_len = end - begin;
    let Some(elements) = checked_product(&shape) else {
        return Err(invalid_tensor(
            file,
            name,
            format!("shape {shape:?} has more than 2^64 elements"),
        ));
    };
    match dtype.bits() {
        Some(bits) => {
            let Some(expected) = elements.checked_mul(bits).map(|b| b.div_ceil(8)) else {
                return Err(invalid_tensor(
                    file,
                    name,
                    format!("shape {shape:?} of {dtype} is more than 2^64 bits"),
                ));
            };
            if expected != byte_len {
                return Err(invalid_tensor(
                    file,
                    name,
                    format!(
                        "{dtype} of shape {shape:?} needs {expected} bytes, but data_offsets [{begin}, {end}] hold {byte_len}"
                    ),
                ));
            }
        }
        None => {
            // An unknown dtype is counted by its offsets when they are a whole number of bits
            // per element; otherwise the header is not trustworthy.
            let consistent = if elements == 0 {
                byte_len == 0
            } else {
                byte_len > 0 && byte_len.checked_mul(8).is_some_and(|b| b % elements == 0)
            };
            if !consistent {
                return Err(invalid_tensor(
                    file,
                    name,
                    format!(
                        "unknown dtype `{dtype}`: data_offsets [{begin}, {end}] ({byte_len} bytes) are not a whole number of bits for {elements} elements, so its size cannot be known"
                    ),
                ));
            }
        }
    }
    Ok(TensorEntry { name: owned_name, dtype, shape, data_offsets: (begin, end), byte_len })
}

/// A sharded checkpoint's `model.safetensors.index.json`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafetensorsIndex {
    /// The file, as named by the caller.
    pub file: String,
    /// `metadata.total_size`: the bytes of all tensors, when present.
    pub total_size: Option<u64>,
    /// `metadata.total_parameters`, when present (newer transformers write it).
    pub total_parameters: Option<u64>,
    /// `weight_map`: tensor name → shard file name (relative to the index's folder).
    pub weight_map: BTreeMap<String, String>,
}

impl SafetensorsIndex {
    /// The distinct shard file names, sorted.
    pub fn shards(&self) -> Vec<&str> {
        let set: BTreeSet<&str> = self.weight_map.values().map(String::as_str).collect();
        set.into_iter().collect()
    }
}

/// Reads an index from `reader`, at most [`MAX_INDEX_SIZE`] bytes.
pub fn read_index<R: Read>(reader: R, file: &str) -> Result<SafetensorsIndex, SafetensorsError> {
    let mut bytes = Vec::new();
    reader
        .take(MAX_INDEX_SIZE + 1)
        .read_to_end(&mut bytes)
        .map_err(|error| SafetensorsError::Io { file: file.to_owned(), offset: 0, error })?;
    parse_index_bytes(&bytes, file)
}

/// Parses an index's bytes.
///
/// Shard names are checked to be relative paths that stay inside the index's folder (no
/// absolute paths, no `..`, no backslashes), since a caller will join them to a folder.
pub fn parse_index_bytes(bytes: &[u8], file: &str) -> Result<SafetensorsIndex, SafetensorsError> {
    if bytes.len() as u64 > MAX_INDEX_SIZE {
        return Err(SafetensorsError::IndexTooLarge {
            file: file.to_owned(),
            declared: bytes.len() as u64,
            limit: MAX_INDEX_SIZE,
        });
    }
    // Fast path: the weight map read straight into its map, never as a JSON
    // tree beside it; a small index that does not fit it is read again as a
    // tree, to name the key at fault.
    match serde_json::from_slice::<FastIndex>(bytes) {
        Ok(fast) => return index_from_fast(fast, file),
        Err(error) if !generic_path_affordable(bytes) => return Err(json_error(&error, file)),
        Err(_) => {}
    }
    let value: Value = serde_json::from_slice(bytes).map_err(|e| json_error(&e, file))?;
    let Value::Object(map) = value else {
        return Err(invalid_key(file, "(index)", "a JSON object with `weight_map`"));
    };
    let mut total_size = None;
    let mut total_parameters = None;
    match map.get("metadata") {
        None | Some(Value::Null) => {}
        Some(Value::Object(meta)) => {
            total_size = optional_count(meta.get("total_size"), file, "metadata.total_size")?;
            total_parameters =
                optional_count(meta.get("total_parameters"), file, "metadata.total_parameters")?;
        }
        Some(_) => return Err(invalid_key(file, "metadata", "an object")),
    }
    let Some(Value::Object(weights)) = map.get("weight_map") else {
        return Err(invalid_key(file, "weight_map", "an object of tensor name → shard file"));
    };
    let mut weight_map = BTreeMap::new();
    for (tensor, shard) in weights {
        let Value::String(shard) = shard else {
            return Err(invalid_key(file, &format!("weight_map.{tensor}"), "a shard file name"));
        };
        check_shard(tensor, shard, file)?;
        weight_map.insert(tensor.clone(), shard.clone());
    }
    Ok(SafetensorsIndex { file: file.to_owned(), total_size, total_parameters, weight_map })
}

/// An index as the fast path reads it (other metadata fields skipped unread).
#[derive(serde::Deserialize)]
struct FastIndex {
    #[serde(default)]
    metadata: Option<FastIndexMetadata>,
    weight_map: BTreeMap<String, String>,
}

/// The index metadata the fast path reads: two numbers of an object (any
/// other field skipped unread; not an object, it is the generic path's to name).
#[derive(Default)]
struct FastIndexMetadata {
    total_size: Option<serde_json::Number>,
    total_parameters: Option<serde_json::Number>,
}

impl<'de> serde::Deserialize<'de> for FastIndexMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl<'de> serde::de::Visitor<'de> for Visitor {
            type Value = FastIndexMetadata;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an object")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                mut map: A,
            ) -> Result<FastIndexMetadata, A::Error> {
                let mut meta = FastIndexMetadata::default();
                while let Some(key) = map.next_key::<std::borrow::Cow<'de, str>>()? {
                    match key.as_ref() {
                        "total_size" => meta.total_size = map.next_value()?,
                        "total_parameters" => meta.total_parameters = map.next_value()?,
                        _ => {
                            map.next_value::<serde::de::IgnoredAny>()?;
                        }
                    }
                }
                Ok(meta)
            }
        }
        deserializer.deserialize_map(Visitor)
    }
}

/// The index of a [`FastIndex`], its metadata and shard names checked as the
/// generic path checks them.
fn index_from_fast(fast: FastIndex, file: &str) -> Result<SafetensorsIndex, SafetensorsError> {
    let (mut total_size, mut total_parameters) = (None, None);
    if let Some(meta) = fast.metadata {
        let number = |n: Option<serde_json::Number>| n.map(Value::Number);
        total_size = optional_count(number(meta.total_size).as_ref(), file, "metadata.total_size")?;
        total_parameters = optional_count(
            number(meta.total_parameters).as_ref(),
            file,
            "metadata.total_parameters",
        )?;
    }
    for (tensor, shard) in &fast.weight_map {
        check_shard(tensor, shard, file)?;
    }
    Ok(SafetensorsIndex {
        file: file.to_owned(),
        total_size,
        total_parameters,
        weight_map: fast.weight_map,
    })
}

/// A weight map's shard must be a file inside the checkpoint's folder.
fn check_shard(tensor: &str, shard: &str, file: &str) -> Result<(), SafetensorsError> {
    if is_safe_relative_path(shard) {
        return Ok(());
    }
    Err(invalid_key(
        file,
        &format!("weight_map.{tensor}"),
        &format!("a file name inside the checkpoint's folder, not `{}`", shard.escape_debug()),
    ))
}

fn optional_count(
    value: Option<&Value>,
    file: &str,
    key: &str,
) -> Result<Option<u64>, SafetensorsError> {
    match value {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => {
            if let Some(u) = n.as_u64() {
                return Ok(Some(u));
            }
            // Some writers emit `1234.0`; accept whole, non-negative floats below 2^53.
            match n.as_f64() {
                Some(f) if f >= 0.0 && f.fract() == 0.0 && f < 9_007_199_254_740_992.0 =>
                {
                    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
                    Ok(Some(f as u64))
                }
                _ => Err(invalid_key(file, key, "a non-negative integer")),
            }
        }
        Some(_) => Err(invalid_key(file, key, "a non-negative integer")),
    }
}

fn is_safe_relative_path(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('/')
        && !name.contains('\\')
        && !name.contains('\0')
        && !name.contains(':')
        && name.split('/').all(|part| !part.is_empty() && part != "." && part != "..")
}

/// How a tensor stores its values.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum StorageFormat {
    /// One value per element of the stored dtype.
    Plain,
    /// GPTQ or AWQ: `qweight` packs `32 / bits` values per int32, with `qzeros`, `scales`,
    /// `g_idx` companions.
    GptqAwq,
    /// bitsandbytes 4-bit (NF4/FP4): two values per byte of `weight`, with `absmax`,
    /// `quant_map`, `nested_*` and `quant_state.*` companions.
    Bnb4Bit,
    /// bitsandbytes 8-bit (`LLM.int8()`): int8 `weight` with `SCB` and `weight_format`
    /// companions.
    Bnb8Bit,
    /// FP8 weights with `weight_scale` / `weight_scale_inv` / `input_scale` companions.
    Fp8Scaled,
    /// MXFP4: `*_blocks` (two FP4 values per byte) with `*_scales`.
    Mxfp4,
}

impl StorageFormat {
    /// A short name for display.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::GptqAwq => "gptq/awq",
            Self::Bnb4Bit => "bnb-4bit",
            Self::Bnb8Bit => "bnb-8bit",
            Self::Fp8Scaled => "fp8",
            Self::Mxfp4 => "mxfp4",
        }
    }
}

/// Options of [`count_logical_parameters_with`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackingOptions {
    /// GPTQ/AWQ bits per value (`quantization_config.bits`): 2, 3, 4 or 8. Default 4.
    pub gptq_bits: u32,
}

impl Default for PackingOptions {
    fn default() -> Self {
        Self { gptq_bits: 4 }
    }
}

/// One logical weight (a packed tensor seen through, or a plain tensor).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogicalWeight {
    /// The weight's logical name (`…q_proj.weight` for `…q_proj.qweight`; `…gate_up_proj`
    /// for `…gate_up_proj_blocks`).
    pub name: String,
    /// The stored tensor holding its values.
    pub tensor: String,
    /// How it is stored.
    pub format: StorageFormat,
    /// Logical parameters.
    pub logical_parameters: u64,
    /// Bytes of the stored tensor.
    pub stored_bytes: u64,
    /// Bytes of its companion tensors (scales, zeros, quant state).
    pub auxiliary_bytes: u64,
}

/// Totals of one storage format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FormatTotals {
    /// Weights stored this way.
    pub weights: u64,
    /// Their logical parameters.
    pub logical_parameters: u64,
    /// Bytes of the stored tensors.
    pub stored_bytes: u64,
    /// Bytes of their companions.
    pub auxiliary_bytes: u64,
}

/// Logical parameters and stored bytes of a list of tensors.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ParameterSummary {
    /// Parameters as the unquantized model would have them.
    pub logical_parameters: u64,
    /// Bytes of all tensors, companions included.
    pub stored_bytes: u64,
    /// Bytes of the companions alone (scales, zeros, `g_idx`, quant state): they are not
    /// parameters.
    pub auxiliary_bytes: u64,
    /// Totals per storage format.
    pub by_format: BTreeMap<StorageFormat, FormatTotals>,
    /// Every logical weight, in the order of the input.
    pub weights: Vec<LogicalWeight>,
}

/// [`count_logical_parameters_with`] with default options (4-bit GPTQ/AWQ).
pub fn count_logical_parameters(tensors: &[TensorEntry]) -> ParameterSummary {
    count_logical_parameters_with(tensors, PackingOptions::default())
}

/// Counts logical parameters through packed formats. A companion tensor is only treated as
/// one when the tensor it belongs to is present and packed; otherwise it is a plain
/// parameter. Sums saturate (a parsed header's sums cannot overflow: its bytes are bounded).
///
/// bitsandbytes 4-bit pads an odd element count to whole bytes, so `2 × bytes` can exceed the
/// true count by one per tensor; the exact count is only in the `quant_state` tensor's data,
/// which a header does not hold.
pub fn count_logical_parameters_with(
    tensors: &[TensorEntry],
    options: PackingOptions,
) -> ParameterSummary {
    let by_name: HashMap<&str, &TensorEntry> =
        tensors.iter().map(|t| (t.name.as_str(), t)).collect();
    let bnb4_owners: BTreeSet<&str> = tensors
        .iter()
        .filter_map(|t| bnb4_companion_owner(&t.name).filter(|owner| by_name.contains_key(owner)))
        .collect();
    let format_of = |t: &TensorEntry| -> StorageFormat {
        if t.name.ends_with(".qweight") && matches!(t.dtype, Dtype::I32 | Dtype::U32) {
            return StorageFormat::GptqAwq;
        }
        if bnb4_owners.contains(t.name.as_str()) {
            return StorageFormat::Bnb4Bit;
        }
        if let Some(stem) = t.name.strip_suffix("weight")
            && t.dtype == Dtype::I8
            && by_name.contains_key(format!("{stem}SCB").as_str())
        {
            return StorageFormat::Bnb8Bit;
        }
        if let Some(stem) = t.name.strip_suffix(".weight")
            && t.dtype.is_fp8()
            && (by_name.contains_key(format!("{stem}.weight_scale_inv").as_str())
                || by_name.contains_key(format!("{stem}.weight_scale").as_str()))
        {
            return StorageFormat::Fp8Scaled;
        }
        if let Some(stem) = t.name.strip_suffix("_blocks")
            && t.dtype == Dtype::U8
            && by_name.contains_key(format!("{stem}_scales").as_str())
        {
            return StorageFormat::Mxfp4;
        }
        StorageFormat::Plain
    };
    let formats: HashMap<&str, StorageFormat> =
        tensors.iter().map(|t| (t.name.as_str(), format_of(t))).collect();
    let owner_of = |t: &TensorEntry| -> Option<String> {
        let owner_is =
            |owner: &str, format: StorageFormat| formats.get(owner).is_some_and(|f| *f == format);
        let name = t.name.as_str();
        for suffix in [".qzeros", ".scales", ".g_idx"] {
            if let Some(stem) = name.strip_suffix(suffix) {
                let owner = format!("{stem}.qweight");
                if owner_is(&owner, StorageFormat::GptqAwq) {
                    return Some(owner);
                }
            }
        }
        if let Some(owner) = bnb4_companion_owner(name)
            && owner_is(owner, StorageFormat::Bnb4Bit)
        {
            return Some(owner.to_owned());
        }
        for suffix in ["SCB", "weight_format"] {
            if let Some(stem) = name.strip_suffix(suffix) {
                let owner = format!("{stem}weight");
                if owner_is(&owner, StorageFormat::Bnb8Bit) {
                    return Some(owner);
                }
            }
        }
        for suffix in [".weight_scale_inv", ".weight_scale", ".input_scale"] {
            if let Some(stem) = name.strip_suffix(suffix) {
                let owner = format!("{stem}.weight");
                if owner_is(&owner, StorageFormat::Fp8Scaled) {
                    return Some(owner);
                }
            }
        }
        if let Some(stem) = name.strip_suffix("_scales") {
            let owner = format!("{stem}_blocks");
            if owner_is(&owner, StorageFormat::Mxfp4) {
                return Some(owner);
            }
        }
        None
    };

    let owners: Vec<Option<String>> = tensors.iter().map(owner_of).collect();
    let mut auxiliary_of: HashMap<String, u64> = HashMap::new();
    let mut summary = ParameterSummary::default();
    for (t, owner) in tensors.iter().zip(&owners) {
        summary.stored_bytes = summary.stored_bytes.saturating_add(t.byte_len);
        if let Some(owner) = owner {
            let slot = auxiliary_of.entry(owner.clone()).or_insert(0);
            *slot = slot.saturating_add(t.byte_len);
            summary.auxiliary_bytes = summary.auxiliary_bytes.saturating_add(t.byte_len);
        }
    }
    let gptq_bits = u64::from(options.gptq_bits.clamp(1, 32));
    summary.weights.reserve(tensors.len());
    for (t, owner) in tensors.iter().zip(&owners) {
        if owner.is_some() {
            continue;
        }
        let format = formats.get(t.name.as_str()).copied().unwrap_or(StorageFormat::Plain);
        let (name, logical) = match format {
            StorageFormat::GptqAwq => {
                let stem = t.name.strip_suffix(".qweight").unwrap_or(&t.name);
                (format!("{stem}.weight"), t.elements().saturating_mul(32) / gptq_bits)
            }
            StorageFormat::Bnb4Bit => (t.name.clone(), t.byte_len.saturating_mul(2)),
            StorageFormat::Mxfp4 => {
                let stem = t.name.strip_suffix("_blocks").unwrap_or(&t.name);
                (stem.to_owned(), t.byte_len.saturating_mul(2))
            }
            StorageFormat::Plain | StorageFormat::Bnb8Bit | StorageFormat::Fp8Scaled => {
                (t.name.clone(), t.elements())
            }
        };
        let auxiliary_bytes = auxiliary_of.get(&t.name).copied().unwrap_or(0);
        summary.logical_parameters = summary.logical_parameters.saturating_add(logical);
        let totals = summary.by_format.entry(format).or_default();
        totals.weights += 1;
        totals.logical_parameters = totals.logical_parameters.saturating_add(logical);
        totals.stored_bytes = totals.stored_bytes.saturating_add(t.byte_len);
        totals.auxiliary_bytes = totals.auxiliary_bytes.saturating_add(auxiliary_bytes);
        summary.weights.push(LogicalWeight {
            name,
            tensor: t.name.clone(),
            format,
            logical_parameters: logical,
            stored_bytes: t.byte_len,
            auxiliary_bytes,
        });
    }
    summary
}

/// The packed `…weight` that a bitsandbytes 4-bit companion belongs to.
fn bnb4_companion_owner(name: &str) -> Option<&str> {
    for suffix in [".absmax", ".quant_map", ".nested_absmax", ".nested_quant_map"] {
        if let Some(owner) = name.strip_suffix(suffix)
            && owner.ends_with("weight")
        {
            return Some(owner);
        }
    }
    // `{owner}.quant_state.bitsandbytes__{nf4,fp4}`: the last two dotted parts.
    let (head, last) = name.rsplit_once('.')?;
    let owner = head.strip_suffix(".quant_state")?;
    (owner.ends_with("weight") && last.starts_with("bitsandbytes__")).then_some(owner)
}

fn checked_product(dims: &[u64]) -> Option<u64> {
    dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d))
}

/// Reads until `buf` is full or the reader ends; returns how many bytes were read.
fn read_up_to<R: Read>(
    reader: &mut R,
    buf: &mut [u8],
    file: &str,
    offset: u64,
) -> Result<usize, SafetensorsError> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(error) => {
                return Err(SafetensorsError::Io {
                    file: file.to_owned(),
                    offset: offset + filled as u64,
                    error,
                });
            }
        }
    }
    Ok(filled)
}

fn json_error(e: &serde_json::Error, file: &str) -> SafetensorsError {
    SafetensorsError::Json {
        file: file.to_owned(),
        message: e.to_string(),
        line: e.line(),
        column: e.column(),
    }
}

fn invalid_key(file: &str, key: &str, expected: &str) -> SafetensorsError {
    SafetensorsError::InvalidKey {
        file: file.to_owned(),
        key: key.to_owned(),
        expected: expected.to_owned(),
    }
}

fn invalid_tensor(file: &str, tensor: &str, reason: String) -> SafetensorsError {
    SafetensorsError::InvalidTensor { file: file.to_owned(), tensor: tensor.to_owned(), reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_fast_path_reads_what_the_generic_path_reads() {
        let json = r#"{"b":{"dtype":"BF16","shape":[2,3],"data_offsets":[8,20],"extra":1},
            "__metadata__":{"format":"pt"},
            "a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let fast = parse_header_json(json.as_bytes(), json.len() as u64, "f").unwrap();
        let (metadata, mut tensors) = parse_generic(json.as_bytes(), "f").unwrap();
        tensors.sort_by_key(|t| t.data_offsets);
        assert_eq!(fast.metadata, metadata);
        assert_eq!(fast.tensors, tensors);
        // What the fast path refuses, the generic path explains by key.
        let bad = r#"{"a":{"dtype":"F32","shape":[2.5],"data_offsets":[0,8]}}"#;
        let error = parse_header_json(bad.as_bytes(), 0, "f").unwrap_err().to_string();
        assert!(error.contains("a.shape"), "{error}");
        // A name given twice is an error naming it.
        let twice = r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},
            "a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]}}"#;
        let error = parse_header_json(twice.as_bytes(), 0, "f").unwrap_err().to_string();
        assert!(error.contains("`a`") && error.contains("twice"), "{error}");
    }

    fn file_of(json: &str) -> Vec<u8> {
        let mut bytes = (json.len() as u64).to_le_bytes().to_vec();
        bytes.extend_from_slice(json.as_bytes());
        bytes
    }

    #[test]
    fn every_dtype_name_round_trips() {
        for dtype in Dtype::KNOWN {
            let name = dtype.name();
            assert_eq!(Dtype::from_name(name), dtype, "{name}");
            assert!(dtype.bits().is_some(), "{name}");
        }
        assert_eq!(Dtype::from_name("f16"), Dtype::Unknown("f16".into()));
    }

    #[test]
    fn sub_byte_dtypes_round_up() {
        // 3 F4 values: 12 bits → 2 bytes. 5 F6 values: 30 bits → 4 bytes.
        let h = parse_bytes(
            &file_of(
                r#"{"a":{"dtype":"F4","shape":[3],"data_offsets":[0,2]},"b":{"dtype":"F6_E3M2","shape":[5],"data_offsets":[2,6]}}"#,
            ),
            "f",
        )
        .unwrap();
        assert_eq!(h.total_bytes, 6);
    }

    #[test]
    fn gptq_bits_option() {
        let t = TensorEntry {
            name: "l.qweight".into(),
            dtype: Dtype::I32,
            shape: vec![3, 10],
            data_offsets: (0, 120),
            byte_len: 120,
        };
        let s = count_logical_parameters_with(&[t], PackingOptions { gptq_bits: 3 });
        assert_eq!(s.logical_parameters, 30 * 32 / 3);
        assert_eq!(s.weights[0].name, "l.weight");
    }
}
