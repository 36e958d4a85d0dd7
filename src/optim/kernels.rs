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

    /// Writes the mask row of output channel `o`, the same values (and the same f32 sums) as
    /// [`grad_mult`].
    pub fn fill_row(&self, o: usize, row: &mut Vec<f32>) {
        row.clear();
        row.resize(self.row_len(), self.s_pow[o]);
        let centre = self.s_pow[o] + self.t_pow[o];
        for i in 0..self.cin {
            row[i * 9 + 4] = centre;
        }
        if self.identity && o < self.cin {
            row[o * 9 + 4] = centre + 1.0;
        }
    }
}

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
            let mut row = Vec::new();
            for o in 0..3 {
                f.fill_row(o, &mut row);
                assert_eq!(row[..], dense[o * cin * 9..(o + 1) * cin * 9]);
            }
        }
    }

    #[test]
    fn equivalent_kernel_by_hand() {
        let w3 = vec![1.0f32; 9];
        let k = equivalent_kernel(&w3, &[2.0], 1, &[0.5], &[3.0], Some(&[0.25]));
        assert_eq!(k[0], 0.5);
        assert_eq!(k[4], 0.5 + 6.0 + 0.25);
    }
}
