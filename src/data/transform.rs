//! The official transforms, as a `Pipeline` from a decoded RGB image to a normalized CHW
//! float tensor. All randomness comes from the RNG passed in (see `rng::sample_rng`).
//!
//! - CIFAR train (`Augment::CifarStandard`): RandomCrop(size, padding 4, zero fill) then
//!   RandomHorizontalFlip(0.5).
//! - ImageNet train (`Augment::ImagenetRaug15`): RandomResizedCrop(size, scale 0.08–1,
//!   ratio 3/4–4/3, bilinear) + flip + RandAugment `raug15` (see `randaug`).
//! - Evaluation (any preset, `train == false`): images already `size`x`size` pass unchanged;
//!   others get Resize(size, shorter side, bilinear) + CenterCrop(size).
//! - Then ToTensor + Normalize(mean, std), through a per-channel lookup table.
//!
//! Resampling is PIL's bilinear with antialiasing (see `resize`), the semantics torchvision
//! has on PIL images. Random parameters follow torchvision's `get_params` algorithms.

use image::RgbImage;
use rand::Rng;

use super::randaug;
use super::resize::{
    Rect, center_crop_offsets, resize_rect_into, resize_rect_window_into, shorter_side_size,
};
use super::spec::Augment;

/// Per-channel normalization: `(x / 255 - mean) / std`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Normalization {
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Normalization {
    /// CIFAR-10 training-set statistics.
    pub const CIFAR10: Normalization = Normalization {
        mean: [0.4914, 0.4822, 0.4465],
        std: [0.2470, 0.2435, 0.2616],
    };
    /// CIFAR-100 (the official RepOptimizers HS recipe).
    pub const CIFAR100: Normalization = Normalization {
        mean: [0.50708, 0.48655, 0.44092],
        std: [0.26733, 0.25644, 0.27615],
    };
    /// ImageNet (torchvision).
    pub const IMAGENET: Normalization = Normalization {
        mean: [0.485, 0.456, 0.406],
        std: [0.229, 0.224, 0.225],
    };
    /// The synthetic set.
    pub const SYNTHETIC: Normalization = Normalization {
        mean: super::synthetic::SYNTHETIC_MEAN,
        std: super::synthetic::SYNTHETIC_STD,
    };
}

/// From a decoded image to a normalized `3 x size x size` float tensor.
#[derive(Clone)]
pub struct Pipeline {
    pub augment: Augment,
    pub size: usize,
    pub norm: Normalization,
    pub train: bool,
    lut: Box<[[f32; 256]; 3]>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("augment", &self.augment)
            .field("size", &self.size)
            .field("norm", &self.norm)
            .field("train", &self.train)
            .finish()
    }
}

/// RandomResizedCrop parameters (torchvision `RandomResizedCrop.get_params`): the crop
/// rectangle for an image of `w` x `h`.
pub fn rrc_params<R: Rng>(w: usize, h: usize, rng: &mut R) -> Rect {
    let area = (w * h) as f64;
    let (lr0, lr1) = ((3.0f64 / 4.0).ln(), (4.0f64 / 3.0).ln());
    for _ in 0..10 {
        let target = area * rng.random_range(0.08..1.0);
        let ratio = rng.random_range(lr0..lr1).exp();
        let cw = (target * ratio).sqrt().round() as usize;
        let ch = (target / ratio).sqrt().round() as usize;
        if cw > 0 && cw <= w && ch > 0 && ch <= h {
            let y = rng.random_range(0..=h - ch);
            let x = rng.random_range(0..=w - cw);
            return Rect { x, y, w: cw, h: ch };
        }
    }
    // Fallback: central crop at the nearest allowed ratio.
    let in_ratio = w as f64 / h as f64;
    let (cw, ch) = if in_ratio < 0.75 {
        (w, ((w as f64 / 0.75).round() as usize).min(h))
    } else if in_ratio > 4.0 / 3.0 {
        (((h as f64 * 4.0 / 3.0).round() as usize).min(w), h)
    } else {
        (w, h)
    };
    Rect {
        x: (w - cw) / 2,
        y: (h - ch) / 2,
        w: cw,
        h: ch,
    }
}

