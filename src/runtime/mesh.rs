//! The cross-shard mesh: bounded channels between every pair of shards. A request carries a
//! oneshot sender for its reply, so replies never travel on the request channels (a single
//! bounded mesh for both directions deadlocks, see DESIGN.md). A shard's identity is its place
//! in the mesh.

use std::time::Duration;

use futures_channel::oneshot;
use glommio::channels::channel_mesh::{Full, MeshBuilder, Receivers, Senders};

/// Messages in flight from one shard to another before senders wait.
pub const CHANNEL_CAPACITY: usize = 1024;

pub type Builder<M> = MeshBuilder<M, Full>;

pub fn builder<M: Send + 'static>(shard_count: usize) -> Builder<M> {
    MeshBuilder::full(shard_count, CHANNEL_CAPACITY)
}

#[derive(Debug, thiserror::Error)]
pub enum MeshError {
    #[error("shard {0} is gone")]
    ShardGone(usize),
    #[error("shard {shard} did not answer within {timeout_ms} ms")]
    TimedOut { shard: usize, timeout_ms: u64 },
}

/// This shard's end of the mesh.
pub struct Mesh<M: Send + 'static> {
    senders: Senders<M>,
    shard_count: usize,
}

impl<M: Send + 'static> Mesh<M> {
    pub async fn join(builder: Builder<M>) -> std::io::Result<(Self, Receivers<M>)> {
        let shard_count = builder.nr_peers();
        let (senders, receivers) = builder
            .join()
            .await
            .map_err(|_| std::io::Error::other("joining the shard mesh failed"))?;
        Ok((
            Mesh {
                senders,
                shard_count,
            },
            receivers,
        ))
    }

    pub fn shard_id(&self) -> usize {
        self.senders.peer_id()
    }

    pub fn shard_count(&self) -> usize {
        self.shard_count
    }

    /// Sends `make(reply)` to `shard` and waits for the reply, at most `timeout`.
    pub async fn call<R>(
        &self,
        shard: usize,
        timeout: Duration,
        make: impl FnOnce(oneshot::Sender<R>) -> M,
    ) -> Result<R, MeshError> {
        assert_ne!(
            shard,
            self.shard_id(),
            "a shard serves itself without the mesh"
        );
        let (reply, answer) = oneshot::channel();
        let started = std::time::Instant::now();
        let exchange = async {
            self.senders
                .send_to(shard, make(reply))
                .await
                .map_err(|_| MeshError::ShardGone(shard))?;
            crate::metrics::mesh_sent();
            answer.await.map_err(|_| MeshError::ShardGone(shard))
        };
        let result = glommio::timer::timeout(timeout, async { Ok(exchange.await) })
            .await
            .unwrap_or(Err(MeshError::TimedOut {
                shard,
                timeout_ms: timeout.as_millis() as u64,
            }));
        crate::metrics::mesh_call_done(metrics_outcome(&result), started.elapsed());
        result
    }

    /// Sends without waiting for an answer.
    pub async fn send(&self, shard: usize, message: M) -> Result<(), MeshError> {
        self.senders
            .send_to(shard, message)
            .await
            .map_err(|_| MeshError::ShardGone(shard))?;
        crate::metrics::mesh_sent();
        Ok(())
    }

    pub fn close(&self) {
        self.senders.close();
    }
}

fn metrics_outcome<R>(result: &Result<R, MeshError>) -> crate::metrics::MeshOutcome {
    match result {
        Ok(_) => crate::metrics::MeshOutcome::Answered,
        Err(MeshError::TimedOut { .. }) => crate::metrics::MeshOutcome::TimedOut,
        Err(MeshError::ShardGone(_)) => crate::metrics::MeshOutcome::ShardGone,
    }
}
