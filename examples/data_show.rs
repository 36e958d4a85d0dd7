//! What a data set spec resolves to (what `repopt-tui data show SPEC` prints):
//! `cargo run --example data_show -- "cifar100:/data/cifar-100-binary"`.

fn main() -> anyhow::Result<()> {
    let spec = std::env::args()
        .nth(1)
        .unwrap_or_else(|| "synthetic".into());
    print!("{}", repopt_tui::data::data_show_command(&spec)?);
    Ok(())
}