fn flip_horizontal(img: &mut RgbImage) {
    let w = img.width() as usize;
    for row in img.as_mut().chunks_exact_mut(w * 3) {
        for x in 0..w / 2 {
            let (a, b) = (x * 3, (w - 1 - x) * 3);
            for c in 0..3 {
                row.swap(a + c, b + c);
            }
        }
    }
}

impl Pipeline {
    pub fn new(augment: Augment, size: usize, norm: Normalization, train: bool) -> Self {
        let lut = Box::new(std::array::from_fn(|c| {
            std::array::from_fn(|v| (v as f32 / 255.0 - norm.mean[c]) / norm.std[c])
        }));
        Pipeline {
            augment,
            size: size.max(1),
            norm,
            train,
            lut,
        }
    }

    /// Floats per output image (3 x size x size).
    pub fn out_len(&self) -> usize {
        3 * self.size * self.size
    }

    /// Resize (shorter side to `size`) + center crop, or the image itself when it already is
    /// `size` x `size`.
    pub fn resize_center_crop(&self, img: &RgbImage) -> RgbImage {
        let s = self.size;
        let (w, h) = (img.width() as usize, img.height() as usize);
        if w == s && h == s {
            return img.clone();
        }
        let (rw, rh) = shorter_side_size(w, h, s);
        // Only the center-crop window of the resized image is computed.
        let (top, left) = center_crop_offsets(rw, rh, s);
        let win = Rect {
            x: left,
            y: top,
            w: s.min(rw),
            h: s.min(rh),
        };
        let mut out = vec![0u8; s * s * 3];
        if win.w == s && win.h == s {
            resize_rect_window_into(img, Rect { x: 0, y: 0, w, h }, rw, rh, win, &mut out);
        } else {
            // Degenerate (resized image thinner than the crop): PIL pads with zeros.
            let mut part = vec![0u8; win.w * win.h * 3];
            resize_rect_window_into(img, Rect { x: 0, y: 0, w, h }, rw, rh, win, &mut part);
            for y in 0..win.h {
                out[y * s * 3..y * s * 3 + win.w * 3]
                    .copy_from_slice(&part[y * win.w * 3..(y + 1) * win.w * 3]);
            }
        }
        RgbImage::from_raw(s as u32, s as u32, out).expect("buffer size")
    }

    /// The augmented 8-bit image (everything but ToTensor + Normalize).
    pub fn augment_u8<R: Rng>(&self, img: &RgbImage, rng: &mut R) -> RgbImage {
        let s = self.size;
        if !self.train {
            return self.resize_center_crop(img);
        }
        match self.augment {
            Augment::CifarStandard => {
                let base = self.resize_center_crop(img);
                let pad = 4usize;
                let i = rng.random_range(0..=2 * pad);
                let j = rng.random_range(0..=2 * pad);
                let mut out = RgbImage::new(s as u32, s as u32);
                let src = base.as_raw();
                let dst = out.as_mut();
                for y in 0..s {
                    let sy = (y + i) as isize - pad as isize;
                    if sy < 0 || sy >= s as isize {
                        continue;
                    }
                    let x0 = pad.saturating_sub(j); // first output column with data
                    let x1 = (s + pad).saturating_sub(j).min(s);
                    if x0 >= x1 {
                        continue;
                    }
                    let sx0 = x0 + j - pad;
                    let n = x1 - x0;
                    dst[(y * s + x0) * 3..(y * s + x1) * 3]
                        .copy_from_slice(&src[(sy as usize * s + sx0) * 3..][..n * 3]);
                }
                if rng.random::<f32>() < 0.5 {
                    flip_horizontal(&mut out);
                }
                out
            }
            Augment::ImagenetRaug15 => {
                let rect = rrc_params(img.width() as usize, img.height() as usize, rng);
                let mut buf = vec![0u8; s * s * 3];
                resize_rect_into(img, rect, s, s, &mut buf);
                let mut out = RgbImage::from_raw(s as u32, s as u32, buf).expect("buffer size");
                if rng.random::<f32>() < 0.5 {
                    flip_horizontal(&mut out);
                }
                randaug::rand_augment(&mut out, rng);
                out
            }
            Augment::FlipOnly => {
                let mut out = self.resize_center_crop(img);
                if rng.random::<f32>() < 0.5 {
                    flip_horizontal(&mut out);
                }
                out
            }
            Augment::None => self.resize_center_crop(img),
        }
    }

