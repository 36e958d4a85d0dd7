//! Separable bilinear resampling with PIL's exact semantics (`Image.resize(size, BILINEAR)`,
//! which torchvision uses on PIL images): a triangle filter whose support is stretched by the
//! downscale factor (antialiasing when shrinking, plain bilinear when enlarging), pixel centres
//! at +0.5, taps clamped to the (cropped) source, weights normalized then quantized to 22-bit
//! fixed point, horizontal pass first with the intermediate rounded to 8 bits, then the
//! vertical pass — the same arithmetic as Pillow's `ImagingResample` on 8-bit images.

use image::RgbImage;

const PRECISION_BITS: u32 = 32 - 8 - 2;
const HALF: i32 = 1 << (PRECISION_BITS - 1);

/// A rectangle of an RGB image (integer bounds, like a PIL crop).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Rect {
    pub x: usize,
    pub y: usize,
    pub w: usize,
    pub h: usize,
}

/// Per-output-pixel filter taps: first source index, tap count, fixed-point weights.
struct Coeffs {
    start: Vec<usize>,
    count: Vec<usize>,
    ksize: usize,
    k: Vec<i32>,
}

fn triangle(x: f64) -> f64 {
    let x = x.abs();
    if x < 1.0 { 1.0 - x } else { 0.0 }
}

fn precompute(in_size: usize, out_size: usize) -> Coeffs {
    let scale = in_size as f64 / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filterscale; // bilinear support 1.0
    let ksize = support.ceil() as usize * 2 + 1;
    let mut start = Vec::with_capacity(out_size);
    let mut count = Vec::with_capacity(out_size);
    let mut k = vec![0i32; out_size * ksize];
    let mut w = vec![0f64; ksize];
    let ss = 1.0 / filterscale;
    for xx in 0..out_size {
        let center = (xx as f64 + 0.5) * scale;
        // C's (int) cast truncates toward zero; then clamp.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax =
            (((center + support + 0.5) as i64).min(in_size as i64) as usize).saturating_sub(xmin);
        let xmax = xmax.min(ksize);
        let mut ww = 0.0;
        for (x, wx) in w.iter_mut().enumerate().take(xmax) {
            *wx = triangle((x as f64 + xmin as f64 - center + 0.5) * ss);
            ww += *wx;
        }
        for x in 0..xmax {
            let v = if ww != 0.0 { w[x] / ww } else { w[x] };
            k[xx * ksize + x] = if v < 0.0 {
                (-0.5 + v * (1 << PRECISION_BITS) as f64) as i32
            } else {
                (0.5 + v * (1 << PRECISION_BITS) as f64) as i32
            };
        }
        start.push(xmin);
        count.push(xmax);
    }
    Coeffs {
        start,
        count,
        ksize,
        k,
    }
}

#[inline]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes the `rect` of `src` to `out_w` x `out_h` (PIL: `img.crop(rect).resize((out_w,
/// out_h), BILINEAR)`), writing interleaved RGB into `out` (length `out_w * out_h * 3`).
pub fn resize_rect_into(src: &RgbImage, rect: Rect, out_w: usize, out_h: usize, out: &mut [u8]) {
    let sw = src.width() as usize;
    let data = src.as_raw();
    assert!(rect.x + rect.w <= sw && rect.y + rect.h <= src.height() as usize);
    assert!(rect.w > 0 && rect.h > 0 && out_w > 0 && out_h > 0);
    assert_eq!(out.len(), out_w * out_h * 3);
    let stride = sw * 3;
    let need_h = out_w != rect.w;
    let need_v = out_h != rect.h;
    if !need_h && !need_v {
        for y in 0..out_h {
            let s = (rect.y + y) * stride + rect.x * 3;
            out[y * out_w * 3..(y + 1) * out_w * 3].copy_from_slice(&data[s..s + out_w * 3]);
        }
        return;
    }
    let cv = if need_v {
        Some(precompute(rect.h, out_h))
    } else {
        None
    };
    // Rows of the rect that the vertical pass reads.
    let (row_first, row_last) = match &cv {
        Some(c) => (c.start[0], c.start[out_h - 1] + c.count[out_h - 1]),
        None => (0, rect.h),
    };
    // Horizontal pass into a temporary of out_w x (row_last - row_first).
    let tmp_rows = row_last - row_first;
    let mut tmp_store;
    let (tmp, tmp_stride, tmp_x0): (&[u8], usize, usize) = if need_h {
        let ch = precompute(rect.w, out_w);
        tmp_store = vec![0u8; out_w * 3 * tmp_rows];
        let line = out_w * 3;
        for r in 0..tmp_rows {
            let srow = &data[(rect.y + row_first + r) * stride + rect.x * 3..][..rect.w * 3];
            let drow = &mut tmp_store[r * line..(r + 1) * line];
            horizontal_row(srow, drow, &ch);
        }
        if !need_v {
            out.copy_from_slice(&tmp_store);
            return;
        }
        (&tmp_store[..], out_w * 3, 0)
    } else {
        // Vertical only: read the source rows directly.
        (&data[(rect.y + row_first) * stride..], stride, rect.x * 3)
    };
    let cv = cv.expect("vertical pass needed here");
    let line = out_w * 3;
    let mut acc = vec![0i32; line];
    for y in 0..out_h {
        acc.fill(HALF);
        let ys = cv.start[y] - row_first;
        let taps = &cv.k[y * cv.ksize..y * cv.ksize + cv.count[y]];
        for (j, &kj) in taps.iter().enumerate() {
            let row = &tmp[(ys + j) * tmp_stride + tmp_x0..][..line];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * kj;
            }
        }
        for (o, &a) in out[y * line..(y + 1) * line].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
}

