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

/// Calls `f(i, mask value)` for every element `i` of chunk `c` (starting at element `o`, `n`
/// long). Factored masks compute each value from the row's three numbers: no mask memory is read.
#[inline(always)]
fn each_masked(
    mask: Option<Mask<'_>>,
    c: usize,
    o: usize,
    n: usize,
    mut f: impl FnMut(usize, Option<f32>),
) {
    match mask {
        None => (0..n).for_each(|i| f(i, None)),
        Some(Mask::Dense(m)) => (0..n).for_each(|i| f(i, Some(m[o + i]))),
        Some(Mask::Factored(fm)) => {
            // The same f32 sums as `grad_mult` / `FactoredMask::fill_row`.
            let base = fm.s_pow[c];
            let centre = base + fm.t_pow[c];
            let diag = if fm.identity && c < fm.cin {
                centre + 1.0
            } else {
                centre
            };
            for input in 0..n / 9 {
                for k in 0..9 {
                    let m = match (k, input == c) {
                        (4, true) => diag,
                        (4, false) => centre,
                        _ => base,
                    };
                    f(input * 9 + k, Some(m));
                }
            }
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
    let step = |p: &mut f32, g: f32, m: Option<f32>, b: Option<&mut f32>| {
        let mut d = match m {
            Some(m) => g * m,
            None => g,
        };
        if wd != 0.0 {
            let decay = *p * wd;
            d += match (m, mask_weight_decay) {
                (Some(m), true) => decay * m,
                _ => decay,
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
    let chunk = Mask::chunk(mask);
    match buf {
        Some(buf) => p
            .par_chunks_mut(chunk)
            .zip(buf.par_chunks_mut(chunk))
            .enumerate()
            .with_min_len(Mask::min_chunks(chunk))
            .for_each(|(c, (pc, bc))| {
                let o = c * chunk;
                each_masked(mask, c, o, pc.len(), |i, m| {
                    step(&mut pc[i], g[o + i], m, Some(&mut bc[i]))
                });
            }),
        None => p
            .par_chunks_mut(chunk)
            .enumerate()
            .with_min_len(Mask::min_chunks(chunk))
            .for_each(|(c, pc)| {
                let o = c * chunk;
                each_masked(mask, c, o, pc.len(), |i, m| {
                    step(&mut pc[i], g[o + i], m, None)
                });
            }),
    }
    debug_assert_eq!(g.len(), n);
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
        .for_each(|(c, ((pc, mc), vc))| {
            let o = c * chunk;
            each_masked(mask, c, o, pc.len(), |i, k| {
                let gi = match k {
                    Some(k) => g[o + i] * k,
                    None => g[o + i],
                };
                if wd != 0.0 {
                    pc[i] *= decay;
                }
                let m = if first {
                    gi * (1.0 - beta1)
                } else {
                    mc[i] * beta1 + gi * (1.0 - beta1)
                };
                let v = if first {
                    gi * gi * (1.0 - beta2)
                } else {
                    vc[i] * beta2 + gi * gi * (1.0 - beta2)
                };
                mc[i] = m;
                vc[i] = v;
                let numer = match k {
                    Some(k) => m * k,
                    None => m,
                };
                pc[i] -= numer / (v.sqrt() / bias2_sqrt + eps) * step_size;
            });
        });
}
