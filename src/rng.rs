//! A small seeded random generator that needs no global state.
//!
//! candle's CPU generator cannot be seeded, so everything random in candor
//! (shuffles, splits, initial weights, dropout masks) comes from here.
//! `SplitMix64` is counter-based at heart: [`hash64`] maps any key to a
//! well-mixed value, which lets a dropout mask element be a pure function of
//! (seed, sample, site, position, feature) rather than of call order.

/// Mixes a 64-bit value (the SplitMix64 finaliser); a bijection with good avalanche.
pub fn hash64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Combines a key with one more component, order-sensitively.
pub fn mix(key: u64, part: u64) -> u64 {
    hash64(key ^ hash64(part))
}

/// `n` vectors of `width` numbers in [−0.5, 0.5), the same for the same
/// seed (test and benchmark data; f32 precision, 24 random bits each).
pub fn uniform_vectors(n: usize, width: usize, seed: u64) -> Vec<Vec<f32>> {
    let mut state = seed;
    (0..n)
        .map(|_| {
            (0..width)
                .map(|_| {
                    state = mix(state, 1);
                    (state >> 40) as f32 / (1u64 << 24) as f32 - 0.5
                })
                .collect()
        })
        .collect()
}

/// The random streams of training, named, so that no two draw the same
/// numbers from one seed: each is the seed mixed with its own key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stream {
    /// Initial weights of layers a model does not inherit.
    Initialisation,
    /// The auxiliary task's head (`--aux-label-field`).
    AuxiliaryHead,
    /// The order of the training batches.
    Batches,
    /// Which word pieces of a training row `--token-mask` hides.
    TokenMask,
    /// R-Drop's second pass: its dropout masks, apart from the first's.
    SecondPass,
    /// Masked copies of the training texts for distillation.
    MaskedCopies,
    /// The order of masked-language-model pre-training batches.
    PretrainBatches,
    /// Which word pieces masked-language-model pre-training hides.
    PretrainMask,
    /// The dropout masks of one pre-training step.
    PretrainStep,
}

impl Stream {
    /// Every stream, for the check that their keys differ.
    pub const ALL: [Stream; 9] = [
        Stream::Initialisation,
        Stream::AuxiliaryHead,
        Stream::Batches,
        Stream::TokenMask,
        Stream::SecondPass,
        Stream::MaskedCopies,
        Stream::PretrainBatches,
        Stream::PretrainMask,
        Stream::PretrainStep,
    ];

    /// The stream's key (fixed: changing one changes every trained model).
    pub const fn key(self) -> u64 {
        match self {
            Stream::Initialisation => 0x1417,
            Stream::AuxiliaryHead => 0xA0C5,
            Stream::Batches => 0xBA7C,
            Stream::TokenMask => 0x3A5C,
            Stream::SecondPass => 0x2D,
            Stream::MaskedCopies => 0xC0B1,
            Stream::PretrainBatches => 0x9E7A,
            Stream::PretrainMask => 0x4D4C,
            Stream::PretrainStep => 0x5EED,
        }
    }

    /// `key` (a seed, or a row's or step's key) keyed for this stream.
    pub fn of(self, key: u64) -> u64 {
        mix(key, self.key())
    }
}

/// Maps 64 random bits to a uniform `f64` in [0, 1).
pub fn unit_f64(bits: u64) -> f64 {
    (bits >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

/// A seeded sequential generator (SplitMix64).
#[derive(Debug, Clone)]
pub struct SeededRng {
    state: u64,
}

impl SeededRng {
    /// Creates a generator whose whole stream is fixed by `seed`.
    pub fn new(seed: u64) -> Self {
        Self { state: seed }
    }

    /// Next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        hash64(self.state)
    }

    /// Uniform in [0, 1).
    pub fn next_f64(&mut self) -> f64 {
        unit_f64(self.next_u64())
    }

    /// Uniform integer in `0..n` (`n > 0`), without modulo bias worth caring about at our sizes.
    pub fn below(&mut self, n: usize) -> usize {
        ((self.next_u64() as u128 * n as u128) >> 64) as usize
    }

    /// Standard normal sample (Box–Muller).
    pub fn normal(&mut self) -> f64 {
        let u1 = self.next_f64().max(f64::MIN_POSITIVE);
        let u2 = self.next_f64();
        (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
    }

    /// Fisher–Yates shuffle in place.
    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i + 1);
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_random_streams_have_distinct_keys() {
        let keys: std::collections::HashSet<u64> = Stream::ALL.iter().map(|s| s.key()).collect();
        assert_eq!(keys.len(), Stream::ALL.len());
    }

    #[test]
    fn the_same_seed_gives_the_same_stream() {
        let mut a = SeededRng::new(7);
        let mut b = SeededRng::new(7);
        for _ in 0..100 {
            assert_eq!(a.next_u64(), b.next_u64());
        }
    }

    #[test]
    fn uniform_samples_have_the_expected_mean() {
        let mut rng = SeededRng::new(1);
        let mean = (0..100_000).map(|_| rng.next_f64()).sum::<f64>() / 100_000.0;
        assert!((mean - 0.5).abs() < 0.01, "mean {mean}");
    }

    #[test]
    fn below_stays_in_range_and_shuffle_is_a_permutation() {
        let mut rng = SeededRng::new(3);
        assert!((0..1000).all(|_| rng.below(5) < 5));
        let mut v: Vec<usize> = (0..50).collect();
        rng.shuffle(&mut v);
        let mut sorted = v.clone();
        sorted.sort();
        assert_eq!(sorted, (0..50).collect::<Vec<_>>());
        assert_ne!(v, sorted);
    }
}
