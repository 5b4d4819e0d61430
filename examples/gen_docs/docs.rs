//! Man pages and shell completions for both binaries, generated from their
//! clap definitions so that they cannot drift from `--help`.
//!
//! Shared by `examples/gen_docs` (run by `scripts/package`) and
//! `tests/ops_files.rs` (whose `ops_files/package.rs` packages the binaries
//! `cargo test` built, and so needs these files without running cargo
//! again).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// The binaries, with their clap definitions.
pub fn commands() -> [clap::Command; 2] {
    [
        mqtt_proxy::proxy::ProxyArgs::command(),
        mqtt_proxy::agent::AgentArgs::command(),
    ]
}

/// Write into `dir`, and return the paths written (relative to `dir`):
/// `man1/NAME.1` (roff), `bash/NAME`, `zsh/_NAME` and `fish/NAME.fish`,
/// named as bash-completion, zsh and fish look them up.
pub fn write_all(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for cmd in commands() {
        let name = cmd.get_name().to_owned();
        let mut roff = Vec::new();
        clap_mangen::Man::new(cmd.clone()).render(&mut roff)?;
        written.push(write(dir, &format!("man1/{name}.1"), &roff)?);
        for (shell, file) in [
            (Shell::Bash, format!("bash/{name}")),
            (Shell::Zsh, format!("zsh/_{name}")),
            (Shell::Fish, format!("fish/{name}.fish")),
        ] {
            let mut script = Vec::new();
            clap_complete::generate(shell, &mut cmd.clone(), &name, &mut script);
            written.push(write(dir, &file, &script)?);
        }
    }
    Ok(written)
}

fn write(dir: &Path, rel: &str, contents: &[u8]) -> io::Result<PathBuf> {
    let path = dir.join(rel);
    fs::create_dir_all(path.parent().expect("a relative path with a directory"))?;
    fs::write(&path, contents)?;
    Ok(PathBuf::from(rel))
}
