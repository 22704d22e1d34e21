//! The HTTP side: `GET /metrics` and `GET /` (a short page linking it), nothing else, hardened
//! for a port others can reach.
//!
//! - Requests: headers at most 8 KiB and 32 of them, read within 5 s; a request with a body is
//!   refused (413), any other method (405) or path (404) too.
//! - Rate: 20 requests a second on average, bursts of 40, for all clients together (429 past
//!   that, with `Retry-After`); at most 32 connections at once (more are closed at once); a
//!   connection lives at most 30 s.
//! - A scrape is a copy of the newest exposition, encoded beforehand by the refresher (see
//!   [`crate::board`]): a slow or stuck client holds one connection's task, never the recorder,
//!   the refresher or other clients.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::{Body, Incoming};
use hyper::header::{self, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::{Semaphore, oneshot};

use crate::board::Board;
use crate::encode::{OPENMETRICS, PROMETHEUS_TEXT};

/// The limits of [`serve`].
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Limits {
    pub max_connections: usize,
    /// Requests per second on average, for all clients together.
    pub rate: f64,
    /// Requests allowed at once above the average.
    pub burst: f64,
    pub header_read_timeout: Duration,
    pub connection_lifetime: Duration,
    pub max_header_bytes: usize,
    pub max_headers: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_connections: 32,
            rate: 20.0,
            burst: 40.0,
            header_read_timeout: Duration::from_secs(5),
            connection_lifetime: Duration::from_secs(30),
            max_header_bytes: 8192,
            max_headers: 32,
        }
    }
}

/// A token bucket shared by every connection.
#[derive(Debug)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

struct State {
    board: Arc<Board>,
    limits: Limits,
    bucket: Mutex<Bucket>,
}

impl State {
    fn allow(&self) -> bool {
        let Ok(mut b) = self.bucket.lock() else {
            return false;
        };
        let now = Instant::now();
        let refill = now.duration_since(b.at).as_secs_f64() * self.limits.rate;
        b.tokens = (b.tokens + refill).min(self.limits.burst);
        b.at = now;
        if b.tokens >= 1.0 {
            b.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

const PAGE: &str = "<!doctype html>\n<html><head><title>memtools</title></head><body>\n<h1>memtools</h1>\n<p>Per-process memory and leak verdicts: <a href=\"/metrics\">/metrics</a></p>\n</body></html>\n";

fn respond(status: StatusCode, content_type: &'static str, body: Bytes) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(body));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn plain(status: StatusCode, text: &'static str) -> Response<Full<Bytes>> {
    respond(
        status,
        "text/plain; charset=utf-8",
        Bytes::from_static(text.as_bytes()),
    )
}

/// Answers one request.
async fn answer(req: Request<Incoming>, state: Arc<State>) -> Response<Full<Bytes>> {
    if !state.allow() {
        let mut r = plain(StatusCode::TOO_MANY_REQUESTS, "too many requests\n");
        r.headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        return r;
    }
    let has_body = req.body().size_hint().upper() != Some(0);
    if has_body {
        return plain(
            StatusCode::PAYLOAD_TOO_LARGE,
            "requests carry no body here\n",
        );
    }
    let path = req.uri().path();
    if path != "/metrics" && path != "/" {
        return plain(StatusCode::NOT_FOUND, "not found: try /metrics\n");
    }
    if req.method() != Method::GET {
        let mut r = plain(StatusCode::METHOD_NOT_ALLOWED, "only GET\n");
        r.headers_mut()
            .insert(header::ALLOW, HeaderValue::from_static("GET"));
        return r;
    }
    if path == "/" {
        return respond(
            StatusCode::OK,
            "text/html; charset=utf-8",
            Bytes::from_static(PAGE.as_bytes()),
        );
    }
    let exposition = state.board.fresh().await;
    let openmetrics = req
        .headers()
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    if openmetrics {
        respond(StatusCode::OK, OPENMETRICS, exposition.openmetrics.clone())
    } else {
        respond(StatusCode::OK, PROMETHEUS_TEXT, exposition.text.clone())
    }
}

/// Serves `board` on `listener` until `stop` fires (or is dropped). Blocks the calling thread,
/// on a runtime of its own.
pub fn serve(
    listener: std::net::TcpListener,
    board: Arc<Board>,
    limits: Limits,
    stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    listener.set_nonblocking(true)?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()?;
    runtime.block_on(accept_loop(listener, board, limits, stop))
}

async fn accept_loop(
    listener: std::net::TcpListener,
    board: Arc<Board>,
    limits: Limits,
    mut stop: oneshot::Receiver<()>,
) -> std::io::Result<()> {
    let listener = tokio::net::TcpListener::from_std(listener)?;
    let state = Arc::new(State {
        board,
        limits,
        bucket: Mutex::new(Bucket {
            tokens: limits.burst,
            at: Instant::now(),
        }),
    });
    let slots = Arc::new(Semaphore::new(limits.max_connections));
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(limits.header_read_timeout)
        .max_header_size(limits.max_header_bytes)
        .max_headers(limits.max_headers)
        .max_buf_size(limits.max_header_bytes.max(8192) * 2)
        .keep_alive(true);
    let builder = Arc::new(builder);
    loop {
        let (stream, _peer): (tokio::net::TcpStream, SocketAddr) = tokio::select! {
            _ = &mut stop => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                // Out of descriptors, a connection reset before it was accepted: go on.
                Err(_) => {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                }
            },
        };
        // Past the connection limit: closed at once (dropped).
        let Ok(slot) = Arc::clone(&slots).try_acquire_owned() else {
            continue;
        };
        let state = Arc::clone(&state);
        let builder = Arc::clone(&builder);
        tokio::spawn(async move {
            let _slot = slot;
            let service = hyper::service::service_fn(move |req: Request<Incoming>| {
                let state = Arc::clone(&state);
                async move { Ok::<_, Infallible>(answer(req, state).await) }
            });
            let conn = builder.serve_connection(TokioIo::new(stream), service);
            // A client that keeps a connection longer loses it; errors are the client's.
            let _ = tokio::time::timeout(limits.connection_lifetime, conn).await;
        });
    }
}
