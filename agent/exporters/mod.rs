//! Ways out of the agent: the Prometheus exposition and the HTTP server that serves it with the
//! JSON API, alerts pushed to Alertmanager, the OTLP push, and what every listener puts in
//! front of its router (TLS, basic auth).

pub mod alertmanager;
pub mod basic_auth;
pub mod http;
pub mod listener;
pub mod otlp;
pub mod prometheus;
