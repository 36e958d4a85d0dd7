fn main() {
    println!("repopt-tui");
}
