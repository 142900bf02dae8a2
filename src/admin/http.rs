//! The admin listener's accept loop: HTTP/1.1 through hyper, with a bound on everything a
//! client could stretch: connections open at once, time to send request headers, and the
//! lifetime of a connection.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;

/// Connections served at once; more are closed on accept (scrapers and probes need a few).
const CONNECTIONS_MAX: usize = 64;
/// Time a client gets to send a request's headers.
const HEADER_READ_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a connection stays open, keep-alive included.
const CONNECTION_LIFETIME_MAX: Duration = Duration::from_secs(120);
/// Pause after a failed accept (out of descriptors, typically) before the next.
const ACCEPT_RETRY_DELAY: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until the task is dropped.
pub async fn serve(listener: tokio::net::TcpListener, router: Router) {
    let live = Arc::new(AtomicUsize::new(0));
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "admin accept failed");
                tokio::time::sleep(ACCEPT_RETRY_DELAY).await;
                continue;
            }
        };
        if live.load(Ordering::Relaxed) >= CONNECTIONS_MAX {
            tracing::debug!(%peer, "admin connection refused: {CONNECTIONS_MAX} already open");
            continue; // dropping the stream closes it
        }
        live.fetch_add(1, Ordering::Relaxed);
        let service = TowerToHyperService::new(router.clone());
        let live = Arc::clone(&live);
        tokio::spawn(async move {
            let connection = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
                .serve_connection(TokioIo::new(stream), service);
            // Past its lifetime the connection is dropped, which closes it.
            if let Ok(Err(error)) = tokio::time::timeout(CONNECTION_LIFETIME_MAX, connection).await
            {
                tracing::debug!(%peer, %error, "admin connection failed");
            }
            live.fetch_sub(1, Ordering::Relaxed);
        });
    }
}
