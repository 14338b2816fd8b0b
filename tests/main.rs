//! The integration tests, one binary (one link on two cores instead of one per file). Each
//! module runs against the real services that `scripts/services.sh` starts.

// Test and bench code: an unwrap that fails is the failure report.
#![allow(clippy::unwrap_used)]

mod common;

mod advisor;
mod alertmanager;
mod api;
mod benchmark;
mod config_errors;
mod dashboards;
mod demo;
mod differential;
// The agent reads DuckDB files only when built with its `duckdb` feature (the default).
#[cfg(feature = "duckdb")]
mod duckdb;
mod exposition;
mod failures;
mod false_alarms;
mod fuzz;
mod inapp;
mod listener;
mod mdm;
mod otlp;
mod otlp_receiver;
mod pgbouncer;
mod pools;
mod postgres;
mod prometheus_scrape;
mod report;
mod rule_scenarios;
mod rules;
mod secrets;
mod sqlite;
mod tls_targets;
