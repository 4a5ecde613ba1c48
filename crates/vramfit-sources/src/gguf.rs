/*!
GGUF headers: metadata, tensor infos and exact tensor bytes, read from the header alone.

A GGUF file (llama.cpp's format) is: the magic `GGUF`, a `u32` version, a `u64` tensor count, a
`u64` key/value count, the key/values, the tensor infos (name, dims, ggml type, offset), then
padding to `general.alignment` (default 32) and the tensor data. Versions 2 and 3 are read
(little-endian); version 1, which used 32-bit counts, is refused with a clear message.

Every header is untrusted input. Each count and length is checked, before anything is read or
allocated, against what the rest of the file could hold (the caller passes the file's length)
and against an absolute cap ([`GgufLimits`]); arithmetic is checked; nested arrays have a depth
limit; no byte sequence makes these functions panic. Large arrays (the 150k-string
`tokenizer.ggml.tokens`) are walked through with bounded reads and kept as their length only.

```
use vramfit_sources::gguf::{GgmlType, parse_prefix};

// A header written by hand: version 3, no tensors, one key `general.architecture = "llama"`.
let mut b = b"GGUF".to_vec();
b.extend_from_slice(&3u32.to_le_bytes());
b.extend_from_slice(&0u64.to_le_bytes()); // tensors
b.extend_from_slice(&1u64.to_le_bytes()); // key/values
b.extend_from_slice(&20u64.to_le_bytes());
b.extend_from_slice(b"general.architecture");
b.extend_from_slice(&8u32.to_le_bytes()); // STRING
b.extend_from_slice(&5u64.to_le_bytes());
b.extend_from_slice(b"llama");
let header = parse_prefix(&b, "tiny.gguf", b.len() as u64)?;
assert_eq!(header.architecture(), Some("llama"));
assert_eq!(GgmlType::from_id(12).name(), "Q4_K");
# Ok::<(), vramfit_sources::gguf::GgufError>(())
```

A header is often several MB (the tokenizer's arrays). To fetch one remotely, ask for a
prefix (2 MiB is a good start) and call [`parse_prefix`] with the file's full length: it
answers [`GgufError::NeedMoreBytes`] with a lower bound when the prefix is too short.
*/

use std::collections::BTreeMap;
use std::fmt;
use std::io::Read;
use std::path::{Path, PathBuf};

/// The magic bytes at offset 0.
pub const GGUF_MAGIC: [u8; 4] = *b"GGUF";

/// `general.alignment` when the key is absent (`GGUF_DEFAULT_ALIGNMENT`).
pub const DEFAULT_ALIGNMENT: u64 = 32;

/// The most dimensions a tensor may have (`GGML_MAX_DIMS`).
pub const MAX_DIMS: u32 = 4;

/// Absolute caps on what a header may declare, on top of the file-size bounds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct GgufLimits {
    /// The longest string (a key, a value, a tensor name, an array element), in bytes.
    pub max_string_len: u64,
    /// The most elements of one array.
    pub max_array_len: u64,
    /// Arrays longer than this are walked through but kept as their length only.
    pub max_stored_array_len: u64,
    /// The most array elements kept in all (each takes tens of bytes in memory, one in the
    /// file); arrays past this budget are kept as their length only.
    pub max_stored_values: u64,
    /// The deepest nesting of arrays.
    pub max_array_depth: u32,
    /// The most tensors.
    pub max_tensor_count: u64,
    /// The most key/values.
    pub max_kv_count: u64,
}

impl Default for GgufLimits {
    fn default() -> Self {
        Self {
            max_string_len: 64 * 1024 * 1024,
            max_array_len: 1 << 32,
            max_stored_array_len: 4096,
            max_stored_values: 1 << 18,
            max_array_depth: 4,
            max_tensor_count: 1 << 24,
            max_kv_count: 1 << 20,
        }
    }
}

/// Why a GGUF header could not be read. Every message names the file and, where there is
/// one, the byte offset, key or tensor at fault.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GgufError {
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
    /// The file ends inside the header.
    #[error("`{file}`: truncated at byte {offset}: expected {needed} more bytes for {what}")]
    Truncated {
        /// The file.
        file: String,
        /// Where the bytes ran out.
        offset: u64,
        /// How many bytes were still needed there.
        needed: u64,
        /// What was being read.
        what: String,
    },
    /// The prefix given to [`parse_prefix`] is shorter than the header: fetch at least
    /// `need_at_least` bytes from the start and try again.
    #[error(
        "`{file}`: the header continues past the {have} bytes read; at least {need_at_least} are needed"
    )]
    NeedMoreBytes {
        /// The file.
        file: String,
        /// Bytes available.
        have: u64,
        /// A lower bound on the bytes the header needs.
        need_at_least: u64,
    },
    /// Not a GGUF file.
    #[error("`{file}`: not a GGUF file: expected the magic `GGUF` at byte 0, found {found:?}")]
    BadMagic {
        /// The file.
        file: String,
        /// The first bytes.
        found: Vec<u8>,
    },
    /// A version this reader does not support.
    #[error("`{file}`: GGUF version {version} at byte 4 is not supported: {reason}")]
    UnsupportedVersion {
        /// The file.
        file: String,
        /// The version read (little-endian).
        version: u32,
        /// Why, and what to do.
        reason: String,
    },
    /// A count or length above what the file could hold or above a cap.
    #[error("`{file}`: at byte {offset}, {what} declares {declared}, above the limit of {limit}")]
    TooLarge {
        /// The file.
        file: String,
        /// Where the count or length was read.
        offset: u64,
        /// What it counts (the length of key `tokenizer.ggml.tokens`, …).
        what: String,
        /// The declared value.
        declared: u64,
        /// The bound it broke (the bytes left in the file, or a cap).
        limit: u64,
    },
    /// A value of the wrong type or out of range.
    #[error("`{file}`: at byte {offset}, {what}: expected {expected}")]
    InvalidValue {
        /// The file.
        file: String,
        /// Where it was read.
        offset: u64,
        /// What it is.
        what: String,
        /// What was expected.
        expected: String,
    },
    /// A tensor info that cannot be right.
    #[error("`{file}`: tensor `{tensor}`: {reason}")]
    InvalidTensor {
        /// The file.
        file: String,
        /// The tensor.
        tensor: String,
        /// What is wrong and what was expected.
        reason: String,
    },
}