    /// ToTensor + Normalize of a `size` x `size` image into `out` (CHW, length `out_len`).
    pub fn normalize_into(&self, img: &RgbImage, out: &mut [f32]) {
        let plane = self.size * self.size;
        assert_eq!(img.width() as usize * img.height() as usize, plane);
        assert_eq!(out.len(), 3 * plane);
        let (r, rest) = out.split_at_mut(plane);
        let (g, b) = rest.split_at_mut(plane);
        let [l0, l1, l2] = &*self.lut;
        for (i, p) in img.as_raw().chunks_exact(3).enumerate() {
            r[i] = l0[p[0] as usize];
            g[i] = l1[p[1] as usize];
            b[i] = l2[p[2] as usize];
        }
    }

    /// The whole pipeline into `out` (CHW, length `out_len`).
    pub fn apply<R: Rng>(&self, img: &RgbImage, rng: &mut R, out: &mut [f32]) {
        let a = self.augment_u8(img, rng);
        self.normalize_into(&a, out);
    }

    /// The whole pipeline into a new vector.
    pub fn apply_vec<R: Rng>(&self, img: &RgbImage, rng: &mut R) -> Vec<f32> {
        let mut out = vec![0.0; self.out_len()];
        self.apply(img, rng, &mut out);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    #[test]
    fn cifar_crop_is_a_shifted_copy_with_zero_border() {
        let img = RgbImage::from_fn(32, 32, |x, y| image::Rgb([x as u8 + 1, y as u8 + 1, 9]));
        let p = Pipeline::new(Augment::CifarStandard, 32, Normalization::CIFAR10, true);
        for seed in 0..50 {
            let out = p.augment_u8(&img, &mut ChaCha8Rng::seed_from_u64(seed));
            // Find the shift from a pixel that is not border.
            let c = out.get_pixel(16, 16).0;
            let flipped = out.get_pixel(17, 16).0[0] < c[0];
            let dy = c[1] as i32 - 1 - 16;
            for y in 0..32i32 {
                for x in 0..32i32 {
                    let sx = if flipped {
                        c[0] as i32 - 1 - (x - 16)
                    } else {
                        c[0] as i32 - 1 + (x - 16)
                    };
                    let sy = y + dy;
                    let want = if (0..32).contains(&sx) && (0..32).contains(&sy) {
                        [sx as u8 + 1, sy as u8 + 1, 9]
                    } else {
                        [0, 0, 0]
                    };
                    assert_eq!(
                        out.get_pixel(x as u32, y as u32).0,
                        want,
                        "seed {seed} at {x},{y}"
                    );
                }
            }
        }
    }

    #[test]
    fn rrc_params_stay_inside() {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        for (w, h) in [(500, 375), (32, 32), (1024, 683), (10, 400)] {
            for _ in 0..200 {
                let r = rrc_params(w, h, &mut rng);
                assert!(
                    r.w > 0 && r.h > 0 && r.x + r.w <= w && r.y + r.h <= h,
                    "{r:?}"
                );
            }
        }
    }

    #[test]
    fn normalization_lut() {
        let p = Pipeline::new(Augment::None, 1, Normalization::IMAGENET, false);
        let img = RgbImage::from_pixel(1, 1, image::Rgb([255, 0, 128]));
        let mut out = [0.0; 3];
        p.normalize_into(&img, &mut out);
        assert!((out[0] - (1.0 - 0.485) / 0.229).abs() < 1e-6);
        assert!((out[1] - (-0.456 / 0.224)).abs() < 1e-6);
        assert!((out[2] - (128.0 / 255.0 - 0.406) / 0.225).abs() < 1e-6);
    }
}
