//! The kernel's process events through the netlink proc connector (NETLINK_CONNECTOR,
//! CN_IDX_PROC): fork, exec, comm change and exit, the moment they happen. Protection rules use
//! it to adjust a new process within milliseconds instead of waiting for a scan.
//!
//! Events can be lost: when the socket's receive buffer overflows the kernel drops the message
//! and the next `recv` fails with ENOBUFS; a gap in the connector's per-CPU sequence numbers
//! tells the same. Both surface as [`ProcEvent::Lost`]: the caller must rescan `/proc`.
//!
//! The parser ([`parse_messages`]) takes bytes; the socket ([`ProcEvents`]) is a thin reader.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

const CN_IDX_PROC: u32 = 1;
const CN_VAL_PROC: u32 = 1;
const PROC_CN_MCAST_LISTEN: u32 = 1;
const NLMSG_HDRLEN: usize = 16;
const CN_MSG_LEN: usize = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLMSG_OVERRUN: u16 = 4;

#[cfg(test)]
const PROC_EVENT_NONE: u32 = 0;
const PROC_EVENT_FORK: u32 = 0x1;
const PROC_EVENT_EXEC: u32 = 0x2;
const PROC_EVENT_COMM: u32 = 0x200;
const PROC_EVENT_EXIT: u32 = 0x8000_0000;

/// One process event. PIDs are the kernel's: `pid` is the thread, `tgid` the process.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProcEvent {
    /// A new task. A new process when `child_pid == child_tgid`, else a new thread.
    Fork {
        parent_tgid: i32,
        child_pid: i32,
        child_tgid: i32,
        /// CLOCK_MONOTONIC nanoseconds when the kernel sent the event.
        ts_ns: u64,
    },
    Exec {
        pid: i32,
        tgid: i32,
        ts_ns: u64,
    },
    /// The task's name changed (prctl(PR_SET_NAME) or a write to /proc/PID/comm).
    Comm {
        pid: i32,
        tgid: i32,
        ts_ns: u64,
    },
    Exit {
        pid: i32,
        tgid: i32,
    },
    /// Events were dropped (receive buffer overrun or a sequence gap): rescan.
    Lost,
}

/// The proc connector could not be used.
#[derive(Debug, thiserror::Error)]
pub enum ProcEventsError {
    #[error(
        "netlink proc connector: {what}: {source} (the kernel needs CONFIG_PROC_EVENTS and the caller CAP_NET_ADMIN)"
    )]
    Io {
        what: &'static str,
        #[source]
        source: std::io::Error,
    },
    /// The kernel takes subscriptions only from its initial PID and user namespaces and drops
    /// any other without an error or an answer: a socket that would never see an event.
    #[error(
        "netlink proc connector: this process is not in the machine's initial {0} namespace, whose subscriptions the kernel ignores (run oomguard in the host's PID and user namespaces, not in a container or under unshare, for process events)"
    )]
    Namespace(&'static str),
}

/// `/proc/self/ns/{pid,user}`'s inode numbers in the initial namespaces (the kernel's
/// PROC_PID_INIT_INO and PROC_USER_INIT_INO, fixed since 3.8).
const INITIAL_NAMESPACES: [(&str, u64); 2] = [("pid", 0xEFFF_FFFC), ("user", 0xEFFF_FFFD)];

/// The first of this process's PID and user namespaces that is not the initial one. A
/// namespace that cannot be looked at (no `/proc`, a kernel before 3.8) is taken as initial:
/// the subscription is tried.
fn foreign_namespace() -> Option<&'static str> {
    INITIAL_NAMESPACES.into_iter().find_map(|(ns, initial)| {
        let st = rustix::fs::stat(format!("/proc/self/ns/{ns}").as_str()).ok()?;
        (st.st_ino as u64 != initial).then_some(ns)
    })
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    Some(u32::from_ne_bytes(b.get(off..off + 4)?.try_into().ok()?))
}
fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    Some(u16::from_ne_bytes(b.get(off..off + 2)?.try_into().ok()?))
}
fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    Some(u64::from_ne_bytes(b.get(off..off + 8)?.try_into().ok()?))
}

