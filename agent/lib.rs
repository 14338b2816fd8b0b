//! poolwatch: watches database connection pools and tells operators, before their users notice,
//! when a pool is too small, leaking, starving or misconfigured — and what to change.
//!
//! One flow: `sources` sample a target into the one pool `model`; the `store` keeps a window of
//! samples per pool and derives rates; `health` judges each pool; `exporters` serve it all.

pub mod config;
pub mod model;
pub mod secret;
pub mod sources;