/// The type of a metadata value (`gguf_type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
#[non_exhaustive]
pub enum GgufValueType {
    /// 0: `u8`.
    U8,
    /// 1: `i8`.
    I8,
    /// 2: `u16`.
    U16,
    /// 3: `i16`.
    I16,
    /// 4: `u32`.
    U32,
    /// 5: `i32`.
    I32,
    /// 6: `f32`.
    F32,
    /// 7: one byte, 0 or 1.
    Bool,
    /// 8: `u64` length, then UTF-8 bytes.
    String,
    /// 9: element type (`u32`), `u64` count, elements.
    Array,
    /// 10: `u64`.
    U64,
    /// 11: `i64`.
    I64,
    /// 12: `f64`.
    F64,
}

impl GgufValueType {
    /// The type of id `id`, if valid.
    pub fn from_id(id: u32) -> Option<Self> {
        Some(match id {
            0 => Self::U8,
            1 => Self::I8,
            2 => Self::U16,
            3 => Self::I16,
            4 => Self::U32,
            5 => Self::I32,
            6 => Self::F32,
            7 => Self::Bool,
            8 => Self::String,
            9 => Self::Array,
            10 => Self::U64,
            11 => Self::I64,
            12 => Self::F64,
            _ => return None,
        })
    }

    /// The type's id in the file.
    pub fn id(self) -> u32 {
        match self {
            Self::U8 => 0,
            Self::I8 => 1,
            Self::U16 => 2,
            Self::I16 => 3,
            Self::U32 => 4,
            Self::I32 => 5,
            Self::F32 => 6,
            Self::Bool => 7,
            Self::String => 8,
            Self::Array => 9,
            Self::U64 => 10,
            Self::I64 => 11,
            Self::F64 => 12,
        }
    }

    /// Bytes of one value of a fixed-size type; `None` for strings and arrays.
    pub fn fixed_size(self) -> Option<u64> {
        match self {
            Self::U8 | Self::I8 | Self::Bool => Some(1),
            Self::U16 | Self::I16 => Some(2),
            Self::U32 | Self::I32 | Self::F32 => Some(4),
            Self::U64 | Self::I64 | Self::F64 => Some(8),
            Self::String | Self::Array => None,
        }
    }

    /// The fewest bytes one value of this type takes (a string's length, an array's type and
    /// count): what bounds an element count by the bytes left.
    fn min_size(self) -> u64 {
        match self {
            Self::String => 8,
            Self::Array => 12,
            fixed => fixed.fixed_size().unwrap_or(1),
        }
    }
}

/// The longest metadata string kept in memory: 1 MiB (longer ones are
/// [`GgufValue::LongString`]).
pub const MAX_KEPT_STRING: u64 = 1 << 20;

/// A metadata value.
#[derive(Debug, Clone, PartialEq)]
#[non_exhaustive]
pub enum GgufValue {
    /// `u8`.
    U8(u8),
    /// `i8`.
    I8(i8),
    /// `u16`.
    U16(u16),
    /// `i16`.
    I16(i16),
    /// `u32`.
    U32(u32),
    /// `i32`.
    I32(i32),
    /// `f32`.
    F32(f32),
    /// `bool`.
    Bool(bool),
    /// A string (invalid UTF-8 replaced by U+FFFD).
    String(String),
    /// A string longer than [`MAX_KEPT_STRING`] bytes, skipped unread: no key
    /// vramfit reads is that long (a chat template is a few KB), and a hostile
    /// header may hold many of 60 MB.
    LongString {
        /// Its length in bytes.
        len: u64,
    },
    /// An array.
    Array(GgufArray),
    /// `u64`.
    U64(u64),
    /// `i64`.
    I64(i64),
    /// `f64`.
    F64(f64),
}

impl GgufValue {
    /// The value as a non-negative integer, if it is an integer type and not negative.
    pub fn as_u64(&self) -> Option<u64> {
        match *self {
            Self::U8(v) => Some(u64::from(v)),
            Self::U16(v) => Some(u64::from(v)),
            Self::U32(v) => Some(u64::from(v)),
            Self::U64(v) => Some(v),
            Self::I8(v) => u64::try_from(v).ok(),
            Self::I16(v) => u64::try_from(v).ok(),
            Self::I32(v) => u64::try_from(v).ok(),
            Self::I64(v) => u64::try_from(v).ok(),
            _ => None,
        }
    }

    /// The value as a float, if it is a float or an integer type.
    #[allow(clippy::cast_precision_loss)]
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Self::F32(v) => Some(f64::from(v)),
            Self::F64(v) => Some(v),
            Self::I64(v) => Some(v as f64),
            ref other => other.as_u64().map(|v| v as f64).or_else(|| match *other {
                Self::I8(v) => Some(f64::from(v)),
                Self::I16(v) => Some(f64::from(v)),
                Self::I32(v) => Some(f64::from(v)),
                _ => None,
            }),
        }
    }

    /// The value as a string, if it is one.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(s) => Some(s),
            _ => None,
        }
    }

    /// The value as an array, if it is one.
    pub fn as_array(&self) -> Option<&GgufArray> {
        match self {
            Self::Array(a) => Some(a),
            _ => None,
        }
    }

    /// The value's type.
    pub fn value_type(&self) -> GgufValueType {
        match self {
            Self::U8(_) => GgufValueType::U8,
            Self::I8(_) => GgufValueType::I8,
            Self::U16(_) => GgufValueType::U16,
            Self::I16(_) => GgufValueType::I16,
            Self::U32(_) => GgufValueType::U32,
            Self::I32(_) => GgufValueType::I32,
            Self::F32(_) => GgufValueType::F32,
            Self::Bool(_) => GgufValueType::Bool,
            Self::String(_) | Self::LongString { .. } => GgufValueType::String,
            Self::Array(_) => GgufValueType::Array,
            Self::U64(_) => GgufValueType::U64,
            Self::I64(_) => GgufValueType::I64,
            Self::F64(_) => GgufValueType::F64,
        }
    }
}

