//! The optimizer updates as fused loops over host memory, for the CPU engines (Flex, and
//! LibTorch on the CPU): one pass per parameter instead of a tensor operation (and often an
//! allocation) per term. The same arithmetic, in the same order, as the tensor-operation path in
//! `optimizer.rs`, which GPUs use; tests run both on the same inputs.
//!
//! Each element's update is a function of values (`SgdStep::with_momentum`,
//! `AdamWStep::apply`): with nothing read through a pointer inside the loops, the compiler keeps
//! the settings in registers, hoists their branches and vectorizes every loop. (The update
//! written as a closure over the settings left the masked loop scalar: 2.5x the time of the
//! unmasked one.)

use rayon::prelude::*;

use super::kernels::FactoredMask;

/// Elements per parallel chunk: large enough to amortize scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

/// The update of a parameter (and its `S − 1` state slices) without a mask (`pass`) or with one
/// mask value per element (`pass_masked`), each written as a plain zip so that it vectorizes.
trait ElementUpdate<const S: usize>: Copy + Sync {
    fn pass(self, g: &[f32], row: [&mut [f32]; S]);
    fn pass_masked(self, g: &[f32], m: &[f32], row: [&mut [f32]; S]);
}

/// One parameter's update as `S` state slices of equal length (the parameter first, then its
/// optimizer state).
///
/// Without a mask the slices are cut into chunks of `CHUNK` elements. With a factored Grad Mult
/// mask they are cut into output-channel rows, and each row's mask is built from the factors
/// into a block of at most `PATTERN` values that serves the whole row (the same values, and f32
/// sums, as the dense mask) and that the update reads beside the state: no mask memory is
/// streamed. (Tried and measured: the whole row in a buffer, +5–12% over plain SGD on A0, its
/// filling being the difference; the row's uniform value in one pass, then the centre taps again
/// from saved inputs, +45%.)
fn update_rows<const S: usize>(
    state: [&mut [f32]; S],
    g: &[f32],
    mask: Option<&FactoredMask>,
    update: impl ElementUpdate<S>,
) {
    let n = g.len();
    assert!(state.iter().all(|s| s.len() == n), "state slices of {n}");
    let len = mask.map_or(CHUNK, |f| f.row_len().max(1));
    let count = n.div_ceil(len);
    let mut chunks = state.map(|s| s.chunks_mut(len));
    let rows: Vec<[&mut [f32]; S]> = (0..count)
        .map(|_| chunks.each_mut().map(|c| c.next().expect("equal lengths")))
        .collect();
    // A task covers about CHUNK elements: rows are small, and one task per row would cost more
    // in scheduling than the row's update.
    let per_task = (CHUNK / len).max(1);
    let update_row = |row_mask: &mut Vec<f32>, (c, row): (usize, [&mut [f32]; S])| {
        let g = &g[c * len..c * len + row[0].len()];
        match mask {
            None => run_pass(update, g, None, row),
            Some(f) => {
                // The row of the mask, built from its factors in a block that stays in L1.
                let mut row = row;
                f.for_each_block(c, row_mask, |start, m| {
                    let end = start + m.len();
                    let state = row.each_mut().map(|s| &mut s[start..end]);
                    run_pass(update, &g[start..end], Some(m), state)
                })
            }
        }
    };
    if count <= per_task {
        // One task's worth (BN parameters, small kernels): handing it to the pool would cost a
        // thread wake-up and a wait, more than the update itself.
        let mut row_mask = Vec::new();
        rows.into_iter()
            .enumerate()
            .for_each(|r| update_row(&mut row_mask, r));
        return;
    }
    rows.into_par_iter()
        .enumerate()
        .with_min_len(per_task)
        .for_each_init(Vec::new, update_row);
}

