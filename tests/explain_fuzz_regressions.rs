//! Inputs the fuzzer (fuzz/, target `parse`) once crashed on: each must now parse, render
//! and serialise without a panic (debug builds check arithmetic overflow).

#[test]
fn fuzz_crashes_stay_fixed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/explain/fuzz");
    let mut n = 0;
    for e in std::fs::read_dir(dir).expect("fuzz fixtures").flatten() {
        let data = std::fs::read(e.path()).unwrap();
        for ev in oomguard::report::parse_bytes(&data) {
            let _ = oomguard::report::explain::render(&ev);
            let _ = oomguard::report::explain::summary_line(&ev);
            serde_json::to_string(&ev).unwrap();
        }
        n += 1;
    }
    assert!(n >= 1);
}