/// An array value.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufArray {
    /// The elements' type.
    pub element_type: GgufValueType,
    /// The number of elements.
    pub len: u64,
    /// The elements, or `None` when the array is longer than
    /// [`GgufLimits::max_stored_array_len`] or past [`GgufLimits::max_stored_values`] (it was
    /// read through, not kept).
    pub values: Option<Vec<GgufValue>>,
}

/// Block size and bytes per block of a ggml tensor type (`ggml_type_traits`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct GgmlTypeInfo {
    /// The id in the file (`enum ggml_type`).
    pub id: u32,
    /// The name as llama.cpp and the `gguf` Python package spell it.
    pub name: &'static str,
    /// Elements per block.
    pub block_size: u64,
    /// Bytes per block.
    pub type_size: u64,
}

macro_rules! ggml_types {
    ($($id:literal $name:literal $block:literal $bytes:literal),* $(,)?) => {
        /// Every ggml tensor type known here, by id: (block size, bytes per block) as in
        /// llama.cpp's `ggml.c` type traits and the `gguf` Python package's
        /// `GGML_QUANT_SIZES` (checked against `gguf` 0.19.0). Ids 4, 5 (removed `Q4_2`/`Q4_3`)
        /// and 31–33, 36–38 (removed repacked layouts) are absent on purpose.
        pub const GGML_TYPES: &[GgmlTypeInfo] = &[
            $(GgmlTypeInfo { id: $id, name: $name, block_size: $block, type_size: $bytes }),*
        ];
    };
}

ggml_types! {
    0 "F32" 1 4,
    1 "F16" 1 2,
    2 "Q4_0" 32 18,
    3 "Q4_1" 32 20,
    6 "Q5_0" 32 22,
    7 "Q5_1" 32 24,
    8 "Q8_0" 32 34,
    9 "Q8_1" 32 40,
    10 "Q2_K" 256 84,
    11 "Q3_K" 256 110,
    12 "Q4_K" 256 144,
    13 "Q5_K" 256 176,
    14 "Q6_K" 256 210,
    15 "Q8_K" 256 292,
    16 "IQ2_XXS" 256 66,
    17 "IQ2_XS" 256 74,
    18 "IQ3_XXS" 256 98,
    19 "IQ1_S" 256 50,
    20 "IQ4_NL" 32 18,
    21 "IQ3_S" 256 110,
    22 "IQ2_S" 256 82,
    23 "IQ4_XS" 256 136,
    24 "I8" 1 1,
    25 "I16" 1 2,
    26 "I32" 1 4,
    27 "I64" 1 8,
    28 "F64" 1 8,
    29 "IQ1_M" 256 56,
    30 "BF16" 1 2,
    34 "TQ1_0" 256 54,
    35 "TQ2_0" 256 66,
    39 "MXFP4" 32 17,
    40 "NVFP4" 64 36,
    41 "Q1_0" 128 18,
    42 "Q2_0" 64 18,
}

/// A tensor's ggml type: known (with its block layout) or an id this table lacks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum GgmlType {
    /// A type in [`GGML_TYPES`].
    Known(&'static GgmlTypeInfo),
    /// An id not in the table: its size is unknown, but the header still parses.
    Unknown(u32),
}

impl GgmlType {
    /// The type of id `id`.
    pub fn from_id(id: u32) -> Self {
        GGML_TYPES.iter().find(|t| t.id == id).map_or(Self::Unknown(id), Self::Known)
    }

    /// The id in the file.
    pub fn id(self) -> u32 {
        match self {
            Self::Known(info) => info.id,
            Self::Unknown(id) => id,
        }
    }

    /// The name (`Q4_K`), or `unknown` for an unknown id.
    pub fn name(self) -> &'static str {
        match self {
            Self::Known(info) => info.name,
            Self::Unknown(_) => "unknown",
        }
    }

    /// Bytes of `elements` values: `ceil(elements / block size) × bytes per block`; `None`
    /// for an unknown type or on overflow.
    pub fn bytes_for(self, elements: u64) -> Option<u64> {
        match self {
            Self::Known(info) => elements.div_ceil(info.block_size).checked_mul(info.type_size),
            Self::Unknown(_) => None,
        }
    }
}

impl fmt::Display for GgmlType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Known(info) => f.write_str(info.name),
            Self::Unknown(id) => write!(f, "unknown ggml type {id}"),
        }
    }
}

/// One tensor info.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GgufTensorInfo {
    /// The tensor's name (`blk.0.attn_q.weight`).
    pub name: String,
    /// Its dims, innermost first (ggml's `ne` order: `[columns, rows, …]`).
    pub dims: Vec<u64>,
    /// Its ggml type.
    pub ggml_type: GgmlType,
    /// Offset of its data from the start of the data section (a multiple of the alignment).
    pub offset: u64,
    /// Elements: the product of `dims`.
    pub elements: u64,
    /// Bytes of its data; `None` for an unknown type.
    pub byte_len: Option<u64>,
}

