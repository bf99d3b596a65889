//! `/proc/vmstat`: the kernel's OOM kill counter and the page allocation counters.

use super::parse_u64;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Vmstat {
    /// `oom_kill` (4.13+): every OOM kill, global and memcg. `None` on older kernels.
    pub oom_kill: Option<u64>,
    /// Sum of all `pgalloc_*` counters: an upper bound on how many pages anyone gained by
    /// allocation (a process that maps pages already in memory allocates none).
    pub pgalloc: u64,
}

impl Vmstat {
    pub fn parse(text: &[u8]) -> Vmstat {
        let mut v = Vmstat::default();
        for line in text.split(|&b| b == b'\n') {
            let Some(sp) = line.iter().position(|&b| b == b' ') else {
                continue;
            };
            let (key, rest) = (&line[..sp], &line[sp + 1..]);
            if key == b"oom_kill" {
                v.oom_kill = parse_u64(rest);
            } else if key.starts_with(b"pgalloc_") {
                // A counter: compared by difference, so a sum past u64 wraps as the kernel's do.
                v.pgalloc = v.pgalloc.wrapping_add(parse_u64(rest).unwrap_or(0));
            }
        }
        v
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn sums_pgalloc_and_reads_oom_kill() {
        let v = super::Vmstat::parse(
            b"nr_free_pages 5\npgalloc_dma 1\npgalloc_normal 10\npgalloc_movable 2\noom_kill 3\n",
        );
        assert_eq!(v.pgalloc, 13);
        assert_eq!(v.oom_kill, Some(3));
        assert_eq!(super::Vmstat::parse(b"pgalloc_normal 1\n").oom_kill, None);
    }
}
