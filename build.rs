//! Build script: decides whether the shared OOM report corpus test runs.
//!
//! `../shared/corpus/oom-reports` (or `OOMGUARD_CORPUS_DIR`) is an extra check beside the
//! project's own fixtures (tests/fixtures/oom-reports, always checked). When it is present, or
//! when `CI=true` (where its absence must fail), the cfg `shared_corpus` is set and the corpus
//! test runs; otherwise it is compiled as `#[ignore]` with the reason, so a plain clone reports
//! it as ignored, never as passed.

use std::path::Path;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(shared_corpus)");
    println!("cargo::rerun-if-changed=build.rs");
    println!("cargo::rerun-if-env-changed=CI");
    println!("cargo::rerun-if-env-changed=OOMGUARD_CORPUS_DIR");
    // The linker wrapper's inputs (.cargo/config.toml): a new list must relink the binary.
    println!("cargo::rerun-if-changed=link/hot-symbols.txt");
    println!("cargo::rerun-if-changed=link/hot-first.sh");
    // The daemon's binary is linked as a fixed-address executable, not a PIE. In a PIE the
    // dynamic loader writes the load address into every pointer of the binary's constant
    // tables (.data.rel.ro) at each start, which turns them into private anonymous pages:
    // 320 KiB here, 190 KiB of them regex-syntax's Unicode tables that the rules' regex syntax
    // needs. Fixed, those tables stay clean page cache, of which only the pages read are mapped
    // (docs/bench/daemon.md). The cost: the executable's own load address is not randomised
    // (its libraries', heap's, stacks' and mappings' still are; docs/threat-model.md). The
    // code is still compiled position-independent, and `OOMGUARD_PIE=1` links a PIE again.
    println!("cargo::rerun-if-env-changed=OOMGUARD_PIE");
    let pie = std::env::var("OOMGUARD_PIE").is_ok_and(|v| v == "1");
    if !pie && std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo::rustc-link-arg-bin=oomguard=-no-pie");
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR").unwrap_or_default();
    let beside = Path::new(&manifest).join("../shared/corpus/oom-reports");
    let from_env = std::env::var_os("OOMGUARD_CORPUS_DIR").map(std::path::PathBuf::from);
    let present = [Some(beside), from_env]
        .into_iter()
        .flatten()
        .find(|p| p.is_dir());
    if let Some(p) = &present {
        // Removing the corpus later makes this script run again.
        println!("cargo::rerun-if-changed={}", p.display());
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true" || v == "1");
    if present.is_some() || ci {
        println!("cargo::rustc-cfg=shared_corpus");
    }
}
