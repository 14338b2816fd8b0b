//! The OTLP receiver: applications push their pools' `db.client.connection.*` metrics here, over
//! HTTP (`POST /v1/metrics`, protobuf or JSON, gzip or not) or gRPC (`MetricsService/Export`).
//! `decode` turns a request body into the protocol's messages (opentelemetry-proto's types),
//! `mapping` says which metric feeds which figure, `table` folds points into pools, and the
//! built-in `otlp` target's source reads that table at every tick like any other source.

pub mod decode;
pub mod grpc;
pub mod http;
pub mod mapping;
pub mod table;

use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use opentelemetry_proto::tonic::collector::metrics::v1::ExportMetricsServiceRequest;

use crate::config::ReceiverConfig;
use crate::model::TargetSample;
use crate::secret::Token;
use crate::telemetry;
pub use table::{Ingested, PoolTable, Refusal};

/// How a request ended, the `outcome` label of `poolwatch_otlp_requests_total`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Every point the receiver reads was taken.
    Accepted,
    /// Some points were refused (partial success).
    Partial,
    /// Every point it would read was refused.
    Refused,
    /// The body could not be decoded.
    Malformed,
    TooLarge,
    UnsupportedType,
    Unauthorized,
}

impl Outcome {
    pub const ALL: [Outcome; 7] = [
        Outcome::Accepted,
        Outcome::Partial,
        Outcome::Refused,
        Outcome::Malformed,
        Outcome::TooLarge,
        Outcome::UnsupportedType,
        Outcome::Unauthorized,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Accepted => "accepted",
            Outcome::Partial => "partial",
            Outcome::Refused => "refused",
            Outcome::Malformed => "malformed",
            Outcome::TooLarge => "too_large",
            Outcome::UnsupportedType => "unsupported_type",
            Outcome::Unauthorized => "unauthorized",
        }
    }

    fn of(ingested: &Ingested) -> Outcome {
        match (ingested.accepted, ingested.refused_count()) {
            (_, 0) => Outcome::Accepted,
            (0, _) => Outcome::Refused,
            _ => Outcome::Partial,
        }
    }
}

/// The receiver shared by its listeners and the otlp source.
#[derive(Debug)]
pub struct Receiver {
    table: Mutex<PoolTable>,
    max_payload_bytes: usize,
    token: Option<Token>,
}

impl Receiver {
    pub fn new(config: &ReceiverConfig) -> Arc<Receiver> {
        telemetry::otlp_receiver_started();
        Arc::new(Receiver {
            table: Mutex::new(PoolTable::new(config.stale_after)),
            max_payload_bytes: config.max_payload_bytes,
            token: config.bearer_token.clone(),
        })
    }

    pub fn max_payload_bytes(&self) -> usize {
        self.max_payload_bytes
    }

    /// Whether a request with this `Authorization` header may export.
    pub fn authorizes(&self, authorization: Option<&[u8]>) -> bool {
        self.token
            .as_ref()
            .is_none_or(|t| t.authorizes(authorization))
    }

    /// Folds a decoded request into the pools. Decoding happens before, outside the lock, so a
    /// request that fails to decode never reaches the table.
    pub fn ingest(&self, request: &ExportMetricsServiceRequest) -> Ingested {
        let unix_now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0.0, |d| d.as_secs_f64());
        let ingested = self
            .table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .ingest(request, Instant::now(), unix_now);
        telemetry::otlp_points(&ingested);
        ingested
    }

    /// The pools now, for the otlp target's source.
    pub fn sample(&self, now: Instant) -> TargetSample {
        self.table
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .sample(now)
    }

    /// Records how a request ended.
    pub fn finished(&self, transport: &'static str, outcome: Outcome) {
        telemetry::otlp_request(transport, outcome.as_str());
    }
}
