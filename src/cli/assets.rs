//! Man pages and shell completions, generated from the CLI definition so they never drift from
//! it. Not a command of the shipped binary: `cargo run --example assets -- DIR` (the Debian
//! package build, `scripts/deb.sh`) and the tests call [`write_all`].
//!
//! `DIR/man/oomguard.1`, `oomguard-SUBCOMMAND.1` (NAME, SYNOPSIS, DESCRIPTION, OPTIONS,
//! EXAMPLES, EXIT STATUS, FILES, SEE ALSO), `DIR/man/oomguard.toml.5`;
//! `DIR/completions/oomguard.bash`, `_oomguard`, `oomguard.fish`. Completions offer the values
//! of `--kill-unit`, `--group` and `--scope`.

use std::io::Write;
use std::path::Path;

use anyhow::Context;
use clap::CommandFactory;

/// The CLI as documented: the parser's own command (the closed value sets of `--kill-unit`,
/// `--group` and `--scope` come with their value parsers, [`super::kill_unit_parser`],
/// [`super::group_parser`], [`super::ScopeParser`]).
pub fn command() -> clap::Command {
    let mut cmd = super::Cli::command();
    cmd.build();
    cmd
}

fn write(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    std::fs::write(path, bytes).with_context(|| format!("cannot write {}", path.display()))
}

/// Text for roff: backslashes escaped, no line starting with a control character.
fn roff(text: &str) -> String {
    text.lines()
        .map(|l| {
            let l = l.replace('\\', "\\e");
            if l.starts_with('.') || l.starts_with('\'') {
                format!("\\&{l}")
            } else {
                l
            }
        })
        .collect::<Vec<_>>()
        .join("\n")
}

fn section(w: &mut Vec<u8>, title: &str, body: &str) {
    let _ = writeln!(w, ".SH \"{title}\"\n{body}");
}

/// Lines as a preformatted block.
fn preformatted(text: &str) -> String {
    format!(".nf\n{}\n.fi", roff(text.trim_end()))
}

fn exit_status(name: &str) -> &'static str {
    match name {
        "doctor" => {
            "Nagios plugin convention:\n.TP\n0\nOK: every check passed.\n.TP\n1\nWARNING: at least one warning.\n.TP\n2\nCRITICAL: at least one critical finding.\n.TP\n3\nUNKNOWN: bad usage, or no check could read its input."
        }
        "drill" => {
            ".TP\n0\nThe hog was killed inside the scratch cgroup and the group was removed.\n.TP\n1\nNobody killed the hog before \\-\\-timeout, the group could not be removed, or a runtime failure.\n.TP\n2\nBad usage.\n.TP\n130\nInterrupted (Ctrl\\-C); the hog and the group are gone."
        }
        _ => {
            ".TP\n0\nSuccess.\n.TP\n1\nA runtime failure: something that must be read or written failed; the message says what and where.\n.TP\n2\nBad usage or a bad config file: the message names the flag, or the file and line."
        }
    }
}

const FILES: &str = ".TP\n/etc/oomguard/oomguard.toml\nThe config file, used when it exists and no \\-\\-config is given; see oomguard.toml(5).\n.TP\n/var/lib/oomguard/events.jsonl\nThe event log when running as root (else $XDG_STATE_HOME/oomguard/events.jsonl, ~/.local/state/oomguard/events.jsonl, the same under the user database's home, or /tmp/oomguard-UID/events.jsonl).\n.TP\n/proc/pressure/memory, /sys/fs/cgroup\nPressure and memory cgroups read by the daemon.";

/// The man page of `cmd`, named `name` (`oomguard` or `oomguard-SUB`).
fn man_page(cmd: &clap::Command, name: &str, all: &[String]) -> anyhow::Result<Vec<u8>> {
    let man = clap_mangen::Man::new(cmd.clone().name(name.to_string()));
    let mut w = Vec::new();
    man.render_title(&mut w)?;
    man.render_name_section(&mut w)?;
    man.render_synopsis_section(&mut w)?;
    man.render_description_section(&mut w)?;
    if cmd.get_arguments().any(|a| !a.is_hide_set()) {
        man.render_options_section(&mut w)?;
    }
    if cmd.has_subcommands() {
        man.render_subcommands_section(&mut w)?;
    }
    let sub = name.strip_prefix("oomguard-").unwrap_or("");
    if let Some(after) = cmd.get_after_help() {
        let text = after.to_string();
        let examples = text.strip_prefix("Examples:\n").unwrap_or(&text);
        section(&mut w, "EXAMPLES", &preformatted(examples));
    }
    section(&mut w, "EXIT STATUS", exit_status(sub));
    section(&mut w, "FILES", FILES);
    let mut see: Vec<String> = all
        .iter()
        .filter(|n| n.as_str() != name)
        .map(|n| format!("{n}(1)"))
        .collect();
    see.push("oomguard.toml(5)".into());
    see.push("proc(5)".into());
    section(&mut w, "SEE ALSO", &see.join(", "));
    man.render_version_section(&mut w)?;
    Ok(w)
}

