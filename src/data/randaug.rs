//! RandAugment as the official `raug15` preset: for each image, 2 ops drawn uniformly (with
//! replacement) from the 16 below, each with its own magnitude m, a uniform integer 0..=14,
//! mapped linearly onto the op's range (fraction f = m / 14, so 15 magnitude bins); signed ops
//! take a random sign (p = 0.5). Geometric ops use nearest-neighbour sampling and fill the
//! uncovered area with grey (128, 128, 128), as PIL's `Image.transform` does with a fill colour.
//!
//! | op | magnitude range at f = 1 | semantics |
//! |---|---|---|
//! | AutoContrast, Equalize, Invert | — | PIL `ImageOps` (per channel) |
//! | Rotate | ±30° | about the image centre |
//! | Posterize | 8 → 4 bits | bits = 8 − round(4f) |
//! | Solarize | threshold 255 → 0 | invert pixels ≥ 255·(1 − f) |
//! | SolarizeAdd | +0 → +110 | add to pixels < 128, clipped |
//! | Color, Contrast, Brightness, Sharpness | factor 1 ± 0.9 | PIL `ImageEnhance` blends |
//! | ShearX, ShearY | ±0.3 | PIL affine (1, v, 0, 0, 1, 0) |
//! | TranslateX, TranslateY | ±150/331 of the size | torchvision's range |
//! | Cutout | square side 0 → 80/224 of the shorter side | grey square, random centre |

use image::RgbImage;
use rand::Rng;

pub const NUM_OPS: usize = 2;
pub const MAX_MAGNITUDE: u32 = 14;
pub const FILL: u8 = 128;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Op {
    AutoContrast,
    Equalize,
    Invert,
    Rotate,
    Posterize,
    Solarize,
    SolarizeAdd,
    Color,
    Contrast,
    Brightness,
    Sharpness,
    ShearX,
    ShearY,
    TranslateX,
    TranslateY,
    Cutout,
}

pub const OPS: [Op; 16] = [
    Op::AutoContrast,
    Op::Equalize,
    Op::Invert,
    Op::Rotate,
    Op::Posterize,
    Op::Solarize,
    Op::SolarizeAdd,
    Op::Color,
    Op::Contrast,
    Op::Brightness,
    Op::Sharpness,
    Op::ShearX,
    Op::ShearY,
    Op::TranslateX,
    Op::TranslateY,
    Op::Cutout,
];

/// Applies `raug15` RandAugment in place.
pub fn rand_augment<R: Rng>(img: &mut RgbImage, rng: &mut R) {
    for _ in 0..NUM_OPS {
        let op = OPS[rng.random_range(0..OPS.len())];
        let m = rng.random_range(0..=MAX_MAGNITUDE);
        let negative = rng.random::<f32>() < 0.5;
        apply_op(img, op, m, negative, rng);
    }
}

/// Applies one op with magnitude `m` (0..=14); `negative` flips the sign of signed ops.
pub fn apply_op<R: Rng>(img: &mut RgbImage, op: Op, m: u32, negative: bool, rng: &mut R) {
    let f = m.min(MAX_MAGNITUDE) as f32 / MAX_MAGNITUDE as f32;
    let sign = if negative { -1.0 } else { 1.0 };
    let (w, h) = (img.width() as f32, img.height() as f32);
    match op {
        Op::AutoContrast => autocontrast(img),
        Op::Equalize => equalize(img),
        Op::Invert => lut_all(img, |v| 255 - v),
        Op::Rotate => {
            let a = (sign * 30.0 * f).to_radians();
            let (s, c) = a.sin_cos();
            let (cx, cy) = (w / 2.0, h / 2.0);
            // Output centre coordinates -> input: inverse rotation about the centre.
            affine(
                img,
                [c, s, cx - c * cx - s * cy, -s, c, cy + s * cx - c * cy],
            );
        }
        Op::Posterize => {
            let bits = 8 - (4.0 * f).round() as u32;
            let mask = !((1u16 << (8 - bits)) - 1) as u8;
            lut_all(img, |v| v & mask);
        }
        Op::Solarize => {
            let t = 255.0 * (1.0 - f);
            lut_all(img, |v| if (v as f32) < t { v } else { 255 - v });
        }
        Op::SolarizeAdd => {
            let add = (110.0 * f) as i32;
            lut_all(img, |v| {
                if v < 128 {
                    (v as i32 + add).min(255) as u8
                } else {
                    v
                }
            });
        }
        Op::Color => {
            let factor = 1.0 + sign * 0.9 * f;
            color(img, factor);
        }
        Op::Contrast => {
            let factor = 1.0 + sign * 0.9 * f;
            contrast(img, factor);
        }
        Op::Brightness => {
            let factor = 1.0 + sign * 0.9 * f;
            lut_all(img, |v| blend_px(0, v, factor));
        }
        Op::Sharpness => {
            let factor = 1.0 + sign * 0.9 * f;
            sharpness(img, factor);
        }
        Op::ShearX => affine(img, [1.0, sign * 0.3 * f, 0.0, 0.0, 1.0, 0.0]),
        Op::ShearY => affine(img, [1.0, 0.0, 0.0, sign * 0.3 * f, 1.0, 0.0]),
        Op::TranslateX => {
            let t = (sign * 150.0 / 331.0 * f * w).round();
            affine(img, [1.0, 0.0, t, 0.0, 1.0, 0.0]);
        }
        Op::TranslateY => {
            let t = (sign * 150.0 / 331.0 * f * h).round();
            affine(img, [1.0, 0.0, 0.0, 0.0, 1.0, t]);
        }
        Op::Cutout => {
            let side = (f * 80.0 / 224.0 * w.min(h)).round() as i64;
            let cx = rng.random_range(0..img.width()) as i64;
            let cy = rng.random_range(0..img.height()) as i64;
            cutout(img, cx, cy, side);
        }
    }
}

