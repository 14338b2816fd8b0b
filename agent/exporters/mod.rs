//! Ways out of the agent: the Prometheus exposition and the HTTP server that serves it with the
//! JSON API, and alerts pushed to Alertmanager.

pub mod alertmanager;
pub mod http;
pub mod prometheus;
