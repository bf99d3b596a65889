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
//!
//! `sysinfo(2)` is always the kernel's, but `/proc/meminfo` need not be: in a container with
//! lxcfs it is a file of the container's (its limit as `MemTotal`, its usage in `MemAvailable`),
//! and the host's free RAM is no floor under that. So whenever the reserve is read, meminfo's
//! `MemTotal` is compared with `sysinfo(2)`'s total RAM (the kernel prints the same page count
//! in both); while they differ there is no floor and every wake-up reads meminfo.

use std::time::{Duration, Instant};

use super::{KeptFile, Root};
use crate::sense::mem::MemState;
use crate::sense::meminfo::Meminfo;

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
    meminfo: KeptFile,
    reserve_kb: u64,
    read_at: Option<Instant>,
    page_kb: u64,
    /// `/proc/meminfo`'s `MemTotal` differed from `sysinfo(2)`'s at the last reading of the
    /// reserve (lxcfs): no floor until the next reading.
    foreign: bool,
    /// Free RAM (kB) at the last [`Floor::memory`].
    pub free_kb: u64,
}

/// `sysinfo(2)` with its figures in kB: (total RAM, free RAM, total swap, free swap).
fn sysinfo_kb() -> (u64, u64, u64, u64) {
    let si = rustix::system::sysinfo();
    let unit = u64::from(si.mem_unit.max(1));
    let kb = |v: u64| v.saturating_mul(unit) / 1024;
    (
        kb(si.totalram as u64),
        kb(si.freeram as u64),
        kb(si.totalswap as u64),
        kb(si.freeswap as u64),
    )
}

impl Floor {
    /// A floor for `root`, if it is the live machine's.
    pub fn new(root: &Root) -> Option<Floor> {
        root.is_real().then(|| Floor::at(root))
    }

    /// A floor reading `/proc/zoneinfo` and `/proc/meminfo` under `root`, with the live
    /// machine's `sysinfo(2)`.
    fn at(root: &Root) -> Floor {
        Floor {
            zoneinfo: KeptFile::new(root.path("proc/zoneinfo")),
            meminfo: KeptFile::whole(root.path("proc/meminfo")),
            reserve_kb: 0,
            read_at: None,
            page_kb: (rustix::param::page_size() / 1024) as u64,
            foreign: false,
            free_kb: 0,
        }
    }

    /// The machine's memory with `available_kb` a floor under `MemAvailable` (see the module).
    /// `None` when the reserve or `sysinfo(2)` cannot be read, or while `/proc/meminfo` is not
    /// the kernel's. `buf` is scratch space for `/proc/zoneinfo` and `/proc/meminfo` (the
    /// scope's read buffer: no memory of its own).
    pub fn memory(&mut self, buf: &mut Vec<u8>) -> Option<MemState> {
        let now = Instant::now();
        if self
            .read_at
            .is_none_or(|t| now.duration_since(t) >= RESERVE_FOR)
        {
            self.refresh(buf, now)?;
        }
        if self.foreign {
            return None;
        }
        let (total_kb, free_kb, swap_total_kb, swap_free_kb) = sysinfo_kb();
        let margin = total_kb / 64;
        self.free_kb = free_kb;
        Some(MemState {
            total_kb,
            available_kb: free_kb.saturating_sub(self.reserve_kb + margin),
            swap_total_kb,
            swap_free_kb,
        })
    }

    /// Once a minute: whether `/proc/meminfo` is the kernel's (its `MemTotal` is
    /// `sysinfo(2)`'s total RAM), and if so the reserve. `None` when a file cannot be read
    /// (tried again at the next wake-up).
    fn refresh(&mut self, buf: &mut Vec<u8>, now: Instant) -> Option<()> {
        self.meminfo.read_into(buf).ok()?;
        let meminfo_kb = Meminfo::parse(buf).ok()?.mem_total_kb;
        let sysinfo_kb = sysinfo_kb().0;
        let foreign = meminfo_kb != sysinfo_kb;
        if foreign != self.foreign {
            if foreign {
                log::info!(
                    "{}: MemTotal {meminfo_kb} kB is not the kernel's total RAM ({sysinfo_kb} kB, \
                     sysinfo(2)): a container's view of memory (lxcfs?); every wake-up reads it, \
                     without the cheaper sysinfo(2) look far from the levels",
                    self.meminfo.path().display()
                );
            } else {
                log::info!(
                    "{}: MemTotal is the kernel's total RAM again: far from the levels a \
                     wake-up looks at sysinfo(2) only",
                    self.meminfo.path().display()
                );
            }
            self.foreign = foreign;
        }
        if !foreign {
            self.zoneinfo.read_into(buf).ok()?;
            self.reserve_kb = total_reserve_pages(buf)? * self.page_kb;
        }
        self.read_at = Some(now);
        Some(())
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
        assert!(!f.foreign);
        assert!(Floor::new(&Root::new("/tmp")).is_none());
    }

    /// A root whose `proc/zoneinfo` is the machine's and whose `proc/meminfo` says `total_kb`.
    fn fixture(total_kb: u64) -> tempfile::TempDir {
        let d = tempfile::tempdir().unwrap();
        std::fs::create_dir(d.path().join("proc")).unwrap();
        std::fs::write(
            d.path().join("proc/zoneinfo"),
            std::fs::read("/proc/zoneinfo").unwrap(),
        )
        .unwrap();
        let meminfo =
            |kb: u64| format!("MemTotal: {kb} kB\nMemFree: 1000 kB\nMemAvailable: 2000 kB\n");
        std::fs::write(d.path().join("proc/meminfo"), meminfo(total_kb)).unwrap();
        d
    }

    /// lxcfs: `/proc/meminfo` is the container's (its `MemTotal` not the kernel's), so the
    /// host's free RAM is no floor under its `MemAvailable`: no floor, until a reading of the
    /// reserve finds the kernel's `MemTotal` again.
    #[test]
    fn a_meminfo_not_the_kernels_gives_no_floor() {
        let host_kb = sysinfo_kb().0;
        let d = fixture(host_kb / 2);
        let mut f = Floor::at(&Root::new(d.path()));
        let mut buf = Vec::new();
        assert_eq!(f.memory(&mut buf), None);
        assert!(f.foreign);
        // Decided for a minute: a kernel's meminfo in its place changes nothing before then.
        let d2 = fixture(host_kb);
        std::fs::write(
            d.path().join("proc/meminfo"),
            std::fs::read(d2.path().join("proc/meminfo")).unwrap(),
        )
        .unwrap();
        assert_eq!(f.memory(&mut buf), None);
        // At the next reading of the reserve the floor is back.
        f.read_at = f.read_at.and_then(|t| t.checked_sub(RESERVE_FOR));
        let m = f.memory(&mut buf).expect("the kernel's MemTotal: a floor");
        assert_eq!(m.total_kb, host_kb);
        assert!(!f.foreign && f.reserve_kb > 0);
        // The same root with the machine's MemTotal has a floor from the start.
        assert!(Floor::at(&Root::new(d2.path())).memory(&mut buf).is_some());
    }
}
