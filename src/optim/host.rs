//! The optimizer updates as fused loops over host memory, for the CPU engines (Flex, and
//! LibTorch on the CPU): one pass per parameter instead of a tensor operation (and often an
//! allocation) per term. The same arithmetic, in the same order, as the tensor-operation path in
//! `optimizer.rs`, which GPUs use; tests run both on the same inputs.
//!
//! Each element's update is a function of values (`SgdStep::with_momentum`,
//! `AdamWStep::apply`): with nothing read through a pointer inside the loops, the compiler keeps
//! the settings in registers and vectorizes every loop (their branches stay inside the loops,
//! predicted every time). (The update written as a closure over the settings left the masked
//! loop scalar: 2.5x the time of the unmasked one.)

use rayon::prelude::*;

use super::kernels::{FactoredMask, PERIOD};

/// Elements per parallel chunk: large enough to amortize scheduling, small enough to balance.
const CHUNK: usize = 1 << 15;

/// The update of a parameter `p` and its optimizer state `s1`, `s2` (those the update has; the
/// others are empty) over one run of elements, with one mask value per element or none.
trait ElementUpdate: Copy + Sync {
    fn pass(self, g: &[f32], m: Option<&[f32]>, p: &mut [f32], s1: &mut [f32], s2: &mut [f32]);
}

/// One parameter's update as `S` state slices of equal length (the parameter first, then its
/// optimizer state; at most three).
///
/// The slices are cut into tasks of about `CHUNK` elements for the thread pool: plain chunks
/// without a mask, whole output-channel rows with a factored Grad Mult mask. A masked row is
/// updated one period of its mask at a time (`FactoredMask::for_each_run`), the period built
/// from the factors on the stack: the same values, and f32 sums, as the dense mask, and no mask
/// memory streamed. (Tried and measured on A0's sizes: the whole row in a buffer, +5–12% over
/// plain SGD, its filling being the difference; the row's uniform value in one pass, then the
/// centre taps again from saved inputs, +45%; blocks of 576 values, each one call with the
/// slices in an array, +10–15%: most of it was each block's loop set-up and overlap checks,
/// which the slices as separate arguments remove; with the periods as arrays (`periodic`),
/// `bench model` on A0, LibTorch, gives the RepOptimizer's update −2% to +3% over plain SGD's.)
fn update_rows<const S: usize>(
    state: [&mut [f32]; S],
    g: &[f32],
    mask: Option<&FactoredMask>,
    update: impl ElementUpdate,
) {
    let n = g.len();
    assert!(S <= 3, "at most two state slices besides the parameter");
    assert!(state.iter().all(|s| s.len() == n), "state slices of {n}");
    let row_len = mask.map_or(CHUNK, |f| f.row_len().max(1));
    let task_len = (CHUNK / row_len).max(1) * row_len;
    let mut chunks = state.map(|s| s.chunks_mut(task_len));
    let tasks: Vec<[&mut [f32]; S]> = (0..n.div_ceil(task_len))
        .map(|_| chunks.each_mut().map(|c| c.next().expect("equal lengths")))
        .collect();
    let run = |(t, state): (usize, [&mut [f32]; S])| {
        let start = t * task_len;
        let g = &g[start..start + state[0].len()];
        let mut state = state.into_iter();
        let mut next = || state.next().unwrap_or(&mut []);
        let (p, s1, s2) = (next(), next(), next());
        run_task(update, g, mask.map(|f| (f, start / row_len)), p, s1, s2)
    };
    if tasks.len() == 1 {
        // One task (BN parameters, small kernels): handing it to the pool would cost a thread
        // wake-up and a wait, more than the update itself.
        tasks.into_iter().enumerate().for_each(run);
    } else {
        tasks.into_par_iter().enumerate().for_each(run);
    }
}

/// One task of `update`, in AVX2 code where the CPU has it: twice the values per instruction
/// of the baseline x86-64 build's SSE, the same results (element-wise IEEE operations, and no
/// FMA contraction in Rust). `mask` is the factored mask and the task's first row.
#[inline(always)]
fn run_task(
    update: impl ElementUpdate,
    g: &[f32],
    mask: Option<(&FactoredMask, usize)>,
    p: &mut [f32],
    s1: &mut [f32],
    s2: &mut [f32],
) {
    #[cfg(target_arch = "x86_64")]
    if std::arch::is_x86_feature_detected!("avx2") {
        // SAFETY: the CPU has AVX2, checked just above.
        return unsafe { task_avx2(update, g, mask, p, s1, s2) };
    }
    task_baseline(update, g, mask, p, s1, s2)
}

