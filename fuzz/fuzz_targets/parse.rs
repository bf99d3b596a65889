//! Fuzz target: the kernel-log OOM parser must never panic or hang on any bytes, and the
//! explanation and JSON of whatever it finds must not either.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let events = oomguard::report::parse_bytes(data);
    for ev in &events {
        let _ = oomguard::report::explain::render(ev);
        let _ = oomguard::report::explain::summary_line(ev);
        let _ = serde_json::to_string(ev);
    }
});
