//! Line prefixes of kernel logs: what comes before the kernel's own message text.
//!
//! Recognised (kernel-oom-spec.md §7, cli issue 10): `dmesg` (`[  123.456789] `, also with a
//! printk caller field `[T123]`/`[C1]`), `dmesg -T` (`[Mon Dec  8 17:51:31 2025] `),
//! `dmesg --time-format iso`, `dmesg -x` (`kern  :info  : `), syslog (`Mon  d hh:mm:ss host
//! kernel: `), journalctl short formats (`short`, `short-precise`, `short-iso`, `short-full`,
//! `short-monotonic`, `short-unix`, `short-delta`), raw `/dev/kmsg` records
//! (`pri,seq,usec,flags;msg`), and lines with no prefix. A pure function over bytes.

/// When a line was logged, as far as its prefix tells.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Stamp<'a> {
    /// The timestamp text as printed (without brackets).
    pub raw: Option<&'a [u8]>,
    /// Seconds since boot (dmesg, kmsg, short-monotonic).
    pub monotonic_s: Option<f64>,
    /// Wall-clock text (dmesg -T, iso, syslog, journal): see [`crate::report::time`].
    pub wallclock: Option<&'a [u8]>,
}

/// One physical line split into prefix facts and message.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Split<'a> {
    /// The message text after every recognised prefix.
    pub msg: &'a [u8],
    pub stamp: Stamp<'a>,
    /// False when the prefix names another program (syslog/journal tag, kmsg facility).
    pub kernel: bool,
    /// True when any prefix was recognised (used to find wrapped continuation lines).
    pub has_prefix: bool,
    /// True for a raw /dev/kmsg record (its continuation lines are key=value metadata).
    pub kmsg: bool,
    /// True when the prefix carried a `host tag:` part (syslog or journal): from then on
    /// a timestamped line without `kernel:` is another program's.
    pub tagged: bool,
    /// The host of that part: a central syslog holds several machines' lines, and their
    /// reports interleave.
    pub host: Option<&'a [u8]>,
}

const MONTHS: [&[u8; 3]; 12] = [
    b"Jan", b"Feb", b"Mar", b"Apr", b"May", b"Jun", b"Jul", b"Aug", b"Sep", b"Oct", b"Nov", b"Dec",
];
const DAYS: [&[u8; 3]; 7] = [b"Mon", b"Tue", b"Wed", b"Thu", b"Fri", b"Sat", b"Sun"];

/// Splits a line (without its newline). `tagged_stream`: an earlier line of the same stream
/// had a `host kernel:` tag, so timestamped lines without one belong to other programs.
///
/// A syslog priority `<N>` before it all (`dmesg -r`, `/proc/kmsg`) is taken off: facility 0
/// (N < 8) is the kernel's, any other (a program writing to /dev/kmsg: `<12>`) is not.
pub fn split(line: &[u8], tagged_stream: bool) -> Split<'_> {
    if line.first() == Some(&b'<')
        && let Some((pri, n)) = priority(line)
    {
        let mut out = split_after_priority(&line[n..], tagged_stream);
        out.has_prefix = true;
        out.kernel &= pri >> 3 == 0;
        return out;
    }
    split_after_priority(line, tagged_stream)
}

/// `<N>` (one to three digits) at the start of a line: (N, its length).
fn priority(line: &[u8]) -> Option<(u32, usize)> {
    let digits = line[1..]
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    if digits == 0 || digits > 3 || line.get(1 + digits) != Some(&b'>') {
        return None;
    }
    let pri = line[1..1 + digits]
        .iter()
        .fold(0u32, |v, &b| v * 10 + u32::from(b - b'0'));
    Some((pri, digits + 2))
}

