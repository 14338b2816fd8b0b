//! OTLP over gRPC: the collector's `MetricsService/Export` (opentelemetry-proto's tonic server),
//! on its own listener, gzip accepted and sent, messages capped at the receiver's size limit.

use std::sync::Arc;

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{
    ExportMetricsServiceRequest, ExportMetricsServiceResponse,
};
use tokio::net::TcpListener;
use tonic::codec::CompressionEncoding;
use tonic::{Request, Response, Status};

use super::{Outcome, Receiver};

struct Service(Arc<Receiver>);

#[tonic::async_trait]
impl MetricsService for Service {
    async fn export(
        &self,
        request: Request<ExportMetricsServiceRequest>,
    ) -> Result<Response<ExportMetricsServiceResponse>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .map(|v| v.as_bytes());
        if !self.0.authorizes(authorization) {
            self.0.finished("grpc", Outcome::Unauthorized);
            return Err(Status::unauthenticated("missing or wrong bearer token"));
        }
        let ingested = self.0.ingest(request.get_ref());
        let outcome = Outcome::of(&ingested);
        self.0.finished("grpc", outcome);
        if outcome == Outcome::Refused {
            return Err(Status::invalid_argument(ingested.message()));
        }
        Ok(Response::new(super::http::response_of(&ingested)))
    }
}

/// Serves until the future is dropped.
pub async fn serve(
    listener: TcpListener,
    receiver: Arc<Receiver>,
) -> Result<(), tonic::transport::Error> {
    let limit = receiver.max_payload_bytes();
    let service = MetricsServiceServer::new(Service(receiver))
        .accept_compressed(CompressionEncoding::Gzip)
        .send_compressed(CompressionEncoding::Gzip)
        .max_decoding_message_size(limit);
    tonic::transport::Server::builder()
        .add_service(service)
        .serve_with_incoming(tonic::transport::server::TcpIncoming::from(listener))
        .await
}
