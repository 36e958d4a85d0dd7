//! Data readers against the real shared data: golden CIFAR records, the CIFAR-10 JPEG tree,
//! the download path (loopback server) and the error cases.

use std::path::Path;

use crate::data_support::*;
use repopt_tui::data::{
    self, CifarSource, CifarVariant, DatasetKind, DatasetSpec, Source, cifar, image::load_rgb,
};

/// Golden PNGs of one set: (index, fine label, RGB pixels).
fn golden_pngs(set: &str) -> Vec<(usize, usize, Vec<u8>)> {
    let dir = shared().join("golden/png");
    let mut v: Vec<(usize, usize, Vec<u8>)> = names(&dir)
        .into_iter()
        .filter(|n| n.starts_with(&format!("{set}_")) && n.ends_with(".png"))
        .map(|n| {
            let parts: Vec<&str> = n.trim_end_matches(".png").split('_').collect();
            let img = load_rgb(&dir.join(&n)).expect("png");
            assert_eq!((img.width(), img.height()), (32, 32), "{n}");
            (
                parts[1].parse().unwrap(),
                parts[2].parse().unwrap(),
                img.into_raw(),
            )
        })
        .collect();
    v.sort_by_key(|x| x.0);
    assert_eq!(v.len(), 20, "golden PNGs of {set}");
    v
}

#[test]
fn golden_cifar10_records_equal_the_lossless_pngs() {
    let src = CifarSource::from_file(
        &shared().join("golden/cifar10_test_batch_first20.bin"),
        CifarVariant::Cifar10,
        Some(20),
    )
    .unwrap();
    assert_eq!(src.len(), 20);
    let labels: Vec<usize> = (0..20).map(|i| src.label(i)).collect();
    assert_eq!(
        labels,
        [3, 8, 8, 0, 6, 6, 1, 6, 3, 1, 0, 9, 5, 7, 9, 8, 5, 7, 8, 6]
    );
    for (i, label, pixels) in golden_pngs("cifar10") {
        let (img, l) = src.get(i).unwrap();
        assert_eq!(l, label, "record {i}");
        assert!(
            img.as_raw() == &pixels,
            "record {i}: pixels differ from the PNG"
        );
    }
}

#[test]
fn golden_cifar100_records_equal_the_lossless_pngs_both_label_bytes() {
    let path = shared().join("golden/cifar100_test_first20.bin");
    let fine =
        CifarSource::from_file(&path, CifarVariant::Cifar100 { coarse: false }, None).unwrap();
    let coarse =
        CifarSource::from_file(&path, CifarVariant::Cifar100 { coarse: true }, None).unwrap();
    // Coarse labels from the official fine -> coarse mapping (mountain, forest, cloud, sea ->
    // large_natural_outdoor_scenes; seal -> aquatic_mammals; ...).
    let want_coarse = [
        10, 10, 0, 4, 10, 2, 11, 7, 10, 4, 10, 12, 19, 19, 5, 8, 2, 8, 2, 4,
    ];
    for (i, label, pixels) in golden_pngs("cifar100") {
        let (img, l) = fine.get(i).unwrap();
        assert_eq!(l, label, "fine label of record {i}");
        assert!(
            img.as_raw() == &pixels,
            "record {i}: pixels differ from the PNG"
        );
        let (img_c, c) = coarse.get(i).unwrap();
        assert_eq!(c, want_coarse[i], "coarse label of record {i}");
        assert!(img_c == img);
        // Names line up: the fine name belongs to the coarse class.
        let _ = (cifar::CIFAR100_FINE[l], cifar::CIFAR100_COARSE[c]);
    }
    assert_eq!(cifar::CIFAR100_FINE[49], "mountain");
    assert_eq!(cifar::CIFAR100_COARSE[10], "large_natural_outdoor_scenes");
}

