//! Property test over damaged input: windows of real reports (the project's fixtures, plus the
//! shared corpus when present) with random mutations
//! (cut, garbage bytes, duplicated, dropped and swapped lines, huge numbers, re-wrapping)
//! never make the parser or the explanation panic, and every victim it reports is a pid
//! that occurs in the input. Bounded: a fixed number of cases of bounded size.

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
                let digits = v.pid.to_string();
                prop_assert!(memchr::memmem::find(&text, digits.as_bytes()).is_some(),
                    "victim pid {} not in the input", v.pid);
            }
        }
    }
}