/// Where a file stands in a split model (`split.*` keys, written by `llama-gguf-split`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SplitInfo {
    /// `split.no`: this file's index, **0-based** (the file name's number is 1-based).
    pub number: u64,
    /// `split.count`: how many files.
    pub count: u64,
    /// `split.tensors.count`: tensors in all files, when present.
    pub tensors_count: Option<u64>,
}

/// A parsed GGUF header.
#[derive(Debug, Clone, PartialEq)]
pub struct GgufHeader {
    /// The file, as named by the caller.
    pub file: String,
    /// The format version (2 or 3).
    pub version: u32,
    /// The key/values, in file order.
    pub metadata: Vec<(String, GgufValue)>,
    /// The tensor infos, in file order.
    pub tensors: Vec<GgufTensorInfo>,
    /// `general.alignment`, or 32.
    pub alignment: u64,
    /// Where the header ends (after the last tensor info).
    pub header_len: u64,
    /// Where the data section starts: `header_len` rounded up to the alignment.
    pub data_offset: u64,
    /// Elements of all tensors.
    pub total_elements: u64,
    /// Bytes of all tensors of known type.
    pub known_bytes: u64,
    /// Tensors of an unknown ggml type (their bytes are not in `known_bytes`).
    pub unknown_type_tensors: u64,
    /// Bytes per known ggml type.
    pub bytes_by_type: BTreeMap<GgmlType, u64>,
}

impl GgufHeader {
    /// The value of key `key`.
    pub fn get(&self, key: &str) -> Option<&GgufValue> {
        self.metadata.iter().find(|(k, _)| k == key).map(|(_, v)| v)
    }

    /// A string value.
    pub fn get_str(&self, key: &str) -> Option<&str> {
        self.get(key).and_then(GgufValue::as_str)
    }

    /// A scalar non-negative integer value of any integer type. An array (some models store
    /// per-layer values) gives `None`: see [`Self::get_u64_array`].
    pub fn get_u64(&self, key: &str) -> Option<u64> {
        self.get(key).and_then(GgufValue::as_u64)
    }

    /// A scalar float (or integer) value.
    pub fn get_f64(&self, key: &str) -> Option<f64> {
        self.get(key).and_then(GgufValue::as_f64)
    }

    /// A stored array of non-negative integers (per-layer values such as
    /// `{arch}.attention.head_count_kv` in some models).
    pub fn get_u64_array(&self, key: &str) -> Option<Vec<u64>> {
        let values = self.get(key)?.as_array()?.values.as_ref()?;
        values.iter().map(GgufValue::as_u64).collect()
    }

    /// The length of an array value, stored or not.
    pub fn array_len(&self, key: &str) -> Option<u64> {
        self.get(key)?.as_array().map(|a| a.len)
    }

    /// `general.architecture` (`llama`, `qwen2`, …).
    pub fn architecture(&self) -> Option<&str> {
        self.get_str("general.architecture")
    }

    /// `{arch}.{suffix}`, for the file's architecture.
    pub fn arch_key(&self, suffix: &str) -> Option<String> {
        self.architecture().map(|arch| format!("{arch}.{suffix}"))
    }

    /// The scalar integer `{arch}.{suffix}`.
    pub fn arch_u64(&self, suffix: &str) -> Option<u64> {
        self.get_u64(&self.arch_key(suffix)?)
    }

    /// `{arch}.block_count`: layers.
    pub fn block_count(&self) -> Option<u64> {
        self.arch_u64("block_count")
    }

    /// `{arch}.embedding_length`: hidden size.
    pub fn embedding_length(&self) -> Option<u64> {
        self.arch_u64("embedding_length")
    }

    /// `{arch}.feed_forward_length`: MLP intermediate size (scalar form).
    pub fn feed_forward_length(&self) -> Option<u64> {
        self.arch_u64("feed_forward_length")
    }

    /// `{arch}.attention.head_count`: query heads (scalar form).
    pub fn head_count(&self) -> Option<u64> {
        self.arch_u64("attention.head_count")
    }

    /// `{arch}.attention.head_count_kv`: key/value heads (scalar form); llama.cpp's default
    /// when absent is `head_count`.
    pub fn head_count_kv(&self) -> Option<u64> {
        self.arch_u64("attention.head_count_kv")
    }

    /// `{arch}.attention.key_length`: the key head size, when it is not
    /// `embedding_length / head_count`.
    pub fn key_length(&self) -> Option<u64> {
        self.arch_u64("attention.key_length")
    }

    /// `{arch}.attention.value_length`: the value head size.
    pub fn value_length(&self) -> Option<u64> {
        self.arch_u64("attention.value_length")
    }

    /// `{arch}.context_length`: the trained context.
    pub fn context_length(&self) -> Option<u64> {
        self.arch_u64("context_length")
    }

    /// `{arch}.expert_count`: experts per MoE layer.
    pub fn expert_count(&self) -> Option<u64> {
        self.arch_u64("expert_count")
    }

    /// `{arch}.expert_used_count`: experts routed per token.
    pub fn expert_used_count(&self) -> Option<u64> {
        self.arch_u64("expert_used_count")
    }

    /// The vocabulary size: the length of `tokenizer.ggml.tokens`, else `{arch}.vocab_size`.
    pub fn vocab_size(&self) -> Option<u64> {
        self.array_len("tokenizer.ggml.tokens").or_else(|| self.arch_u64("vocab_size"))
    }

    /// The `split.*` keys, when this file is one of a split model.
    pub fn split(&self) -> Option<SplitInfo> {
        Some(SplitInfo {
            number: self.get_u64("split.no")?,
            count: self.get_u64("split.count")?,
            tensors_count: self.get_u64("split.tensors.count"),
        })
    }