#[test]
fn truncated_cifar_file_names_the_file_and_offset() {
    let dir = tempfile::tempdir().unwrap();
    let bytes = std::fs::read(shared().join("golden/cifar10_test_batch_first20.bin")).unwrap();
    let path = dir.path().join("test_batch.bin");
    std::fs::write(&path, &bytes[..bytes.len() - 100]).unwrap();
    let err = CifarSource::from_file(&path, CifarVariant::Cifar10, None)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains(&path.display().to_string()), "{err}");
    assert!(err.contains("truncated"), "{err}");
    assert!(err.contains(&format!("offset {}", 19 * 3073)), "{err}");
    // A whole number of records, but fewer than the official file has.
    std::fs::write(&path, &bytes[..3073 * 7]).unwrap();
    let err = CifarSource::from_file(&path, CifarVariant::Cifar10, Some(10_000))
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("7 records") && err.contains("10000"), "{err}");
    assert!(err.contains(&format!("offset {}", 7 * 3073)), "{err}");
    // Labels out of range: a CIFAR-100 file read as CIFAR-10 is caught.
    let mut bad = bytes[..3073].to_vec();
    bad[0] = 77;
    std::fs::write(&path, &bad).unwrap();
    let err = CifarSource::from_file(&path, CifarVariant::Cifar10, None)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("record 0") && err.contains("out of range"),
        "{err}"
    );
    // Missing folder.
    let spec: DatasetSpec = format!("cifar10:{}", dir.path().join("nope").display())
        .parse()
        .unwrap();
    let err = data::open(&spec).err().unwrap().to_string();
    assert!(err.contains("nope") && err.contains("download"), "{err}");
}

#[test]
fn cifar10_jpeg_tree_has_the_official_counts_and_class_order() {
    let root = cifar10_jpeg_root();
    let mut spec = DatasetSpec::new(DatasetKind::ImageFolder, Some(root.to_path_buf()));
    spec.image_size = 32;
    spec.classes = Some(10);
    let ds = data::open(&spec).unwrap();
    assert_eq!(ds.train.len(), 50_000);
    assert_eq!(ds.val.len(), 10_000);
    assert_eq!(ds.classes, 10);
    assert_eq!(ds.class_names, cifar::CIFAR10_CLASSES);
    // Per-class counts (5,000 / 1,000) and images decode as 32x32 RGB.
    let mut counts = [0usize; 10];
    let mut seen = [false; 10];
    for (i, c) in counts.iter_mut().enumerate() {
        *c = std::fs::read_dir(root.join("train").join(cifar::CIFAR10_CLASSES[i]))
            .unwrap()
            .count();
    }
    assert_eq!(counts, [5000; 10]);
    for i in (0..50_000).step_by(4999) {
        let (img, label) = ds.train.get(i).unwrap();
        assert_eq!((img.width(), img.height()), (32, 32));
        assert!(ds.train.name(i).contains(cifar::CIFAR10_CLASSES[label]));
        seen[label] = true;
    }
    assert!(seen.iter().all(|&s| s));
    let (img, label) = ds.val.get(9_999).unwrap();
    assert_eq!((img.width(), img.height(), label), (32, 32, 9));
    // `data show` on the same tree.
    let shown = data::data_show_command(&format!("folder:{},size=32", root.display())).unwrap();
    assert!(shown.contains("train images:  50000"), "{shown}");
    assert!(shown.contains("val images:    10000"), "{shown}");
    assert!(
        shown.contains("classes:       10 (airplane, automobile"),
        "{shown}"
    );
    assert!(shown.contains("first image 32x32"), "{shown}");
}

fn write_jpeg(path: &Path, w: u32, h: u32) {
    let img = image::RgbImage::from_fn(w, h, |x, y| image::Rgb([x as u8 * 8, y as u8 * 8, 90]));
    img.save(path).unwrap();
}

/// A small ImageNet-layout tree with classes `b` and `a` (2 images each per split).
fn small_tree(root: &Path) {
    for split in ["train", "val"] {
        for class in ["b_class", "a_class"] {
            let d = root.join(split).join(class);
            std::fs::create_dir_all(&d).unwrap();
            write_jpeg(&d.join("1.jpg"), 20, 12);
            write_jpeg(&d.join("2.JPEG"), 12, 20);
            std::fs::write(d.join("notes.txt"), "not an image").unwrap();
        }
    }
}

