//! Borrowing a tensor's f32 values without copying them.

use std::ops::{Deref, Range};

use candle_core::{DType, Result, Storage, Tensor};

/// The values of a contiguous f32 CPU tensor, borrowed from its storage.
pub struct F32View<'a> {
    /// candle's read guard on the storage (its lock type is candle's own).
    storage: Box<dyn Deref<Target = Storage> + 'a>,
    range: Range<usize>,
}

impl<'a> F32View<'a> {
    /// Borrows `tensor`'s values; it has to be a contiguous f32 tensor on the CPU.
    pub fn of(tensor: &'a Tensor) -> Result<Self> {
        if tensor.dtype() != DType::F32 {
            candle_core::bail!("expected an f32 tensor, got {:?}", tensor.dtype())
        }
        let (storage, layout) = tensor.storage_and_layout();
        let Some((start, end)) = layout.contiguous_offsets() else {
            candle_core::bail!(
                "expected a contiguous tensor, got strides {:?}",
                layout.stride()
            )
        };
        if !matches!(&*storage, Storage::Cpu(_)) {
            candle_core::bail!("expected a tensor on the CPU")
        }
        Ok(Self {
            storage: Box::new(storage),
            range: start..end,
        })
    }
}

impl Deref for F32View<'_> {
    type Target = [f32];

    fn deref(&self) -> &[f32] {
        match &**self.storage {
            Storage::Cpu(cpu) => cpu
                .as_slice::<f32>()
                .map(|values| &values[self.range.clone()])
                .unwrap_or(&[]),
            // `of` accepted only CPU storage.
            _ => &[],
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    #[test]
    fn a_view_sees_the_values_of_a_narrowed_contiguous_tensor() {
        let t = Tensor::arange(0f32, 12., &Device::Cpu).unwrap();
        let part = t.narrow(0, 4, 5).unwrap();
        assert_eq!(&*F32View::of(&part).unwrap(), &[4., 5., 6., 7., 8.]);
    }

    #[test]
    fn a_transposed_or_integer_tensor_is_refused() {
        let t = Tensor::arange(0f32, 6., &Device::Cpu)
            .unwrap()
            .reshape((2, 3))
            .unwrap();
        assert!(F32View::of(&t.t().unwrap()).is_err());
        let ids = Tensor::arange(0u32, 6, &Device::Cpu).unwrap();
        assert!(F32View::of(&ids).is_err());
    }
}