    /// The tensor named `name`.
    pub fn tensor(&self, name: &str) -> Option<&GgufTensorInfo> {
        self.tensors.iter().find(|t| t.name == name)
    }

    /// Where the known data ends, from the start of the file (`data_offset + max(offset +
    /// bytes)`); `None` on overflow.
    pub fn data_end(&self) -> Option<u64> {
        let mut end = 0u64;
        for t in &self.tensors {
            if let Some(len) = t.byte_len {
                end = end.max(t.offset.checked_add(len)?);
            }
        }
        self.data_offset.checked_add(end)
    }
}

/// Reads a header from `reader` (positioned at the file's first byte) with default limits.
/// `file_len`, when known, bounds every count and length by the bytes left and lets tensor
/// data be checked against the file's end.
pub fn read_header<R: Read>(
    reader: R,
    file: &str,
    file_len: Option<u64>,
) -> Result<GgufHeader, GgufError> {
    read_header_with_limits(reader, file, file_len, GgufLimits::default())
}

/// [`read_header`] with explicit limits.
pub fn read_header_with_limits<R: Read>(
    reader: R,
    file: &str,
    file_len: Option<u64>,
    limits: GgufLimits,
) -> Result<GgufHeader, GgufError> {
    let mut parser = Parser {
        reader,
        pos: 0,
        file_len: file_len.unwrap_or(u64::MAX),
        file_len_known: file_len.is_some(),
        file,
        limits,
        stored_values: 0,
    };
    parser.header()
}

/// Parses a header from `prefix`, the first bytes of a file of `file_len` bytes. When the
/// prefix ends inside the header and the file is longer, the error is
/// [`GgufError::NeedMoreBytes`].
pub fn parse_prefix(prefix: &[u8], file: &str, file_len: u64) -> Result<GgufHeader, GgufError> {
    match read_header(prefix, file, Some(file_len)) {
        Err(GgufError::Truncated { offset, needed, .. }) if (prefix.len() as u64) < file_len => {
            Err(GgufError::NeedMoreBytes {
                file: file.to_owned(),
                have: prefix.len() as u64,
                need_at_least: offset.saturating_add(needed).min(file_len),
            })
        }
        other => other,
    }
}

/// Reads the header of a local file.
pub fn read_path(path: &Path) -> Result<GgufHeader, GgufError> {
    let file = path.display().to_string();
    let handle = crate::files::open_regular(path).map_err(|error| GgufError::Io {
        file: file.clone(),
        offset: 0,
        error,
    })?;
    let len = handle
        .metadata()
        .map_err(|error| GgufError::Io { file: file.clone(), offset: 0, error })?
        .len();
    read_header(std::io::BufReader::new(handle), &file, Some(len))
}

struct Parser<'a, R> {
    reader: R,
    pos: u64,
    file_len: u64,
    file_len_known: bool,
    file: &'a str,
    limits: GgufLimits,
    stored_values: u64,
}