fn split_after_priority(line: &[u8], tagged_stream: bool) -> Split<'_> {
    let mut out = Split {
        msg: line,
        stamp: Stamp::default(),
        kernel: true,
        has_prefix: false,
        kmsg: false,
        tagged: false,
        host: None,
    };
    let Some(&first) = line.first() else {
        return out;
    };
    if first.is_ascii_digit() {
        if let Some(s) = kmsg_record(line) {
            return s;
        }
        if let Some((ts, rest)) = iso_stamp(line) {
            out.has_prefix = true;
            out.stamp.raw = Some(ts);
            out.stamp.wallclock = Some(ts);
            return with_tag(out, rest, tagged_stream);
        }
        // A dmesg stamp that lost its opening bracket: "5193605.506728] msg".
        if let Some((secs, n)) = seconds(line)
            && line.get(n) == Some(&b']')
        {
            out.has_prefix = true;
            out.stamp.raw = Some(&line[..n]);
            out.stamp.monotonic_s = Some(secs);
            out.msg = skip_one_space(&line[n + 1..]);
            return out;
        }
        // journalctl -o short-unix: "1700000000.123456 host kernel: msg".
        if let Some((_, n)) = seconds(line)
            && line.get(n) == Some(&b' ')
            && let Some(tag) = host_tag(&line[n + 1..])
        {
            return tagged(out, &line[..n], tag);
        }
        return out;
    }
    if first == b'[' {
        if let Some((stamp, rest)) = bracket_stamp(line) {
            out.has_prefix = true;
            out.stamp = stamp;
            let rest = skip_caller(rest);
            return with_tag(out, rest, tagged_stream);
        }
        return out;
    }
    if let Some(rest) = syslog_stamp(line) {
        let ts = &line[..line.len() - rest.len() - 1];
        if let Some(tag) = host_tag(rest) {
            return tagged(out, ts, tag);
        }
        return out;
    }
    if let Some((ts, rest)) = full_stamp(line)
        && let Some(tag) = host_tag(rest)
    {
        return tagged(out, ts, tag);
    }
    if let Some((kernel, rest)) = dmesg_x(line) {
        out.has_prefix = true;
        out.kernel = kernel;
        out.msg = rest;
        if let Some((stamp, rest)) = rest
            .first()
            .filter(|b| **b == b'[')
            .and_then(|_| bracket_stamp(rest))
        {
            out.stamp = stamp;
            out.msg = skip_caller(rest);
        }
        return out;
    }
    out
}

/// A wall-clock stamp followed by `host tag:` (syslog, journal).
fn tagged<'a>(mut out: Split<'a>, ts: &'a [u8], tag: Tag<'a>) -> Split<'a> {
    out.has_prefix = true;
    out.tagged = true;
    out.stamp.raw = Some(ts);
    out.stamp.wallclock = Some(ts);
    out.kernel = tag.kernel;
    out.host = Some(tag.host);
    out.msg = tag.msg;
    if tag.kernel { inner_dmesg(out) } else { out }
}

/// After a stamp: either `host kernel: msg` (journal / syslog with high-precision time),
/// another program's `host tag: msg`, or the kernel's message directly (dmesg).
fn with_tag<'a>(mut out: Split<'a>, rest: &'a [u8], tagged_stream: bool) -> Split<'a> {
    if (tagged_stream || kernel_tag_follows(rest))
        && let Some(tag) = host_tag(rest)
        && (tag.kernel || tagged_stream)
    {
        out.tagged = true;
        out.kernel = tag.kernel;
        out.host = Some(tag.host);
        out.msg = tag.msg;
        return if tag.kernel { inner_dmesg(out) } else { out };
    }
    out.msg = rest;
    out
}

/// Cheap test for `host kernel:` at the start of `s` (before the full [`host_tag`] parse).
fn kernel_tag_follows(s: &[u8]) -> bool {
    memchr::memchr(b' ', &s[..s.len().min(256)])
        .is_some_and(|sp| s[sp + 1..].starts_with(b"kernel"))
}

/// syslog `kernel: [  139.201253] msg`: the kernel's own stamp inside the message.
fn inner_dmesg(mut out: Split<'_>) -> Split<'_> {
    if out.msg.first() == Some(&b'[')
        && let Some((stamp, rest)) = bracket_stamp(out.msg)
        && stamp.monotonic_s.is_some()
    {
        out.stamp.monotonic_s = stamp.monotonic_s;
        out.msg = skip_caller(rest);
    }
    out
}

fn skip_one_space(s: &[u8]) -> &[u8] {
    s.strip_prefix(b" ").unwrap_or(s)
}

/// The parts of `host tag: msg`.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Tag<'a> {
    /// The tag is the kernel's (`kernel:`).
    kernel: bool,
    host: &'a [u8],
    msg: &'a [u8],
}

