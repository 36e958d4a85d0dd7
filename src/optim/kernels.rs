//! Host-side formulas of gradient re-parameterization, on PyTorch-layout [out, in, 3, 3] kernels.

/// Index of the centre tap of output channel `o`, input channel `i` in a [cout, cin, 3, 3] kernel.
fn centre(o: usize, i: usize, cin: usize) -> usize {
    (o * cin + i) * 9 + 4
}

/// Grad Mult mask of one block's 3x3 conv (the paper's Eq. 3):
/// M[o,i,p,q] = s[o]^power + [centre]·t[o]^power + [o = i and centre]·1 (identity blocks only).
/// The identity term is +1 whatever u is. SGD uses power 2, AdamW power 1.
pub fn grad_mult(cin: usize, s: &[f32], t: &[f32], identity: bool, power: i32) -> Vec<f32> {
    let cout = s.len();
    let mut mask = vec![0.0f32; cout * cin * 9];
    for o in 0..cout {
        let so = s[o].powi(power);
        mask[o * cin * 9..(o + 1) * cin * 9].fill(so);
        let to = t[o].powi(power);
        for i in 0..cin {
            mask[centre(o, i, cin)] += to;
        }
        if identity {
            mask[centre(o, o, cin)] += 1.0;
        }
    }
    mask
}

/// A Grad Mult mask kept as its factors: per output channel s[o]^power and t[o]^power, the input
/// channels and whether the block has an identity branch. The fused update loops build each
/// output channel's row of the mask on the fly from them, so the mask costs no memory traffic
/// (a dense mask is one more stream of the kernel's size: about +20% on a memory-bound update).
#[derive(Debug, Clone, PartialEq)]
pub struct FactoredMask {
    pub cin: usize,
    pub s_pow: Vec<f32>,
    pub t_pow: Vec<f32>,
    pub identity: bool,
}

impl FactoredMask {
    pub fn new(cin: usize, s: &[f32], t: &[f32], identity: bool, power: i32) -> Self {
        FactoredMask {
            cin,
            s_pow: s.iter().map(|v| v.powi(power)).collect(),
            t_pow: t.iter().map(|v| v.powi(power)).collect(),
            identity,
        }
    }

    /// Elements of one output channel's row ([cin, 3, 3]).
    pub fn row_len(&self) -> usize {
        self.cin * 9
    }

    /// Output channel `o`'s row of the mask as runs: calls `f(start, len, period)` for
    /// consecutive runs of the row, each holding the values `period[i % PERIOD]` (i counted from
    /// `start`, which is a multiple of [`PERIOD`]): the same values (and the same f32 sums) as
    /// [`grad_mult`]. Apart from the one identity tap a row repeats every 9 values, so one
    /// period built per row serves it: a row costs 72 stores however long it is. The period
    /// holding the identity tap is a run of its own that reads a copy with the tap set.
    #[inline(always)]
    pub fn for_each_run(&self, o: usize, mut f: impl FnMut(usize, usize, &[f32; PERIOD])) {
        let len = self.row_len();
        let uniform = self.s_pow[o];
        let centre = uniform + self.t_pow[o];
        let mut period = [uniform; PERIOD];
        for tap in period.iter_mut().skip(4).step_by(9) {
            *tap = centre;
        }
        match (self.identity && o < self.cin).then_some(o * 9 + 4) {
            None => f(0, len, &period),
            Some(tap) => {
                let at = tap - tap % PERIOD;
                let end = (at + PERIOD).min(len);
                let mut with_identity = period;
                with_identity[tap % PERIOD] = centre + 1.0;
                if at > 0 {
                    f(0, at, &period);
                }
                f(at, end - at, &with_identity);
                if end < len {
                    f(end, len - end, &period);
                }
            }
        }
    }

    /// The row of output channel `o`, dense (from [`Self::for_each_run`]).
    pub fn row(&self, o: usize) -> Vec<f32> {
        let mut row = Vec::with_capacity(self.row_len());
        self.for_each_run(o, |_, len, period| {
            row.extend(period.iter().cycle().take(len));
        });
        row
    }
}

