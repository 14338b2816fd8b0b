//! The two OTLP transports: http/protobuf (a POST of the encoded request, hyper) and gRPC
//! (`MetricsService/Export`, tonic). Each send is one attempt: the caller bounds it in time, and
//! a failed export is not retried, because the next one carries the newer cumulative values.

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::client::legacy::Client as HyperClient;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_client::MetricsServiceClient;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use prost::Message;

use crate::config::OtlpConfig;
use crate::config::otlp::{Headers, Protocol};

/// What the collector says back to an export it took: points it rejected, and why.
#[derive(Debug, Default, PartialEq)]
pub struct Accepted {
    pub rejected_points: i64,
    pub message: String,
}

/// Why an export did not reach the collector, or was not taken.
#[derive(Debug, thiserror::Error)]
pub enum SendError {
    /// No connection, or it broke before an answer.
    #[error("collector unreachable: {0}")]
    Unreachable(String),
    /// No answer within the export timeout.
    #[error("no answer within the export timeout")]
    Timeout,
    /// The collector answered with an error.
    #[error("collector refused the export: {0}")]
    Rejected(String),
}

impl SendError {
    /// The `reason` label of the failure counter.
    pub fn reason(&self) -> &'static str {
        match self {
            SendError::Unreachable(_) => "unreachable",
            SendError::Timeout => "timeout",
            SendError::Rejected(_) => "rejected",
        }
    }

    pub const REASONS: [&'static str; 3] = ["unreachable", "timeout", "rejected"];
}

/// The most of an answer body read: a partial-success message, never the collector's pages.
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// A client of one collector.
pub enum Client {
    Http {
        // Boxed: hyper's client is several times the size of tonic's channel.
        client: Box<HyperClient<HttpConnector, Full<Bytes>>>,
        endpoint: http::Uri,
        headers: Headers,
    },
    Grpc {
        client: MetricsServiceClient<tonic::transport::Channel>,
        headers: Headers,
    },
}

fn user_agent() -> String {
    format!("poolwatch/{}", env!("CARGO_PKG_VERSION"))
}

impl Client {
    /// Connects lazily, on the first send: a collector that is down now is not an error yet.
    /// Must be called inside a tokio runtime.
    pub fn new(config: &OtlpConfig) -> Client {
        match config.protocol {
            Protocol::HttpProtobuf => {
                let mut connector = HttpConnector::new();
                connector.set_connect_timeout(Some(config.timeout));
                connector.set_nodelay(true);
                let client = HyperClient::builder(TokioExecutor::new())
                    // One request at a time: one idle connection is all a push needs.
                    .pool_max_idle_per_host(1)
                    .build(connector);
                Client::Http {
                    client: Box::new(client),
                    endpoint: config.endpoint.clone(),
                    headers: config.headers.clone(),
                }
            }
            Protocol::Grpc => {
                let mut endpoint = tonic::transport::Endpoint::from(config.endpoint.clone())
                    .connect_timeout(config.timeout)
                    .timeout(config.timeout);
                if let Ok(with_agent) = endpoint.clone().user_agent(user_agent()) {
                    endpoint = with_agent;
                }
                Client::Grpc {
                    client: MetricsServiceClient::new(endpoint.connect_lazy()),
                    headers: config.headers.clone(),
                }
            }
        }
    }

    /// Sends one request and waits for the answer (unbounded: the caller puts a deadline on it).
    pub async fn send(
        &mut self,
        request: ExportMetricsServiceRequest,
    ) -> Result<Accepted, SendError> {
        match self {
            Client::Http {
                client,
                endpoint,
                headers,
            } => send_http(client, endpoint, headers, request).await,
            Client::Grpc { client, headers } => send_grpc(client, headers, request).await,
        }
    }
}

async fn send_http(
    client: &HyperClient<HttpConnector, Full<Bytes>>,
    endpoint: &http::Uri,
    headers: &Headers,
    request: ExportMetricsServiceRequest,
) -> Result<Accepted, SendError> {
    let body = Bytes::from(request.encode_to_vec());
    drop(request);
    // The messages took about four times what their encoding does; a collector that does not
    // answer keeps this send pending for the whole timeout, so they go back to the kernel now.
    crate::memory::release_freed();
    let mut builder = http::Request::post(endpoint.clone())
        .header(http::header::CONTENT_TYPE, "application/x-protobuf")
        .header(http::header::USER_AGENT, user_agent());
    for (name, value) in headers.iter() {
        builder = builder.header(name, value);
    }
    let request = builder
        .body(Full::new(body))
        .map_err(|e| SendError::Rejected(format!("cannot build the request: {e}")))?;
    let response = client.request(request).await.map_err(|e| {
        // hyper's error names the cause (refused, reset), never a header.
        SendError::Unreachable(
            std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string),
        )
    })?;
    let status = response.status();
    let body = Limited::new(response.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map(|b| b.to_bytes())
        .unwrap_or_default();
    if !status.is_success() {
        return Err(SendError::Rejected(format!("HTTP {status}")));
    }
    // An empty body is a full success; a body that does not decode is not the collector's
    // business to fail us over.
    let answer = ExportMetricsServiceResponse::decode(body).unwrap_or_default();
    Ok(accepted(answer))
}

async fn send_grpc(
    client: &mut MetricsServiceClient<tonic::transport::Channel>,
    headers: &Headers,
    request: ExportMetricsServiceRequest,
) -> Result<Accepted, SendError> {
    let mut request = tonic::Request::new(request);
    for (name, value) in headers.iter() {
        let key = tonic::metadata::AsciiMetadataKey::from_bytes(name.as_str().as_bytes());
        let value = value
            .to_str()
            .ok()
            .and_then(|v| tonic::metadata::AsciiMetadataValue::try_from(v).ok());
        if let (Ok(key), Some(value)) = (key, value) {
            request.metadata_mut().insert(key, value);
        }
    }
    match client.export(request).await {
        Ok(answer) => Ok(accepted(answer.into_inner())),
        Err(status) => Err(match status.code() {
            tonic::Code::Unavailable => SendError::Unreachable(status.message().to_string()),
            tonic::Code::DeadlineExceeded | tonic::Code::Cancelled => SendError::Timeout,
            code => SendError::Rejected(format!("gRPC {code:?}: {}", status.message())),
        }),
    }
}

fn accepted(answer: ExportMetricsServiceResponse) -> Accepted {
    answer
        .partial_success
        .map(|p| Accepted {
            rejected_points: p.rejected_data_points,
            message: p.error_message,
        })
        .unwrap_or_default()
}