#[test]
fn image_folder_errors_are_clear() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    // Missing root.
    let err = repopt_tui::data::folder::open_image_folder(&root.join("missing"), false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("missing") && err.contains("does not exist"),
        "{err}"
    );

    small_tree(root);
    let (train, val, classes) = repopt_tui::data::folder::open_image_folder(root, false).unwrap();
    assert_eq!(classes, ["a_class", "b_class"]);
    assert_eq!((train.len(), val.len()), (4, 4));
    assert_eq!(train.label(0), 0);
    assert_eq!(train.label(3), 1);

    // `test/` is accepted as the validation split.
    std::fs::rename(root.join("val"), root.join("test")).unwrap();
    assert!(repopt_tui::data::folder::open_image_folder(root, false).is_ok());

    // Corrupt JPEG: fails with its path by default, skipped and counted on request.
    let bad = root.join("train/a_class/1.jpg");
    std::fs::write(&bad, [0xFF, 0xD8, 0xFF, 0xE0, 1, 2, 3, 4, 5, 6, 7, 8]).unwrap();
    let (train, _, _) = repopt_tui::data::folder::open_image_folder(root, false).unwrap();
    let err = format!("{:#}", train.get(0).err().unwrap());
    assert!(err.contains(&bad.display().to_string()), "{err}");
    assert!(err.contains("skip_corrupt"), "{err}");
    let (train, _, _) = repopt_tui::data::folder::open_image_folder(root, true).unwrap();
    let (img, label) = train.get(0).unwrap();
    assert_eq!((img.width(), img.height(), label), (12, 20, 0));
    assert_eq!(train.skipped(), 1);
    assert_eq!(train.bad_files(), std::slice::from_ref(&bad));
    let bad_list = train.verify();
    assert_eq!(bad_list.len(), 1);
    // The skip count reaches the opened data set and `data show`.
    let mut spec = DatasetSpec::new(DatasetKind::ImageFolder, Some(root.to_path_buf()));
    spec.skip_corrupt = true;
    let ds = data::open(&spec).unwrap();
    let _ = ds.train.get(0).unwrap();
    assert_eq!(ds.skipped_now(), 1);

    // A file that is not an image at all, with an image extension.
    std::fs::write(root.join("train/b_class/1.jpg"), b"hello").unwrap();
    let (train, _, _) = repopt_tui::data::folder::open_image_folder(root, false).unwrap();
    let err = format!("{:#}", train.get(2).err().unwrap());
    assert!(err.contains("b_class") && err.contains("1.jpg"), "{err}");

    // Empty class folder.
    std::fs::create_dir_all(root.join("train/c_class")).unwrap();
    let err = repopt_tui::data::folder::open_image_folder(root, false)
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("c_class") && err.contains("no images"),
        "{err}"
    );
    // Class missing from the validation split.
    std::fs::write(root.join("train/c_class/x.png"), b"").unwrap();
    let err = repopt_tui::data::folder::open_image_folder(root, false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("c_class") && err.contains("missing"), "{err}");
    // No validation split at all.
    std::fs::remove_dir_all(root.join("test")).unwrap();
    let err = repopt_tui::data::folder::open_image_folder(root, false)
        .err()
        .unwrap()
        .to_string();
    assert!(err.contains("no validation split"), "{err}");
}

#[test]
fn grey_alpha_and_16_bit_images_become_rgb() {
    let dir = tempfile::tempdir().unwrap();
    let grey = image::GrayImage::from_fn(5, 4, |x, _| image::Luma([x as u8 * 50]));
    grey.save(dir.path().join("g.png")).unwrap();
    grey.save(dir.path().join("g.jpg")).unwrap();
    let rgba = image::RgbaImage::from_fn(5, 4, |_, _| image::Rgba([10, 20, 30, 0]));
    rgba.save(dir.path().join("a.png")).unwrap();
    let g16 = image::ImageBuffer::<image::Luma<u16>, Vec<u16>>::from_fn(3, 3, |_, _| {
        image::Luma([65535])
    });
    g16.save(dir.path().join("g16.png")).unwrap();
    let g = load_rgb(&dir.path().join("g.png")).unwrap();
    assert_eq!(g.get_pixel(2, 1).0, [100, 100, 100]);
    let gj = load_rgb(&dir.path().join("g.jpg")).unwrap();
    let p = gj.get_pixel(2, 1).0;
    assert!(p[0] == p[1] && p[1] == p[2]);
    let a = load_rgb(&dir.path().join("a.png")).unwrap();
    assert_eq!(a.get_pixel(0, 0).0, [10, 20, 30]);
    let w = load_rgb(&dir.path().join("g16.png")).unwrap();
    assert_eq!(w.get_pixel(1, 1).0, [255, 255, 255]);
    // Progressive JPEG (the ImageNet samples are progressive).
    let s = load_rgb(&shared().join("imagenet-samples/imagenet_10_541.jpg")).unwrap();
    assert_eq!((s.width(), s.height()), (1024, 683));
}