/// `host tag: msg` → its parts. Host: no spaces; tag: no spaces, may end in `[pid]`.
///
/// Once a stream is tagged this runs for every line, so each part is one short scan: the
/// host ends at the first space (a colon before it: no host), the tag at the first colon
/// (a space before it: no tag).
fn host_tag(s: &[u8]) -> Option<Tag<'_>> {
    let sp = s[..s.len().min(256)]
        .iter()
        .position(|b| *b == b' ' || *b == b':')
        .filter(|i| s[*i] == b' ')?;
    if sp == 0 {
        return None;
    }
    let rest = &s[sp + 1..];
    let colon = rest[..rest.len().min(72)]
        .iter()
        .position(|b| *b == b':' || *b == b' ')
        .filter(|i| rest[*i] == b':')?;
    let tag = &rest[..colon];
    if tag.is_empty() || tag.len() > 64 {
        return None;
    }
    let after = &rest[colon + 1..];
    if !(after.is_empty() || after[0] == b' ') {
        return None;
    }
    let name = match memchr::memchr(b'[', tag) {
        Some(i) if tag.ends_with(b"]") => &tag[..i],
        Some(_) => return None,
        None => tag,
    };
    if name.is_empty() {
        return None;
    }
    Some(Tag {
        kernel: name == b"kernel",
        host: &s[..sp],
        msg: skip_one_space(after),
    })
}

/// Leading decimal seconds `123.456789` (digits, dot, digits). Returns (value, length).
/// At most 12 integer and 9 fraction digits; one pass (this runs for every line).
fn seconds(s: &[u8]) -> Option<(f64, usize)> {
    let mut whole: u64 = 0;
    let mut int = 0;
    while let Some(&b) = s.get(int)
        && b.is_ascii_digit()
    {
        if int == 12 {
            return None;
        }
        whole = whole * 10 + u64::from(b - b'0');
        int += 1;
    }
    if int == 0 || s.get(int) != Some(&b'.') {
        return None;
    }
    let mut part: u64 = 0;
    let mut frac = 0;
    while let Some(&b) = s.get(int + 1 + frac)
        && b.is_ascii_digit()
    {
        if frac == 9 {
            return None;
        }
        part = part * 10 + u64::from(b - b'0');
        frac += 1;
    }
    if frac == 0 {
        return None;
    }
    // 10^frac, exact for frac <= 9 (the same values as 10f64.powi, without the call).
    const POW10: [f64; 10] = [1e0, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9];
    const POW10_INT: [u64; 10] = [
        1,
        10,
        100,
        1_000,
        10_000,
        100_000,
        1_000_000,
        10_000_000,
        100_000_000,
        1_000_000_000,
    ];
    // The digits as one integer over a power of ten: both exact in an f64 (below 2^53), the
    // one division rounds once, to the f64 nearest the printed decimal, which prints back as
    // it was written (7.382101, not 7.3821010000000005 as whole + part / 10^frac gives).
    let value = match whole
        .checked_mul(POW10_INT[frac])
        .and_then(|w| w.checked_add(part))
        .filter(|n| *n < 1 << 53)
    {
        Some(n) => n as f64 / POW10[frac],
        None => whole as f64 + part as f64 / POW10[frac],
    };
    Some((value, int + 1 + frac))
}

/// `[  123.456789]`, `[  123.456789 <    0.000012>]` (short-delta), `[Thu May 14 23:17:24 2020]`.
fn bracket_stamp(line: &[u8]) -> Option<(Stamp<'_>, &[u8])> {
    if line.first() != Some(&b'[') {
        return None;
    }
    let close = memchr::memchr(b']', &line[..line.len().min(48)])?;
    let inner = &line[1..close];
    let rest = skip_one_space(&line[close + 1..]);
    let t = trim_start(inner);
    if let Some((secs, n)) = seconds(t) {
        let tail = &t[n..];
        let ok = tail.is_empty() || (tail.starts_with(b" <") && tail.ends_with(b">"));
        if ok {
            let raw = &inner[inner.len() - t.len()..][..n];
            return Some((
                Stamp {
                    raw: Some(raw),
                    monotonic_s: Some(secs),
                    wallclock: None,
                },
                rest,
            ));
        }
        return None;
    }
    // dmesg -T: "Www Mmm dd hh:mm:ss yyyy"
    if inner.len() == 24
        && DAYS.iter().any(|d| inner.starts_with(&d[..]))
        && inner[3] == b' '
        && month_day_time(&inner[4..]).is_some()
    {
        return Some((
            Stamp {
                raw: Some(inner),
                monotonic_s: None,
                wallclock: Some(inner),
            },
            rest,
        ));
    }
    None
}

