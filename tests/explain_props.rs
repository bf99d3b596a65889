//! Property test over damaged input: windows of real reports (the project's fixtures, plus the
//! shared corpus when present) with random mutations
//! (cut, garbage bytes, duplicated, dropped and swapped lines, huge numbers, re-wrapping)
//! never make the parser or the explanation panic, and every victim it reports is a pid
//! that occurs in the input (a line wrapped mid-number is joined again by the parser, so the
//! digits may stand on both sides of a line break). Bounded: a fixed number of cases of
//! bounded size.

use proptest::prelude::*;

use crate::explain_corpus::all_report_logs;

fn corpus_lines() -> Vec<Vec<Vec<u8>>> {
    all_report_logs()
        .iter()
        .map(|p| {
            std::fs::read(p)
                .unwrap()
                .split(|b| *b == b'\n')
                .map(<[u8]>::to_vec)
                .collect()
        })
        .collect()
}

#[derive(Debug, Clone)]
enum Mutation {
    Cut(usize, usize),
    Insert(usize, usize, Vec<u8>),
    Duplicate(usize),
    Drop(usize),
    Swap(usize, usize),
    HugeNumber(usize, usize),
    Wrap(usize, usize),
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), any::<usize>()).prop_map(|(l, p)| Mutation::Cut(l, p)),
        (
            any::<usize>(),
            any::<usize>(),
            proptest::collection::vec(any::<u8>(), 1..12)
        )
            .prop_map(|(l, p, b)| Mutation::Insert(l, p, b)),
        any::<usize>().prop_map(Mutation::Duplicate),
        any::<usize>().prop_map(Mutation::Drop),
        (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Mutation::Swap(a, b)),
        (any::<usize>(), any::<usize>()).prop_map(|(l, p)| Mutation::HugeNumber(l, p)),
        (any::<usize>(), 1usize..120).prop_map(|(l, w)| Mutation::Wrap(l, w)),
    ]
}

fn apply(lines: &mut Vec<Vec<u8>>, m: &Mutation) {
    if lines.is_empty() {
        return;
    }
    let n = lines.len();
    match m {
        Mutation::Cut(l, p) => {
            let line = &mut lines[l % n];
            let at = p % (line.len() + 1);
            line.truncate(at);
        }
        Mutation::Insert(l, p, b) => {
            let line = &mut lines[l % n];
            let at = p % (line.len() + 1);
            line.splice(at..at, b.iter().copied());
        }
        Mutation::Duplicate(l) => {
            let line = lines[l % n].clone();
            lines.insert(l % n, line);
        }
        Mutation::Drop(l) => {
            lines.remove(l % n);
        }
        Mutation::Swap(a, b) => lines.swap(a % n, b % n),
        Mutation::HugeNumber(l, p) => {
            let line = &mut lines[l % n];
            let at = p % (line.len() + 1);
            line.splice(at..at, b"99999999999999999999999".iter().copied());
        }
        Mutation::Wrap(l, w) => {
            let i = l % n;
            if lines[i].len() > *w {
                let rest = lines[i].split_off(*w);
                lines.insert(i + 1, rest);
            }
        }
    }
}

/// The pid's digits occur in the input, or do once line breaks are taken out (a wrapped line
/// that the parser joined again: `Killed process 1` / `5934 (…)` is pid 15934).
fn occurs(text: &[u8], pid: i64) -> bool {
    let digits = pid.to_string();
    if memchr::memmem::find(text, digits.as_bytes()).is_some() {
        return true;
    }
    let joined: Vec<u8> = text.iter().copied().filter(|b| *b != b'\n').collect();
    memchr::memmem::find(&joined, digits.as_bytes()).is_some()
}

