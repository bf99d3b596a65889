//! Hidden `oomguard generate DIR`: man pages (`DIR/man/oomguard.1`, `oomguard-SUBCOMMAND.1`)
//! and shell completions (`DIR/completions/oomguard.bash`, `_oomguard`, `oomguard.fish`),
//! generated from the CLI definition so they never drift from it. The Debian package ships them.
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::CommandFactory;

#[derive(Debug, clap::Args)]
#[command(
    after_help = "Examples:\n  oomguard generate target/assets     writes target/assets/man/*.1 and target/assets/completions/*"
)]
pub struct GenerateArgs {
    /// Output directory (created).
    pub dir: PathBuf,
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Writes the man pages of `cmd` and its visible subcommands into `dir`; returns the file names.
pub fn man_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let mut names = Vec::new();
    let mut render = |c: clap::Command, name: String| -> anyhow::Result<()> {
        let mut buf = Vec::new();
        clap_mangen::Man::new(c).render(&mut buf)?;
        let file = format!("{name}.1");
        write(&dir.join(&file), &buf)?;
        names.push(file);
        Ok(())
    };
    render(cmd.clone(), "oomguard".into())?;
    for sub in cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
    {
        let name = format!("oomguard-{}", sub.get_name());
        render(sub.clone().name(name.clone()), name)?;
    }
    Ok(names)
}

pub fn run(args: GenerateArgs) -> anyhow::Result<ExitCode> {
    let mut cmd = super::Cli::command();
    cmd.build();
    let man = man_pages(&cmd, &args.dir.join("man"))?;
    let comp = args.dir.join("completions");
    std::fs::create_dir_all(&comp).with_context(|| format!("cannot create {}", comp.display()))?;
    use clap_complete::Shell;
    for (shell, file) in [
        (Shell::Bash, "oomguard.bash"),
        (Shell::Zsh, "_oomguard"),
        (Shell::Fish, "oomguard.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd, "oomguard", &mut buf);
        write(&comp.join(file), &buf)?;
    }
    println!(
        "wrote {} man pages to {} and completions to {}",
        man.len(),
        args.dir.join("man").display(),
        comp.display()
    );
    Ok(ExitCode::SUCCESS)
}
