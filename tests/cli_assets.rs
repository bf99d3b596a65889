//! Man pages and completions (`oomguard::cli::assets`, built by `cargo run --example assets`):
//! completions offer the values of `--kill-unit`, `--group` and `--scope` and no hidden or
//! test-only command; every page has EXAMPLES, EXIT STATUS, FILES and SEE ALSO; the config
//! file has its own page that names every key of the shipped config.
use crate::util::{oomguard, tempdir};

#[test]
fn generate_is_not_a_command_of_the_shipped_binary() {
    let out = oomguard(&["generate", "/tmp"]);
    assert_eq!(out.status.code(), Some(2), "generate is gone");
    let help = String::from_utf8_lossy(&oomguard(&["--help"]).stdout).into_owned();
    assert!(!help.contains("generate"), "{help}");
}

#[test]
fn completions_offer_values_and_no_hidden_commands() {
    let d = tempdir();
    oomguard::cli::assets::write_all(d.path()).unwrap();
    let read = |f: &str| std::fs::read_to_string(d.path().join("completions").join(f)).unwrap();
    let (bash, zsh, fish) = (
        read("oomguard.bash"),
        read("_oomguard"),
        read("oomguard.fish"),
    );
    // bash: the value list of each option.
    for (opt, words) in [
        ("--kill-unit", "process tree cgroup"),
        ("--group", "tree cgroup unit"),
        ("--scope", "system cgroup:"),
    ] {
        let i = bash
            .find(&format!("{opt})"))
            .unwrap_or_else(|| panic!("no case for {opt}"));
        let case = &bash[i..bash[i..].find(";;").map_or(bash.len(), |e| i + e)];
        assert!(case.contains(words), "{opt}: {case}");
    }
    // zsh and fish describe each value.
    assert!(
        zsh.contains("tree\\:\"the victim and its descendants\""),
        "{zsh}"
    );
    assert!(
        fish.contains("-l kill-unit") && fish.contains("cgroup\\t'"),
        "{fish}"
    );
    // No hidden or test-only command in any of them, also not under `help`.
    for hidden in ["generate", "hog"] {
        assert!(
            !bash.contains(&format!("subcmd__{hidden}")),
            "bash offers {hidden}"
        );
        assert!(!zsh.contains(&format!("'{hidden}:")), "zsh offers {hidden}");
        assert!(
            !fish.contains(&format!("-a \"{hidden}\"")),
            "fish offers {hidden}"
        );
        for l in fish.lines().chain(bash.lines()) {
            let words = l
                .split_once("__fish_seen_subcommand_from ")
                .or_else(|| l.split_once("opts=\""))
                .map(|(_, w)| w.split(['"', ';']).next().unwrap_or(""));
            if let Some(w) = words {
                assert!(!w.split(' ').any(|x| x == hidden), "{hidden} in: {l}");
            }
        }
    }
    assert!(
        bash.contains("check-config help"),
        "the visible commands are offered"
    );
}

#[test]
fn man_pages_have_the_standard_sections_and_a_config_page() {
    let d = tempdir();
    oomguard::cli::assets::write_all(d.path()).unwrap();
    let man = d.path().join("man");
    let mut pages: Vec<String> = std::fs::read_dir(&man)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    pages.sort();
    assert!(pages.contains(&"oomguard.1".to_string()), "{pages:?}");
    assert!(pages.contains(&"oomguard.toml.5".to_string()), "{pages:?}");
    assert!(
        pages
            .iter()
            .all(|p| !p.contains("hog") && !p.contains("generate"))
    );
    for p in pages.iter().filter(|p| p.ends_with(".1")) {
        let text = std::fs::read_to_string(man.join(p)).unwrap();
        for sect in ["EXAMPLES", "EXIT STATUS", "FILES", "SEE ALSO"] {
            assert!(text.contains(&format!(".SH \"{sect}\"")), "{p}: no {sect}");
        }
        assert!(text.contains("oomguard.toml(5)"), "{p}");
    }
    let doctor = std::fs::read_to_string(man.join("oomguard-doctor.1")).unwrap();
    assert!(
        doctor.contains("UNKNOWN"),
        "doctor's exit status is Nagios'"
    );
    let run = std::fs::read_to_string(man.join("oomguard-run.1")).unwrap();
    assert!(run.contains("oomguard run \\-\\-dry\\-run") || run.contains("oomguard run --dry-run"));
    // The config page names every key of the shipped config.
    let page = std::fs::read_to_string(man.join("oomguard.toml.5")).unwrap();
    assert!(page.starts_with(".TH OOMGUARD.TOML 5"));
    let shipped = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("packaging/oomguard.toml"),
    )
    .unwrap();
    let keys = page.split(".SH EXAMPLES").next().unwrap();
    for line in shipped.lines() {
        let l = line.trim_start_matches('#').trim();
        if let Some((k, _)) = l.split_once(" = ")
            && k.chars().all(|c| c.is_ascii_lowercase() || c == '_')
        {
            assert!(keys.contains(k), "oomguard.toml(5) does not describe {k}");
        }
        if l.starts_with('[') && !l.contains(' ') {
            assert!(keys.contains(l), "oomguard.toml(5) does not describe {l}");
        }
    }
}
