//! What every listener of the agent does before a request reaches its router: TLS when the web
//! config says so, basic auth, and the configured response headers. [`serve`] takes any axum
//! router (the main endpoints today, an OTLP receiver's tomorrow) and the web config's watch, so
//! a reloaded file applies to the next connection (TLS) and the next request (auth, headers).
//! A connection that does not finish its handshake or its request head in time is dropped; one
//! slow client holds up nobody else.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use super::basic_auth::BasicAuth;
use crate::config::web::WebConfig;

/// The web config every listener follows; a reload sends a new one.
pub type WebConfigs = watch::Receiver<Arc<WebConfig>>;

/// Longest a client may take over its TLS handshake, and then over a request's head.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);
const HEADER_TIMEOUT: Duration = Duration::from_secs(10);

/// Serves `app` on `listener` under the web config until the future is dropped.
pub async fn serve(listener: TcpListener, app: Router, web: WebConfigs) -> io::Result<()> {
    let guard = Arc::new(Guard {
        web: web.clone(),
        auth: BasicAuth::new(),
    });
    let app = app.layer(middleware::from_fn_with_state(guard, guard_request));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                // Out of file descriptors and the like: back off rather than spin.
                tracing::warn!(error = %e, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let tls = web.borrow().tls.clone();
        let app = app.clone();
        tokio::spawn(async move {
            let outcome = match tls {
                None => connection(stream, app).await,
                Some(tls) => handshake(stream, tls, app).await,
            };
            if let Err(why) = outcome {
                tracing::debug!(%peer, "connection ended: {why}");
            }
        });
    }
}

async fn handshake(
    stream: TcpStream,
    tls: Arc<rustls::ServerConfig>,
    app: Router,
) -> Result<(), String> {
    let accepted = tokio::time::timeout(HANDSHAKE_TIMEOUT, TlsAcceptor::from(tls).accept(stream))
        .await
        .map_err(|_| "no TLS handshake in time".to_string())?;
    let stream = accepted.map_err(|e| {
        let problem = crate::tls::rustls_error(&e).and_then(crate::tls::certificate_problem);
        match problem {
            Some(p) => format!("TLS handshake refused: client certificate: {p}"),
            None => format!("TLS handshake failed: {e}"),
        }
    })?;
    connection(stream, app).await
}

async fn connection<S>(stream: S, app: Router) -> Result<(), String>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    hyper::server::conn::http1::Builder::new()
        .timer(TokioTimer::new())
        .header_read_timeout(HEADER_TIMEOUT)
        .serve_connection(TokioIo::new(stream), TowerToHyperService::new(app))
        .await
        .map_err(|e| e.to_string())
}

struct Guard {
    web: WebConfigs,
    auth: BasicAuth,
}

/// Basic auth (unless the config exempts this path), then the configured headers on whatever
/// the answer is, refusals included.
async fn guard_request(State(guard): State<Arc<Guard>>, request: Request, next: Next) -> Response {
    let config = guard.web.borrow().clone();
    let exempt = config.healthz_without_auth && request.uri().path() == "/healthz";
    let open = config.users.is_empty() || exempt;
    let mut response = if open || guard.auth.allows(&config, request.headers()).await {
        next.run(request).await
    } else {
        tracing::debug!(path = %request.uri().path(), "request refused: no valid credentials");
        unauthorized()
    };
    for (name, value) in &config.headers {
        response.headers_mut().insert(name.clone(), value.clone());
    }
    response
}

fn unauthorized() -> Response {
    (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, HeaderValue::from_static("Basic"))],
        "Unauthorized\n",
    )
        .into_response()
}
