//! `.pth` tensors stored as strided views (channels_last, transposed, sliced), written by PyTorch
//! (`tests/fixtures/gen_strided_pth.py`): read through their strides, or refused by name.

use crate::common::fixture;
use repopt_tui::interop::{ImportError, import_scales, read_pth};
use repopt_tui::model::variant;

#[test]
fn strided_views_read_as_their_contiguous_copies() {
    let t = read_pth(&fixture("pth/strided.pth")).unwrap();
    for name in [
        "channels_last",
        "transposed",
        "sliced",
        "every_other",
        "offset",
        "double_transposed",
    ] {
        let (got, want) = (&t[name], &t[&format!("{name}_expected")]);
        assert_eq!(got.shape, want.shape, "{name}");
        assert_eq!(got.values, want.values, "{name}: values in row-major order");
    }
    // Hand-checked anchors: shapes as PyTorch reports them.
    assert_eq!(t["channels_last"].shape, vec![4, 3, 3, 3]);
    assert_eq!(t["transposed"].shape, vec![5, 3]);
    assert_eq!(t["sliced"].shape, vec![4, 2]);
    assert_eq!(t["every_other"].shape, vec![4]);
}

#[test]
fn a_view_of_another_dtype_is_refused_by_name() {
    let e = read_pth(&fixture("pth/strided-f16.pth")).unwrap_err();
    assert!(matches!(e, ImportError::Strided { .. }), "{e}");
    let msg = e.to_string();
    assert!(
        msg.contains("'half_transposed'")
            && msg.contains("HalfStorage")
            && msg.contains(".contiguous()"),
        "{msg}"
    );
}

#[test]
fn a_channels_last_state_dict_loads_the_same_weights() {
    let plain = read_pth(&fixture("pth/t0-target.pth")).unwrap();
    let cl = read_pth(&fixture("pth/t0-target-channels-last.pth")).unwrap();
    assert_eq!(plain.len(), cl.len());
    for (name, t) in &plain {
        assert_eq!(&cl[name], t, "{name}");
    }
    // The same through the weights loader that eval, `weights:` and resume use.
    let a = repopt_tui::train::weights::read_weights(&fixture("pth/t0-target.pth")).unwrap();
    let b = repopt_tui::train::weights::read_weights(&fixture("pth/t0-target-channels-last.pth"))
        .unwrap();
    for (name, t) in &a {
        assert_eq!(
            b[name].to_vec::<f32>().unwrap(),
            t.to_vec::<f32>().unwrap(),
            "{name}"
        );
    }
}

#[test]
fn scales_import_reads_strided_vectors() {
    let v = variant("T0").unwrap();
    let plain = import_scales(&fixture("pth/t0-scales.pth"), &v).unwrap();
    let strided = import_scales(&fixture("pth/t0-scales-strided.pth"), &v).unwrap();
    assert_eq!(plain.blocks, strided.blocks);
}