/// One pass of `update`, in AVX2 code where the CPU has it: twice the values per instruction
/// of the baseline x86-64 build's SSE, the same results (element-wise IEEE operations, and no
/// FMA contraction in Rust). The masked pass reads one more stream than the plain one and was
/// 12% slower than it in SSE on B1.
#[inline(always)]
fn run_pass<const S: usize>(
    update: impl ElementUpdate<S>,
    g: &[f32],
    mask: Option<&[f32]>,
    row: [&mut [f32]; S],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { pass_avx2(update, g, mask, row) };
    }
    pass_baseline(update, g, mask, row)
}

#[inline(always)]
fn pass_baseline<const S: usize>(
    update: impl ElementUpdate<S>,
    g: &[f32],
    mask: Option<&[f32]>,
    row: [&mut [f32]; S],
) {
    match mask {
        None => update.pass(g, row),
        Some(m) => update.pass_masked(g, m, row),
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn pass_avx2<const S: usize>(
    update: impl ElementUpdate<S>,
    g: &[f32],
    mask: Option<&[f32]>,
    row: [&mut [f32]; S],
) {
    pass_baseline(update, g, mask, row)
}

/// The settings of one SGD update, and the update of one element as a function of values.
#[derive(Debug, Clone, Copy)]
struct SgdStep {
    wd: f32,
    mask_weight_decay: bool,
    momentum: f32,
    nesterov: bool,
    first: bool,
    lr: f32,
}

impl SgdStep {
    /// d = g·m (+ wd·p, masked or not): the update direction before momentum.
    #[inline(always)]
    fn direction(self, p: f32, g: f32, m: Option<f32>) -> f32 {
        let mut d = m.map_or(g, |m| g * m);
        if self.wd != 0.0 {
            let decay = p * self.wd;
            d += match m {
                Some(m) if self.mask_weight_decay => decay * m,
                _ => decay,
            };
        }
        d
    }

    /// The new parameter and momentum buffer (`b` is not read on the first step).
    #[inline(always)]
    fn with_momentum(self, p: f32, g: f32, m: Option<f32>, b: f32) -> [f32; 2] {
        let d = self.direction(p, g, m);
        let nb = if self.first { d } else { b * self.momentum + d };
        let d = if self.nesterov {
            d + nb * self.momentum
        } else {
            nb
        };
        [p - d * self.lr, nb]
    }

    /// The new parameter when there is no momentum.
    #[inline(always)]
    fn without_momentum(self, p: f32, g: f32, m: Option<f32>) -> f32 {
        p - self.direction(p, g, m) * self.lr
    }
}

/// SGD with a momentum buffer: state [parameter, buffer].
#[derive(Debug, Clone, Copy)]
struct Momentum(SgdStep);

impl ElementUpdate<2> for Momentum {
    #[inline(always)]
    fn pass(self, g: &[f32], [p, b]: [&mut [f32]; 2]) {
        for ((p, b), &g) in p.iter_mut().zip(b.iter_mut()).zip(g) {
            [*p, *b] = self.0.with_momentum(*p, g, None, *b);
        }
    }

    #[inline(always)]
    fn pass_masked(self, g: &[f32], m: &[f32], [p, b]: [&mut [f32]; 2]) {
        for (((p, b), &g), &m) in p.iter_mut().zip(b.iter_mut()).zip(g).zip(m) {
            [*p, *b] = self.0.with_momentum(*p, g, Some(m), *b);
        }
    }
}

/// SGD without momentum: state [parameter].
#[derive(Debug, Clone, Copy)]
struct NoMomentum(SgdStep);

impl ElementUpdate<1> for NoMomentum {
    #[inline(always)]
    fn pass(self, g: &[f32], [p]: [&mut [f32]; 1]) {
        for (p, &g) in p.iter_mut().zip(g) {
            *p = self.0.without_momentum(*p, g, None);
        }
    }

    #[inline(always)]
    fn pass_masked(self, g: &[f32], m: &[f32], [p]: [&mut [f32]; 1]) {
        for ((p, &g), &m) in p.iter_mut().zip(g).zip(m) {
            *p = self.0.without_momentum(*p, g, Some(m));
        }
    }
}

/// SGD with Grad Mult, in the official order: d = g ⊙ M; d += wd·p; momentum buffer
/// (b = d on the first step, else μ·b + d); Nesterov d + μ·b (else b); p −= lr·d.
#[allow(clippy::too_many_arguments)]
pub fn sgd(
    p: &mut [f32],
    g: &[f32],
    mask: Option<&FactoredMask>,
    buf: Option<&mut [f32]>,
    first: bool,
    wd: f32,
    mask_weight_decay: bool,
    momentum: f32,
    nesterov: bool,
    lr: f32,
) {
    let a = SgdStep {
        wd,
        mask_weight_decay,
        momentum,
        nesterov,
        first,
        lr,
    };
    match buf {
        Some(b) => update_rows([p, b], g, mask, Momentum(a)),
        None => update_rows([p], g, mask, NoMomentum(a)),
    }
}

/// The settings of one AdamW update, and the update of one element as a function of values.
#[derive(Debug, Clone, Copy)]
struct AdamWStep {
    /// 1 − lr·wd, when there is weight decay.
    decay: Option<f32>,
    first: bool,
    beta1: f32,
    beta2: f32,
    eps: f32,
    bias2_sqrt: f32,
    /// lr / (1 − β1^t).
    step_size: f32,
}

impl AdamWStep {
    /// The new parameter and moments (`m`, `v` are not read on the first step).
    #[inline(always)]
    fn apply(self, g: f32, k: Option<f32>, [p, m, v]: [f32; 3]) -> [f32; 3] {
        let gi = k.map_or(g, |k| g * k);
        let p = self.decay.map_or(p, |d| p * d);
        let (nm, nv) = if self.first {
            (gi * (1.0 - self.beta1), gi * gi * (1.0 - self.beta2))
        } else {
            (
                m * self.beta1 + gi * (1.0 - self.beta1),
                v * self.beta2 + gi * gi * (1.0 - self.beta2),
            )
        };
        let numer = k.map_or(nm, |k| nm * k);
        let p = p - numer / (nv.sqrt() / self.bias2_sqrt + self.eps) * self.step_size;
        [p, nm, nv]
    }
}

impl ElementUpdate<3> for AdamWStep {
    #[inline(always)]
    fn pass(self, g: &[f32], [p, m, v]: [&mut [f32]; 3]) {
        for (((p, m), v), &g) in p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut()).zip(g) {
            [*p, *m, *v] = self.apply(g, None, [*p, *m, *v]);
        }
    }

    #[inline(always)]
    fn pass_masked(self, g: &[f32], k: &[f32], [p, m, v]: [&mut [f32]; 3]) {
        let rows = p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut());
        for ((((p, m), v), &g), &k) in rows.zip(g).zip(k) {
            [*p, *m, *v] = self.apply(g, Some(k), [*p, *m, *v]);
        }
    }
}

