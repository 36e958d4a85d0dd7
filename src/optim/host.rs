//! The optimizer updates as fused loops over host memory, for the CPU backend: one pass per
//! parameter instead of a tensor operation (and often an allocation) per term. The same
//! arithmetic, in the same order, as the tensor-operation path in `optimizer.rs`, which GPUs use;
//! a test runs both on the same inputs.

use rayon::prelude::*;

/// Elements per parallel chunk: large enough to amortize scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

use super::kernels::FactoredMask;

/// A Grad Mult mask as the loops read it.
#[derive(Debug, Clone, Copy)]
pub enum Mask<'a> {
    /// One value per element.
    Dense(&'a [f32]),
    /// Rows built on the fly from per-channel factors (no memory traffic).
    Factored(&'a FactoredMask),
}

impl Mask<'_> {
    /// Elements per chunk: whole output-channel rows for factored masks.
    fn chunk(mask: Option<Mask<'_>>) -> usize {
        match mask {
            Some(Mask::Factored(f)) => f.row_len().max(1),
            _ => CHUNK,
        }
    }

    /// Chunks per parallel task, so that a task covers about `CHUNK` elements (rows are small:
    /// one task per row would cost more in scheduling than the row's update).
    fn min_chunks(chunk: usize) -> usize {
        (CHUNK / chunk).max(1)
    }
}

/// The mask values of chunk `c` (elements `o..o + n`) as a slice: dense masks are read in
/// place, a factored mask's row is written into `scratch` (one row, in L1). The update loops then
/// run over plain zipped slices, which the compiler vectorizes without bounds checks.
#[inline(always)]
fn mask_chunk<'m>(
    mask: Option<Mask<'m>>,
    c: usize,
    o: usize,
    n: usize,
    scratch: &'m mut Vec<f32>,
) -> Option<&'m [f32]> {
    match mask {
        None => None,
        Some(Mask::Dense(m)) => Some(&m[o..o + n]),
        Some(Mask::Factored(fm)) => {
            // The same f32 sums as `grad_mult`.
            fm.fill_row(c, scratch);
            Some(&scratch[..n])
        }
    }
}

/// SGD with Grad Mult, in the official order: d = g ⊙ M; d += wd·p; momentum buffer
/// (b = d on the first step, else μ·b + d); Nesterov d + μ·b (else b); p −= lr·d.
#[allow(clippy::too_many_arguments)]
pub fn sgd(
    p: &mut [f32],
    g: &[f32],
    mask: Option<Mask<'_>>,
    buf: Option<&mut [f32]>,
    first: bool,
    wd: f32,
    mask_weight_decay: bool,
    momentum: f32,
    nesterov: bool,
    lr: f32,
) {
    // The loop-invariant choices (weight decay, its masking, first step, Nesterov) are
    // branches the compiler hoists out of the vectorized loops.
    let step = |p: &mut f32, g: f32, m: f32, masked: bool, b: Option<&mut f32>| {
        let mut d = if masked { g * m } else { g };
        if wd != 0.0 {
            let decay = *p * wd;
            d += if masked && mask_weight_decay {
                decay * m
            } else {
                decay
            };
        }
        if let Some(b) = b {
            let nb = if first { d } else { *b * momentum + d };
            *b = nb;
            d = if nesterov { d + nb * momentum } else { nb };
        }
        *p -= d * lr;
    };
    let n = p.len();
    debug_assert_eq!(g.len(), n);
    let chunk = Mask::chunk(mask);
    let chunk_update =
        |c: usize, pc: &mut [f32], bc: Option<&mut [f32]>, scratch: &mut Vec<f32>| {
            let o = c * chunk;
            let gc = &g[o..o + pc.len()];
            match (mask_chunk(mask, c, o, pc.len(), scratch), bc) {
                (Some(mc), Some(bc)) => {
                    for (((p, &g), &m), b) in pc.iter_mut().zip(gc).zip(mc).zip(bc) {
                        step(p, g, m, true, Some(b));
                    }
                }
                (Some(mc), None) => {
                    for ((p, &g), &m) in pc.iter_mut().zip(gc).zip(mc) {
                        step(p, g, m, true, None);
                    }
                }
                (None, Some(bc)) => {
                    for ((p, &g), b) in pc.iter_mut().zip(gc).zip(bc) {
                        step(p, g, 1.0, false, Some(b));
                    }
                }
                (None, None) => {
                    for (p, &g) in pc.iter_mut().zip(gc) {
                        step(p, g, 1.0, false, None);
                    }
                }
            }
        };
    match buf {
        Some(buf) => p
            .par_chunks_mut(chunk)
            .zip(buf.par_chunks_mut(chunk))
            .enumerate()
            .with_min_len(Mask::min_chunks(chunk))
            .for_each_init(Vec::new, |scratch, (c, (pc, bc))| {
                chunk_update(c, pc, Some(bc), scratch)
            }),
        None => p
            .par_chunks_mut(chunk)
            .enumerate()
            .with_min_len(Mask::min_chunks(chunk))
            .for_each_init(Vec::new, |scratch, (c, pc)| {
                chunk_update(c, pc, None, scratch)
            }),
    }
}

/// AdamW as the official RepOptimizerAdamW: g' = g ⊙ M; p ·= 1 − lr·wd; m = β1·m + (1−β1)·g';
/// v = β2·v + (1−β2)·g'²; p −= lr/bc1 · (m ⊙ M) / (sqrt(v)/sqrt(bc2) + eps).
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    p: &mut [f32],
    g: &[f32],
    mask: Option<Mask<'_>>,
    exp_avg: &mut [f32],
    exp_avg_sq: &mut [f32],
    first: bool,
    wd: f32,
    lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias1: f32,
    bias2_sqrt: f32,
) {
    let decay = 1.0 - lr * wd;
    let step_size = lr / bias1;
    let chunk = Mask::chunk(mask);
    p.par_chunks_mut(chunk)
        .zip(exp_avg.par_chunks_mut(chunk))
        .zip(exp_avg_sq.par_chunks_mut(chunk))
        .enumerate()
        .with_min_len(Mask::min_chunks(chunk))
        .for_each_init(Vec::new, |scratch, (c, ((pc, mc), vc))| {
            let o = c * chunk;
            let gc = &g[o..o + pc.len()];
            let mask = mask_chunk(mask, c, o, pc.len(), scratch);
            let update = |p: &mut f32, g: f32, k: f32, masked: bool, m: &mut f32, v: &mut f32| {
                let gi = if masked { g * k } else { g };
                if wd != 0.0 {
                    *p *= decay;
                }
                let nm = if first {
                    gi * (1.0 - beta1)
                } else {
                    *m * beta1 + gi * (1.0 - beta1)
                };
                let nv = if first {
                    gi * gi * (1.0 - beta2)
                } else {
                    *v * beta2 + gi * gi * (1.0 - beta2)
                };
                *m = nm;
                *v = nv;
                let numer = if masked { nm * k } else { nm };
                *p -= numer / (nv.sqrt() / bias2_sqrt + eps) * step_size;
            };
            match mask {
                Some(kc) => {
                    for ((((p, &g), &k), m), v) in pc.iter_mut().zip(gc).zip(kc).zip(mc).zip(vc) {
                        update(p, g, k, true, m, v);
                    }
                }
                None => {
                    for (((p, &g), m), v) in pc.iter_mut().zip(gc).zip(mc).zip(vc) {
                        update(p, g, 1.0, false, m, v);
                    }
                }
            }
        });
}