/// The `oomguard.toml(5)` page: the keys, and the shipped config as the example.
pub fn config_page() -> String {
    let keys = [
        (
            "[run]",
            "Daemon settings; a command-line flag of the same name wins.",
        ),
        ("scope", "system or cgroup:PATH (default system)."),
        (
            "mem_min",
            "Available-memory levels TERM[,KILL] in percent, e.g. \"10,5\".",
        ),
        ("mem_min_size", "The same as sizes, e.g. \"800M,400M\"."),
        (
            "swap_min, swap_min_size",
            "Free-swap levels, as mem_min and mem_min_size.",
        ),
        (
            "psi",
            "A pressure trigger some|full:PCT:DURATION, e.g. \"full:20:2s\".",
        ),
        ("kill_unit", "process, tree or cgroup."),
        (
            "term_grace",
            "How long a victim has after SIGTERM before SIGKILL, e.g. \"2s\".",
        ),
        ("event_log", "Where the event log is written."),
        ("dry_run", "true: decide and log, never signal."),
        (
            "[[protect]], [[prefer]], [[avoid]]",
            "Rules: never chosen, chosen first, chosen last. Match fields (all given must match): name, cmdline, exe (regexes), user (name or uid), cgroup, unit (regexes; unit is the system unit the process runs in, as systemctl status names it: a user's own units count as user@UID.service). Any user can give a process any name: protect by name together with user or unit. oom_score_adj (\\-1000..1000) is also written to every matching process. Command-line rules come first, then the file's in file order; the first match decides.",
        ),
        (
            "[metrics]",
            "listen = \"ADDR:PORT\": Prometheus metrics over HTTP.",
        ),
        (
            "[warn]",
            "enabled, level, clear: a warning when memory use crosses level (percent) until it falls below clear.",
        ),
        (
            "[hooks]",
            "pre_kill (started right after the first signal), post_kill (after the outcome): a command as a list of strings; timeout.",
        ),
        (
            "[notify]",
            "dbus_signal, desktop, user_runtime_dir, system_bus: D\\-Bus and desktop notifications of kills.",
        ),
        (
            "[[watch]]",
            "name, cmdline, exe, cgroup, unit (as in rules), restart (a command), max_restarts, timeout: restart what an OOM took down.",
        ),
    ];
    let mut p = String::from(
        ".TH OOMGUARD.TOML 5 \"\" \"oomguard\" \"File Formats\"\n.SH NAME\noomguard.toml \\- configuration of oomguard\n.SH SYNOPSIS\n/etc/oomguard/oomguard.toml\n.SH DESCRIPTION\nA TOML file; no config file is ever needed. oomguard uses /etc/oomguard/oomguard.toml when it exists, or the file given with \\-\\-config. Unknown keys are errors (a typo must not silently disable a protection); \\fBoomguard check\\-config FILE\\fR names the line of an error. The daemon reloads the file on SIGHUP and keeps the old config when the new one is bad.\n.PP\nValues: PCT is a number from 0 to 100 (\"10\", \"7.5%\"); SIZE a number with K, M, G or T (1024\\-based, \"512M\", \"1.5GiB\"); DURATION a number with ms, s, m or h (\"500ms\", \"2m\").\n.SH KEYS\n",
    );
    for (k, v) in keys {
        p.push_str(&format!(".TP\n\\fB{}\\fR\n{v}\n", roff(k)));
    }
    p.push_str(".SH EXAMPLES\nThe shipped file, every setting commented out at its default:\n");
    p.push_str(&preformatted(include_str!("../../packaging/oomguard.toml")));
    p.push_str("\n.SH FILES\n.TP\n/etc/oomguard/oomguard.toml\nThe config file.\n.SH SEE ALSO\noomguard(1), oomguard\\-run(1), oomguard\\-check\\-config(1), oomguard\\-protect(1)\n");
    p
}

/// Writes the man pages of `cmd` and its visible subcommands, and `oomguard.toml.5`, into
/// `dir`; returns the file names.
pub fn man_pages(cmd: &clap::Command, dir: &Path) -> anyhow::Result<Vec<String>> {
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    let subs: Vec<&clap::Command> = cmd
        .get_subcommands()
        .filter(|s| !s.is_hide_set() && s.get_name() != "help")
        .collect();
    let mut all = vec!["oomguard".to_string()];
    all.extend(subs.iter().map(|s| format!("oomguard-{}", s.get_name())));
    let mut names = Vec::new();
    for (c, name) in std::iter::once(cmd).chain(subs).zip(all.iter()) {
        let file = format!("{name}.1");
        write(&dir.join(&file), &man_page(c, name, &all)?)?;
        names.push(file);
    }
    write(&dir.join("oomguard.toml.5"), config_page().as_bytes())?;
    names.push("oomguard.toml.5".into());
    Ok(names)
}

/// The command for completion: clap_complete offers hidden subcommands too (also under
/// `help`), so the root is rebuilt from its arguments and visible subcommands only.
fn visible(cmd: &clap::Command) -> clap::Command {
    let mut root = clap::Command::new(cmd.get_name().to_string())
        .disable_help_flag(true)
        .disable_version_flag(true)
        .args(cmd.get_arguments().cloned());
    if let Some(v) = cmd.get_version() {
        root = root.version(v.to_string());
    }
    if let Some(a) = cmd.get_about() {
        root = root.about(a.clone());
    }
    root.subcommands(
        cmd.get_subcommands()
            .filter(|s| !s.is_hide_set() && s.get_name() != "help")
            .cloned(),
    )
}

/// Writes the bash, zsh and fish completions into `dir`.
pub fn completions(cmd: &clap::Command, dir: &Path) -> anyhow::Result<()> {
    use clap_complete::Shell;
    let cmd = &visible(cmd);
    std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
    for (shell, file) in [
        (Shell::Bash, "oomguard.bash"),
        (Shell::Zsh, "_oomguard"),
        (Shell::Fish, "oomguard.fish"),
    ] {
        let mut buf = Vec::new();
        clap_complete::generate(shell, &mut cmd.clone(), "oomguard", &mut buf);
        write(&dir.join(file), &buf)?;
    }
    Ok(())
}

/// Man pages into `DIR/man`, completions into `DIR/completions`.
pub fn write_all(dir: &Path) -> anyhow::Result<()> {
    let cmd = command();
    man_pages(&cmd, &dir.join("man"))?;
    completions(&cmd, &dir.join("completions"))
}
