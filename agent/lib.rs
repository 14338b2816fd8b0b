//! poolwatch: watches database connection pools and tells operators, before their users notice,
//! when a pool is too small, leaking, starving or misconfigured — and what to change.
//!
//! One flow: `sources` sample a target into the one pool `model`; the `store` keeps a window of
//! samples per pool and derives rates; `health` judges each pool; the `scheduler` runs it all
//! and publishes a `status` snapshot that the `exporters` serve.

pub mod advisor;
pub mod bench;
pub mod cli;
pub mod commands;
pub mod config;
pub mod demo;
pub mod exporters;
pub mod exposition;
pub mod health;
pub mod memory;
pub mod model;
pub mod pools;
pub mod receiver;
pub mod reload;
pub mod rules;
pub mod scheduler;
pub mod secret;
pub mod series;
pub mod sources;
pub mod status;
pub mod store;
pub mod telemetry;
pub mod tls;
