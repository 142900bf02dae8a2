//! The HTTP admin endpoint (`--admin-addr`, default 127.0.0.1:9644): `/metrics` for Prometheus,
//! `/v1/health` and `/v1/ready` for supervisors and load balancers, and small JSON views of
//! topics and shards (`/v1/topics`, `/v1/shards`).
//!
//! It runs on one dedicated, unpinned thread with a single-threaded tokio runtime, apart from
//! the shards. It never touches shard state: it reads the metric families (atomics), the
//! readiness flags (atomics) and the shard views the shards publish every tick
//! (`metrics::snapshot`). Nothing a shard does ever waits on this thread.

mod http;
mod routes;
pub mod shard_view;

use std::io;
use std::net::{SocketAddr, TcpListener};
use std::thread::JoinHandle;

use futures_channel::oneshot;

#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    #[error("admin port {0} is already in use by another listener: stop it or choose another port with --admin-addr")]
    PortTaken(SocketAddr),
    #[error("cannot listen on admin address {addr}: {source} (choose another with --admin-addr)")]
    Bind { addr: SocketAddr, source: io::Error },
    #[error("cannot start the admin thread: {0}")]
    Thread(io::Error),
}

/// The running admin listener; stops when dropped.
pub struct AdminServer {
    local_addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl AdminServer {
    /// Binds `addr` now (so a taken port fails start-up at once) and serves on its own thread.
    pub fn start(addr: SocketAddr) -> Result<Self, AdminError> {
        let listener = bind(addr)?;
        let local_addr = listener.local_addr().unwrap_or(addr);
        let (stop, stopped) = oneshot::channel();
        let thread = std::thread::Builder::new()
            .name("ringlog-admin".into())
            .spawn(move || run(listener, stopped))
            .map_err(AdminError::Thread)?;
        tracing::info!(admin_addr = %local_addr, "admin endpoint listening");
        Ok(AdminServer {
            local_addr,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }
}

impl Drop for AdminServer {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(thread) = self.thread.take() {
            // Bounded: the runtime drops every connection task as soon as it sees the stop.
            let _ = thread.join();
        }
    }
}

/// Unlike the Kafka listener (whose queued io_uring accept can outlive its process for a
/// moment), this is a plain socket that the kernel frees when its process exits: a port in use
/// is taken for real.
fn bind(addr: SocketAddr) -> Result<TcpListener, AdminError> {
    let listener = TcpListener::bind(addr).map_err(|source| match source.kind() {
        io::ErrorKind::AddrInUse => AdminError::PortTaken(addr),
        _ => AdminError::Bind { addr, source },
    })?;
    listener
        .set_nonblocking(true)
        .map_err(|source| AdminError::Bind { addr, source })?;
    Ok(listener)
}

fn run(listener: TcpListener, stopped: oneshot::Receiver<()>) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .thread_name("ringlog-admin")
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            tracing::error!(%error, "cannot start the admin runtime; no metrics or health endpoint");
            return;
        }
    };
    runtime.block_on(async move {
        let listener = match tokio::net::TcpListener::from_std(listener) {
            Ok(listener) => listener,
            Err(error) => {
                tracing::error!(%error, "cannot use the admin listener");
                return;
            }
        };
        tokio::select! {
            () = http::serve(listener, routes::router()) => {}
            _ = stopped => {}
        }
    });
    // Dropping the runtime drops every connection still open.
}
