//! Serving a router on a listener with bounded connections and graceful shutdown: when `cancel`
//! fires, the listener stops accepting and in-flight requests get until `grace` runs out. Every
//! connection is bounded in time and size by [`ConnLimits`] (see [`crate::conn`]).

use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use crate::conn::ConnLimits;
use crate::conn::{self, Activity, Close, GuardedBody, GuardedIo};

/// Serves `router` until `cancel` fires, then lets in-flight requests finish for up to `grace`.
/// `header_timeout` bounds how long a client may take to send its request headers; the other
/// bounds take their defaults.
pub async fn serve(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    header_timeout: Duration,
    grace: Duration,
) -> std::io::Result<()> {
    let limits = ConnLimits {
        header_timeout,
        ..ConnLimits::default()
    };
    serve_with(listener, router, cancel, limits, grace).await
}

/// [`serve`] with every connection bound chosen.
#[allow(
    clippy::disallowed_methods,
    reason = "each connection task is watched by hyper's graceful shutdown, which serve_with awaits (bounded by the grace)"
)]
pub async fn serve_with(
    listener: TcpListener,
    router: Router,
    cancel: CancellationToken,
    limits: ConnLimits,
    grace: Duration,
) -> std::io::Result<()> {
    use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
    use hyper_util::server::conn::auto::Builder;

    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let mut builder = Builder::new(TokioExecutor::new());
    // hyper's buffer bounds the request head (431 past it); the head timeout is the watchdog's,
    // which also covers a connection that never says which protocol it speaks.
    let header_bytes = limits.max_header_bytes.max(8192);
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(None)
        .max_buf_size(header_bytes);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(u32::try_from(header_bytes).unwrap_or(u32::MAX))
        .keep_alive_interval(Some(limits.idle_timeout))
        .keep_alive_timeout(limits.header_timeout);
    loop {
        let (stream, peer) = tokio::select! {
            _ = cancel.cancelled() => break,
            accepted = listener.accept() => match accepted {
                Ok(pair) => pair,
                Err(e) => {
                    // Out of file descriptors and the like: back off briefly rather than spin.
                    tracing::warn!(error = %e, "accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        // Answers are written as a head and then body chunks: with Nagle's algorithm a small chunk
        // after the head waits for the client's delayed ACK (40 ms on Linux) before it leaves.
        if let Err(e) = stream.set_nodelay(true) {
            tracing::debug!(error = %e, "could not set TCP_NODELAY");
        }
        let stream = Arc::new(stream);
        let activity = Activity::new();
        let io = GuardedIo::new(stream.clone(), activity.clone(), limits);
        let app = router.clone();
        let tracked = activity.clone();
        let service =
            hyper::service::service_fn(move |req: http::Request<hyper::body::Incoming>| {
                let guard = tracked.request_started();
                let app = app.clone();
                let mut req = req.map(axum::body::Body::new);
                // The client's address, for per-client limits.
                req.extensions_mut()
                    .insert(axum::extract::ConnectInfo(peer));
                async move {
                    use tower::ServiceExt;
                    let response = app.oneshot(req).await?;
                    Ok::<_, std::convert::Infallible>(
                        response.map(|body| GuardedBody::wrap(body, guard)),
                    )
                }
            });
        let conn = builder
            .serve_connection_with_upgrades(TokioIo::new(io), service)
            .into_owned();
        let conn = graceful.watch(conn);
        tokio::spawn(async move {
            let closed = tokio::select! {
                ended = conn => {
                    if let Err(e) = ended {
                        tracing::debug!(%peer, error = %e, "connection ended with an error");
                    }
                    None
                }
                close = conn::watch(activity, limits) => Some(close),
            };
            // hyper has let go of the connection here.
            if let Some(close) = closed {
                tracing::debug!(%peer, ?close, "connection closed by its time bounds");
                if close == Close::RequestTimeout {
                    // Small enough for the socket buffer; a client that cannot take it is gone.
                    let _ = stream.try_write(&conn::request_timeout_answer(&limits));
                }
            }
            if let Ok(stream) = Arc::try_unwrap(stream) {
                linger(stream).await;
            }
        });
    }
    drop(listener);
    tokio::select! {
        _ = graceful.shutdown() => {}
        _ = tokio::time::sleep(grace) => tracing::warn!("shutdown grace ran out with requests in flight"),
    }
    Ok(())
}

/// Longest [`linger`] waits.
const LINGER_TIME: Duration = Duration::from_secs(2);

/// Closes a connection gently: sends FIN, then reads and drops what the client is still sending
/// (an upload refused halfway) for a short while, so the kernel does not answer it with a reset
/// that destroys the answer before the client has read it.
async fn linger(mut stream: tokio::net::TcpStream) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    if stream.shutdown().await.is_err() {
        return;
    }
    let drain = async {
        let mut buf = vec![0u8; 64 * 1024];
        while let Ok(n) = stream.read(&mut buf).await {
            if n == 0 {
                break;
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIME, drain).await;
}

/// Resolves when the process receives SIGTERM or SIGINT.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "cannot listen for SIGTERM; only Ctrl-C stops the process");
                let _ = ctrl_c.await;
                return;
            }
        };
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}