/// PIL `Image.blend(degenerate, img, factor)` for one value (truncating, clipped).
#[inline]
fn blend_px(deg: u8, v: u8, factor: f32) -> u8 {
    let t = deg as f32 + factor * (v as f32 - deg as f32);
    // Saturating float -> u8 cast: 0 below 0, 255 above 255, truncation between.
    t as u8
}

fn lut_all(img: &mut RgbImage, f: impl Fn(u8) -> u8) {
    let lut: [u8; 256] = std::array::from_fn(|i| f(i as u8));
    for v in img.iter_mut() {
        *v = lut[*v as usize];
    }
}

fn histograms(img: &RgbImage) -> [[u32; 256]; 3] {
    let mut h = [[0u32; 256]; 3];
    for p in img.as_raw().chunks_exact(3) {
        h[0][p[0] as usize] += 1;
        h[1][p[1] as usize] += 1;
        h[2][p[2] as usize] += 1;
    }
    h
}

fn apply_luts(img: &mut RgbImage, luts: &[[u8; 256]; 3]) {
    for p in img.chunks_exact_mut(3) {
        p[0] = luts[0][p[0] as usize];
        p[1] = luts[1][p[1] as usize];
        p[2] = luts[2][p[2] as usize];
    }
}

/// PIL `ImageOps.autocontrast` (cutoff 0), per channel.
fn autocontrast(img: &mut RgbImage) {
    let hist = histograms(img);
    let luts: [[u8; 256]; 3] = std::array::from_fn(|c| {
        let h = &hist[c];
        let lo = h.iter().position(|&n| n > 0).unwrap_or(0);
        let hi = h.iter().rposition(|&n| n > 0).unwrap_or(255);
        std::array::from_fn(|i| {
            if hi <= lo {
                i as u8
            } else {
                let scale = 255.0 / (hi - lo) as f64;
                let offset = -(lo as f64) * scale;
                (i as f64 * scale + offset).clamp(0.0, 255.0) as u8
            }
        })
    });
    apply_luts(img, &luts);
}

/// PIL `ImageOps.equalize`, per channel.
fn equalize(img: &mut RgbImage) {
    let hist = histograms(img);
    let luts: [[u8; 256]; 3] = std::array::from_fn(|c| {
        let h = &hist[c];
        let nonzero: Vec<u32> = h.iter().copied().filter(|&n| n > 0).collect();
        let total: u32 = h.iter().sum();
        let step = if nonzero.len() <= 1 {
            0
        } else {
            (total - nonzero[nonzero.len() - 1]) / 255
        };
        if step == 0 {
            return std::array::from_fn(|i| i as u8);
        }
        let mut n = step / 2;
        std::array::from_fn(|i| {
            let v = (n / step).min(255) as u8;
            n += h[i];
            v
        })
    });
    apply_luts(img, &luts);
}

/// ITU-R 601-2 luma as PIL computes it (`convert("L")`).
#[inline]
fn luma(p: &[u8]) -> u8 {
    ((p[0] as u32 * 19595 + p[1] as u32 * 38470 + p[2] as u32 * 7471 + 0x8000) >> 16) as u8
}

fn color(img: &mut RgbImage, factor: f32) {
    // Degenerate image: the luma replicated over R, G, B; then one flat, vectorizable blend.
    let mut grey = vec![0u8; img.as_raw().len()];
    for (g, p) in grey.chunks_exact_mut(3).zip(img.as_raw().chunks_exact(3)) {
        g.fill(luma(p));
    }
    blend_slices(&grey, img.as_mut(), factor);
}

/// `dst = blend(deg, dst, factor)` element-wise (PIL `Image.blend` semantics).
fn blend_slices(deg: &[u8], dst: &mut [u8], factor: f32) {
    for (d, &g) in dst.iter_mut().zip(deg) {
        *d = blend_px(g, *d, factor);
    }
}

fn contrast(img: &mut RgbImage, factor: f32) {
    let n = (img.width() * img.height()).max(1) as f64;
    let sum: u64 = img.as_raw().chunks_exact(3).map(|p| luma(p) as u64).sum();
    let mean = (sum as f64 / n + 0.5) as u8;
    lut_all(img, |v| blend_px(mean, v, factor));
}