/// Tracks the connector's per-CPU sequence numbers to notice dropped messages.
#[derive(Debug, Default, Clone)]
pub struct SeqTracker {
    last: Vec<Option<u32>>,
}

impl SeqTracker {
    /// Records `seq` seen from `cpu`; true if messages were skipped since the last one.
    pub fn gap(&mut self, cpu: u32, seq: u32) -> bool {
        let cpu = cpu as usize;
        if cpu >= 4096 {
            return false;
        }
        if self.last.len() <= cpu {
            self.last.resize(cpu + 1, None);
        }
        let gap = matches!(self.last[cpu], Some(prev) if seq != prev.wrapping_add(1));
        self.last[cpu] = Some(seq);
        gap
    }
}

/// Parses one datagram (one or more netlink messages) into `out`. Unknown event types are
/// skipped; a truncated message ends the parse. Sequence gaps push [`ProcEvent::Lost`].
pub fn parse_messages(buf: &[u8], seqs: &mut SeqTracker, out: &mut Vec<ProcEvent>) {
    let mut off = 0;
    while off + NLMSG_HDRLEN <= buf.len() {
        let Some(len) = u32_at(buf, off).map(|l| l as usize) else {
            return;
        };
        let ty = u16_at(buf, off + 4).unwrap_or(0);
        if len < NLMSG_HDRLEN || off + len > buf.len() {
            return;
        }
        let msg = &buf[off..off + len];
        off += (len + 3) & !3;
        match ty {
            NLMSG_OVERRUN => {
                out.push(ProcEvent::Lost);
                continue;
            }
            NLMSG_ERROR => continue,
            _ => {}
        }
        let cn = &msg[NLMSG_HDRLEN..];
        let (Some(idx), Some(val), Some(seq)) = (u32_at(cn, 0), u32_at(cn, 4), u32_at(cn, 8))
        else {
            continue;
        };
        if idx != CN_IDX_PROC || val != CN_VAL_PROC {
            continue;
        }
        let ev = &cn[CN_MSG_LEN.min(cn.len())..];
        // struct proc_event { what u32, cpu u32, timestamp_ns u64, event_data ... }
        let (Some(what), Some(cpu), Some(ts_ns)) = (u32_at(ev, 0), u32_at(ev, 4), u64_at(ev, 8))
        else {
            continue;
        };
        // Every message counts, acks (PROC_EVENT_NONE) too: since 6.6 they take their
        // sequence number from the same per-CPU counter (older kernels send them with
        // cpu = -1, which the tracker ignores).
        if seqs.gap(cpu, seq) {
            out.push(ProcEvent::Lost);
        }
        // event_data follows the 16-byte header: fork has 4 words, the others 2 first.
        let need = if what == PROC_EVENT_FORK { 16 } else { 8 };
        if ev.len() < 16 + need {
            continue;
        }
        let word = |o: usize| u32_at(ev, 16 + o).map_or(0, |v| v as i32);
        let (w0, w1) = (word(0), word(4));
        let parsed = match what {
            PROC_EVENT_FORK => Some(ProcEvent::Fork {
                parent_tgid: w1,
                child_pid: word(8),
                child_tgid: word(12),
                ts_ns,
            }),
            PROC_EVENT_EXEC => Some(ProcEvent::Exec {
                pid: w0,
                tgid: w1,
                ts_ns,
            }),
            PROC_EVENT_COMM => Some(ProcEvent::Comm {
                pid: w0,
                tgid: w1,
                ts_ns,
            }),
            PROC_EVENT_EXIT => Some(ProcEvent::Exit { pid: w0, tgid: w1 }),
            _ => None,
        };
        out.extend(parsed);
    }
}

/// A subscribed proc connector socket.
pub struct ProcEvents {
    fd: OwnedFd,
    buf: Vec<u8>,
    seqs: SeqTracker,
    /// How often the socket overran (ENOBUFS) and how often a sequence gap showed a loss.
    pub overruns: u64,
    pub gaps: u64,
}