/// `Mmm dd hh:mm:ss` → length consumed (15), without the trailing part.
fn month_day_time(s: &[u8]) -> Option<usize> {
    if s.len() < 15 || !MONTHS.iter().any(|m| s.starts_with(&m[..])) || s[3] != b' ' {
        return None;
    }
    let d = &s[4..6];
    let day_ok = (d[0] == b' ' || d[0].is_ascii_digit()) && d[1].is_ascii_digit();
    if !day_ok || s[6] != b' ' || !hms(&s[7..15]) {
        return None;
    }
    Some(15)
}

fn hms(s: &[u8]) -> bool {
    s.len() >= 8
        && s[0].is_ascii_digit()
        && s[1].is_ascii_digit()
        && s[2] == b':'
        && s[3].is_ascii_digit()
        && s[4].is_ascii_digit()
        && s[5] == b':'
        && s[6].is_ascii_digit()
        && s[7].is_ascii_digit()
}

/// Syslog / journal `short` and `short-precise`: `Mmm dd hh:mm:ss[.frac] ` → the rest.
fn syslog_stamp(line: &[u8]) -> Option<&[u8]> {
    let mut n = month_day_time(line)?;
    if line.get(n) == Some(&b'.') {
        n += 1 + line[n + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
    }
    if line.get(n) != Some(&b' ') {
        return None;
    }
    Some(&line[n + 1..])
}

/// ISO 8601 `2024-01-02T03:04:05[.,frac][Z|±hh[:]mm] ` → (stamp, rest).
fn iso_stamp(line: &[u8]) -> Option<(&[u8], &[u8])> {
    if line.len() < 20 {
        return None;
    }
    let date = &line[..10];
    let date_ok = date.iter().enumerate().all(|(i, b)| {
        if i == 4 || i == 7 {
            *b == b'-'
        } else {
            b.is_ascii_digit()
        }
    });
    if !date_ok || !(line[10] == b'T' || line[10] == b' ') || !hms(&line[11..19]) {
        return None;
    }
    let mut n = 19;
    if matches!(line.get(n), Some(b'.') | Some(b',')) {
        n += 1 + line[n + 1..]
            .iter()
            .take_while(|b| b.is_ascii_digit())
            .count();
    }
    match line.get(n) {
        Some(b'Z') => n += 1,
        Some(b'+') | Some(b'-') => {
            let tz = line[n + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit() || **b == b':')
                .count();
            n += 1 + tz;
        }
        _ => {}
    }
    if line.get(n) != Some(&b' ') {
        return None;
    }
    Some((&line[..n], &line[n + 1..]))
}

/// journalctl `short-full`: `Www yyyy-mm-dd hh:mm:ss TZ ` → (stamp, rest).
fn full_stamp(line: &[u8]) -> Option<(&[u8], &[u8])> {
    if line.len() < 25 || !DAYS.iter().any(|d| line.starts_with(&d[..])) || line[3] != b' ' {
        return None;
    }
    let (_, after) = iso_stamp(&line[4..])?;
    let tz_end = memchr::memchr(b' ', after)?;
    let consumed = line.len() - after.len() + tz_end;
    Some((&line[..consumed], &after[tz_end + 1..]))
}

/// `dmesg -x`: `kern  :info  : msg` → (is kernel facility, rest).
fn dmesg_x(line: &[u8]) -> Option<(bool, &[u8])> {
    let c1 = memchr::memchr(b':', &line[..line.len().min(10)])?;
    let fac = trim_end(&line[..c1]);
    const FACS: [&[u8]; 12] = [
        b"kern",
        b"user",
        b"mail",
        b"daemon",
        b"auth",
        b"syslog",
        b"lpr",
        b"news",
        b"uucp",
        b"cron",
        b"authpriv",
        b"ftp",
    ];
    if !FACS.contains(&fac) {
        return None;
    }
    let rest = &line[c1 + 1..];
    let c2 = memchr::memchr(b':', &rest[..rest.len().min(10)])?;
    let lvl = trim_end(&rest[..c2]);
    const LVLS: [&[u8]; 8] = [
        b"emerg", b"alert", b"crit", b"err", b"warn", b"notice", b"info", b"debug",
    ];
    if !LVLS.contains(&lvl) {
        return None;
    }
    Some((fac == b"kern", skip_one_space(&rest[c2 + 1..])))
}

/// Raw /dev/kmsg: `pri,seq,usec,flags[,more];msg`.
fn kmsg_record(line: &[u8]) -> Option<Split<'_>> {
    let semi = memchr::memchr(b';', &line[..line.len().min(96)])?;
    let head = &line[..semi];
    let mut parts = head.split(|b| *b == b',');
    let pri = num(parts.next()?)?;
    let _seq = num(parts.next()?)?;
    let usec_txt = parts.next()?;
    let usec = num(usec_txt)?;
    let flags = parts.next()?;
    if flags.len() > 1 || parts.any(|p| !p.contains(&b'=')) {
        return None;
    }
    Some(Split {
        msg: &line[semi + 1..],
        stamp: Stamp {
            raw: Some(usec_txt),
            monotonic_s: Some(usec as f64 / 1e6),
            wallclock: None,
        },
        kernel: pri >> 3 == 0,
        has_prefix: true,
        kmsg: true,
        tagged: false,
        host: None,
    })
}

