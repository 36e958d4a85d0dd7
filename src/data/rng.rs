//! Deterministic randomness: every random decision of the data layer is a pure function of
//! (seed, purpose, epoch, sample index), so results never depend on thread count or resumes.

use rand::SeedableRng;
use rand::seq::SliceRandom;
use rand_chacha::ChaCha8Rng;

/// Purposes, mixed into the hash so the streams are independent.
pub(crate) const STREAM_SHUFFLE: u64 = 0x5348_5546;
pub(crate) const STREAM_AUGMENT: u64 = 0x4155_4745;
pub(crate) const STREAM_SUBSET: u64 = 0x5355_4253;
pub(crate) const STREAM_SYNTH: u64 = 0x5359_4e54;

/// SplitMix64 finalizer: a good 64-bit mixer.
#[inline]
pub fn splitmix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Hash of a tuple of words (order matters).
pub fn hash_words(words: &[u64]) -> u64 {
    let mut h = 0x243F_6A88_85A3_08D3u64;
    for &w in words {
        h = splitmix64(h ^ splitmix64(w));
    }
    h
}

/// The RNG of one sample's augmentation in one epoch.
pub fn sample_rng(seed: u64, epoch: u64, index: u64) -> ChaCha8Rng {
    ChaCha8Rng::seed_from_u64(hash_words(&[seed, STREAM_AUGMENT, epoch, index]))
}

/// A seeded permutation of `0..n` (Fisher–Yates driven by ChaCha8).
pub fn permutation(n: usize, seed: u64, stream: u64, epoch: u64) -> Vec<u32> {
    let mut order: Vec<u32> = (0..n as u32).collect();
    let mut rng = ChaCha8Rng::seed_from_u64(hash_words(&[seed, stream, epoch]));
    order.shuffle(&mut rng);
    order
}

/// The sample order of one epoch.
pub fn epoch_order(n: usize, seed: u64, epoch: u64, shuffle: bool) -> Vec<u32> {
    if shuffle {
        permutation(n, seed, STREAM_SHUFFLE, epoch)
    } else {
        (0..n as u32).collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permutation_is_deterministic_and_complete() {
        let a = permutation(1000, 7, STREAM_SHUFFLE, 3);
        let b = permutation(1000, 7, STREAM_SHUFFLE, 3);
        let c = permutation(1000, 7, STREAM_SHUFFLE, 4);
        assert_eq!(a, b);
        assert_ne!(a, c);
        let mut s = a.clone();
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
    }
}