/// The slices are separate arguments (not one array) so that the compiler knows they do not
/// overlap: the short masked loops then run without overlap checks.
#[inline(always)]
fn task_baseline(
    update: impl ElementUpdate,
    g: &[f32],
    mask: Option<(&FactoredMask, usize)>,
    p: &mut [f32],
    s1: &mut [f32],
    s2: &mut [f32],
) {
    let Some((f, first_row)) = mask else {
        return update.pass(g, None, p, s1, s2);
    };
    let row_len = f.row_len();
    for (r, g) in g.chunks(row_len).enumerate() {
        let base = r * row_len;
        f.for_each_run(
            first_row + r,
            // Inlined, so that it is compiled as the caller (AVX2).
            #[inline(always)]
            |start, len, period| {
                let [p, s1, s2] = parts([p, s1, s2], base + start, len);
                periodic(update, &g[start..start + len], period, p, s1, s2)
            },
        );
    }
}

/// `update` over a run whose mask repeats `period`: one period at a time, the gradient and the
/// parameter as arrays so that every loop but the last has the period's constant length and
/// compiles to straight vector code (as slices of that length: +7% to +12% over plain SGD in
/// `bench model` on A0, as arrays: −2% to +3%).
#[inline(always)]
fn periodic(
    update: impl ElementUpdate,
    g: &[f32],
    period: &[f32; PERIOD],
    p: &mut [f32],
    s1: &mut [f32],
    s2: &mut [f32],
) {
    let full = g.len() - g.len() % PERIOD;
    for start in (0..full).step_by(PERIOD) {
        let [p, s1, s2] = parts([p, s1, s2], start, PERIOD);
        let g: &[f32; PERIOD] = g[start..start + PERIOD].try_into().expect("one period");
        let p: &mut [f32; PERIOD] = p.try_into().expect("one period");
        update.pass(g, Some(period), p, s1, s2)
    }
    if full < g.len() {
        let len = g.len() - full;
        let [p, s1, s2] = parts([p, s1, s2], full, len);
        update.pass(&g[full..], Some(&period[..len]), p, s1, s2)
    }
}

/// `len` values of each slice from `from`; an empty slice (a state slice the update has not)
/// stays empty.
#[inline(always)]
fn parts(slices: [&mut [f32]; 3], from: usize, len: usize) -> [&mut [f32]; 3] {
    slices.map(|s| {
        if s.is_empty() {
            s
        } else {
            &mut s[from..from + len]
        }
    })
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn task_avx2(
    update: impl ElementUpdate,
    g: &[f32],
    mask: Option<(&FactoredMask, usize)>,
    p: &mut [f32],
    s1: &mut [f32],
    s2: &mut [f32],
) {
    task_baseline(update, g, mask, p, s1, s2)
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

impl ElementUpdate for Momentum {
    #[inline(always)]
    fn pass(self, g: &[f32], m: Option<&[f32]>, p: &mut [f32], b: &mut [f32], _: &mut [f32]) {
        let a = self.0;
        match m {
            None => {
                for ((p, b), &g) in p.iter_mut().zip(b.iter_mut()).zip(g) {
                    [*p, *b] = a.with_momentum(*p, g, None, *b);
                }
            }
            Some(m) => {
                for (((p, b), &g), &m) in p.iter_mut().zip(b.iter_mut()).zip(g).zip(m) {
                    [*p, *b] = a.with_momentum(*p, g, Some(m), *b);
                }
            }
        }
    }
}

/// SGD without momentum: state [parameter].
#[derive(Debug, Clone, Copy)]
struct NoMomentum(SgdStep);

impl ElementUpdate for NoMomentum {
    #[inline(always)]
    fn pass(self, g: &[f32], m: Option<&[f32]>, p: &mut [f32], _: &mut [f32], _: &mut [f32]) {
        let a = self.0;
        match m {
            None => {
                for (p, &g) in p.iter_mut().zip(g) {
                    *p = a.without_momentum(*p, g, None);
                }
            }
            Some(m) => {
                for ((p, &g), &m) in p.iter_mut().zip(g).zip(m) {
                    *p = a.without_momentum(*p, g, Some(m));
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

impl ElementUpdate for AdamWStep {
    #[inline(always)]
    fn pass(self, g: &[f32], k: Option<&[f32]>, p: &mut [f32], m: &mut [f32], v: &mut [f32]) {
        let a = self;
        let state = p.iter_mut().zip(m.iter_mut()).zip(v.iter_mut());
        match k {
            None => {
                for (((p, m), v), &g) in state.zip(g) {
                    [*p, *m, *v] = a.apply(g, None, [*p, *m, *v]);
                }
            }
            Some(k) => {
                for ((((p, m), v), &g), &k) in state.zip(g).zip(k) {
                    [*p, *m, *v] = a.apply(g, Some(k), [*p, *m, *v]);
                }
            }
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