impl<R: Read> Parser<'_, R> {
    fn remaining(&self) -> u64 {
        self.file_len.saturating_sub(self.pos)
    }

    fn truncated(&self, needed: u64, what: &dyn fmt::Display) -> GgufError {
        GgufError::Truncated {
            file: self.file.to_owned(),
            offset: self.pos,
            needed,
            what: what.to_string(),
        }
    }

    fn too_large(&self, offset: u64, what: String, declared: u64, limit: u64) -> GgufError {
        GgufError::TooLarge { file: self.file.to_owned(), offset, what, declared, limit }
    }

    fn invalid(&self, offset: u64, what: String, expected: &str) -> GgufError {
        GgufError::InvalidValue {
            file: self.file.to_owned(),
            offset,
            what,
            expected: expected.to_owned(),
        }
    }

    fn fill(&mut self, buf: &mut [u8], what: &dyn fmt::Display) -> Result<(), GgufError> {
        let len = buf.len() as u64;
        if len > self.remaining() {
            return Err(self.truncated(len, what));
        }
        let mut filled = 0;
        while filled < buf.len() {
            match self.reader.read(&mut buf[filled..]) {
                Ok(0) => {
                    self.pos += filled as u64;
                    return Err(self.truncated(len - filled as u64, what));
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(error) => {
                    return Err(GgufError::Io {
                        file: self.file.to_owned(),
                        offset: self.pos + filled as u64,
                        error,
                    });
                }
            }
        }
        self.pos += len;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &dyn fmt::Display) -> Result<[u8; N], GgufError> {
        let mut buf = [0u8; N];
        self.fill(&mut buf, what)?;
        Ok(buf)
    }

    fn u32(&mut self, what: &dyn fmt::Display) -> Result<u32, GgufError> {
        self.array(what).map(u32::from_le_bytes)
    }

    fn u64(&mut self, what: &dyn fmt::Display) -> Result<u64, GgufError> {
        self.array(what).map(u64::from_le_bytes)
    }

    /// Reads (or, with `keep` false, skips) `len` bytes checked against the bytes left; the
    /// buffer grows only as bytes arrive.
    fn bytes(
        &mut self,
        len: u64,
        keep: bool,
        what: &dyn fmt::Display,
    ) -> Result<Vec<u8>, GgufError> {
        if len > self.remaining() {
            return Err(self.truncated(len, what));
        }
        let mut out = Vec::new();
        let got = if keep {
            (&mut self.reader).take(len).read_to_end(&mut out).map(|n| n as u64)
        } else {
            std::io::copy(&mut (&mut self.reader).take(len), &mut std::io::sink())
        }
        .map_err(|error| GgufError::Io {
            file: self.file.to_owned(),
            offset: self.pos,
            error,
        })?;
        self.pos += got;
        if got < len {
            return Err(self.truncated(len - got, what));
        }
        Ok(out)
    }

    /// A string value: kept up to [`MAX_KEPT_STRING`] bytes, skipped past it.
    fn string_value(
        &mut self,
        keep: bool,
        what: &dyn fmt::Display,
    ) -> Result<GgufValue, GgufError> {
        let len = self.string_len(what)?;
        if len > MAX_KEPT_STRING {
            self.bytes(len, false, what)?;
            return Ok(GgufValue::LongString { len });
        }
        Ok(GgufValue::String(self.string_body(len, keep, what)?))
    }

    fn string(&mut self, keep: bool, what: &dyn fmt::Display) -> Result<String, GgufError> {
        let len = self.string_len(what)?;
        self.string_body(len, keep, what)
    }

    /// A string's length, checked against the limit and the bytes left.
    fn string_len(&mut self, what: &dyn fmt::Display) -> Result<u64, GgufError> {
        let at = self.pos;
        let len = self.u64(&format_args!("the length of {what}"))?;
        if len > self.limits.max_string_len {
            return Err(self.too_large(
                at,
                format!("the length of {what}"),
                len,
                self.limits.max_string_len,
            ));
        }
        if len > self.remaining() {
            return Err(self.too_large(at, format!("the length of {what}"), len, self.remaining()));
        }
        Ok(len)
    }

    fn string_body(
        &mut self,
        len: u64,
        keep: bool,
        what: &dyn fmt::Display,
    ) -> Result<String, GgufError> {
        let bytes = self.bytes(len, keep, what)?;
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    fn header(&mut self) -> Result<GgufHeader, GgufError> {
        let magic: [u8; 4] = match self.array(&"the magic `GGUF`") {
            Ok(m) => m,
            Err(GgufError::Truncated { .. }) if self.file_len_known && self.file_len < 4 => {
                return Err(GgufError::BadMagic { file: self.file.to_owned(), found: Vec::new() });
            }
            Err(e) => return Err(e),
        };
        if magic != GGUF_MAGIC {
            return Err(GgufError::BadMagic { file: self.file.to_owned(), found: magic.to_vec() });
        }
        let version = self.u32(&"the version")?;
        match version {
            2 | 3 => {}
            1 => {
                return Err(GgufError::UnsupportedVersion {
                    file: self.file.to_owned(),
                    version,
                    reason: "version 1 (32-bit counts, 2023) is obsolete; convert the model again with a current llama.cpp".into(),
                });
            }
            v if v.swap_bytes() == 2 || v.swap_bytes() == 3 => {
                return Err(GgufError::UnsupportedVersion {
                    file: self.file.to_owned(),
                    version,
                    reason: "this looks like a big-endian GGUF; only little-endian files are read"
                        .into(),
                });
            }
            _ => {
                return Err(GgufError::UnsupportedVersion {
                    file: self.file.to_owned(),
                    version,
                    reason: "only versions 2 and 3 are read".into(),
                });
            }
        }
        let at = self.pos;
        let tensor_count = self.u64(&"the tensor count")?;
        let kv_at = self.pos;
        let kv_count = self.u64(&"the key/value count")?;
        // Each key/value takes at least 13 bytes, each tensor info at least 24.
        let kv_bound = (self.remaining() / 13).min(self.limits.max_kv_count);
        if kv_count > kv_bound {
            return Err(self.too_large(kv_at, "the key/value count".into(), kv_count, kv_bound));
        }
        let tensor_bound = (self.remaining().saturating_sub(kv_count.saturating_mul(13)) / 24)
            .min(self.limits.max_tensor_count);
        if tensor_count > tensor_bound {
            return Err(self.too_large(at, "the tensor count".into(), tensor_count, tensor_bound));
        }

        let mut metadata: Vec<(String, GgufValue)> = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for index in 0..kv_count {
            let key_at = self.pos;
            let key = self.string(true, &format_args!("key #{index}"))?;
            let type_at = self.pos;
            let type_id = self.u32(&format_args!("the type of key `{key}`"))?;
            let Some(value_type) = GgufValueType::from_id(type_id) else {
                return Err(self.invalid(
                    type_at,
                    format!("the type of key `{key}` is {type_id}"),
                    "a value type 0-12",
                ));
            };
            let value = self.value(value_type, &key, 0, true)?;
            if !seen.insert(key.clone()) {
                return Err(self.invalid(key_at, format!("key `{key}`"), "each key once"));
            }
            metadata.push((key, value));
        }

        let mut alignment = DEFAULT_ALIGNMENT;
        if let Some((_, value)) = metadata.iter().find(|(k, _)| k == "general.alignment") {
            match value.as_u64() {
                Some(a) if a.is_power_of_two() => alignment = a,
                _ => {
                    return Err(self.invalid(
                        kv_at,
                        format!("key `general.alignment` is {value:?}"),
                        "a power of two",
                    ));
                }
            }
        }

        let mut tensors: Vec<GgufTensorInfo> = Vec::new();
        let mut names = std::collections::HashSet::new();
        for index in 0..tensor_count {
            let tensor = self.tensor_info(index, alignment)?;
            if !names.insert(tensor.name.clone()) {
                return Err(self.invalid_tensor(&tensor.name, "the name appears twice".into()));
            }
            tensors.push(tensor);
        }
        let header_len = self.pos;
        let Some(data_offset) = header_len.checked_next_multiple_of(alignment) else {
            return Err(self.invalid(header_len, "the data section's start".into(), "below 2^64"));
        };

        let mut by_offset: Vec<&GgufTensorInfo> = tensors.iter().collect();
        by_offset.sort_by_key(|t| t.offset);
        let mut known_end = 0u64;
        let mut previous: Option<&GgufTensorInfo> = None;
        for t in &by_offset {
            if let Some(prev) = previous
                && let Some(len) = prev.byte_len
                && prev.offset.saturating_add(len) > t.offset
            {
                return Err(self.invalid_tensor(
                    &prev.name,
                    format!(
                        "its {len} bytes at data offset {} overlap tensor `{}` at {}",
                        prev.offset, t.name, t.offset
                    ),
                ));
            }
            if let Some(len) = t.byte_len {
                known_end = known_end.max(t.offset.saturating_add(len));
            }
            previous = Some(t);
        }
        // A file without tensor data may end before the data section's padding.
        if self.file_len_known && known_end > 0 {
            let end = data_offset.saturating_add(known_end);
            if end > self.file_len {
                let last = by_offset
                    .iter()
                    .filter(|t| t.byte_len.is_some())
                    .max_by_key(|t| t.offset.saturating_add(t.byte_len.unwrap_or(0)));
                return Err(self.invalid_tensor(
                    last.map_or("?", |t| t.name.as_str()),
                    format!(
                        "its data ends at byte {end} of the file, but the file has {} bytes",
                        self.file_len
                    ),
                ));
            }
        }

        let mut total_elements = 0u64;
        let mut known_bytes = 0u64;
        let mut unknown_type_tensors = 0u64;
        let mut bytes_by_type: BTreeMap<GgmlType, u64> = BTreeMap::new();
        for t in &tensors {
            total_elements = total_elements.saturating_add(t.elements);
            match t.byte_len {
                Some(len) => {
                    known_bytes = known_bytes.saturating_add(len);
                    let slot = bytes_by_type.entry(t.ggml_type).or_insert(0);
                    *slot = slot.saturating_add(len);
                }
                None => unknown_type_tensors += 1,
            }
        }
        Ok(GgufHeader {
            file: self.file.to_owned(),
            version,
            metadata,
            tensors,
            alignment,
            header_len,
            data_offset,
            total_elements,
            known_bytes,
            unknown_type_tensors,
            bytes_by_type,
        })
    }

    fn invalid_tensor(&self, tensor: &str, reason: String) -> GgufError {
        GgufError::InvalidTensor { file: self.file.to_owned(), tensor: tensor.to_owned(), reason }
    }

    fn value(
        &mut self,
        value_type: GgufValueType,
        key: &str,
        depth: u32,
        keep: bool,
    ) -> Result<GgufValue, GgufError> {
        let what = format_args!("the value of key `{key}`");
        Ok(match value_type {
            GgufValueType::U8 => GgufValue::U8(u8::from_le_bytes(self.array(&what)?)),
            GgufValueType::I8 => GgufValue::I8(i8::from_le_bytes(self.array(&what)?)),
            GgufValueType::U16 => GgufValue::U16(u16::from_le_bytes(self.array(&what)?)),
            GgufValueType::I16 => GgufValue::I16(i16::from_le_bytes(self.array(&what)?)),
            GgufValueType::U32 => GgufValue::U32(u32::from_le_bytes(self.array(&what)?)),
            GgufValueType::I32 => GgufValue::I32(i32::from_le_bytes(self.array(&what)?)),
            GgufValueType::F32 => GgufValue::F32(f32::from_le_bytes(self.array(&what)?)),
            GgufValueType::U64 => GgufValue::U64(u64::from_le_bytes(self.array(&what)?)),
            GgufValueType::I64 => GgufValue::I64(i64::from_le_bytes(self.array(&what)?)),
            GgufValueType::F64 => GgufValue::F64(f64::from_le_bytes(self.array(&what)?)),
            GgufValueType::Bool => {
                let at = self.pos;
                match self.array::<1>(&what)? {
                    [0] => GgufValue::Bool(false),
                    [1] => GgufValue::Bool(true),
                    [b] => {
                        return Err(self.invalid(
                            at,
                            format!("the value of key `{key}` is the byte {b}"),
                            "a bool: 0 or 1",
                        ));
                    }
                }
            }
            GgufValueType::String => self.string_value(keep, &what)?,
            GgufValueType::Array => GgufValue::Array(self.array_value(key, depth, keep)?),
        })
    }

    fn array_value(&mut self, key: &str, depth: u32, keep: bool) -> Result<GgufArray, GgufError> {
        let at = self.pos;
        if depth >= self.limits.max_array_depth {
            return Err(self.too_large(
                at,
                format!("the nesting of arrays in key `{key}`"),
                u64::from(depth) + 1,
                u64::from(self.limits.max_array_depth),
            ));
        }
        let type_id = self.u32(&format_args!("the element type of key `{key}`"))?;
        let Some(element_type) = GgufValueType::from_id(type_id) else {
            return Err(self.invalid(
                at,
                format!("the element type of key `{key}` is {type_id}"),
                "a value type 0-12",
            ));
        };
        let count_at = self.pos;
        let len = self.u64(&format_args!("the length of key `{key}`"))?;
        let bound = (self.remaining() / element_type.min_size()).min(self.limits.max_array_len);
        if len > bound {
            return Err(self.too_large(
                count_at,
                format!("the length of array key `{key}`"),
                len,
                bound,
            ));
        }
        let store = keep
            && len <= self.limits.max_stored_array_len
            && self.stored_values.saturating_add(len) <= self.limits.max_stored_values;
        if store {
            self.stored_values += len;
        }
        if !store && let Some(size) = element_type.fixed_size() {
            // Bounded above: len ≤ remaining / size.
            let total = len.saturating_mul(size);
            self.bytes(total, false, &format_args!("the elements of key `{key}`"))?;
            return Ok(GgufArray { element_type, len, values: None });
        }
        let mut values = Vec::new();
        for _ in 0..len {
            let value = self.value(element_type, key, depth + 1, store)?;
            if store {
                values.push(value);
            }
        }
        Ok(GgufArray { element_type, len, values: store.then_some(values) })
    }

    fn tensor_info(&mut self, index: u64, alignment: u64) -> Result<GgufTensorInfo, GgufError> {
        let name = self.string(true, &format_args!("the name of tensor #{index}"))?;
        let dims_at = self.pos;
        let n_dims = self.u32(&format_args!("the dimension count of tensor `{name}`"))?;
        if n_dims > MAX_DIMS {
            return Err(self.invalid(
                dims_at,
                format!("tensor `{name}` has {n_dims} dimensions"),
                "at most 4",
            ));
        }
        let mut dims = Vec::new();
        for _ in 0..n_dims {
            let at = self.pos;
            let dim = self.u64(&format_args!("a dimension of tensor `{name}`"))?;
            if i64::try_from(dim).is_err() {
                return Err(self.invalid(
                    at,
                    format!("a dimension of tensor `{name}` is {dim}"),
                    "below 2^63",
                ));
            }
            dims.push(dim);
        }
        let ggml_type = GgmlType::from_id(self.u32(&format_args!("the type of tensor `{name}`"))?);
        let offset = self.u64(&format_args!("the offset of tensor `{name}`"))?;
        let Some(elements) = dims.iter().try_fold(1u64, |acc, &d| acc.checked_mul(d)) else {
            return Err(
                self.invalid_tensor(&name, format!("dims {dims:?} have more than 2^64 elements"))
            );
        };
        let byte_len = match ggml_type {
            GgmlType::Known(_) => Some(ggml_type.bytes_for(elements).ok_or_else(|| {
                self.invalid_tensor(&name, format!("{ggml_type} of {elements} elements overflows"))
            })?),
            GgmlType::Unknown(_) => None,
        };
        if offset % alignment != 0 {
            return Err(self.invalid_tensor(
                &name,
                format!("data offset {offset} is not a multiple of the alignment {alignment}"),
            ));
        }
        Ok(GgufTensorInfo { name, dims, ggml_type, offset, elements, byte_len })
    }
}

/// A split file's name: `PREFIX-00001-of-00003.gguf` (`llama_split_path`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SplitName {
    /// The part before `-NNNNN-of-MMMMM.gguf`.
    pub prefix: String,
    /// This file's number, 1-based.
    pub number: u32,
    /// How many files.
    pub count: u32,
}