#[inline]
fn horizontal_row(srow: &[u8], drow: &mut [u8], c: &Coeffs) {
    for (xx, d) in drow.chunks_exact_mut(3).enumerate() {
        let xmin = c.start[xx];
        let n = c.count[xx];
        let taps = &c.k[xx * c.ksize..xx * c.ksize + n];
        let px = &srow[xmin * 3..(xmin + n) * 3];
        let (mut r, mut g, mut b) = (HALF, HALF, HALF);
        for (p, &k) in px.chunks_exact(3).zip(taps) {
            r += p[0] as i32 * k;
            g += p[1] as i32 * k;
            b += p[2] as i32 * k;
        }
        d[0] = clip8(r);
        d[1] = clip8(g);
        d[2] = clip8(b);
    }
}

/// Resizes a rectangle into a new image.
pub fn resize_rect(src: &RgbImage, rect: Rect, out_w: usize, out_h: usize) -> RgbImage {
    let mut out = vec![0u8; out_w * out_h * 3];
    resize_rect_into(src, rect, out_w, out_h, &mut out);
    RgbImage::from_raw(out_w as u32, out_h as u32, out).expect("buffer size")
}

/// Resizes a whole image (PIL `img.resize((w, h), BILINEAR)`).
pub fn resize(src: &RgbImage, out_w: usize, out_h: usize) -> RgbImage {
    let rect = Rect {
        x: 0,
        y: 0,
        w: src.width() as usize,
        h: src.height() as usize,
    };
    resize_rect(src, rect, out_w, out_h)
}

/// torchvision `Resize(size)` with an int size: the shorter side becomes `size`, the longer
/// `int(size * long / short)`. Returns (w, h).
pub fn shorter_side_size(w: usize, h: usize, size: usize) -> (usize, usize) {
    if w <= h {
        (size, ((size as f64 * h as f64 / w as f64) as usize).max(1))
    } else {
        (((size as f64 * w as f64 / h as f64) as usize).max(1), size)
    }
}

/// Python's round (half to even), as torchvision's CenterCrop uses.
pub fn round_half_even(x: f64) -> i64 {
    let r = x.round();
    if (x - x.trunc()).abs() == 0.5 {
        let t = x.trunc();
        if (t as i64) % 2 == 0 {
            t as i64
        } else {
            r as i64
        }
    } else {
        r as i64
    }
}

/// torchvision `CenterCrop(size)` offsets (top, left) for an image of `w` x `h`.
pub fn center_crop_offsets(w: usize, h: usize, size: usize) -> (usize, usize) {
    let top = round_half_even((h as f64 - size as f64) / 2.0).max(0) as usize;
    let left = round_half_even((w as f64 - size as f64) / 2.0).max(0) as usize;
    (top, left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identity_and_constant() {
        let img = RgbImage::from_fn(17, 9, |x, y| image::Rgb([x as u8 * 10, y as u8 * 20, 7]));
        assert_eq!(resize(&img, 17, 9), img);
        let c = RgbImage::from_pixel(50, 40, image::Rgb([200, 100, 3]));
        for (w, h) in [(13, 7), (100, 90), (50, 13), (7, 40)] {
            let r = resize(&c, w, h);
            assert!(r.pixels().all(|p| p.0 == [200, 100, 3]), "{w}x{h}");
        }
    }

    #[test]
    fn half_downscale_averages_pairs() {
        // 2x downscale with PIL's bilinear: support 2, taps at distances 0.25/0.75 around the
        // centre -> weights 3/8, 3/8 (inner) and 1/8, 1/8 (outer), edges renormalized.
        let img = RgbImage::from_fn(8, 1, |x, _| image::Rgb([x as u8 * 16, 0, 0]));
        let r = resize(&img, 4, 1);
        let v: Vec<u8> = r.pixels().map(|p| p.0[0]).collect();
        // Output 1 (centre 3.0) reads x=1..4: (16*1 + 32*3 + 48*3 + 64*1)/8 = 40.
        assert_eq!(v[1], 40);
        // Output 2 (centre 5.0) reads x=3..6: (48 + 64*3 + 80*3 + 96)/8 = 72.
        assert_eq!(v[2], 72);
    }

    #[test]
    fn python_rounding() {
        assert_eq!(round_half_even(58.5), 58);
        assert_eq!(round_half_even(59.5), 60);
        assert_eq!(round_half_even(2.4), 2);
        assert_eq!(center_crop_offsets(341, 224, 224), (0, 58));
    }
}
