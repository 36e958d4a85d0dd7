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

#[inline(always)]
fn clip8(v: i32) -> u8 {
    (v >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resizes the `rect` of `src` to `out_w` x `out_h` (PIL: `img.crop(rect).resize((out_w,
/// out_h), BILINEAR)`), writing interleaved RGB into `out` (length `out_w * out_h * 3`).
pub fn resize_rect_into(src: &RgbImage, rect: Rect, out_w: usize, out_h: usize, out: &mut [u8]) {
    let win = Rect {
        x: 0,
        y: 0,
        w: out_w,
        h: out_h,
    };
    resize_rect_window_into(src, rect, out_w, out_h, win, out);
}

/// Like [`resize_rect_into`], but computes only the window `win` of the resized image (the
/// pixels are exactly those of the full resize; PIL: `img.crop(rect).resize(..).crop(win)`).
/// `out` has length `win.w * win.h * 3`.
pub fn resize_rect_window_into(
    src: &RgbImage,
    rect: Rect,
    out_w: usize,
    out_h: usize,
    win: Rect,
    out: &mut [u8],
) {
    assert!(rect.x + rect.w <= src.width() as usize && rect.y + rect.h <= src.height() as usize);
    assert!(rect.w > 0 && rect.h > 0 && out_w > 0 && out_h > 0);
    assert!(win.x + win.w <= out_w && win.y + win.h <= out_h);
    assert_eq!(out.len(), win.w * win.h * 3);
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            unsafe { resize_avx2(src, rect, out_w, out_h, win, out) };
            return;
        }
    }
    resize_impl(src, rect, out_w, out_h, win, out);
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn resize_avx2(src: &RgbImage, rect: Rect, out_w: usize, out_h: usize, win: Rect, out: &mut [u8]) {
    resize_impl(src, rect, out_w, out_h, win, out);
}

/// One row of the horizontal pass: output pixels `x0..x0 + w` from `src` (which starts at
/// source column `col0` and has 4 spare bytes), into `dst` (4 spare bytes).
#[inline(always)]
fn horizontal_row(src: &[u8], dst: &mut [u8], c: &Coeffs, x0: usize, w: usize, col0: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        if std::arch::is_x86_feature_detected!("sse4.1") {
            // SAFETY: SSE4.1 is available (checked); the slices have the 4 spare bytes that
            // the word-wide loads and stores need (asserted inside).
            unsafe { horizontal_row_sse41(src, dst, c, x0, w, col0) };
            return;
        }
    }
    horizontal_row_scalar(src, dst, c, x0, w, col0);
}

