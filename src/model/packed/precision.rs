//! The arithmetic a packed layer computes in, and whether this CPU has it.

use super::{avx512_available, bf16};

/// The arithmetic of the packed dense layers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Precision {
    /// f32 products and sums (weights stored as f16 when that loses nothing).
    #[default]
    F32,
    /// bfloat16 products of weights and inputs (both rounded to 8 significant
    /// bits) summed in f32: AVX-512 BF16 computes two per lane and instruction.
    Bf16,
    /// Dynamic int8 quantisation (see [`crate::model::int8`]): weights per output,
    /// inputs per row, integer sums; AVX-512 VNNI computes four per lane and
    /// instruction.
    Int8,
}

impl Precision {
    /// Whether this CPU computes at this precision with the packed kernel.
    pub fn available(self) -> bool {
        match self {
            Precision::F32 => true,
            Precision::Bf16 => avx512_available() && bf16::available(),
            Precision::Int8 => avx512_available() && crate::model::int8::available(),
        }
    }
}

impl std::fmt::Display for Precision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Precision::F32 => "f32",
            Precision::Bf16 => "bf16",
            Precision::Int8 => "int8",
        })
    }
}

impl std::str::FromStr for Precision {
    type Err = String;

    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "f32" => Ok(Precision::F32),
            "bf16" => Ok(Precision::Bf16),
            "int8" => Ok(Precision::Int8),
            other => Err(format!("unknown precision '{other}': f32, bf16 or int8")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precisions_read_and_print_as_their_names() {
        for p in [Precision::F32, Precision::Bf16, Precision::Int8] {
            assert_eq!(p.to_string().parse::<Precision>(), Ok(p));
        }
        assert!("int4"
            .parse::<Precision>()
            .unwrap_err()
            .contains("f32, bf16 or int8"));
    }
}