/// Decodes the `\xNN` escapes of a /dev/kmsg record's text (the kernel escapes every byte
/// below a space, from 127 up, and the backslash itself) into `out`. True when the text holds
/// a newline (`\x0a`: a message of several lines, as Mem-Info's counters are printed).
pub fn kmsg_unescape(msg: &[u8], out: &mut Vec<u8>) -> bool {
    let hex = |b: u8| match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    };
    let mut lines = false;
    let mut i = 0;
    while let Some(p) = memchr::memchr(b'\\', &msg[i..]) {
        let at = i + p;
        out.extend_from_slice(&msg[i..at]);
        let code = match msg.get(at + 1..at + 4) {
            Some([b'x', h, l]) => hex(*h).zip(hex(*l)).map(|(h, l)| h << 4 | l),
            _ => None,
        };
        match code {
            Some(c) => {
                lines |= c == b'\n';
                out.push(c);
                i = at + 4;
            }
            None => {
                out.push(b'\\');
                i = at + 1;
            }
        }
    }
    out.extend_from_slice(&msg[i..]);
    lines
}

fn num(s: &[u8]) -> Option<u64> {
    if s.is_empty() || s.len() > 20 || !s.iter().all(u8::is_ascii_digit) {
        return None;
    }
    s.iter().try_fold(0u64, |v, &b| {
        v.checked_mul(10)?.checked_add(u64::from(b - b'0'))
    })
}

/// Skips a printk caller field `[T123] ` / `[ C1] ` after a dmesg stamp.
fn skip_caller(s: &[u8]) -> &[u8] {
    if s.first() != Some(&b'[') {
        return s;
    }
    let Some(close) = memchr::memchr(b']', &s[..s.len().min(16)]) else {
        return s;
    };
    let inner = trim_start(&s[1..close]);
    if inner.len() >= 2
        && (inner[0] == b'T' || inner[0] == b'C')
        && inner[1..].iter().all(u8::is_ascii_digit)
    {
        return skip_one_space(&s[close + 1..]);
    }
    s
}

pub(crate) fn trim_start(s: &[u8]) -> &[u8] {
    let n = s.iter().take_while(|b| b.is_ascii_whitespace()).count();
    &s[n..]
}

pub(crate) fn trim_end(s: &[u8]) -> &[u8] {
    let n = s
        .iter()
        .rev()
        .take_while(|b| b.is_ascii_whitespace())
        .count();
    &s[..s.len() - n]
}

#[cfg(test)]
mod tests {
    use super::*;

    fn msg(line: &str) -> (String, bool, Option<f64>, Option<String>) {
        let s = split(line.as_bytes(), false);
        (
            String::from_utf8_lossy(s.msg).into_owned(),
            s.kernel,
            s.stamp.monotonic_s,
            s.stamp
                .wallclock
                .map(|w| String::from_utf8_lossy(w).into_owned()),
        )
    }