/// AdamW as the official RepOptimizerAdamW: g' = g ⊙ M; p ·= 1 − lr·wd; m = β1·m + (1−β1)·g';
/// v = β2·v + (1−β2)·g'²; p −= lr/bc1 · (m ⊙ M) / (sqrt(v)/sqrt(bc2) + eps).
#[allow(clippy::too_many_arguments)]
pub fn adamw(
    p: &mut [f32],
    g: &[f32],
    mask: Option<&FactoredMask>,
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
    let a = AdamWStep {
        decay: (wd != 0.0).then_some(1.0 - lr * wd),
        first,
        beta1,
        beta2,
        eps,
        bias2_sqrt,
        step_size: lr / bias1,
    };
    update_rows([p, exp_avg, exp_avg_sq], g, mask, a);
}

/// The values of a strided view of `src` (non-negative `strides` in elements, from `offset`) in
/// row-major order. Flex hands a convolution's weight gradient over as a permuted view
/// ([cin, cout, kh, kw] in memory); its own copy walks such a view element by element (A0: 58 ms
/// of a 70 ms update), this one copies the contiguous innermost runs, one output row per task.
/// None when a stride is negative.
pub fn strided_to_contiguous(
    src: &[f32],
    shape: &[usize],
    strides: &[isize],
    offset: usize,
) -> Option<Vec<f32>> {
    assert_eq!(shape.len(), strides.len(), "one stride per dimension");
    let strides: Vec<usize> = strides
        .iter()
        .map(|&s| usize::try_from(s).ok())
        .collect::<Option<_>>()?;
    let n: usize = shape.iter().product();
    let mut dst = vec![0f32; n];
    if n == 0 {
        return Some(dst);
    }
    // The innermost dimensions that are contiguous in `src` form runs copied whole.
    let (mut run, mut expected, mut outer) = (1, 1, shape.len());
    while outer > 0 && strides[outer - 1] == expected {
        run *= shape[outer - 1];
        expected *= shape[outer - 1];
        outer -= 1;
    }
    let row_len = if outer == 0 { n } else { n / shape[0] };
    dst.par_chunks_mut(row_len)
        .with_min_len((CHUNK / row_len).max(1))
        .enumerate()
        .for_each(|(r, out)| {
            // The odometer over the dimensions between the row and the runs.
            let middle = if outer == 0 { 0..0 } else { 1..outer };
            let mut index = vec![0usize; shape.len()];
            let mut start = offset + if outer == 0 { 0 } else { r * strides[0] };
            for block in out.chunks_mut(run) {
                block.copy_from_slice(&src[start..start + run]);
                for d in middle.clone().rev() {
                    index[d] += 1;
                    start += strides[d];
                    if index[d] < shape[d] {
                        break;
                    }
                    start -= strides[d] * shape[d];
                    index[d] = 0;
                }
            }
        });
    Some(dst)
}

