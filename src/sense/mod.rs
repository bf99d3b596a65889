//! Sense: read the machine. Every reader is rooted at a configurable path (`/` in production,
//! a fixture tree in tests); every parser takes bytes and allocates nothing per call.
pub mod cgroup;
pub mod meminfo;
pub mod procevents;
pub mod procs;
pub mod psi;
pub mod scope;
pub mod vmstat;

use std::path::{Path, PathBuf};

/// The root that all OS paths are resolved against.
#[derive(Debug, Clone)]
pub struct Root(PathBuf);

impl Default for Root {
    fn default() -> Self {
        Root(PathBuf::from("/"))
    }
}

impl Root {
    pub fn new(p: impl Into<PathBuf>) -> Root {
        Root(p.into())
    }
    /// `rel` (absolute or not) under the root.
    pub fn path(&self, rel: impl AsRef<Path>) -> PathBuf {
        let rel = rel.as_ref();
        let rel = rel.strip_prefix("/").unwrap_or(rel);
        self.0.join(rel)
    }
    pub fn as_path(&self) -> &Path {
        &self.0
    }
    pub fn is_real(&self) -> bool {
        self.0 == Path::new("/")
    }
}

/// Reads a whole small file into `buf` (cleared first), returning the bytes read.
pub fn read_into(path: &Path, buf: &mut Vec<u8>) -> std::io::Result<usize> {
    use std::io::Read;
    buf.clear();
    let mut f = std::fs::File::open(path)?;
    f.read_to_end(buf)
}

/// Parses the leading unsigned decimal of `s` (after spaces); `None` if there is none.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    let s = trim_ascii_start(s);
    let mut v: u64 = 0;
    let mut any = false;
    for &b in s {
        if b.is_ascii_digit() {
            v = v.checked_mul(10)?.checked_add((b - b'0') as u64)?;
            any = true;
        } else {
            break;
        }
    }
    any.then_some(v)
}

/// Parses a leading signed decimal.
pub fn parse_i64(s: &[u8]) -> Option<i64> {
    let s = trim_ascii_start(s);
    match s.first() {
        Some(b'-') => parse_u64(&s[1..])
            .and_then(|v| i64::try_from(v).ok())
            .map(|v| -v),
        _ => parse_u64(s).and_then(|v| i64::try_from(v).ok()),
    }
}

fn trim_ascii_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}