/// PIL `ImageEnhance.Sharpness`: blend with the SMOOTH-filtered image (3x3 kernel
/// [1 1 1; 1 5 1; 1 1 1] / 13, rounded; border pixels unfiltered).
fn sharpness(img: &mut RgbImage, factor: f32) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    if w < 3 || h < 3 {
        return;
    }
    let stride = w * 3;
    // The smoothed image (borders keep the original values), built row by row with flat,
    // vectorizable loops over the interleaved bytes (neighbours are 3 bytes apart).
    let mut smooth = img.as_raw().clone();
    {
        let src = img.as_raw();
        let mut sums = vec![0u16; stride];
        for y in 1..h - 1 {
            let up = &src[(y - 1) * stride..y * stride];
            let cur = &src[y * stride..(y + 1) * stride];
            let dn = &src[(y + 1) * stride..(y + 2) * stride];
            // Centre column of the kernel: 1, 5, 1.
            for i in 0..stride {
                sums[i] = up[i] as u16 + 5 * cur[i] as u16 + dn[i] as u16;
            }
            let row = &mut smooth[y * stride..(y + 1) * stride];
            for i in 3..stride - 3 {
                let col = |j: usize| up[j] as u16 + cur[j] as u16 + dn[j] as u16;
                let s = col(i - 3) + sums[i] + col(i + 3);
                row[i] = ((2 * s as u32 + 13) / 26) as u8;
            }
        }
    }
    blend_slices(&smooth, img.as_mut(), factor);
}

/// PIL `Image.transform(size, AFFINE, (a, b, c, d, e, f), NEAREST, fillcolor=grey)`: output
/// pixel centre (x + 0.5, y + 0.5) samples input (a x + b y + c, d x + e y + f).
fn affine(img: &mut RgbImage, m: [f32; 6]) {
    let (w, h) = (img.width() as usize, img.height() as usize);
    let src = img.as_raw().clone();
    let out = img.as_mut();
    let [a, b, c, d, e, f] = m;
    for y in 0..h {
        let yc = y as f32 + 0.5;
        let (mut xi, mut yi) = (a * 0.5 + b * yc + c, d * 0.5 + e * yc + f);
        for x in 0..w {
            let o = (y * w + x) * 3;
            if xi >= 0.0 && yi >= 0.0 && (xi as usize) < w && (yi as usize) < h {
                let s = (yi as usize * w + xi as usize) * 3;
                out[o..o + 3].copy_from_slice(&src[s..s + 3]);
            } else {
                out[o..o + 3].fill(FILL);
            }
            xi += a;
            yi += d;
        }
    }
}

fn cutout(img: &mut RgbImage, cx: i64, cy: i64, side: i64) {
    if side <= 0 {
        return;
    }
    let (w, h) = (img.width() as i64, img.height() as i64);
    let (x0, x1) = ((cx - side / 2).max(0), (cx - side / 2 + side).min(w));
    let (y0, y1) = ((cy - side / 2).max(0), (cy - side / 2 + side).min(h));
    let out = img.as_mut();
    for y in y0..y1 {
        let s = ((y * w + x0) * 3) as usize;
        let e = ((y * w + x1) * 3) as usize;
        out[s..e].fill(FILL);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn gradient() -> RgbImage {
        RgbImage::from_fn(40, 30, |x, y| {
            image::Rgb([(x * 6) as u8, (y * 8) as u8, ((x * y) % 7 * 30) as u8])
        })
    }

    #[test]
    fn magnitude_zero_is_identity_for_parametric_ops() {
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        for op in [
            Op::Rotate,
            Op::Posterize,
            Op::SolarizeAdd,
            Op::Color,
            Op::Contrast,
            Op::Brightness,
            Op::Sharpness,
            Op::ShearX,
            Op::ShearY,
            Op::TranslateX,
            Op::TranslateY,
            Op::Cutout,
        ] {
            let mut img = gradient();
            apply_op(&mut img, op, 0, false, &mut rng);
            assert!(img == gradient(), "{op:?} changed the image at magnitude 0");
        }
    }

    #[test]
    fn ops_change_the_image_at_full_magnitude() {
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        for op in OPS {
            let mut img = gradient();
            apply_op(&mut img, op, 14, false, &mut rng);
            if !matches!(op, Op::AutoContrast | Op::Equalize) {
                assert!(img != gradient(), "{op:?} left the image unchanged");
            }
        }
        let mut img = gradient();
        apply_op(&mut img, Op::Invert, 3, false, &mut rng);
        assert_eq!(img.get_pixel(1, 1).0, [249, 247, 225]);
        let mut img = gradient();
        apply_op(&mut img, Op::TranslateX, 14, false, &mut rng);
        // Shifted by round(150/331*40) = 18 columns: left part reads further right.
        assert_eq!(img.get_pixel(0, 0).0, gradient().get_pixel(18, 0).0);
        assert_eq!(img.get_pixel(39, 0).0, [FILL; 3]);
    }
}
