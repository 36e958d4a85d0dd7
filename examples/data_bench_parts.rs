//! Per-stage timings of the ImageNet pipelines on the shared samples (release mode):
//! `cargo run --release --example data_bench_parts`.

use rand::SeedableRng;
use repopt_tui::data::{
    Augment, Normalization, Pipeline, image::decode_rgb, randaug, resize, transform::rrc_params,
};

fn main() -> anyhow::Result<()> {
    let dir = repopt_tui::data::shared_data_dir()
        .ok_or_else(|| anyhow::anyhow!("shared data folder not found: set REPOPT_SHARED_DATA"))?
        .join("imagenet-samples");
    let mut files = std::fs::read_dir(&dir)?
        .map(|e| e.map(|e| e.path()))
        .collect::<Result<Vec<_>, _>>()?;
    files.sort();
    let imgs = files
        .iter()
        .map(|f| anyhow::Ok(decode_rgb(&std::fs::read(f)?)?))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let n = 50;
    let time = |name: &str, f: &mut dyn FnMut(usize)| {
        let t = repopt_tui::data::bench::thread_cpu_seconds();
        for r in 0..n {
            for i in 0..imgs.len() {
                f(r * imgs.len() + i);
            }
        }
        println!(
            "{name:<30} {:8.1} us/img",
            (repopt_tui::data::bench::thread_cpu_seconds() - t) * 1e6 / (n * imgs.len()) as f64
        );
    };
    let val = Pipeline::new(Augment::None, 224, Normalization::IMAGENET, false);
    time("val resize+centercrop", &mut |i| {
        std::hint::black_box(val.resize_center_crop(&imgs[i % imgs.len()]));
    });
    let sq: Vec<_> = imgs
        .iter()
        .filter(|i| i.width() == 512 && i.height() == 512)
        .cloned()
        .collect();
    time("h only 512->224x512", &mut |i| {
        std::hint::black_box(resize::resize(&sq[i % sq.len()], 224, 512));
    });
    time("v only 512->512x224", &mut |i| {
        std::hint::black_box(resize::resize(&sq[i % sq.len()], 512, 224));
    });
    time("both 512->224", &mut |i| {
        std::hint::black_box(resize::resize(&sq[i % sq.len()], 224, 224));
    });
    let out224 = val.resize_center_crop(&imgs[0]);
    let mut buf = vec![0f32; 3 * 224 * 224];
    time("normalize 224", &mut |_| {
        val.normalize_into(&out224, &mut buf);
        std::hint::black_box(&buf);
    });
    time("rrc resize", &mut |i| {
        let img = &imgs[i % imgs.len()];
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        let r = rrc_params(img.width() as usize, img.height() as usize, &mut rng);
        std::hint::black_box(resize::resize_rect(img, r, 224, 224));
    });
    time("randaugment", &mut |i| {
        let mut img = out224.clone();
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
        randaug::rand_augment(&mut img, &mut rng);
        std::hint::black_box(img);
    });
    for op in randaug::OPS {
        time(&format!("  op {op:?}"), &mut |i| {
            let mut img = out224.clone();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(i as u64);
            randaug::apply_op(&mut img, op, 7, i % 2 == 0, &mut rng);
            std::hint::black_box(img);
        });
    }
    Ok(())
}
