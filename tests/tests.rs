//! One integration-test binary; each module tests one feature end to end.
mod util;

mod cli_basics;
mod doctor;
mod drill;
mod explain_corpus;
mod explain_formats;
mod explain_fuzz_regressions;
mod explain_props;
mod explain_real;
mod fleet_events;
mod fleet_metrics;
mod fleet_notify;
mod fleet_observers;
mod fleet_packaging;
mod fleet_run;
mod fleet_util;
mod predict;
mod predict_live;
mod protect;
mod run_cgroup;
mod vm_debian;
mod vm_scenarios;