    #[test]
    fn formats() {
        assert_eq!(msg("[  123.456789] hello").0, "hello");
        assert_eq!(msg("[  123.456789] hello").2, Some(123.456789));
        assert_eq!(
            msg("[  246.610518][ T1778] random invoked").0,
            "random invoked"
        );
        assert_eq!(msg("[Thu May 14 23:17:24 2020] python3 x").0, "python3 x");
        assert_eq!(
            msg("[Thu May 14 23:17:24 2020] x").3.as_deref(),
            Some("Thu May 14 23:17:24 2020")
        );
        assert_eq!(
            msg("2024-02-20T19:15:36,123456+00:00 oom-kill:x").0,
            "oom-kill:x"
        );
        let s = msg("May 19 18:14:43 aks-np kernel: [  139.201253] bash invoked");
        assert_eq!(
            (s.0.as_str(), s.1, s.2),
            ("bash invoked", true, Some(139.201253))
        );
        let s = msg("Oct 12 19:00:20 aks-node containerd[1234]: Memory cgroup out of memory");
        assert!(!s.1);
        let s = msg("Aug  6 18:26:50 FileServer kernel: Killed process 1 (x)");
        assert_eq!((s.0.as_str(), s.1), ("Killed process 1 (x)", true));
        let s = msg("4,19685342,241227987454,-,caller=T12845;dumpsys invoked");
        assert_eq!(
            (s.0.as_str(), s.1, s.2),
            ("dumpsys invoked", true, Some(241227.987454))
        );
        assert!(!msg("12,5,100,-;vmh: hello").1);
        assert_eq!(msg("[  123.456789] host kernel: hi").0, "hi");
        assert_eq!(split(b"[  123.456789] host kernel: hi", true).msg, b"hi");
        assert!(!split(b"[  123.456789] host systemd[1]: hi", true).kernel);
        assert_eq!(msg("2024-01-02T03:04:05+0000 host kernel: hi").0, "hi");
        assert_eq!(msg("Mon 2024-01-02 03:04:05 UTC host kernel: hi").0, "hi");
        assert_eq!(msg("1700000000.123456 host kernel: hi").0, "hi");
        assert_eq!(msg("5193605.506728] Task in /x").0, "Task in /x");
        assert_eq!(msg("kern  :info  : [  1.5] hi").0, "hi");
        // A message that starts with a closing bracket (no stamp): taken as it is.
        assert_eq!(
            msg("kern  :warn  : ]Out of memory: Killed process 5 (a)").0,
            "]Out of memory: Killed process 5 (a)"
        );
        assert!(bracket_stamp(b"]x").is_none() && bracket_stamp(b"").is_none());
        assert!(!msg("user  :notice: hi").1);
        assert_eq!(msg("no prefix at all").0, "no prefix at all");
        assert!(!split(b"no prefix", false).has_prefix);
        assert_eq!(msg("Dec  8 17:51:31.123456 h kernel: x").0, "x");
    }

    /// The machine a line names: syslog's and the journal's short formats; dmesg names none.
    #[test]
    fn the_host_of_a_line() {
        for (line, host) in [
            ("Nov 30 18:00:01 web-1 kernel: [  1.0] x", Some("web-1")),
            (
                "Nov 30 18:00:01.123456 db.example kernel: x",
                Some("db.example"),
            ),
            ("2026-11-30T18:00:01+0000 h2 kernel: x", Some("h2")),
            ("Mon 2026-11-30 18:00:01 UTC h3 kernel: x", Some("h3")),
            ("1764525601.123456 h4 kernel: x", Some("h4")),
            ("[ 1234.500000] h5 kernel: x", Some("h5")),
            ("Nov 30 18:00:01 h6 systemd[1]: x", Some("h6")),
            ("[ 1234.500000] x", None),
            ("6,1,2,-;x", None),
            ("x", None),
        ] {
            let s = split(line.as_bytes(), false);
            assert_eq!(s.host, host.map(str::as_bytes), "{line}");
        }
    }

