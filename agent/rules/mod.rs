//! Threshold rules: Prometheus rule-group files evaluated by the agent over its own window of
//! exported series. `files` loads and checks them, `eval` is the PromQL subset, `alerts` the
//! alert states, `template` the annotation templates; `runner` runs promtool-format rule tests
//! (reporting in promtool's words, which `gofmt` writes) and `export` writes the rules back out
//! for Prometheus.

pub mod alerts;
pub mod eval;
pub mod export;
pub mod files;
pub mod gofmt;
pub mod runner;
pub mod template;
pub mod testfile;
