//! The release binary's layout (link/hot-first.sh): the functions the daemon runs after start-up
//! sit together at the start of .text, so its locked, resident code stays small.

use std::collections::HashMap;
use std::process::Command;

/// A demangled name as link/hot-symbols.txt has it: without crate disambiguators
/// (`oomguard[0123abcd…]`), an LTO suffix or a legacy hash, which vary between builds.
fn key(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    let mut rest = name;
    while let Some(i) = rest.find('[') {
        out.push_str(&rest[..i]);
        let tail = &rest[i + 1..];
        match tail.find(']') {
            Some(j) if j >= 6 && tail[..j].bytes().all(|b| b.is_ascii_hexdigit()) => {
                rest = &tail[j + 1..];
            }
            _ => {
                out.push('[');
                rest = tail;
            }
        }
    }
    out.push_str(rest);
    let mut s = out.as_str();
    for suffix in [".llvm.", " [clone "] {
        if let Some(i) = s.find(suffix) {
            s = &s[..i];
        }
    }
    if let Some(i) = s.rfind("::h")
        && s.len() > i + 3
        && s[i + 3..].bytes().all(|b| b.is_ascii_hexdigit())
    {
        s = &s[..i];
    }
    s.to_string()
}

#[test]
fn the_daemons_hot_functions_are_linked_together() {
    let list =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/link/hot-symbols.txt"))
            .unwrap();
    let wanted: Vec<&str> = list
        .lines()
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .collect();
    assert!(
        wanted.len() > 50,
        "link/hot-symbols.txt lists {} functions",
        wanted.len()
    );
    let bin = env!("CARGO_BIN_EXE_oomguard");
    let comment = Command::new("readelf")
        .args(["-p", ".comment", bin])
        .output()
        .expect("readelf (binutils) runs");
    assert!(
        String::from_utf8_lossy(&comment.stdout).contains("LLD"),
        "{bin} was not linked by LLD, so link/hot-first.sh could not order it (a Rust toolchain \
         from 1.90 on links with LLD by default)"
    );
    let nm = Command::new("nm")
        .args(["-S", "-C", "--defined-only", bin])
        .output()
        .expect("nm (binutils) runs");
    assert!(nm.status.success());
    let text = String::from_utf8(nm.stdout).unwrap();
    // Per key: the address range and total size of the functions that carry it.
    let mut found: HashMap<String, Vec<(u64, u64)>> = HashMap::new();
    let mut text_lo = u64::MAX;
    let mut text_hi = 0;
    for l in text.lines() {
        let f: Vec<&str> = l.splitn(4, ' ').collect();
        let [addr, size, kind, name] = f[..] else {
            continue;
        };
        if !matches!(kind, "t" | "T" | "w" | "W") {
            continue;
        }
        let (a, s) = (
            u64::from_str_radix(addr, 16).unwrap(),
            u64::from_str_radix(size, 16).unwrap(),
        );
        text_lo = text_lo.min(a);
        text_hi = text_hi.max(a + s);
        found.entry(key(name)).or_default().push((a, s));
    }
    let hot: Vec<(u64, u64)> = wanted
        .iter()
        .filter_map(|k| found.get(*k))
        .flatten()
        .copied()
        .collect();
    let matched = wanted.iter().filter(|k| found.contains_key(**k)).count();
    assert!(
        matched * 10 >= wanted.len() * 7,
        "only {matched} of the {} functions in link/hot-symbols.txt are in the binary: the list is \
         stale, regenerate it with scripts/hot-symbols.sh",
        wanted.len()
    );
    let lo = hot.iter().map(|h| h.0).min().unwrap();
    let hi = hot.iter().map(|h| h.0 + h.1).max().unwrap();
    let size: u64 = hot.iter().map(|h| h.1).sum();
    // Together: the range they span is hardly larger than their sizes (alignment padding), and
    // it is a small part of all the code, at its start.
    assert!(
        hi - lo <= size + size / 4,
        "{} hot functions ({size} bytes) are spread over {} bytes: the binary was not linked by \
         link/hot-first.sh (.cargo/config.toml)",
        hot.len(),
        hi - lo
    );
    assert!(
        (hi - lo) * 4 < text_hi - text_lo && lo - text_lo < 64 * 1024,
        "hot range {lo:#x}-{hi:#x} in code {text_lo:#x}-{text_hi:#x}"
    );
}

#[test]
fn keys_drop_disambiguators_hashes_and_lto_suffixes() {
    assert_eq!(
        key("<oomguard[a2f591bcb0e33768]::daemon::Daemon>::tick"),
        "<oomguard::daemon::Daemon>::tick"
    );
    assert_eq!(
        key("<alloc[1a2b3c4d5e6f7a8b]::vec::Vec<[u8; 16]>>::push.llvm.42"),
        "<alloc::vec::Vec<[u8; 16]>>::push"
    );
    assert_eq!(key("<[f32]>::sort"), "<[f32]>::sort");
    assert_eq!(
        key("std::io::stdio::_print::h0123456789abcdef"),
        "std::io::stdio::_print"
    );
}