impl SplitName {
    /// Recognises a split file name (the name only, not a path). Numbers are at least five
    /// digits, `1 ≤ number ≤ count ≤ 65535` (`split.count` is a `u16`).
    pub fn parse(file_name: &str) -> Option<Self> {
        let stem = file_name.strip_suffix(".gguf")?;
        let (head, count) = stem.rsplit_once("-of-")?;
        let (prefix, number) = head.rsplit_once('-')?;
        let parse = |digits: &str| -> Option<u32> {
            if digits.len() < 5 || digits.len() > 9 || !digits.bytes().all(|b| b.is_ascii_digit()) {
                return None;
            }
            digits.parse().ok()
        };
        let (number, count) = (parse(number)?, parse(count)?);
        (!prefix.is_empty() && number >= 1 && number <= count && u16::try_from(count).is_ok())
            .then(|| Self { prefix: prefix.to_owned(), number, count })
    }

    /// The name of file `number` (1-based) of the same split.
    pub fn shard_name(&self, number: u32) -> String {
        format!("{}-{number:05}-of-{:05}.gguf", self.prefix, self.count)
    }

    /// The names of every file of the split, in order.
    pub fn shard_names(&self) -> Vec<String> {
        (1..=self.count).map(|n| self.shard_name(n)).collect()
    }
}

