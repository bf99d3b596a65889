//! One integration-test binary; each module tests one feature end to end.
mod util;

mod cli_basics;
mod doctor;
mod drill;
mod protect;
mod run_cgroup;
mod vm_scenarios;