#[cfg(test)]
mod tests {
    use super::strided_to_contiguous;

    /// Element by element, as the view's definition says.
    fn naive(src: &[f32], shape: &[usize], strides: &[isize], offset: usize) -> Vec<f32> {
        let n: usize = shape.iter().product();
        (0..n)
            .map(|mut i| {
                let mut at = offset as isize;
                for d in (0..shape.len()).rev() {
                    at += (i % shape[d]) as isize * strides[d];
                    i /= shape[d];
                }
                src[at as usize]
            })
            .collect()
    }

    #[test]
    fn permuted_and_sliced_views_copy_as_read_element_by_element() {
        let src: Vec<f32> = (0..5000).map(|i| i as f32).collect();
        let cases: [(&[usize], &[isize], usize); 6] = [
            // A weight gradient stored [cin, cout, 3, 3]: cout 5, cin 7.
            (&[5, 7, 3, 3], &[9, 45, 3, 1], 0),
            // The same from a 4x4 kernel sliced to 3x3, at an offset.
            (&[5, 7, 3, 3], &[16, 80, 4, 1], 3),
            // A 2-D transpose (1x1 kernels, linear layers): runs of one element.
            (&[6, 11], &[1, 6], 0),
            (&[4, 6, 1, 1], &[1, 4, 1, 1], 2),
            // Contiguous, and a broadcast dimension of stride 0.
            (&[3, 4, 5], &[20, 5, 1], 7),
            (&[3, 4], &[0, 1], 1),
        ];
        for (shape, strides, offset) in cases {
            assert_eq!(
                strided_to_contiguous(&src, shape, strides, offset).unwrap(),
                naive(&src, shape, strides, offset),
                "shape {shape:?} strides {strides:?}"
            );
        }
        assert!(strided_to_contiguous(&src, &[3], &[-1], 4).is_none());
    }
}
