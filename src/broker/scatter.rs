//! Per-partition work split by owning shard: each owner gets its partitions in one call (over
//! the mesh, or in place for this shard), all owners at once, and the answers come back in
//! the order of the work.

use std::collections::BTreeMap;
use std::future::Future;
use std::rc::Rc;

use futures_channel::oneshot;

use super::messages::ShardRequest;
use super::{Shard, CONTROL_TIMEOUT};
use crate::partition::TopicPartition;
use crate::protocol::codes;

/// A partition's piece of the work, with its place in the whole.
type Piece<Q> = (usize, (TopicPartition, Q));

impl Shard {
    /// Runs `work` on the partitions' owners: `local` on this shard, the request `remote`
    /// builds on the others. A partition without an owner, or whose owner does not answer
    /// within `CONTROL_TIMEOUT`, gets `failed(error code)`.
    pub(crate) async fn on_owners<Q, A, Local, LocalFuture, Remote>(
        self: &Rc<Self>,
        work: Vec<(TopicPartition, Q)>,
        failed: fn(i16) -> A,
        local: Local,
        remote: Remote,
    ) -> Vec<A>
    where
        Local: Fn(Rc<Shard>, Vec<(TopicPartition, Q)>) -> LocalFuture,
        LocalFuture: Future<Output = Vec<A>>,
        Remote: Fn(Vec<(TopicPartition, Q)>, oneshot::Sender<Vec<A>>) -> ShardRequest,
    {
        let mut answers: Vec<A> = Vec::with_capacity(work.len());
        let mut by_owner: BTreeMap<usize, Vec<Piece<Q>>> = BTreeMap::new();
        for (index, item) in work.into_iter().enumerate() {
            match self.owner_of(&item.0) {
                Ok(owner) => {
                    answers.push(failed(codes::REQUEST_TIMED_OUT));
                    by_owner.entry(owner).or_default().push((index, item));
                }
                Err(code) => answers.push(failed(code)),
            }
        }
        let (local, remote) = (&local, &remote);
        let groups = futures_util::future::join_all(by_owner.into_iter().map(|(owner, group)| {
            let shard = Rc::clone(self);
            async move {
                let (indexes, items): (Vec<usize>, Vec<(TopicPartition, Q)>) =
                    group.into_iter().unzip();
                let found = if owner == shard.id {
                    local(Rc::clone(&shard), items).await
                } else {
                    shard
                        .mesh
                        .call(owner, CONTROL_TIMEOUT, |reply| remote(items, reply))
                        .await
                        .unwrap_or_default()
                };
                debug_assert!(found.is_empty() || found.len() == indexes.len());
                indexes.into_iter().zip(found).collect::<Vec<_>>()
            }
        }))
        .await;
        for (index, answer) in groups.into_iter().flatten() {
            answers[index] = answer;
        }
        answers
    }
}
