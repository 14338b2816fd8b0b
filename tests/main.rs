//! The integration tests, one binary (one link on two cores instead of one per file). Each
//! module runs against the real services that `scripts/services.sh` starts.

mod common;

mod config_errors;
mod differential;
mod exposition;
mod failures;
mod pgbouncer;
mod postgres;
mod rules;
mod secrets;
