/*!
Data types and weight storage formats, with their exact byte costs.

Activations and optimizer states use plain floating-point types
([`FloatType`]). Weights may be stored in a quantized [`WeightFormat`] whose
cost is not a whole number of bytes per element: blocks carry scales, and
some tensors are never quantized. Every format's cost is computed in one
function here, per tensor, in integer bytes.
*/

use serde::{Deserialize, Serialize};

/// A floating-point type tensors are computed in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FloatType {
    /// IEEE single precision, 4 bytes.
    F32,
    /// bfloat16, 2 bytes.
    Bf16,
    /// IEEE half precision, 2 bytes.
    F16,
}

impl FloatType {
    /// Bytes per element.
    pub fn bytes(self) -> u64 {
        match self {
            FloatType::F32 => 4,
            FloatType::Bf16 | FloatType::F16 => 2,
        }
    }

    /// The PyTorch name.
    pub fn torch_name(self) -> &'static str {
        match self {
            FloatType::F32 => "float32",
            FloatType::Bf16 => "bfloat16",
            FloatType::F16 => "float16",
        }
    }
}

/// How weights are stored on the GPU.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// Unquantized in a float type.
    Float(FloatType),
    /// FP8 (E4M3) weights with one fp32 scale per tensor, as transformers'
    /// `FbgemmFp8`/`FineGrainedFP8` and vLLM's per-tensor FP8 store them;
    /// non-linear tensors stay in the compute type.
    Fp8,
    /// bitsandbytes LLM.int8 (`load_in_8bit`): int8 weights plus one fp32
    /// scale per output row (`SCB`).
    Int8,
    /// 4-bit integer weights in the GPTQ/AWQ layout: packed 4-bit values, and
    /// per group of 128 input elements an fp16 scale and a packed 4-bit zero point.
    Int4,
    /// bitsandbytes NF4 (`load_in_4bit`, QLoRA) with double quantization.
    Nf4,
}

impl WeightFormat {
    /// The type non-quantized tensors (embeddings, norms, `lm_head`) and
    /// activations use with this format.
    pub fn compute_type(self) -> FloatType {
        match self {
            WeightFormat::Float(float) => float,
            _ => FloatType::Bf16,
        }
    }

    /// Whether linear-layer weights are quantized.
    pub fn is_quantized(self) -> bool {
        !matches!(self, WeightFormat::Float(_))
    }

    /// The user-facing name (`bf16`, `nf4`, ...).
    pub fn name(self) -> &'static str {
        match self {
            WeightFormat::Float(FloatType::F32) => "fp32",
            WeightFormat::Float(FloatType::Bf16) => "bf16",
            WeightFormat::Float(FloatType::F16) => "fp16",
            WeightFormat::Fp8 => "fp8",
            WeightFormat::Int8 => "int8",
            WeightFormat::Int4 => "int4",
            WeightFormat::Nf4 => "nf4",
        }
    }
}

/// GPTQ/AWQ group size (the common default of both, `group_size=128`).
pub const INT4_GROUP_SIZE: u64 = 128;

/// bitsandbytes 4-bit block size (`blocksize=64` in `bnb.functional.quantize_4bit`).
pub const NF4_BLOCK_SIZE: u64 = 64;

/// Blocks of absmax values that share one second-level fp32 constant under
/// double quantization (`blocksize=256` in `quantize_blockwise` of the absmax).
pub const NF4_DOUBLE_QUANT_BLOCK: u64 = 256;

