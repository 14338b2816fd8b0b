//! Ways out of the agent: the Prometheus exposition and the HTTP server that serves it with the
//! JSON API, and the OTLP push.

pub mod http;
pub mod otlp;
pub mod prometheus;
