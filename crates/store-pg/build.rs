//! `embed_migrations!` reads `migrations/` when this crate compiles, but cargo does not know
//! that: without this, adding a migration left the previous set embedded until something
//! else rebuilt the crate (a `keyward migrate` that missed it, a test template built short).

fn main() {
    println!("cargo:rerun-if-changed=../../migrations");
}