/// Values per period of a mask row ([`FactoredMask::for_each_run`]): 8 kernels of 9 taps,
/// that is 9 vectors of 8 lanes, so that every period starts at a kernel's first tap and is a
/// whole number of AVX vectors.
pub const PERIOD: usize = 72;

/// The single 3x3 kernel equivalent to a CSLA block (the paper's Eq. 4); its home is the
/// model's fusion rules, next to RepVGG's.
pub use crate::model::fuse::equivalent_kernel;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mask_by_hand_for_two_channels() {
        let m = grad_mult(2, &[2.0, -1.0], &[0.5, 3.0], true, 2);
        // o=0, i=1, corner: s0^2 = 4
        assert_eq!(m[9], 4.0);
        // o=0, i=0, centre: 4 + 0.25 + 1
        assert_eq!(m[4], 5.25);
        // o=0, i=1, centre: 4 + 0.25
        assert_eq!(m[9 + 4], 4.25);
        // o=1, i=1, centre: 1 + 9 + 1
        assert_eq!(m[27 + 4], 11.0);
        // power 1 keeps the sign of s
        let m1 = grad_mult(2, &[2.0, -1.0], &[0.5, 3.0], false, 1);
        assert_eq!(m1[18], -1.0);
        assert_eq!(m1[18 + 4], 2.0);
    }

    #[test]
    fn factored_rows_equal_the_dense_mask_bit_for_bit() {
        let (s, t) = ([2.0, -1.0, 0.3], [0.5, 3.0, -0.7]);
        for (identity, power) in [(true, 2), (false, 2), (true, 1)] {
            let cin = if identity { 3 } else { 2 };
            let dense = grad_mult(cin, &s, &t, identity, power);
            let f = FactoredMask::new(cin, &s, &t, identity, power);
            for o in 0..3 {
                assert_eq!(f.row(o)[..], dense[o * cin * 9..(o + 1) * cin * 9]);
            }
        }
    }

    #[test]
    fn rows_of_many_periods_equal_the_dense_mask_bit_for_bit() {
        // 150 input channels: rows of 1350 values, 18 periods of 72 and 54 more, with identity
        // taps in the first, a middle and the last period (output channels 3, 70, 149), and in
        // a period's first and last kernel (channels 8 and 7: taps 76 and 67).
        let cin = 150;
        let s: Vec<f32> = (0..cin).map(|i| 0.5 + i as f32 * 0.013).collect();
        let t: Vec<f32> = (0..cin).map(|i| 1.7 - i as f32 * 0.009).collect();
        let dense = grad_mult(cin, &s, &t, true, 2);
        let f = FactoredMask::new(cin, &s, &t, true, 2);
        for (o, runs) in [(0, 2), (3, 2), (7, 2), (8, 3), (70, 3), (140, 3), (149, 2)] {
            let (mut next, mut count) = (0, 0);
            f.for_each_run(o, |start, len, _| {
                assert_eq!((start, start % PERIOD), (next, 0));
                next += len;
                count += 1;
            });
            assert_eq!((next, count), (1350, runs), "runs of row {o}");
            assert_eq!(
                f.row(o)[..],
                dense[o * cin * 9..(o + 1) * cin * 9],
                "row {o}"
            );
        }
        // Without an identity branch a row is one run.
        let plain = FactoredMask::new(cin, &s, &t, false, 2);
        let mut count = 0;
        plain.for_each_run(5, |_, _, _| count += 1);
        assert_eq!(count, 1);
        assert_eq!(
            plain.row(5)[..],
            grad_mult(cin, &s, &t, false, 2)[5 * 1350..6 * 1350]
        );
    }

    #[test]
    fn equivalent_kernel_by_hand() {
        let w3 = vec![1.0f32; 9];
        let k = equivalent_kernel(&w3, &[2.0], 1, &[0.5], &[3.0], Some(&[0.25]));
        assert_eq!(k[0], 0.5);
        assert_eq!(k[4], 0.5 + 6.0 + 0.25);
    }
}
