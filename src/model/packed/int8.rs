//! Dynamic int8 quantisation in the packed layer's loop (`--precision int8`):
//! each chunk of input rows quantised once, then every panel over it. The
//! quantisation and the VNNI tile are [`crate::model::int8`]'s.

use super::{Activation, PackedDense, CHUNK_BYTES, PANEL, ROWS};
use crate::model::int8::{self, Int8Panels, QuantisedRows};

impl PackedDense {
    /// [`PackedDense::compute`] for int8 panels: each chunk of input rows
    /// quantised once, then every panel over it.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512vnni")]
    pub(super) unsafe fn compute_int8(
        &self,
        weights: &Int8Panels,
        input: &[f32],
        output: &mut [f32],
        act: Activation,
    ) {
        let quads = int8::quads_per_row(self.inputs);
        let chunk = (CHUNK_BYTES / (quads * 4)).max(ROWS) / ROWS * ROWS;
        let mut x = QuantisedRows::default();
        for (input, output) in input
            .chunks(chunk * self.inputs)
            .zip(output.chunks_mut(chunk * self.outputs))
        {
            x.quantise(input, self.inputs);
            self.panels_over_row_tiles(x.scales.len(), output, act, |panel, row, take, tile| {
                let span = panel * PANEL..(panel + 1) * PANEL;
                let scales = int8::kernel::Scales {
                    row_scales: &x.scales[row..row + take],
                    row_zeros: &x.zeros[row..row + take],
                    weight_scales: &weights.scales[span.clone()],
                    weight_sums: &weights.sums[span],
                };
                let w = &weights.quads[panel * quads * PANEL..(panel + 1) * quads * PANEL];
                let xs = &x.quads[row * quads..(row + take) * quads];
                // SAFETY: the caller checked the CPU has AVX-512 VNNI.
                unsafe {
                    match take {
                        8 => int8::kernel::tile::<8>(xs, quads, w, &scales, tile),
                        7 => int8::kernel::tile::<7>(xs, quads, w, &scales, tile),
                        6 => int8::kernel::tile::<6>(xs, quads, w, &scales, tile),
                        5 => int8::kernel::tile::<5>(xs, quads, w, &scales, tile),
                        4 => int8::kernel::tile::<4>(xs, quads, w, &scales, tile),
                        3 => int8::kernel::tile::<3>(xs, quads, w, &scales, tile),
                        2 => int8::kernel::tile::<2>(xs, quads, w, &scales, tile),
                        _ => int8::kernel::tile::<1>(xs, quads, w, &scales, tile),
                    }
                }
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::super::testing::{max_difference, random};
    use super::super::{Panels, Precision, Simd};
    use super::*;
    use candle_core::{DType, Device, Tensor};

    /// `x` and `weight` as the int8 kernel sees them: quantised and scaled back.
    fn dequantised(x: &Tensor, weight: &Tensor) -> (Tensor, Tensor) {
        let (rows, inputs) = x.dims2().unwrap();
        let outputs = weight.dim(0).unwrap();
        let mut q = QuantisedRows::default();
        q.quantise(&x.flatten_all().unwrap().to_vec1::<f32>().unwrap(), inputs);
        let quads = int8::quads_per_row(inputs);
        let x_back: Vec<f32> = (0..rows)
            .flat_map(|r| {
                let bytes: Vec<u8> = q.quads[r * quads..(r + 1) * quads]
                    .iter()
                    .flat_map(|w| w.to_le_bytes())
                    .collect();
                let (scale, zero) = (q.scales[r], q.zeros[r]);
                bytes[..inputs]
                    .iter()
                    .map(move |&b| scale * (f32::from(b) - zero))
                    .collect::<Vec<_>>()
            })
            .collect();
        let zero_bias = Tensor::zeros(outputs, DType::F32, &Device::Cpu).unwrap();
        let packed = PackedDense::pack(weight, &zero_bias, Precision::F32, Simd::Avx512).unwrap();
        let Panels::F32(panels) = &packed.panels else {
            unreachable!("random weights are not exact halves")
        };
        let w = Int8Panels::new(panels, inputs);
        let mut w_back = vec![0f32; outputs * inputs];
        for (o, row) in w_back.chunks_mut(inputs).enumerate() {
            let (panel, lane) = (o / PANEL, o % PANEL);
            for (i, value) in row.iter_mut().enumerate() {
                let word = w.quads[(panel * quads + i / 4) * PANEL + lane];
                let byte = word.to_le_bytes()[i % 4] as i8;
                *value = w.scales[o] * f32::from(byte);
            }
        }
        (
            Tensor::from_vec(x_back, (rows, inputs), &Device::Cpu).unwrap(),
            Tensor::from_vec(w_back, (outputs, inputs), &Device::Cpu).unwrap(),
        )
    }

    #[test]
    fn an_int8_layer_computes_the_products_of_its_quantised_inputs_and_weights() {
        if !Precision::Int8.available() {
            eprintln!("no AVX-512 VNNI here: nothing to compare");
            return;
        }
        // Widths not a multiple of four leave padded words; 13 rows leave a partial tile.
        for (rows, inputs, outputs) in [(1, 8, 2), (13, 51, 37), (40, 384, 96), (9, 33, 31)] {
            let (weight, bias) = (random(&[outputs, inputs], 1), random(&[outputs], 2));
            let packed = PackedDense::with_precision(&weight, &bias, Precision::Int8)
                .unwrap()
                .unwrap();
            let x = random(&[rows, inputs], 3);
            let (x_back, w_back) = dequantised(&x, &weight);
            let expected = x_back
                .matmul(&w_back.t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            let got = packed.forward(&x, Activation::Identity).unwrap();
            let difference = max_difference(&got, &expected);
            assert!(difference < 1e-4, "{rows}x{inputs}→{outputs}: {difference}");
            // Against f32 arithmetic: as close as 8-bit steps allow.
            let exact = x
                .matmul(&weight.t().unwrap())
                .unwrap()
                .broadcast_add(&bias)
                .unwrap();
            assert!(max_difference(&got, &exact) < 0.01 * (inputs as f32).sqrt());
        }
    }
}