/// The case CI's run found: a kill line cut at column 97 (a terminal's edge), right inside the
/// pid. The parser joins the halves without a space; the victim is the whole pid.
/// (A line cut at 78 columns or less is taken for a mail client's word wrap and joined with a
/// space, so a pid cut there reads as its first digits: those still occur in the input.)
#[test]
fn a_kill_line_cut_inside_the_pid_is_joined_again() {
    let text = b"May 15 23:09:30 ubuntu-s-1vcpu-2gb-ams3-01 kernel: [  518.070786] Out of memory: Killed process 15783 (python3) total-vm:11964kB, anon-rss:4288kB, file-rss:3028kB, shmem-rss:0kB\n\
May 15 23:09:30 ubuntu-s-1vcpu-2gb-ams3-01 kernel: [  518.078584] Out of memory: Killed process 1\n\
5934 ((resolved)) total-vm:168424kB, anon-rss:4064kB, file-rss:3584kB, shmem-rss:0kB\n";
    let events = oomguard::report::parse_bytes(text);
    let pids: Vec<i64> = events
        .iter()
        .filter_map(|e| e.victim.as_ref().map(|v| v.pid))
        .collect();
    assert_eq!(pids, [15783, 15934], "events: {events:?}");
    assert!(occurs(text, 15934) && !occurs(text, 15935));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn mutated_corpus_lines_never_break_the_parser(
        file in any::<usize>(),
        start in any::<usize>(),
        len in 1usize..250,
        muts in proptest::collection::vec(mutation(), 0..24),
    ) {
        let corpus = corpus_lines();
        prop_assert!(!corpus.is_empty(), "no report logs (tests/fixtures/oom-reports is missing)");
        let lines = &corpus[file % corpus.len()];
        let s = start % lines.len();
        let mut window: Vec<Vec<u8>> = lines[s..(s + len).min(lines.len())].to_vec();
        for m in &muts {
            apply(&mut window, m);
        }
        let text = window.join(&b'\n');
        let events = oomguard::report::parse_bytes(&text);
        for ev in &events {
            let _ = oomguard::report::explain::render(ev);
            let _ = oomguard::report::explain::summary_line(ev);
            prop_assert!(serde_json::to_string(ev).is_ok());
            if let Some(v) = &ev.victim {
                prop_assert!(occurs(&text, v.pid),
                    "victim pid {} not in the input, not even across a line break", v.pid);
            }
        }
    }
}

/// A report cut off after any of its lines (a log excerpt, a crash or reboot mid-report) is
/// read line by line only for a bounded stretch of unrelated lines after it, never for the
/// rest of the log: each report of the fixtures (and the corpus when present), cut after each
/// of its lines, then unrelated kernel lines. (A report cut inside Mem-Info kept every later
/// line on the slow path, and the next report merged into it.)
#[test]
fn a_report_cut_off_anywhere_is_read_line_by_line_for_a_bounded_stretch() {
    use oomguard::report::lines::LogLines;
    use oomguard::report::parse::Parser;
    // The longest stretch of unrelated lines an open report is kept for (the parser's stale
    // limit before a task dump, 400), with room for a line of the cut report itself.
    const BOUND: usize = 402;
    let unrelated: &[&[u8]] = &[
        b"audit: type=1400 audit(1700000000.123:7): apparmor=\"ALLOWED\" operation=\"open\" pid=9 comm=\"x\"",
        b"EXT4-fs (sda1): mounted filesystem with ordered data mode. Quota mode: none.",
        b"e1000e 0000:00:1f.6 eth0: NIC Link is Up 1000 Mbps Full Duplex, Flow Control: None",
    ];
    let logs = crate::explain_corpus::all_report_logs();
    assert!(!logs.is_empty(), "no report logs to cut");
    let mut cuts = 0;
    for log in &logs {
        let text = std::fs::read(log).unwrap();
        // The report's kernel messages, prefixes removed.
        let mut msgs: Vec<Vec<u8>> = Vec::new();
        let mut lines = LogLines::new(&text[..]);
        while let Some(l) = lines.next_line(false).unwrap() {
            msgs.push(l.msg.to_vec());
        }
        for k in 1..=msgs.len() {
            let mut p = Parser::new();
            for m in &msgs[..k] {
                p.push(m, &Default::default());
            }
            let mut read = 0;
            while p.wants_all_lines() && read < 10 * BOUND {
                p.push(unrelated[read % unrelated.len()], &Default::default());
                read += 1;
            }
            assert!(
                read <= BOUND,
                "{}: cut after message {k} of {} ({:?}), still read line by line after {read} unrelated lines",
                log.display(),
                msgs.len(),
                String::from_utf8_lossy(&msgs[k - 1]),
            );
            cuts += 1;
        }
    }
    assert!(cuts > 0);
}
