//! `--self-profile`: where the vCPU loop's time went, per stage.

use std::fmt::Write as _;

use serde_json::{Value, json};

use crate::trace::stage_times::{STAGES, StageTimes};

/// `--self-profile`: each stage's mean nanoseconds per exit and its share of the exit's time.
pub fn text(p: &StageTimes) -> String {
    let per_exit: f64 = STAGES.iter().map(|(s, ..)| p.per_exit(*s)).sum();
    let share = |ns: f64| if per_exit > 0.0 { ns / per_exit * 100.0 } else { 0.0 };
    let mut out = format!("\nSelf-profile of the vCPU loop ({} exits), mean per exit:\n", p.exits);
    for (stage, _, name) in STAGES {
        let ns = p.per_exit(stage);
        let _ = writeln!(out, "{name:>36} {ns:>10.1} ns {:>6.2}%", share(ns));
    }
    let user = p.userspace_per_exit();
    let _ = writeln!(out, "{:>36} {user:>10.1} ns {:>6.2}%", "kvmscope's userspace in all", share(user));
    out
}

/// The JSON summary's `self_profile` object: exits, and per stage its mean nanoseconds per exit.
pub fn json(p: &StageTimes) -> Value {
    let stages: serde_json::Map<String, Value> =
        STAGES.iter().map(|(s, key, _)| (key.to_string(), json!(p.per_exit(*s)))).collect();
    json!({ "exits": p.exits, "ns_per_exit": stages, "userspace_ns_per_exit": p.userspace_per_exit() })
}
