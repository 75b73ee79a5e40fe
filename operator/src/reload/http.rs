//! The reloader's two HTTP ends: the reload trigger it sends to the data-plane process on
//! loopback, and the `/status` it serves to the operator.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::extract::State;
use axum::response::IntoResponse;
use axum::routing::get;
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper_util::rt::TokioIo;

use crate::bundle::ReloaderStatus;

/// How long one reload request may take.
const TRIGGER_TIMEOUT: Duration = Duration::from_secs(10);

/// The method the reload endpoint wants: fluentd's RPC answers any method, fluent-bit's
/// reload takes POST (or PUT) with a JSON body.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Method {
    Get,
    Post,
}

/// One HTTP/1.1 request to `url` (`http://host:port/path`); the status and the body.
pub async fn request(url: &str, method: Method, timeout: Duration) -> Result<(u16, Bytes), String> {
    let uri: hyper::Uri = url.parse().map_err(|e| format!("{url}: {e}"))?;
    let authority = uri
        .authority()
        .ok_or_else(|| format!("{url}: no host"))?
        .clone();
    let exchange = async {
        let stream = tokio::net::TcpStream::connect(authority.as_str())
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        tokio::spawn(connection);
        let (method, body) = match method {
            Method::Get => (hyper::Method::GET, Bytes::new()),
            Method::Post => (hyper::Method::POST, Bytes::from_static(b"{}")),
        };
        let request = hyper::Request::builder()
            .method(method)
            .uri(uri.path_and_query().map(|p| p.as_str()).unwrap_or("/"))
            .header(hyper::header::HOST, authority.as_str())
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(body))
            .map_err(|e| format!("{url}: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("{url}: {e}"))?;
        let status = response.status().as_u16();
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(|e| format!("{url}: {e}"))?
            .to_bytes();
        Ok((status, body))
    };
    tokio::time::timeout(timeout, exchange)
        .await
        .map_err(|_| format!("{url}: no answer within {timeout:?}"))?
}

/// Tells the process to reload; any 2xx is success.
pub async fn trigger(url: &str, method: Method) -> Result<(), String> {
    let (status, body) = request(url, method, TRIGGER_TIMEOUT).await?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(format!(
            "{url} answered {status}: {}",
            String::from_utf8_lossy(&body).trim()
        ))
    }
}

type Shared = Arc<Mutex<ReloaderStatus>>;

async fn status(State(shared): State<Shared>) -> impl IntoResponse {
    let status = shared.lock().unwrap_or_else(|e| e.into_inner()).clone();
    axum::Json(status)
}

/// Starts draining (the operator, before it scales the aggregator in); answers the status.
async fn drain(State(shared): State<Shared>) -> impl IntoResponse {
    let status = {
        let mut status = shared.lock().unwrap_or_else(|e| e.into_inner());
        status.draining = true;
        status.clone()
    };
    axum::Json(status)
}

/// Not ready while draining, so the pod leaves the Service's endpoints and agents reconnect
/// elsewhere.
async fn healthz(State(shared): State<Shared>) -> impl IntoResponse {
    if shared.lock().unwrap_or_else(|e| e.into_inner()).draining {
        (hyper::StatusCode::SERVICE_UNAVAILABLE, "draining")
    } else {
        (hyper::StatusCode::OK, "ok")
    }
}

/// Serves `GET /status`, `POST /drain` and `GET /healthz` on `listener` until `shutdown`.
pub async fn serve_status(
    listener: tokio::net::TcpListener,
    shared: Shared,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    let router = Router::new()
        .route("/status", get(status))
        .route("/drain", axum::routing::post(drain))
        .route("/healthz", get(healthz))
        .with_state(shared);
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
