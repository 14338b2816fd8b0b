//! OTLP over HTTP: `POST /v1/metrics`, on the agent's own listener and, when configured, on a
//! listener of its own. Checks run cheapest first (token, content type, size) and the body is
//! decoded before anything is folded in, so a bad request changes nothing. Answers follow the
//! OTLP spec: an `ExportMetricsServiceResponse` (with `partial_success` when points were
//! refused) in the request's encoding, or a `google.rpc.Status` with the reason.

use std::sync::Arc;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsPartialSuccess, ExportMetricsServiceResponse,
};
use prost::Message;
use tokio::net::TcpListener;

use super::decode::{self, DecodeError, Encoding};
use super::{Ingested, Outcome, Receiver};

/// The OTLP/HTTP path for metrics.
pub const PATH: &str = "/v1/metrics";

/// `google.rpc.Status`, the body of an OTLP/HTTP error (details are not used).
#[derive(Clone, PartialEq, Message)]
struct RpcStatus {
    #[prost(int32, tag = "1")]
    code: i32,
    #[prost(string, tag = "2")]
    message: String,
}

/// gRPC's INVALID_ARGUMENT, UNAUTHENTICATED and RESOURCE_EXHAUSTED, for the Status body.
const INVALID_ARGUMENT: i32 = 3;
const UNAUTHENTICATED: i32 = 16;
const RESOURCE_EXHAUSTED: i32 = 8;

/// The receiver's route, to merge into a router.
pub fn routes(receiver: Arc<Receiver>) -> Router {
    Router::new()
        .route(PATH, post(export))
        // The size limit is ours, applied with a reason and counted.
        .layer(DefaultBodyLimit::disable())
        .with_state(receiver)
}

/// Serves only `/v1/metrics` on a listener of its own, until the future is dropped.
pub async fn serve(
    listener: TcpListener,
    receiver: Arc<Receiver>,
    web: crate::exporters::listener::WebConfigs,
) -> std::io::Result<()> {
    crate::exporters::listener::serve(listener, routes(receiver), web).await
}

fn header_str(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

async fn export(State(receiver): State<Arc<Receiver>>, headers: HeaderMap, body: Body) -> Response {
    let (outcome, response) = answer(&receiver, &headers, body).await;
    receiver.finished("http", outcome);
    response
}

async fn answer(receiver: &Receiver, headers: &HeaderMap, body: Body) -> (Outcome, Response) {
    let encoding = decode::encoding(header_str(headers, header::CONTENT_TYPE));
    // Errors go back in the request's encoding when it has one we speak.
    let reply = encoding.as_ref().copied().unwrap_or(Encoding::Json);
    let authorization = headers.get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if !receiver.authorizes(authorization) {
        let mut response = status(
            reply,
            StatusCode::UNAUTHORIZED,
            UNAUTHENTICATED,
            "missing or wrong bearer token".into(),
        );
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer"),
        );
        return (Outcome::Unauthorized, response);
    }
    let encoding = match encoding {
        Ok(e) => e,
        Err(error) => return unsupported(error),
    };
    let gzip = match decode::gzipped(header_str(headers, header::CONTENT_ENCODING)) {
        Ok(g) => g,
        Err(error) => return unsupported(error),
    };
    let limit = receiver.max_payload_bytes();
    let declared = header_str(headers, header::CONTENT_LENGTH).and_then(|l| l.parse::<u64>().ok());
    let too_large = || {
        let message = DecodeError::TooLarge { limit }.to_string();
        (
            Outcome::TooLarge,
            status(
                reply,
                StatusCode::PAYLOAD_TOO_LARGE,
                RESOURCE_EXHAUSTED,
                message,
            ),
        )
    };
    if declared.is_some_and(|l| l > limit as u64) {
        return too_large();
    }
    let bytes: Bytes = match axum::body::to_bytes(body, limit).await {
        Ok(b) => b,
        // Past the limit while streaming (or the client went away, and reads nothing).
        Err(_) => return too_large(),
    };
    let request = match decode::decode(&bytes, encoding, gzip, limit) {
        Ok(r) => r,
        Err(DecodeError::TooLarge { .. }) => return too_large(),
        Err(error) => {
            tracing::debug!(%error, "OTLP request refused");
            return (
                Outcome::Malformed,
                status(
                    reply,
                    StatusCode::BAD_REQUEST,
                    INVALID_ARGUMENT,
                    error.to_string(),
                ),
            );
        }
    };
    let ingested = receiver.ingest(&request);
    let outcome = Outcome::of(&ingested);
    if outcome == Outcome::Refused {
        let message = ingested.message();
        tracing::debug!(%message, "OTLP request refused");
        return (
            outcome,
            status(reply, StatusCode::BAD_REQUEST, INVALID_ARGUMENT, message),
        );
    }
    (outcome, success(encoding, &ingested))
}

fn unsupported(error: DecodeError) -> (Outcome, Response) {
    let response = (
        StatusCode::UNSUPPORTED_MEDIA_TYPE,
        [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
        format!("{error}\n"),
    )
        .into_response();
    (Outcome::UnsupportedType, response)
}

/// The response to a request that was (at least partly) taken.
pub fn response_of(ingested: &Ingested) -> ExportMetricsServiceResponse {
    let refused = ingested.refused_count();
    ExportMetricsServiceResponse {
        partial_success: (refused > 0).then(|| ExportMetricsPartialSuccess {
            rejected_data_points: refused as i64,
            error_message: ingested.message(),
        }),
    }
}

fn success(encoding: Encoding, ingested: &Ingested) -> Response {
    let response = response_of(ingested);
    let body = match encoding {
        Encoding::Protobuf => response.encode_to_vec(),
        // OTLP/JSON: lowerCamelCase names, 64-bit integers as strings.
        Encoding::Json => match &response.partial_success {
            Some(p) => serde_json::json!({
                "partialSuccess": {
                    "rejectedDataPoints": p.rejected_data_points.to_string(),
                    "errorMessage": p.error_message,
                }
            }),
            None => serde_json::json!({}),
        }
        .to_string()
        .into_bytes(),
    };
    (
        StatusCode::OK,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}

fn status(encoding: Encoding, http: StatusCode, code: i32, message: String) -> Response {
    let body = match encoding {
        Encoding::Protobuf => RpcStatus { code, message }.encode_to_vec(),
        Encoding::Json => serde_json::json!({ "code": code, "message": message })
            .to_string()
            .into_bytes(),
    };
    (
        http,
        [(header::CONTENT_TYPE, encoding.content_type())],
        body,
    )
        .into_response()
}
