//! `/proc/meminfo`: the handful of fields the guard needs, parsed without allocating.

use super::parse_u64;

/// Memory figures in kB. Fields the kernel does not print stay `None`.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Meminfo {
    pub mem_total_kb: u64,
    pub mem_free_kb: u64,
    /// `MemAvailable` (3.14+); older kernels get an estimate, see [`Meminfo::available_kb`].
    pub mem_available_kb: Option<u64>,
    pub buffers_kb: u64,
    pub cached_kb: u64,
    pub shmem_kb: u64,
    pub swap_total_kb: u64,
    pub swap_free_kb: u64,
    pub commit_limit_kb: Option<u64>,
    pub committed_as_kb: Option<u64>,
}

/// `/proc/meminfo` could not be understood.
#[derive(Debug, thiserror::Error)]
#[error("meminfo has no MemTotal line (is this a Linux /proc?)")]
pub struct MeminfoError;

impl Meminfo {
    pub fn parse(text: &[u8]) -> Result<Meminfo, MeminfoError> {
        let mut m = Meminfo::default();
        let mut have_total = false;
        // Ten keys are wanted; the last of them (Committed_AS) comes two thirds down the file.
        let mut wanted = 10;
        for line in text.split(|&b| b == b'\n') {
            let Some(colon) = line.iter().position(|&b| b == b':') else {
                continue;
            };
            let (key, rest) = (&line[..colon], &line[colon + 1..]);
            let set: fn(&mut Meminfo, u64) = match key {
                b"MemTotal" => |m, v| m.mem_total_kb = v,
                b"MemFree" => |m, v| m.mem_free_kb = v,
                b"MemAvailable" => |m, v| m.mem_available_kb = Some(v),
                b"Buffers" => |m, v| m.buffers_kb = v,
                b"Cached" => |m, v| m.cached_kb = v,
                b"Shmem" => |m, v| m.shmem_kb = v,
                b"SwapTotal" => |m, v| m.swap_total_kb = v,
                b"SwapFree" => |m, v| m.swap_free_kb = v,
                b"CommitLimit" => |m, v| m.commit_limit_kb = Some(v),
                b"Committed_AS" => |m, v| m.committed_as_kb = Some(v),
                _ => continue,
            };
            let Some(v) = parse_u64(rest) else { continue };
            set(&mut m, v);
            have_total |= key == b"MemTotal";
            wanted -= 1;
            if wanted == 0 {
                break;
            }
        }
        if have_total { Ok(m) } else { Err(MeminfoError) }
    }

    /// Available memory: `MemAvailable`, or before 3.14 the usual estimate
    /// `MemFree + Cached + Buffers - Shmem`.
    pub fn available_kb(&self) -> u64 {
        self.mem_available_kb.unwrap_or_else(|| {
            (self.mem_free_kb)
                .saturating_add(self.cached_kb)
                .saturating_add(self.buffers_kb)
                .saturating_sub(self.shmem_kb)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_a_modern_meminfo() {
        let t = b"MemTotal:       24594688 kB\nMemFree:        23000000 kB\nMemAvailable:   23500000 kB\nBuffers:            1000 kB\nCached:           400000 kB\nSwapCached:            0 kB\nShmem:              2000 kB\nSwapTotal:             0 kB\nSwapFree:              0 kB\n";
        let m = Meminfo::parse(t).unwrap();
        assert_eq!(m.mem_total_kb, 24594688);
        assert_eq!(m.available_kb(), 23500000);
        assert_eq!(m.swap_total_kb, 0);
    }

    #[test]
    fn estimates_available_on_old_kernels_and_refuses_garbage() {
        let t =
            b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 300 kB\nShmem: 50 kB\n";
        assert_eq!(Meminfo::parse(t).unwrap().available_kb(), 360);
        assert!(Meminfo::parse(b"garbage").is_err());
        // Values no kernel prints: the sum saturates, it does not wrap to a small number.
        let t = b"MemTotal: 1000 kB\nMemFree: 18446744073709551615 kB\nBuffers: 10 kB\nCached: 300 kB\nShmem: 50 kB\n";
        assert_eq!(Meminfo::parse(t).unwrap().available_kb(), u64::MAX - 50);
    }
}
