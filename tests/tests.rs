//! One integration-test binary; each module tests one feature end to end.
mod util;

mod cli_basics;
mod explain_corpus;
mod explain_formats;
mod explain_fuzz_regressions;
mod explain_props;
mod explain_real;