/// Bytes of one linear weight of `rows × cols` (`out × in`) elements stored in `format`.
///
/// Sources, per format:
/// - float: `numel × bytes`.
/// - FP8: 1 byte per element plus a 4-byte fp32 scale per tensor.
/// - LLM.int8 (`bnb.nn.Int8Params`): 1 byte per element plus the fp32 row
///   statistics `SCB` of `rows` elements.
/// - GPTQ/AWQ int4 (`qweight`, `qzeros`, `scales`): `numel / 2` bytes of packed
///   weights; per group of 128 inputs and per output, an fp16 scale (2 bytes)
///   and a 4-bit zero point (½ byte, packed eight to an int32).
/// - NF4 (`bnb.functional.quantize_4bit`, `compress_statistics=True`): `numel / 2`
///   bytes of packed weights; one uint8 absmax per 64-element block; one fp32
///   constant per 256 blocks; the fp32 offset (4 bytes) and the 256-entry fp32
///   code of the second level (1,024 bytes) — QLoRA paper (arXiv 2305.14314 §3)
///   gives the same 4 + 8/64 + 32/(64·256) ≈ 4.127 bits per parameter.
pub fn linear_weight_bytes(rows: u64, cols: u64, format: WeightFormat) -> Option<u64> {
    let numel = rows.checked_mul(cols)?;
    Some(match format {
        WeightFormat::Float(float) => numel.checked_mul(float.bytes())?,
        WeightFormat::Fp8 => numel.checked_add(4)?,
        WeightFormat::Int8 => numel.checked_add(rows.checked_mul(4)?)?,
        WeightFormat::Int4 => {
            let groups = cols.div_ceil(INT4_GROUP_SIZE).checked_mul(rows)?;
            // scales: 2 bytes per group; zeros: 4 bits per group, packed into int32s.
            let zeros = groups.div_ceil(8).checked_mul(4)?;
            numel.div_ceil(2).checked_add(groups.checked_mul(2)?)?.checked_add(zeros)?
        }
        WeightFormat::Nf4 => {
            let blocks = numel.div_ceil(NF4_BLOCK_SIZE);
            let second_level = blocks.div_ceil(NF4_DOUBLE_QUANT_BLOCK);
            numel
                .div_ceil(2)
                .checked_add(blocks)?
                .checked_add(second_level.checked_mul(4)?)?
                .checked_add(4 + 1024)?
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn float_weights_are_numel_times_bytes() {
        assert_eq!(
            linear_weight_bytes(4096, 4096, WeightFormat::Float(FloatType::Bf16)),
            Some(33_554_432)
        );
        assert_eq!(linear_weight_bytes(10, 10, WeightFormat::Float(FloatType::F32)), Some(400));
    }

    #[test]
    fn nf4_is_about_4_127_bits_per_parameter() {
        // QLoRA paper: 4 + 8/64 + 32/(64·256) bits per parameter.
        let bytes = linear_weight_bytes(4096, 4096, WeightFormat::Nf4).unwrap();
        let bits = bytes as f64 * 8.0 / (4096.0 * 4096.0);
        assert!((bits - 4.127).abs() < 0.001, "{bits}");
        // Exact: 8 MiB packed + 262,144 absmax bytes + 1,024 fp32 constants + offset and code.
        assert_eq!(bytes, 8_388_608 + 262_144 + 4_096 + 1_028);
    }

    #[test]
    fn int4_groups_add_scales_and_zeros() {
        // 4096×4096 at group 128: 131,072 groups → 262,144 B of scales, 65,536 B of zeros.
        let bytes = linear_weight_bytes(4096, 4096, WeightFormat::Int4).unwrap();
        assert_eq!(bytes, 8_388_608 + 262_144 + 65_536);
        let bits = bytes as f64 * 8.0 / (4096.0 * 4096.0);
        assert!((bits - 4.156).abs() < 0.001, "{bits}");
    }

    #[test]
    fn int8_and_fp8_carry_scales() {
        assert_eq!(linear_weight_bytes(1000, 100, WeightFormat::Int8), Some(100_000 + 4_000));
        assert_eq!(linear_weight_bytes(1000, 100, WeightFormat::Fp8), Some(100_004));
    }

    #[test]
    fn absurd_shapes_do_not_wrap() {
        assert_eq!(linear_weight_bytes(u64::MAX, 2, WeightFormat::Float(FloatType::F32)), None);
    }
}
