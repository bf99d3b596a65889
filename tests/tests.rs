//! One integration-test binary; each module tests one feature end to end.
#![allow(
    clippy::unwrap_used,
    reason = "test code: a failed unwrap is a failed test, with its location"
)]
mod act_kill;
mod bounded_inputs;
mod cli_assets;
mod cli_basics;
mod cli_voice;
mod daemon_start;
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
mod guard_scale;
mod hook_adj;
mod hostile_names;
mod idle_floor;
mod kill_path;
mod link_order;
mod machine_marks;
mod memcg_hold;
mod metrics_slowloris;
mod near_rescans;
mod order;
mod predict;
mod predict_live;
mod protect;
mod record_blocking;
mod run_cgroup;
mod sd_notify_blocking;
mod task_iter;
mod util;
mod vm_debian;
mod vm_scenarios;
