//! A cheap floor under the machine's available memory, for wake-ups far from the levels.
//!
//! `/proc/meminfo` is generated whole on every read: about 50 µs of a cold wake-up, most of
//! what a wake-up far from the levels costs. `sysinfo(2)` gives the same free-page count
//! (`MemFree`) for a fraction of that, and the kernel's `MemAvailable` is never below free
//! pages minus the reserve it keeps (`si_mem_available`: free − `totalreserve_pages` + the
//! reclaimable part of the page cache and slab, both ≥ 0). The reserve is the sum over zones
//! of the highest lowmem protection plus the high watermark (at most the zone's managed
//! pages), read from `/proc/zoneinfo` once a minute, plus a margin of 1/64 of RAM for a
//! watermark boost or a sysctl change between two readings.
//!
//! So a floor above the near level proves the scope is far from every level, and that
//! wake-up needs no meminfo. Only the live machine has a `sysinfo(2)`: a fixture root gets
//! no floor and every wake-up reads meminfo.

use std::time::{Duration, Instant};

use super::{KeptFile, Root};
use crate::sense::mem::MemState;

/// How long a reserve read from `/proc/zoneinfo` is used.
const RESERVE_FOR: Duration = Duration::from_secs(60);

/// Pages the kernel holds back from `MemAvailable`: Σ over zones of min(highest protection +
/// high watermark, managed). `None` when no zone could be read.
pub fn total_reserve_pages(zoneinfo: &[u8]) -> Option<u64> {
    let mut total = None::<u64>;
    let mut zone: Option<(u64, u64, u64)> = None; // (high, max protection, managed)
    let flush = |z: Option<(u64, u64, u64)>, total: &mut Option<u64>| {
        if let Some((high, prot, managed)) = z {
            *total = Some(total.unwrap_or(0) + (prot + high).min(managed));
        }
    };
    for line in zoneinfo.split(|b| *b == b'\n') {
        if line.starts_with(b"Node ") {
            flush(zone.take(), &mut total);
            zone = Some((0, 0, 0));
            continue;
        }
        let Some(z) = zone.as_mut() else { continue };
        let t = line.trim_ascii_start();
        // The zone's watermark is `high N`; the per-cpu page lists' `high: N` has a colon.
        if let Some(v) = t.strip_prefix(b"high ") {
            z.0 = number(v)?;
        } else if let Some(v) = t.strip_prefix(b"managed ") {
            z.2 = number(v)?;
        } else if let Some(v) = t.strip_prefix(b"protection: (") {
            let v = v.strip_suffix(b")").unwrap_or(v);
            for p in v.split(|b| *b == b',') {
                z.1 = z.1.max(number(p)?);
            }
        }
    }
    flush(zone, &mut total);
    total
}

fn number(v: &[u8]) -> Option<u64> {
    std::str::from_utf8(v.trim_ascii()).ok()?.parse().ok()
}

/// The floor reader of the live machine.
#[derive(Debug)]
pub struct Floor {
    zoneinfo: KeptFile,
    reserve_kb: u64,
    read_at: Option<Instant>,
    page_kb: u64,
    /// Free RAM (kB) at the last [`Floor::memory`].
    pub free_kb: u64,
}

impl Floor {
    /// A floor for `root`, if it is the live machine's.
    pub fn new(root: &Root) -> Option<Floor> {
        root.is_real().then(|| Floor {
            zoneinfo: KeptFile::new(root.path("proc/zoneinfo")),
            reserve_kb: 0,
            read_at: None,
            page_kb: (rustix::param::page_size() / 1024) as u64,
            free_kb: 0,
        })
    }

    /// The machine's memory with `available_kb` a floor under `MemAvailable` (see the module).
    /// `None` when the reserve or `sysinfo(2)` cannot be read. `buf` is scratch space for
    /// `/proc/zoneinfo` (the scope's read buffer: no memory of its own).
    pub fn memory(&mut self, buf: &mut Vec<u8>) -> Option<MemState> {
        let now = Instant::now();
        if self
            .read_at
            .is_none_or(|t| now.duration_since(t) >= RESERVE_FOR)
        {
            self.zoneinfo.read_into(buf).ok()?;
            self.reserve_kb = total_reserve_pages(buf)? * self.page_kb;
            self.read_at = Some(now);
        }
        let si = rustix::system::sysinfo();
        let unit = u64::from(si.mem_unit.max(1));
        let kb = |v: u64| v.saturating_mul(unit) / 1024;
        let total_kb = kb(si.totalram as u64);
        let margin = total_kb / 64;
        self.free_kb = kb(si.freeram as u64);
        Some(MemState {
            total_kb,
            available_kb: self.free_kb.saturating_sub(self.reserve_kb + margin),
            swap_total_kb: kb(si.totalswap as u64),
            swap_free_kb: kb(si.freeswap as u64),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ZONEINFO: &[u8] = b"Node 0, zone      DMA
  per-node stats
      nr_inactive_anon 425
  pages free     3840
        boost    0
        min      14
        low      20
        high     26
        promo    32
        spanned  4095
        present  3999
        managed  3840
        cma      0
        protection: (0, 3018, 13770, 13770, 13770)
      nr_free_pages 3840
  pagesets
    cpu: 0
              count:    0
              high:     0
              batch:    1
              high_min: 11
Node 0, zone    DMA32
  pages free     700000
        high     5547
        managed  772798
        protection: (0, 0, 10752, 10752, 10752)
    cpu: 0
              high:     2311
Node 0, zone   Normal
        high     19765
        managed  2752512
        protection: (0, 0, 0, 0, 0)
Node 0, zone  Movable
        high     32
        managed  0
        protection: (0, 0, 0, 0, 0)
";

    #[test]
    fn reserve_is_protection_plus_high_capped_at_managed() {
        // DMA: min(13770 + 26, 3840) = 3840; DMA32: 10752 + 5547; Normal: 19765; Movable: 0.
        assert_eq!(
            total_reserve_pages(ZONEINFO),
            Some(3840 + 10752 + 5547 + 19765)
        );
        assert_eq!(total_reserve_pages(b"garbage\n"), None);
        assert_eq!(
            total_reserve_pages(b"Node 0, zone DMA\n        high     x\n"),
            None
        );
    }

    /// On the live machine the floor is under `MemAvailable`, read right after it.
    #[test]
    fn the_live_floor_is_below_meminfo_available() {
        let mut f = Floor::new(&Root::default()).expect("the live root has a floor");
        let floor = f
            .memory(&mut Vec::new())
            .expect("sysinfo and /proc/zoneinfo are readable");
        let text = std::fs::read("/proc/meminfo").unwrap();
        let mi = crate::sense::meminfo::Meminfo::parse(&text).unwrap();
        assert!(
            floor.available_kb <= mi.available_kb(),
            "{floor:?} vs {mi:?}"
        );
        assert_eq!(floor.total_kb, mi.mem_total_kb);
        assert_eq!(floor.swap_total_kb, mi.swap_total_kb);
        assert!(f.reserve_kb > 0, "no reserve read from /proc/zoneinfo");
        assert!(Floor::new(&Root::new("/tmp")).is_none());
    }
}