#[test]
fn download_verifies_extracts_and_renames_into_place() {
    let archive = fake_cifar10_archive();
    let md5 = md5_hex(&archive);
    let url = serve(archive, 2);
    let parent = tempfile::tempdir().unwrap();
    let target = parent.path().join("cifar10");

    // Wrong checksum: nothing is left behind and the message says what to do.
    let spec: DatasetSpec = format!(
        "cifar10:{},download,url={url}/cifar-10-binary.tar.gz,md5={}",
        target.display(),
        "0".repeat(32)
    )
    .parse()
    .unwrap();
    let err = data::open(&spec).err().unwrap().to_string();
    assert!(
        err.contains("checksum mismatch") && err.contains(&md5),
        "{err}"
    );
    assert!(err.contains("Retry"), "{err}");
    assert_eq!(
        names(parent.path()),
        Vec::<String>::new(),
        "leftovers after a failed download"
    );

    // Right checksum, target folder exists and is empty.
    std::fs::create_dir(&target).unwrap();
    let mut spec2 = spec.clone();
    spec2.download_md5 = Some(md5.clone());
    let ds = data::open(&spec2).unwrap();
    assert_eq!(
        (ds.train.len(), ds.val.len(), ds.classes),
        (50_000, 10_000, 10)
    );
    assert_eq!(
        names(parent.path()),
        ["cifar10"],
        "temporary files left next to the target"
    );
    assert!(target.join("data_batch_5.bin").is_file());
    let (img, label) = ds.train.get(12_345).unwrap();
    assert_eq!(label, 12_345 % 10);
    assert_eq!(img.get_pixel(3, 3).0, [(12_345 * 7 % 256) as u8; 3]);
    // Once there, it is not downloaded again (the server has served its 2 requests).
    let shown = data::data_show(&spec2).unwrap();
    assert!(shown.contains("train images:  50000") && shown.contains("val images:    10000"));

    // A non-empty folder without the data is never downloaded into.
    let other = parent.path().join("other");
    std::fs::create_dir(&other).unwrap();
    std::fs::write(other.join("keep.txt"), "x").unwrap();
    let mut spec3 = spec2.clone();
    spec3.path = Some(other.clone());
    let err = data::open(&spec3).err().unwrap().to_string();
    assert!(err.contains("not empty"), "{err}");
}

