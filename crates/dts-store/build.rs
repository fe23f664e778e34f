// `sqlx::migrate!` embeds the migration folders at compile time; a new
// migration file must rebuild this crate even when no source changed.
fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
