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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
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
#[cfg_attr(feature = "schema", derive(schemars::JsonSchema))]
#[serde(rename_all = "snake_case")]
pub enum WeightFormat {
    /// Unquantized in a float type.
    Float(FloatType),
    /// FP8 (E4M3) weights with one fp32 scale per 128 × 128 block
    /// (`weight_scale_inv`), as transformers' `FineGrainedFP8` stores them (the
    /// DeepSeek-V3 / Qwen3-FP8 checkpoint layout); non-linear tensors stay in
    /// the compute type.
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

/// `FineGrainedFP8`'s weight block (`weight_block_size: [128, 128]`).
pub const FP8_BLOCK: u64 = 128;

/// bitsandbytes 4-bit block size (`blocksize=64` in `bnb.functional.quantize_4bit`).
pub const NF4_BLOCK_SIZE: u64 = 64;

/// Blocks of absmax values that share one second-level fp32 constant under
/// double quantization (`blocksize=256` in `quantize_blockwise` of the absmax).
pub const NF4_DOUBLE_QUANT_BLOCK: u64 = 256;

/// The CUDA caching allocator's smallest block: each tensor occupies a multiple
/// of 512 bytes (`kMinBlockSize` in `c10/cuda/CUDACachingAllocator.cpp`).
pub const ALLOCATOR_BLOCK: u64 = 512;

fn allocation(bytes: u64) -> Option<u64> {
    bytes.div_ceil(ALLOCATOR_BLOCK).checked_mul(ALLOCATOR_BLOCK)
}

/// Bytes one linear weight of `rows × cols` (`out × in`) elements occupies on
/// the GPU when stored in `format`: each of its tensors rounded up to the
/// allocator's 512-byte block.
///
/// Sources, per format:
/// - float: one tensor of `numel × bytes`.
/// - FP8 (`FineGrainedFP8`): one byte per element, and an fp32 `weight_scale_inv`
///   per 128 × 128 block.
/// - LLM.int8 (`bnb.nn.Int8Params`): one byte per element, and the fp32 row
///   statistics `SCB` (one per output row).
/// - GPTQ int4 (`qweight`, `qzeros`, `scales`, `g_idx`): `numel / 2` bytes of
///   weights packed in int32; per group of 128 inputs and per output an fp16
///   scale and a 4-bit zero point (packed eight to an int32); one int32 group
///   index per input (`g_idx`). AWQ's layout is the same without `g_idx`.
/// - NF4 (`bnb.functional.quantize_4bit`, `compress_statistics=True`): `numel / 2`
///   bytes of packed weights; one uint8 absmax per 64-element block; one fp32
///   constant per 256 blocks; an fp32 offset and the 16-entry fp32 NF4 code per
///   tensor (the 256-entry dynamic code of the second level is shared). The
///   QLoRA paper (arXiv 2305.14314 §3) gives 4 + 8/64 + 32/(64·256) ≈ 4.127 bits.
pub fn linear_weight_bytes(rows: u64, cols: u64, format: WeightFormat) -> Option<u64> {
    let numel = rows.checked_mul(cols)?;
    let parts: Vec<u64> = match format {
        WeightFormat::Float(float) => vec![numel.checked_mul(float.bytes())?],
        WeightFormat::Fp8 => {
            let blocks = rows.div_ceil(FP8_BLOCK).checked_mul(cols.div_ceil(FP8_BLOCK))?;
            vec![numel, blocks.checked_mul(4)?]
        }
        WeightFormat::Int8 => vec![numel, rows.checked_mul(4)?],
        WeightFormat::Int4 => {
            let groups = cols.div_ceil(INT4_GROUP_SIZE).checked_mul(rows)?;
            vec![
                numel.div_ceil(8).checked_mul(4)?,
                groups.checked_mul(2)?,
                groups.div_ceil(8).checked_mul(4)?,
                cols.checked_mul(4)?,
            ]
        }
        WeightFormat::Nf4 => {
            let blocks = numel.div_ceil(NF4_BLOCK_SIZE);
            let second_level = blocks.div_ceil(NF4_DOUBLE_QUANT_BLOCK);
            vec![numel.div_ceil(2), blocks, second_level.checked_mul(4)?, 4, 16 * 4]
        }
    };
    parts.into_iter().try_fold(0u64, |total, part| total.checked_add(allocation(part)?))
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
        // 400 bytes occupy one 512-byte block.
        assert_eq!(linear_weight_bytes(10, 10, WeightFormat::Float(FloatType::F32)), Some(512));
    }

    #[test]
    fn nf4_is_about_4_127_bits_per_parameter() {
        // QLoRA paper: 4 + 8/64 + 32/(64·256) bits per parameter.
        let bytes = linear_weight_bytes(4096, 4096, WeightFormat::Nf4).unwrap();
        let bits = bytes as f64 * 8.0 / (4096.0 * 4096.0);
        assert!((bits - 4.127).abs() < 0.001, "{bits}");
        // 8 MiB packed + 262,144 absmax bytes + 1,024 fp32 constants (4,096 B) + offset + code.
        assert_eq!(bytes, 8_388_608 + 262_144 + 4_096 + 512 + 512);
    }

    #[test]
    fn int4_groups_add_scales_zeros_and_group_index() {
        // 4096×4096 at group 128: 131,072 groups → 262,144 B of scales, 65,536 B of
        // zeros; g_idx 4,096 × 4 B.
        let bytes = linear_weight_bytes(4096, 4096, WeightFormat::Int4).unwrap();
        assert_eq!(bytes, 8_388_608 + 262_144 + 65_536 + 16_384);
        let bits = bytes as f64 * 8.0 / (4096.0 * 4096.0);
        assert!((bits - 4.164).abs() < 0.001, "{bits}");
    }

    #[test]
    fn int8_and_fp8_carry_scales() {
        // SCB: 1,000 fp32 row statistics → 4,000 B in 4,096.
        assert_eq!(linear_weight_bytes(1000, 1024, WeightFormat::Int8), Some(1_024_000 + 4_096));
        // 8 × 8 blocks of 128 × 128 → 64 fp32 scales in one 512-byte block.
        assert_eq!(linear_weight_bytes(1024, 1024, WeightFormat::Fp8), Some(1_048_576 + 512));
    }

    #[test]
    fn absurd_shapes_do_not_wrap() {
        assert_eq!(linear_weight_bytes(u64::MAX, 2, WeightFormat::Float(FloatType::F32)), None);
    }
}