/// The paths of every file of the split `path` belongs to (`path` included), in order; `None`
/// when its name is not a split name.
pub fn sibling_shard_paths(path: &Path) -> Option<Vec<PathBuf>> {
    let name = SplitName::parse(path.file_name()?.to_str()?)?;
    let dir = path.parent().unwrap_or_else(|| Path::new(""));
    Some(name.shard_names().into_iter().map(|n| dir.join(n)).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn type_table_is_sorted_unique_and_sane() {
        for pair in GGML_TYPES.windows(2) {
            assert!(pair[0].id < pair[1].id);
        }
        for t in GGML_TYPES {
            assert!(t.block_size >= 1 && t.type_size >= 1, "{}", t.name);
            assert_eq!(GgmlType::from_id(t.id).name(), t.name);
        }
        assert_eq!(GgmlType::from_id(12).bytes_for(256), Some(144));
        assert_eq!(GgmlType::from_id(8).bytes_for(64), Some(68));
        assert_eq!(GgmlType::from_id(4), GgmlType::Unknown(4));
        assert_eq!(GgmlType::from_id(4).bytes_for(1), None);
    }

    #[test]
    fn split_names() {
        let s = SplitName::parse("Llama-3-70B-Q4_K_M-00002-of-00003.gguf").unwrap();
        assert_eq!(s.prefix, "Llama-3-70B-Q4_K_M");
        assert_eq!((s.number, s.count), (2, 3));
        assert_eq!(
            s.shard_names(),
            [
                "Llama-3-70B-Q4_K_M-00001-of-00003.gguf",
                "Llama-3-70B-Q4_K_M-00002-of-00003.gguf",
                "Llama-3-70B-Q4_K_M-00003-of-00003.gguf"
            ]
        );
        for bad in [
            "model.gguf",
            "m-00004-of-00003.gguf",
            "m-00000-of-00003.gguf",
            "m-1-of-3.gguf",
            "-00001-of-00003.gguf",
            "m-00001-of-99999.gguf",
            "m-0000a-of-00003.gguf",
        ] {
            assert_eq!(SplitName::parse(bad), None, "{bad}");
        }
        let paths = sibling_shard_paths(Path::new("/m/x-00001-of-00002.gguf")).unwrap();
        assert_eq!(paths[1], Path::new("/m/x-00002-of-00002.gguf"));
    }
}