impl ProcEvents {
    /// Opens the socket, joins the proc events group and asks for events. `rcvbuf`: the
    /// receive buffer in bytes (None: 4 MiB, so bursts of forks are not dropped). Refused
    /// outside the initial PID or user namespace, where the kernel ignores the request.
    pub fn open(rcvbuf: Option<usize>) -> Result<ProcEvents, ProcEventsError> {
        use rustix::net::{
            AddressFamily, SocketFlags, SocketType, bind, netlink, socket_with, sockopt,
        };
        if let Some(ns) = foreign_namespace() {
            return Err(ProcEventsError::Namespace(ns));
        }
        let err = |what| {
            move |e: rustix::io::Errno| ProcEventsError::Io {
                what,
                source: e.into(),
            }
        };
        let fd = socket_with(
            AddressFamily::NETLINK,
            SocketType::DGRAM,
            SocketFlags::CLOEXEC,
            Some(netlink::CONNECTOR),
        )
        .map_err(err("socket"))?;
        let size = rcvbuf.unwrap_or(4 << 20);
        // SO_RCVBUFFORCE needs CAP_NET_ADMIN; without it the plain size (capped by
        // net.core.rmem_max) is the best we get, and a failure of both is not fatal.
        if sockopt::set_socket_recv_buffer_size_force(&fd, size).is_err() {
            let _ = sockopt::set_socket_recv_buffer_size(&fd, size);
        }
        bind(&fd, &netlink::SocketAddrNetlink::new(0, CN_IDX_PROC)).map_err(err("bind"))?;
        let mut msg = Vec::with_capacity(NLMSG_HDRLEN + CN_MSG_LEN + 4);
        let total = (NLMSG_HDRLEN + CN_MSG_LEN + 4) as u32;
        msg.extend_from_slice(&total.to_ne_bytes());
        msg.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&std::process::id().to_ne_bytes());
        msg.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        msg.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        msg.extend_from_slice(&0u32.to_ne_bytes()); // seq
        msg.extend_from_slice(&0u32.to_ne_bytes()); // ack
        msg.extend_from_slice(&4u16.to_ne_bytes()); // len
        msg.extend_from_slice(&0u16.to_ne_bytes()); // flags
        msg.extend_from_slice(&PROC_CN_MCAST_LISTEN.to_ne_bytes());
        // The kernel's ack (PROC_EVENT_NONE) is not awaited: it goes to every listener of the
        // group, may be lost with events in a burst, and only a timeout would tell its absence.
        rustix::net::send(&fd, &msg, rustix::net::SendFlags::empty())
            .map_err(err("send PROC_CN_MCAST_LISTEN"))?;
        Ok(ProcEvents {
            fd,
            buf: vec![0; 64 * 1024],
            seqs: SeqTracker::default(),
            overruns: 0,
            gaps: 0,
        })
    }

    /// Waits up to `timeout` for events and appends what arrived to `out` (nothing on a
    /// timeout). Reads everything already queued without waiting again.
    pub fn wait(&mut self, timeout: Duration, out: &mut Vec<ProcEvent>) -> std::io::Result<()> {
        use rustix::event::{PollFd, PollFlags, Timespec, poll};
        use rustix::io::Errno;
        use rustix::net::{RecvFlags, recv};
        let ts = Timespec {
            tv_sec: timeout.as_secs().min(i64::MAX as u64) as i64,
            tv_nsec: i64::from(timeout.subsec_nanos()),
        };
        let mut pfd = [PollFd::new(&self.fd, PollFlags::IN)];
        match poll(&mut pfd, Some(&ts)) {
            Ok(0) | Err(Errno::INTR) => return Ok(()),
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
        loop {
            let n = match recv(&self.fd, &mut self.buf[..], RecvFlags::DONTWAIT) {
                Ok((_, n)) => n.min(self.buf.len()),
                Err(Errno::AGAIN) => return Ok(()),
                Err(Errno::INTR) => continue,
                Err(Errno::NOBUFS) => {
                    self.overruns += 1;
                    out.push(ProcEvent::Lost);
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            if n == 0 {
                return Ok(());
            }
            let before = out.len();
            parse_messages(&self.buf[..n], &mut self.seqs, out);
            self.gaps += out[before..]
                .iter()
                .filter(|e| **e == ProcEvent::Lost)
                .count() as u64;
        }
    }
}

#[cfg(test)]
impl ProcEvents {
    /// A connector whose reads fail: a pipe that polls readable (a byte in it), whose `recv`
    /// fails with ENOTSOCK.
    pub(crate) fn failing() -> ProcEvents {
        let (r, w) = rustix::pipe::pipe().expect("pipe");
        rustix::io::write(&w, b"x").expect("write");
        ProcEvents {
            fd: r,
            buf: vec![0; 64],
            seqs: SeqTracker::default(),
            overruns: 0,
            gaps: 0,
        }
    }
}

impl AsFd for ProcEvents {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// CLOCK_MONOTONIC now, in nanoseconds (the clock of the events' timestamps).
pub fn monotonic_ns() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Monotonic);
    (ts.tv_sec as u64)
        .saturating_mul(1_000_000_000)
        .saturating_add(ts.tv_nsec as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(what: u32, cpu: u32, seq: u32, data: &[u32]) -> Vec<u8> {
        let len = NLMSG_HDRLEN + CN_MSG_LEN + 16 + data.len() * 4;
        let mut m = Vec::new();
        m.extend_from_slice(&(len as u32).to_ne_bytes());
        m.extend_from_slice(&NLMSG_DONE.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&CN_IDX_PROC.to_ne_bytes());
        m.extend_from_slice(&CN_VAL_PROC.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&0u32.to_ne_bytes());
        m.extend_from_slice(&((16 + data.len() * 4) as u16).to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&what.to_ne_bytes());
        m.extend_from_slice(&cpu.to_ne_bytes());
        m.extend_from_slice(&77u64.to_ne_bytes());
        for d in data {
            m.extend_from_slice(&d.to_ne_bytes());
        }
        m
    }

    #[test]
    fn parses_fork_exec_comm_exit_and_sees_gaps() {
        let mut buf = msg(PROC_EVENT_FORK, 0, 10, &[100, 100, 101, 101]);
        buf.extend(msg(PROC_EVENT_EXEC, 0, 11, &[101, 101]));
        buf.extend(msg(PROC_EVENT_COMM, 1, 5, &[101, 101, 0, 0, 0, 0]));
        buf.extend(msg(PROC_EVENT_EXIT, 0, 13, &[101, 101, 0, 9]));
        buf.extend(msg(0x4, 0, 14, &[1, 1, 0, 0])); // uid change: skipped
        buf.extend(msg(PROC_EVENT_NONE, 0, 15, &[0, 0])); // another listener's ack
        buf.extend(msg(PROC_EVENT_NONE, u32::MAX, 99, &[0, 0])); // a pre-6.6 ack
        buf.extend(msg(PROC_EVENT_EXEC, 0, 16, &[102, 102]));
        let mut seqs = SeqTracker::default();
        let mut out = Vec::new();
        parse_messages(&buf, &mut seqs, &mut out);
        assert_eq!(
            out,
            [
                ProcEvent::Fork {
                    parent_tgid: 100,
                    child_pid: 101,
                    child_tgid: 101,
                    ts_ns: 77
                },
                ProcEvent::Exec {
                    pid: 101,
                    tgid: 101,
                    ts_ns: 77
                },
                ProcEvent::Comm {
                    pid: 101,
                    tgid: 101,
                    ts_ns: 77
                },
                ProcEvent::Lost, // cpu 0 jumped from 11 to 13
                ProcEvent::Exit {
                    pid: 101,
                    tgid: 101
                },
                // No gap: the acks took 15, the old-style one is ignored.
                ProcEvent::Exec {
                    pid: 102,
                    tgid: 102,
                    ts_ns: 77
                },
            ]
        );
        // A truncated datagram ends the parse without panicking.
        let mut out = Vec::new();
        parse_messages(&buf[..30], &mut seqs, &mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn overrun_message_is_lost() {
        let mut m = Vec::new();
        m.extend_from_slice(&16u32.to_ne_bytes());
        m.extend_from_slice(&NLMSG_OVERRUN.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        let mut out = Vec::new();
        parse_messages(&m, &mut SeqTracker::default(), &mut out);
        assert_eq!(out, [ProcEvent::Lost]);
    }
}
