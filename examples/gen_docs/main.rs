//! `cargo run --example gen_docs -- DIR`: man pages and shell completions
//! for both binaries, into DIR (`scripts/package` runs this).
//!
//! An example rather than a hidden `--generate` flag in the binaries: clap_mangen
//! and clap_complete stay dev-dependencies, so they are neither compiled
//! by `cargo build`/`cargo install` nor linked into the binaries users run,
//! and neither binary grows a flag its users never need.

mod docs;

fn main() -> std::process::ExitCode {
    let Some(dir) = std::env::args_os().nth(1) else {
        eprintln!("usage: gen_docs DIR");
        return std::process::ExitCode::from(2);
    };
    match docs::write_all(std::path::Path::new(&dir)) {
        Ok(files) => {
            for f in files {
                println!("{}", f.display());
            }
            std::process::ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("gen_docs: cannot write to {}: {e}", dir.to_string_lossy());
            std::process::ExitCode::FAILURE
        }
    }
}
