//! The integration tests, one binary (one link on two cores instead of one per file). Each
//! module runs against the real services that `scripts/services.sh` starts.

mod common;

mod advisor;
mod benchmark;
mod config_errors;
mod exposition;
mod failures;
mod pgbouncer;
mod pools;
mod postgres;
mod report;
mod rules;
mod secrets;