    #[test]
    fn host_tag_bounds() {
        let parts = |s: &'static [u8]| host_tag(s).map(|t| (t.kernel, t.host, t.msg));
        assert_eq!(parts(b"h kernel: x"), Some((true, &b"h"[..], &b"x"[..])));
        assert_eq!(
            parts(b"web-1.example systemd[1]: x"),
            Some((false, &b"web-1.example"[..], &b"x"[..]))
        );
        assert_eq!(parts(b"h kernel:"), Some((true, &b"h"[..], &b""[..])));
        for bad in [
            &b"audit: type=1400 x"[..], // a colon before the first space: no host
            b" kernel: x",              // empty host
            b"h ker nel: x",            // a space before the colon: no tag
            b"h : x",                   // empty tag
            b"h kernel:x",              // no space after the colon
            b"h [1]: x",                // empty name
            b"h sd[1: x",               // '[' without a closing ']'
            b"h kernel",                // no colon
        ] {
            assert_eq!(host_tag(bad), None, "{}", String::from_utf8_lossy(bad));
        }
        // The tag's colon within 72 bytes of the host, the host's space within 256.
        let long_tag = format!("h {}: x", "t".repeat(71));
        assert_eq!(host_tag(long_tag.as_bytes()), None);
        let long_host = format!("{} kernel: x", "h".repeat(256));
        assert_eq!(host_tag(long_host.as_bytes()), None);
        let ok_host = format!("{} kernel: x", "h".repeat(255));
        let ok = host_tag(ok_host.as_bytes()).unwrap();
        assert_eq!((ok.kernel, ok.host.len(), ok.msg), (true, 255, &b"x"[..]));
    }

    /// `dmesg -r` and `/proc/kmsg` put the syslog priority first: taken off; facility 0 is
    /// the kernel's.
    #[test]
    fn priority_prefixes() {
        let s = split(b"<4>[    7.382101] hog invoked oom-killer: x", false);
        assert_eq!(
            (s.msg, s.kernel, s.has_prefix, s.stamp.monotonic_s),
            (
                &b"hog invoked oom-killer: x"[..],
                true,
                true,
                Some(7.382101)
            )
        );
        let s = split(b"<6>Out of memory: Killed process 5 (a)", false);
        assert_eq!(
            (s.msg, s.kernel),
            (&b"Out of memory: Killed process 5 (a)"[..], true)
        );
        let s = split(
            b"<12>[    8.0] vmh: Out of memory: Killed process 5 (a)",
            false,
        );
        assert!(!s.kernel);
        let s = split(b"<14>Out of memory: Killed process 5 (a)", false);
        assert!(!s.kernel);
        // Not a priority: taken as it is.
        for text in [&b"<trim>"[..], b"<TASK>", b"<1234>x", b"<>x", b"<4", b"<"] {
            let s = split(text, false);
            assert_eq!(
                (s.msg, s.has_prefix),
                (text, false),
                "{}",
                String::from_utf8_lossy(text)
            );
        }
    }

    #[test]
    fn kmsg_escapes_are_decoded() {
        let mut out = Vec::new();
        assert!(kmsg_unescape(b"a:1\\x0a b:2", &mut out));
        assert_eq!(out, b"a:1\n b:2");
        out.clear();
        assert!(!kmsg_unescape(
            b"(\\xe3\\x83\\x86st) \\x5c \\xZZ \\x4",
            &mut out
        ));
        assert_eq!(out, "(\u{30c6}st) \\ \\xZZ \\x4".as_bytes());
    }

    /// Seconds since boot are the f64 nearest the printed decimal: they print back as the
    /// log wrote them (JSON's `monotonic_s`), with no float noise.
    #[test]
    fn seconds_are_read_exactly() {
        for text in [
            "7.382101",
            "139.201253",
            "2858609.598568",
            "0.1",
            "5193605.506728",
            "1.000001",
        ] {
            let (v, _) = seconds(text.as_bytes()).unwrap();
            assert_eq!(v, text.parse::<f64>().unwrap(), "{text}");
            assert_eq!(v.to_string(), text);
            assert_eq!(serde_json::to_string(&v).unwrap(), text);
        }
        let s = split(b"[    7.382101] hog invoked oom-killer", false);
        assert_eq!(
            s.stamp.monotonic_s.map(|m| m.to_string()).as_deref(),
            Some("7.382101")
        );
    }

    #[test]
    fn seconds_bounds() {
        assert_eq!(seconds(b"123.456789]"), Some((123.456789, 10)));
        assert_eq!(seconds(b"0.5"), Some((0.5, 3)));
        assert_eq!(
            seconds(b"999999999999.999999999 "),
            Some((999999999999.0 + 999999999.0 / 1e9, 22))
        );
        for bad in [
            &b"1234567890123.5"[..],
            b"1.1234567890",
            b".5",
            b"5.",
            b"5",
            b"x5.5",
            b"",
        ] {
            assert_eq!(seconds(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
