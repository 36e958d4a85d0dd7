//! A procedurally generated, learnable data set for demos and smoke tests on machines with no
//! data. Each class is a combination of a hue, a shape (disk, square, triangle, ring) and an
//! oriented stripe texture of a given frequency; every sample draws a random background,
//! position, scale, phase, colour jitter and pixel noise. Images are a pure function of
//! (seed, split, index), generated on demand (no storage), of any size and class count.

use anyhow::{Result, bail};
use image::RgbImage;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::Source;
use super::rng::{STREAM_SYNTH, hash_words};

/// Per-channel mean of the synthetic images (measured over 2,000 training samples at 32x32,
/// 10 classes, seed 0; used for every synthetic configuration).
pub const SYNTHETIC_MEAN: [f32; 3] = [0.464, 0.457, 0.465];
/// Per-channel standard deviation of the synthetic images (same measurement).
pub const SYNTHETIC_STD: [f32; 3] = [0.211, 0.207, 0.206];

/// The visual definition of one class.
#[derive(Clone, Copy, Debug)]
struct ClassStyle {
    hue: f32,
    shape: u8,
    angle: f32,
    freq: f32,
}

fn class_style(c: usize) -> ClassStyle {
    let frac = |x: f64| (x - x.floor()) as f32;
    ClassStyle {
        hue: frac(c as f64 * 0.618_033_988_75),
        shape: (c % 4) as u8,
        angle: frac(c as f64 * 0.381_966 + 0.1) * std::f32::consts::PI,
        freq: 1.0 + ((c / 4) % 3) as f32,
    }
}

fn hsv_to_rgb(h: f32, s: f32, v: f32) -> [f32; 3] {
    let h = (h - h.floor()) * 6.0;
    let i = h.floor() as i32;
    let f = h - i as f32;
    let (p, q, t) = (v * (1.0 - s), v * (1.0 - s * f), v * (1.0 - s * (1.0 - f)));
    match i.rem_euclid(6) {
        0 => [v, t, p],
        1 => [q, v, p],
        2 => [p, v, t],
        3 => [p, q, v],
        4 => [t, p, v],
        _ => [v, p, q],
    }
}

/// One split of the synthetic data set.
pub struct SyntheticSource {
    classes: usize,
    size: usize,
    len: usize,
    seed: u64,
    split: u64,
}

impl SyntheticSource {
    /// `split`: 0 for train, 1 for val (different samples, same classes).
    pub fn new(classes: usize, size: usize, len: usize, seed: u64, split: u64) -> Self {
        SyntheticSource {
            classes: classes.max(1),
            size: size.max(1),
            len,
            seed,
            split,
        }
    }

    /// Label of sample `index` (balanced: index modulo the class count).
    pub fn label(&self, index: usize) -> usize {
        index % self.classes
    }

    /// Generates sample `index`.
    pub fn generate(&self, index: usize) -> RgbImage {
        let label = self.label(index);
        let style = class_style(label);
        let mut rng = ChaCha8Rng::seed_from_u64(hash_words(&[
            self.seed,
            STREAM_SYNTH,
            self.split,
            index as u64,
        ]));
        let n = self.size as f32;
        let bg_level: f32 = rng.random_range(0.2..0.8);
        let bg_tint = [
            bg_level + rng.random_range(-0.08..0.08),
            bg_level + rng.random_range(-0.08..0.08),
            bg_level + rng.random_range(-0.08..0.08),
        ];
        let fg = hsv_to_rgb(
            style.hue + rng.random_range(-0.03..0.03),
            rng.random_range(0.6..1.0),
            rng.random_range(0.65..1.0),
        );
        let cx = rng.random_range(0.3..0.7) * n;
        let cy = rng.random_range(0.3..0.7) * n;
        let r = rng.random_range(0.22..0.38) * n;
        let phase: f32 = rng.random_range(0.0..std::f32::consts::TAU);
        let angle = style.angle + rng.random_range(-0.15..0.15);
        let (ca, sa) = (angle.cos(), angle.sin());
        let k = std::f32::consts::TAU * style.freq / r;
        let noise_amp: f32 = 0.06;
        let mut buf = vec![0u8; self.size * self.size * 3];
        let mut noise_state = rng.random::<u64>() | 1;
        for y in 0..self.size {
            for x in 0..self.size {
                let dx = (x as f32 + 0.5 - cx) / r;
                let dy = (y as f32 + 0.5 - cy) / r;
                let inside = match style.shape {
                    0 => dx * dx + dy * dy <= 1.0,
                    1 => dx.abs() <= 0.8 && dy.abs() <= 0.8,
                    2 => dy <= 0.8 && dy >= -0.9 + 2.0 * dx.abs(),
                    _ => {
                        let d = dx * dx + dy * dy;
                        (0.36..=1.0).contains(&d)
                    }
                };
                let mut px = if inside {
                    let u = (x as f32 * ca + y as f32 * sa) * k + phase;
                    let m = 0.7 + 0.3 * u.sin();
                    [fg[0] * m, fg[1] * m, fg[2] * m]
                } else {
                    bg_tint
                };
                for (ch, v) in px.iter_mut().enumerate() {
                    // xorshift noise: cheap and deterministic.
                    noise_state ^= noise_state << 13;
                    noise_state ^= noise_state >> 7;
                    noise_state ^= noise_state << 17;
                    let u = (noise_state >> 40) as f32 / (1u64 << 24) as f32;
                    *v += (u * 2.0 - 1.0) * noise_amp;
                    buf[(y * self.size + x) * 3 + ch] =
                        (*v * 255.0).round().clamp(0.0, 255.0) as u8;
                }
            }
        }
        RgbImage::from_raw(self.size as u32, self.size as u32, buf).expect("buffer size")
    }
}

impl Source for SyntheticSource {
    fn len(&self) -> usize {
        self.len
    }
    fn get(&self, index: usize) -> Result<(RgbImage, usize)> {
        if index >= self.len {
            bail!(
                "synthetic index {index} out of range ({} samples)",
                self.len
            );
        }
        Ok((self.generate(index), self.label(index)))
    }
    fn name(&self, index: usize) -> String {
        format!("synthetic sample {index} (split {})", self.split)
    }
}