fn horizontal_row_scalar(src: &[u8], dst: &mut [u8], c: &Coeffs, x0: usize, w: usize, col0: usize) {
    for xo in 0..w {
        let xx = x0 + xo;
        let n = c.count[xx];
        let taps = &c.k[xx * c.ksize..xx * c.ksize + n];
        let px = &src[(c.start[xx] - col0) * 3..(c.start[xx] - col0 + n) * 3];
        let (mut r, mut g, mut b) = (HALF, HALF, HALF);
        for (p, &k) in px.chunks_exact(3).zip(taps) {
            r += p[0] as i32 * k;
            g += p[1] as i32 * k;
            b += p[2] as i32 * k;
        }
        dst[xo * 3] = clip8(r);
        dst[xo * 3 + 1] = clip8(g);
        dst[xo * 3 + 2] = clip8(b);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.1")]
unsafe fn horizontal_row_sse41(
    src: &[u8],
    dst: &mut [u8],
    c: &Coeffs,
    x0: usize,
    w: usize,
    col0: usize,
) {
    use std::arch::x86_64::*;
    assert!(dst.len() >= w * 3 + 4);
    for xo in 0..w {
        let xx = x0 + xo;
        let n = c.count[xx];
        let taps = &c.k[xx * c.ksize..xx * c.ksize + n];
        let first = (c.start[xx] - col0) * 3;
        assert!(first + n * 3 < src.len());
        let mut acc = _mm_set1_epi32(HALF);
        for (j, &k) in taps.iter().enumerate() {
            // SAFETY: first + 3j + 4 <= first + 3n + 1 <= src.len() (asserted above; n >= j + 1).
            let word =
                unsafe { std::ptr::read_unaligned(src.as_ptr().add(first + j * 3) as *const i32) };
            let px = _mm_cvtepu8_epi32(_mm_cvtsi32_si128(word));
            acc = _mm_add_epi32(acc, _mm_mullo_epi32(px, _mm_set1_epi32(k)));
        }
        let v = _mm_srai_epi32(acc, PRECISION_BITS as i32);
        let v = _mm_packus_epi16(_mm_packs_epi32(v, v), _mm_setzero_si128());
        // SAFETY: xo * 3 + 4 <= w * 3 + 4 <= dst.len() (asserted above).
        unsafe {
            std::ptr::write_unaligned(
                dst.as_mut_ptr().add(xo * 3) as *mut i32,
                _mm_cvtsi128_si32(v),
            )
        };
    }
}

/// `R` (2 or 4) rows of the horizontal pass at once: each pair of rows shares one 256-bit
/// accumulator (4 lanes per row: R, G, B and a spare), all rows share the taps.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn horizontal_rows_avx2<const R: usize>(
    src: [&[u8]; R],
    dst: [&mut [u8]; R],
    c: &Coeffs,
    x0: usize,
    w: usize,
    col0: usize,
) {
    use std::arch::x86_64::*;
    let len = src[0].len();
    assert!(R.is_multiple_of(2) && src.iter().all(|s| s.len() == len));
    assert!(dst.iter().all(|d| d.len() >= w * 3 + 4));
    for xo in 0..w {
        let xx = x0 + xo;
        let n = c.count[xx];
        let taps = &c.k[xx * c.ksize..xx * c.ksize + n];
        let first = (c.start[xx] - col0) * 3;
        assert!(first + n * 3 < len);
        let mut acc = [_mm256_set1_epi32(HALF); 2];
        for (j, &k) in taps.iter().enumerate() {
            let kv = _mm256_set1_epi32(k);
            for (p, a) in acc.iter_mut().enumerate().take(R / 2) {
                // SAFETY: first + 3j + 4 <= first + 3n + 1 <= len (asserted; n >= j + 1).
                let (lo, hi) = unsafe {
                    (
                        std::ptr::read_unaligned(
                            src[2 * p].as_ptr().add(first + j * 3) as *const i32
                        ),
                        std::ptr::read_unaligned(
                            src[2 * p + 1].as_ptr().add(first + j * 3) as *const i32
                        ),
                    )
                };
                let px = _mm256_cvtepu8_epi32(_mm_set_epi32(0, 0, hi, lo));
                *a = _mm256_add_epi32(*a, _mm256_mullo_epi32(px, kv));
            }
        }
        for (p, a) in acc.iter().enumerate().take(R / 2) {
            let v = _mm256_srai_epi32(*a, PRECISION_BITS as i32);
            let v16 = _mm_packs_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
            let v8 = _mm_packus_epi16(v16, v16);
            // SAFETY: xo * 3 + 4 <= w * 3 + 4 <= dst lengths (asserted above).
            unsafe {
                std::ptr::write_unaligned(
                    dst[2 * p].as_mut_ptr().add(xo * 3) as *mut i32,
                    _mm_cvtsi128_si32(v8),
                );
                std::ptr::write_unaligned(
                    dst[2 * p + 1].as_mut_ptr().add(xo * 3) as *mut i32,
                    _mm_extract_epi32(v8, 1),
                );
            }
        }
    }
}

#[inline(always)]
fn resize_impl(src: &RgbImage, rect: Rect, out_w: usize, out_h: usize, win: Rect, out: &mut [u8]) {
    let sw = src.width() as usize;
    let data = src.as_raw();
    let stride = sw * 3;
    let need_h = out_w != rect.w;
    let need_v = out_h != rect.h;
    if !need_h && !need_v {
        for y in 0..win.h {
            let s = (rect.y + win.y + y) * stride + (rect.x + win.x) * 3;
            out[y * win.w * 3..(y + 1) * win.w * 3].copy_from_slice(&data[s..s + win.w * 3]);
        }
        return;
    }
    let cv = need_v.then(|| precompute(rect.h, out_h));
    // Rows of the rect that the vertical pass reads for the window.
    let (row_first, row_last) = match &cv {
        Some(c) => {
            let last = win.y + win.h - 1;
            (c.start[win.y], c.start[last] + c.count[last])
        }
        None => (win.y, win.y + win.h),
    };
    let tmp_rows = row_last - row_first;
    let line = win.w * 3;
    let tmp_store;
    let (tmp, tmp_stride, tmp_x0): (&[u8], usize, usize) = if need_h {
        let ch = precompute(rect.w, out_w);
        let mut t = vec![0u8; line * tmp_rows];
        let cols_first = ch.start[win.x];
        let cols_last = ch.start[win.x + win.w - 1] + ch.count[win.x + win.w - 1];
        let ncols = cols_last - cols_first;
        // Padded copies of one source row and one output row: the SIMD path moves pixels
        // as 4-byte words.
        const RB: usize = 4;
        let mut srows = vec![vec![0u8; ncols * 3 + 4]; RB];
        let mut drows = vec![vec![0u8; line + 4]; RB];
        let mut r = 0;
        // RB rows at a time where AVX2 is available (same taps for all rows).
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            while r + RB <= tmp_rows {
                for (i, sr) in srows.iter_mut().enumerate() {
                    let from = (rect.y + row_first + r + i) * stride + (rect.x + cols_first) * 3;
                    sr[..ncols * 3].copy_from_slice(&data[from..from + ncols * 3]);
                }
                let [s0, s1, s2, s3] = &srows[..] else {
                    unreachable!()
                };
                let [d0, d1, d2, d3] = &mut drows[..] else {
                    unreachable!()
                };
                // SAFETY: AVX2 is available (checked above); the rows have the spare bytes.
                unsafe {
                    horizontal_rows_avx2::<4>(
                        [s0, s1, s2, s3],
                        [d0, d1, d2, d3],
                        &ch,
                        win.x,
                        win.w,
                        cols_first,
                    )
                };
                for (i, dr) in drows.iter().enumerate() {
                    t[(r + i) * line..(r + i + 1) * line].copy_from_slice(&dr[..line]);
                }
                r += RB;
            }
        }
        let (srow, drow) = (&mut srows[0], &mut drows[0]);
        while r < tmp_rows {
            let from = (rect.y + row_first + r) * stride + (rect.x + cols_first) * 3;
            srow[..ncols * 3].copy_from_slice(&data[from..from + ncols * 3]);
            horizontal_row(srow, drow, &ch, win.x, win.w, cols_first);
            t[r * line..(r + 1) * line].copy_from_slice(&drow[..line]);
            r += 1;
        }
        if !need_v {
            out.copy_from_slice(&t);
            return;
        }
        tmp_store = t;
        (&tmp_store[..], line, 0)
    } else {
        // Vertical only: read the source rows directly.
        (
            &data[(rect.y + row_first) * stride..],
            stride,
            (rect.x + win.x) * 3,
        )
    };
    let cv = cv.expect("vertical pass needed here");
    let mut acc = vec![0i32; line];
    for yo in 0..win.h {
        let y = win.y + yo;
        acc.fill(HALF);
        let ys = cv.start[y] - row_first;
        let taps = &cv.k[y * cv.ksize..y * cv.ksize + cv.count[y]];
        for (j, &kj) in taps.iter().enumerate() {
            let row = &tmp[(ys + j) * tmp_stride + tmp_x0..][..line];
            for (a, &p) in acc.iter_mut().zip(row) {
                *a += p as i32 * kj;
            }
        }
        for (o, &a) in out[yo * line..(yo + 1) * line].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
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
