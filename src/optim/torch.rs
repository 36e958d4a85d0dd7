//! The RepOptimizer update on the LibTorch engine, in place on libtorch's own memory: on the CPU
//! the fused loops of `host.rs` run directly over the torch tensors' buffers (one pass per
//! parameter, no copies), elsewhere (CUDA) a chain of in-place torch operations. Either way no
//! tensor makes a round trip through host vectors. Same arithmetic, same order as the other paths;
//! tests check both against the PyTorch fixtures.

use std::any::{Any, TypeId};

use burn::backend::libtorch::{LibTorch, TchTensor};
use burn::tensor::backend::Backend;
use burn::tensor::{Tensor, TensorPrimitive};
use tch::{Device, Kind};

use super::optimizer::GradMults;

/// Where a parameter's Grad Mult mask comes from: its factors for the fused loops, the dense
/// tensor (built on first use) for the torch operations.
pub struct MaskSource<'a, B: Backend> {
    pub masks: &'a mut GradMults<B>,
    pub name: &'a str,
}

/// Whether `B` is the LibTorch backend (f32).
pub fn is_libtorch<B: Backend>() -> bool {
    TypeId::of::<B>() == TypeId::of::<LibTorch>()
}

/// The torch tensor inside a burn tensor of the LibTorch backend.
fn into_tch<B: Backend, const D: usize>(t: Tensor<B, D>) -> TchTensor {
    let boxed: Box<dyn Any> = Box::new(t.into_primitive().tensor());
    *boxed
        .downcast::<TchTensor>()
        .expect("the torch update runs on the LibTorch backend only")
}

fn from_tch<B: Backend, const D: usize>(t: TchTensor) -> Tensor<B, D> {
    let boxed: Box<dyn Any> = Box::new(t);
    let primitive = *boxed
        .downcast::<B::FloatTensorPrimitive>()
        .expect("the torch update runs on the LibTorch backend only");
    Tensor::from_primitive(TensorPrimitive::Float(primitive))
}

/// A contiguous copy with storage of its own.
fn fresh_copy(t: &tch::Tensor) -> TchTensor {
    let mut out = tch::Tensor::empty(t.size(), (t.kind(), t.device()));
    out.copy_(t);
    TchTensor::new(out)
}

/// `t` itself when it may be written in place (contiguous, storage not shared with another burn
/// tensor), else a copy.
fn writable(t: TchTensor) -> TchTensor {
    if t.can_mut() && t.tensor.is_contiguous() {
        t
    } else {
        fresh_copy(&t.tensor)
    }
}

/// The buffer of a contiguous f32 CPU tensor, for the fused loops.
struct HostView {
    ptr: *mut f32,
    len: usize,
}

impl HostView {
    fn of(t: &tch::Tensor) -> Option<HostView> {
        (t.device() == Device::Cpu && t.kind() == Kind::Float && t.is_contiguous()).then(|| {
            HostView {
                ptr: t.data_ptr() as *mut f32,
                len: t.numel(),
            }
        })
    }

    fn overlaps(&self, other: &HostView) -> bool {
        let (a, b) = (self.ptr as usize, other.ptr as usize);
        a < b + other.len * 4 && b < a + self.len * 4
    }
}

/// Host views of all `tensors` when each is a contiguous f32 CPU tensor of `n` elements and no
/// two share memory (then the fused loops may run over them).
fn host_views<const N: usize>(
    tensors: [Option<&tch::Tensor>; N],
    n: usize,
) -> Option<Vec<Option<HostView>>> {
    let mut views: Vec<Option<HostView>> = Vec::with_capacity(N);
    for t in tensors {
        match t {
            None => views.push(None),
            Some(t) => {
                let v = HostView::of(t)?;
                if v.len != n {
                    return None;
                }
                views.push(Some(v));
            }
        }
    }
    let present: Vec<&HostView> = views.iter().flatten().collect();
    for (i, a) in present.iter().enumerate() {
        if present[i + 1..].iter().any(|b| a.overlaps(b)) {
            return None;
        }
    }
    Some(views)
}

