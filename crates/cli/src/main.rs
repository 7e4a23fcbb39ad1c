fn main() {
    println!("autopipe (in progress)");
}
