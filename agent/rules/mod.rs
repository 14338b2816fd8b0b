//! Threshold rules: Prometheus rule-group files evaluated by the agent over its own window.

pub mod eval;
