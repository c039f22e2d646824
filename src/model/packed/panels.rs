//! The weight rearranged once, at load, into the panels the kernels read.

use candle_core::{Result, Tensor};

use super::{bf16, PackedDense, Precision, Simd, PANEL};
use crate::model::int8::Int8Panels;

/// Packed weights: f32, f16 when that loses nothing, or bf16 pairs.
#[derive(Debug, Clone)]
pub(super) enum Panels {
    F32(Vec<f32>),
    F16(Vec<half::f16>),
    /// Two bf16 weights of consecutive inputs per `u32` (the even input in
    /// the low half), `PANEL` of them per input pair.
    Bf16(Vec<u32>),
    /// Four i8 weights of consecutive inputs per `u32`, with their scales.
    Int8(Int8Panels),
}

impl PackedDense {
    /// Packs `weight` `(outputs, inputs)` and `bias` `(outputs)` for
    /// `precision`, to be computed with `simd`.
    pub(super) fn pack(
        weight: &Tensor,
        bias: &Tensor,
        precision: Precision,
        simd: Simd,
    ) -> Result<Self> {
        let (outputs, inputs) = weight.dims2()?;
        let rows = weight.to_dtype(candle_core::DType::F32)?.to_vec2::<f32>()?;
        let panel_count = outputs.div_ceil(PANEL);
        let mut panels = vec![0f32; panel_count * inputs * PANEL];
        for (out, row) in rows.iter().enumerate() {
            let (panel, lane) = (out / PANEL, out % PANEL);
            let base = panel * inputs * PANEL;
            for (i, &w) in row.iter().enumerate() {
                panels[base + i * PANEL + lane] = w;
            }
        }
        let exactly_half = panels.iter().all(|&w| half::f16::from_f32(w).to_f32() == w);
        let panels = match precision {
            Precision::Bf16 => Panels::Bf16(bf16::pairs(&panels, inputs)),
            Precision::Int8 => Panels::Int8(Int8Panels::new(&panels, inputs)),
            Precision::F32 if exactly_half => {
                Panels::F16(panels.iter().map(|&w| half::f16::from_f32(w)).collect())
            }
            Precision::F32 => Panels::F32(panels),
        };
        let mut bias = bias.to_dtype(candle_core::DType::F32)?.to_vec1::<f32>()?;
        bias.resize(panel_count * PANEL, 0.0);
        Ok(Self {
            panels,
            bias,
            inputs,
            outputs,
            simd,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_difference, random};
    use super::super::Activation;
    use super::*;
    use candle_core::DType;

    #[test]
    fn a_weight_of_exact_halves_is_packed_as_f16_and_computes_the_same() {
        let weight = random(&[40, 24], 1)
            .to_dtype(DType::F16)
            .unwrap()
            .to_dtype(DType::F32)
            .unwrap();
        let bias = random(&[40], 2);
        let Some(packed) = PackedDense::new(&weight, &bias).unwrap() else {
            return;
        };
        assert!(matches!(packed.panels, Panels::F16(_)));
        let x = random(&[5, 24], 3);
        let expected = x
            .matmul(&weight.t().unwrap())
            .unwrap()
            .broadcast_add(&bias)
            .unwrap();
        let got = packed.forward(&x, Activation::Identity).unwrap();
        assert!(max_difference(&got, &expected) < 1e-5);
        let weight = random(&[40, 24], 4);
        let packed = PackedDense::new(&weight, &bias).unwrap().unwrap();
        assert!(matches!(packed.panels, Panels::F32(_)));
    }
}