/// SAFETY (for the callers): `v` comes from `host_views`, so it points to `len` initialized f32
/// values of a live CPU tensor that no other view aliases; the tensor outlives the slice.
unsafe fn slice_mut<'a>(v: &Option<HostView>) -> Option<&'a mut [f32]> {
    // SAFETY: see the function's contract.
    v.as_ref()
        .map(|v| unsafe { std::slice::from_raw_parts_mut(v.ptr, v.len) })
}

/// Settings of one SGD update.
#[derive(Debug, Clone, Copy)]
pub struct Sgd {
    pub wd: f64,
    pub mask_weight_decay: bool,
    pub momentum: f64,
    pub nesterov: bool,
    pub lr: f64,
}

/// One SGD update with Grad Mult (official order, see `host::sgd`). `buf` is the momentum buffer
/// (flat, `None` before the first step); returns the parameter and the buffer.
pub fn sgd<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    mask: MaskSource<'_, B>,
    buf: Option<Tensor<B, 1>>,
    a: Sgd,
    fused: bool,
) -> (Tensor<B, D>, Option<Tensor<B, 1>>) {
    let p = writable(into_tch(param));
    let g = into_tch(grad);
    let n = p.tensor.numel();
    let first = buf.is_none();
    let b = (a.momentum != 0.0).then(|| match buf {
        Some(b) => writable(into_tch(b)),
        None => empty_like_flat(&p.tensor, n),
    });
    let views = if fused {
        host_views(
            [
                Some(&p.tensor),
                Some(&g.tensor),
                b.as_ref().map(|b| &b.tensor),
            ],
            n,
        )
    } else {
        None
    };
    match views {
        Some(v) => {
            // SAFETY: `host_views` checked that the three tensors are contiguous f32 CPU buffers
            // of n elements that do not overlap; `p` and `b` are writable (storage not shared),
            // and all three tensors live until the end of this block.
            let (pv, gv, bv) = unsafe { (slice_mut(&v[0]), slice_mut(&v[1]), slice_mut(&v[2])) };
            super::host::sgd(
                pv.expect("param"),
                gv.expect("grad"),
                mask.masks.factors(mask.name),
                bv,
                first,
                a.wd as f32,
                a.mask_weight_decay,
                a.momentum as f32,
                a.nesterov,
                a.lr as f32,
            );
        }
        None => {
            let dense = mask.masks.get(mask.name).map(into_tch);
            sgd_ops(
                &p.tensor,
                &g.tensor,
                dense.as_ref().map(|m| &m.tensor),
                b.as_ref().map(|b| &b.tensor),
                first,
                a,
            )
        }
    }
    (from_tch(p), b.map(from_tch))
}

/// The SGD update as in-place torch operations on flat views (any device).
fn sgd_ops(
    p: &tch::Tensor,
    g: &tch::Tensor,
    mask: Option<&tch::Tensor>,
    buf: Option<&tch::Tensor>,
    first: bool,
    a: Sgd,
) {
    let mut p = p.view([-1]);
    let mut d = g.reshape([-1]).copy();
    if let Some(m) = mask {
        let _ = d.g_mul_(m);
    }
    if a.wd != 0.0 {
        let mut decay = p.g_mul_scalar(a.wd);
        if let (Some(m), true) = (mask, a.mask_weight_decay) {
            let _ = decay.g_mul_(m);
        }
        let _ = d.g_add_(&decay);
    }
    if let Some(b) = buf {
        let mut b = b.view([-1]);
        if first {
            b.copy_(&d);
        } else {
            let _ = b.g_mul_scalar_(a.momentum);
            let _ = b.g_add_(&d);
        }
        if a.nesterov {
            let _ = d.g_add_(&b.g_mul_scalar(a.momentum));
        } else {
            d.copy_(&b);
        }
    }
    let _ = p.g_sub_(&d.g_mul_scalar(a.lr));
}

/// Settings of one AdamW update.
#[derive(Debug, Clone, Copy)]
pub struct AdamW {
    pub wd: f64,
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    /// 1 − β1^t and 1 − β2^t of this step.
    pub bias1: f64,
    pub bias2: f64,
}