/// An 8x8 CMYK JPEG (Adobe, as Pillow writes it): left half (C,M,Y,K) = (0,255,255,0),
/// right half (255,0,0,0). Pillow converts them to red (255,0,0) and cyan (0,255,255).
const CMYK_JPEG: &[u8] = &[
    0xff, 0xd8, 0xff, 0xee, 0x00, 0x0e, 0x41, 0x64, 0x6f, 0x62, 0x65, 0x00, 0x64, 0x00, 0x00, 0x00,
    0x00, 0x00, 0xff, 0xdb, 0x00, 0x43, 0x00, 0x02, 0x01, 0x01, 0x01, 0x01, 0x01, 0x02, 0x01, 0x01,
    0x01, 0x02, 0x02, 0x02, 0x02, 0x02, 0x04, 0x03, 0x02, 0x02, 0x02, 0x02, 0x05, 0x04, 0x04, 0x03,
    0x04, 0x06, 0x05, 0x06, 0x06, 0x06, 0x05, 0x06, 0x06, 0x06, 0x07, 0x09, 0x08, 0x06, 0x07, 0x09,
    0x07, 0x06, 0x06, 0x08, 0x0b, 0x08, 0x09, 0x0a, 0x0a, 0x0a, 0x0a, 0x0a, 0x06, 0x08, 0x0b, 0x0c,
    0x0b, 0x0a, 0x0c, 0x09, 0x0a, 0x0a, 0x0a, 0xff, 0xc0, 0x00, 0x14, 0x08, 0x00, 0x08, 0x00, 0x08,
    0x04, 0x43, 0x11, 0x00, 0x4d, 0x11, 0x00, 0x59, 0x11, 0x00, 0x4b, 0x11, 0x00, 0xff, 0xc4, 0x00,
    0x1f, 0x00, 0x00, 0x01, 0x05, 0x01, 0x01, 0x01, 0x01, 0x01, 0x01, 0x00, 0x00, 0x00, 0x00, 0x00,
    0x00, 0x00, 0x00, 0x01, 0x02, 0x03, 0x04, 0x05, 0x06, 0x07, 0x08, 0x09, 0x0a, 0x0b, 0xff, 0xc4,
    0x00, 0xb5, 0x10, 0x00, 0x02, 0x01, 0x03, 0x03, 0x02, 0x04, 0x03, 0x05, 0x05, 0x04, 0x04, 0x00,
    0x00, 0x01, 0x7d, 0x01, 0x02, 0x03, 0x00, 0x04, 0x11, 0x05, 0x12, 0x21, 0x31, 0x41, 0x06, 0x13,
    0x51, 0x61, 0x07, 0x22, 0x71, 0x14, 0x32, 0x81, 0x91, 0xa1, 0x08, 0x23, 0x42, 0xb1, 0xc1, 0x15,
    0x52, 0xd1, 0xf0, 0x24, 0x33, 0x62, 0x72, 0x82, 0x09, 0x0a, 0x16, 0x17, 0x18, 0x19, 0x1a, 0x25,
    0x26, 0x27, 0x28, 0x29, 0x2a, 0x34, 0x35, 0x36, 0x37, 0x38, 0x39, 0x3a, 0x43, 0x44, 0x45, 0x46,
    0x47, 0x48, 0x49, 0x4a, 0x53, 0x54, 0x55, 0x56, 0x57, 0x58, 0x59, 0x5a, 0x63, 0x64, 0x65, 0x66,
    0x67, 0x68, 0x69, 0x6a, 0x73, 0x74, 0x75, 0x76, 0x77, 0x78, 0x79, 0x7a, 0x83, 0x84, 0x85, 0x86,
    0x87, 0x88, 0x89, 0x8a, 0x92, 0x93, 0x94, 0x95, 0x96, 0x97, 0x98, 0x99, 0x9a, 0xa2, 0xa3, 0xa4,
    0xa5, 0xa6, 0xa7, 0xa8, 0xa9, 0xaa, 0xb2, 0xb3, 0xb4, 0xb5, 0xb6, 0xb7, 0xb8, 0xb9, 0xba, 0xc2,
    0xc3, 0xc4, 0xc5, 0xc6, 0xc7, 0xc8, 0xc9, 0xca, 0xd2, 0xd3, 0xd4, 0xd5, 0xd6, 0xd7, 0xd8, 0xd9,
    0xda, 0xe1, 0xe2, 0xe3, 0xe4, 0xe5, 0xe6, 0xe7, 0xe8, 0xe9, 0xea, 0xf1, 0xf2, 0xf3, 0xf4, 0xf5,
    0xf6, 0xf7, 0xf8, 0xf9, 0xfa, 0xff, 0xda, 0x00, 0x0e, 0x04, 0x43, 0x00, 0x4d, 0x00, 0x59, 0x00,
    0x4b, 0x00, 0x00, 0x3f, 0x00, 0x6f, 0xfc, 0x1f, 0x39, 0xff, 0x00, 0x36, 0xbb, 0xff, 0x00, 0x73,
    0xb7, 0xfe, 0xe0, 0x29, 0xbf, 0xf0, 0x63, 0x1f, 0xfc, 0xdd, 0x17, 0xfd, 0xc9, 0x3f, 0xfb, 0x9f,
    0xa6, 0xff, 0x00, 0xc1, 0x8c, 0x7f, 0xf3, 0x74, 0x5f, 0xf7, 0x24, 0xff, 0x00, 0xee, 0x7e, 0xbf,
    0x7f, 0x2b, 0xff, 0xd9,
];

#[test]
fn cmyk_jpeg_becomes_rgb() {
    let img = repopt_tui::data::image::decode_rgb(CMYK_JPEG).unwrap();
    assert_eq!((img.width(), img.height()), (8, 8));
    let red = img.get_pixel(1, 1).0;
    let cyan = img.get_pixel(6, 6).0;
    assert!(red[0] > 230 && red[1] < 30 && red[2] < 30, "{red:?}");
    assert!(cyan[0] < 30 && cyan[1] > 230 && cyan[2] > 230, "{cyan:?}");
}

#[test]
fn data_verify_lists_unreadable_images() {
    let dir = tempfile::tempdir().unwrap();
    small_tree(dir.path());
    let ok = data::data_verify_command(&format!("folder:{}", dir.path().display())).unwrap();
    assert!(ok.contains("decoded 8 images, 0 unreadable"), "{ok}");
    let bad = dir.path().join("val/b_class/2.JPEG");
    std::fs::write(&bad, b"nope").unwrap();
    let err = data::data_verify_command(&format!("folder:{}", dir.path().display()))
        .err()
        .unwrap()
        .to_string();
    assert!(
        err.contains("1 unreadable") && err.contains(&bad.display().to_string()),
        "{err}"
    );
    let ok = data::data_verify_command(&format!("folder:{},skip_corrupt", dir.path().display()))
        .unwrap();
    assert!(ok.contains("1 unreadable"), "{ok}");
}