/// One AdamW update as the official RepOptimizerAdamW (see `host::adamw`). `moments` are the
/// flat first and second moments (`None` before the first step); returns the parameter and them.
pub fn adamw<B: Backend, const D: usize>(
    param: Tensor<B, D>,
    grad: Tensor<B, D>,
    mask: MaskSource<'_, B>,
    moments: Option<(Tensor<B, 1>, Tensor<B, 1>)>,
    a: AdamW,
    fused: bool,
) -> (Tensor<B, D>, (Tensor<B, 1>, Tensor<B, 1>)) {
    let p = writable(into_tch(param));
    let g = into_tch(grad);
    let n = p.tensor.numel();
    let first = moments.is_none();
    let (m, v) = match moments {
        Some((m, v)) => (writable(into_tch(m)), writable(into_tch(v))),
        None => (empty_like_flat(&p.tensor, n), empty_like_flat(&p.tensor, n)),
    };
    let views = if fused {
        host_views(
            [
                Some(&p.tensor),
                Some(&g.tensor),
                Some(&m.tensor),
                Some(&v.tensor),
            ],
            n,
        )
    } else {
        None
    };
    match views {
        Some(h) => {
            // SAFETY: as in `sgd`: four non-overlapping contiguous f32 CPU buffers of n
            // elements; `p`, `m` and `v` are writable and live until the end of this block.
            let (pv, gv, ev, sv) = unsafe {
                (
                    slice_mut(&h[0]),
                    slice_mut(&h[1]),
                    slice_mut(&h[2]),
                    slice_mut(&h[3]),
                )
            };
            super::host::adamw(
                pv.expect("param"),
                gv.expect("grad"),
                mask.masks.factors(mask.name),
                ev.expect("exp_avg"),
                sv.expect("exp_avg_sq"),
                first,
                a.wd as f32,
                a.lr as f32,
                a.beta1 as f32,
                a.beta2 as f32,
                a.eps as f32,
                a.bias1 as f32,
                a.bias2.sqrt() as f32,
            );
        }
        None => {
            let dense = mask.masks.get(mask.name).map(into_tch);
            adamw_ops(
                &p.tensor,
                &g.tensor,
                dense.as_ref().map(|k| &k.tensor),
                &m.tensor,
                &v.tensor,
                first,
                a,
            )
        }
    }
    (from_tch(p), (from_tch(m), from_tch(v)))
}

/// A new flat f32 tensor of `n` elements on `like`'s device (contents unset).
fn empty_like_flat(like: &tch::Tensor, n: usize) -> TchTensor {
    TchTensor::new(tch::Tensor::empty([n as i64], (Kind::Float, like.device())))
}

/// The AdamW update as in-place torch operations on flat views (any device).
fn adamw_ops(
    p: &tch::Tensor,
    g: &tch::Tensor,
    mask: Option<&tch::Tensor>,
    m: &tch::Tensor,
    v: &tch::Tensor,
    first: bool,
    a: AdamW,
) {
    let (mut p, mut m, mut v) = (p.view([-1]), m.view([-1]), v.view([-1]));
    let mut gm = g.reshape([-1]).copy();
    if let Some(k) = mask {
        let _ = gm.g_mul_(k);
    }
    if a.wd != 0.0 {
        let _ = p.g_mul_scalar_(1.0 - a.lr * a.wd);
    }
    let g1 = gm.g_mul_scalar(1.0 - a.beta1);
    let g2 = gm.square().g_mul_scalar(1.0 - a.beta2);
    if first {
        m.copy_(&g1);
        v.copy_(&g2);
    } else {
        let _ = m.g_mul_scalar_(a.beta1);
        let _ = m.g_add_(&g1);
        let _ = v.g_mul_scalar_(a.beta2);
        let _ = v.g_add_(&g2);
    }
    let mut denom = v.sqrt();
    let _ = denom.g_div_scalar_(a.bias2.sqrt());
    let _ = denom.g_add_scalar_(a.eps);
    let mut numer = match mask {
        Some(k) => m.g_mul(k),
        None => m.copy(),
    };
    let _ = numer.g_div_(&denom);
    let _ = p.g_sub_(&numer.g_mul_scalar(a.lr / a.bias1));
}
