//! Fetch: reads each partition on its owning shard and answers with the stored batches as
//! zero-copy chunks. A fetch that finds less than `min_bytes` parks on its partitions until new
//! data arrives or `max_wait_ms` passes (long poll), then reads again.
//!
//! Fetch sessions (KIP-227): a client asking for a new session gets session id 0, the
//! protocol's "no session", and keeps sending full fetches; a client naming a session gets
//! FETCH_SESSION_ID_NOT_FOUND and starts over.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse};

use super::messages::{ReadAt, ShardRequest};
use super::{respond, respond_with, Shard};
use crate::net::connection::Outcome;
use crate::partition::{FetchOutcome, TopicPartition};
use crate::protocol::chunked::PLACEHOLDER_BYTES_MAX;
use crate::protocol::{codes, ChunkedBuf, RequestFrame};
use crate::storage::ReadData;

/// Longest long poll a client may ask for.
const MAX_WAIT_LIMIT: Duration = Duration::from_secs(60);
/// Extra time a remote owner gets to answer a read before the mesh gives up.
const READ_TIMEOUT: Duration = Duration::from_secs(30);

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: FetchRequest = request.decode()?;
    let mut response = FetchResponse::default();
    if body.session_id != 0 {
        response.error_code = codes::FETCH_SESSION_ID_NOT_FOUND;
        response.session_id = 0;
        return respond(request, &response);
    }
    let response_max_bytes = if request.api_version() >= 3 {
        (body.max_bytes.max(1) as usize).min(PLACEHOLDER_BYTES_MAX)
    } else {
        PLACEHOLDER_BYTES_MAX
    };
    let mut reads = Vec::new();
    for topic in &body.topics {
        for partition in &topic.partitions {
            reads.push((
                TopicPartition::new(topic.topic.0.to_string(), partition.partition),
                ReadAt {
                    offset: partition.fetch_offset,
                    max_bytes: (partition.partition_max_bytes.max(0) as usize)
                        .min(response_max_bytes),
                },
            ));
        }
    }
    let max_wait = Duration::from_millis(body.max_wait_ms.max(0) as u64).min(MAX_WAIT_LIMIT);
    let deadline = Instant::now() + max_wait;
    let min_bytes = body.min_bytes.max(0) as usize;
    let mut outcomes = shard.fetch(&reads).await;
    let found: usize = outcomes.iter().map(|o| o.data.size_bytes()).sum();
    if found < min_bytes.max(1) && !max_wait.is_zero() {
        let waits: Vec<(TopicPartition, i64)> = reads
            .iter()
            .zip(&outcomes)
            .filter(|(_, outcome)| outcome.error_code == codes::NONE)
            .map(|((partition, at), _)| (partition.clone(), at.offset))
            .collect();
        shard.wait_for_data(waits, deadline).await;
        outcomes = shard.fetch(&reads).await;
    }

    let mut buf = ChunkedBuf::new();
    let mut budget = response_max_bytes;
    let mut first = true;
    let mut outcomes = outcomes.into_iter();
    for topic in &body.topics {
        let mut topic_response = FetchableTopicResponse::default();
        topic_response.topic = topic.topic.clone();
        topic_response.topic_id = topic.topic_id;
        for partition in &topic.partitions {
            let outcome = outcomes.next().expect("one outcome per partition");
            let mut batches = Vec::new();
            for batch in outcome.data.batches {
                if batch.len() > budget && !(first && batches.is_empty()) {
                    break;
                }
                budget = budget.saturating_sub(batch.len());
                batches.push(batch);
            }
            first &= batches.is_empty();
            let mut data = PartitionData::default();
            data.partition_index = partition.partition;
            data.error_code = outcome.error_code;
            data.high_watermark = outcome.data.high_watermark;
            data.last_stable_offset = outcome.data.high_watermark;
            data.log_start_offset = outcome.data.log_start_offset;
            data.aborted_transactions = (request.api_version() >= 4).then(Vec::new);
            data.preferred_read_replica = BrokerId(-1);
            // Empty, not null: librdkafka cannot parse a null record set.
            data.records = Some(buf.register_records(batches).unwrap_or_default());
            topic_response.partitions.push(data);
        }
        response.responses.push(topic_response);
    }
    response.session_id = 0;
    respond_with(buf, request, &response)
}

impl Shard {
    /// Reads every partition on its owner, all owners at once; answers in `reads` order.
    pub async fn fetch(self: &Rc<Self>, reads: &[(TopicPartition, ReadAt)]) -> Vec<FetchOutcome> {
        self.on_owners(
            reads.to_vec(),
            failed,
            |shard, reads| async move { shard.fetch_local(reads).await },
            |reads, reply| ShardRequest::Fetch { reads, reply },
        )
        .await
    }

    pub(crate) async fn fetch_local(
        &self,
        reads: Vec<(TopicPartition, ReadAt)>,
    ) -> Vec<FetchOutcome> {
        let mut outcomes = Vec::with_capacity(reads.len());
        for (id, at) in reads {
            outcomes.push(match self.partition(&id) {
                Some(partition) => partition.fetch(at.offset, at.max_bytes).await,
                None => failed(codes::NOT_LEADER_OR_FOLLOWER),
            });
        }
        outcomes
    }

    /// Parks until any of the partitions has data past its offset, or `deadline`.
    async fn wait_for_data(self: &Rc<Self>, waits: Vec<(TopicPartition, i64)>, deadline: Instant) {
        let timeout = deadline.saturating_duration_since(Instant::now());
        let mut by_owner: BTreeMap<usize, Vec<(TopicPartition, i64)>> = BTreeMap::new();
        for (partition, offset) in waits {
            if let Ok(owner) = self.owner_of(&partition) {
                by_owner.entry(owner).or_default().push((partition, offset));
            }
        }
        if by_owner.is_empty() {
            glommio::timer::sleep(timeout).await;
            return;
        }
        let waiters: Vec<_> = by_owner
            .into_iter()
            .map(|(owner, waits)| {
                let shard = Rc::clone(self);
                Box::pin(async move {
                    if owner == shard.id {
                        shard.wait_for_data_local(&waits, timeout).await;
                    } else {
                        let _ = shard
                            .mesh
                            .call(owner, timeout + READ_TIMEOUT, |reply| {
                                ShardRequest::WaitForData {
                                    waits,
                                    timeout_ms: timeout.as_millis() as u64,
                                    reply,
                                }
                            })
                            .await;
                    }
                })
            })
            .collect();
        futures_util::future::select_all(waiters).await;
    }

    pub(crate) async fn wait_for_data_local(
        &self,
        waits: &[(TopicPartition, i64)],
        timeout: Duration,
    ) {
        let waiters: Vec<_> = waits
            .iter()
            .filter_map(|(id, offset)| {
                let partition = self.partition(id)?;
                let offset = *offset;
                Some(Box::pin(async move {
                    partition.wait_for_data(offset, timeout).await
                }))
            })
            .collect();
        if waiters.is_empty() {
            glommio::timer::sleep(timeout).await;
            return;
        }
        futures_util::future::select_all(waiters).await;
    }
}

fn failed(error_code: i16) -> FetchOutcome {
    FetchOutcome {
        error_code,
        data: ReadData {
            high_watermark: -1,
            log_start_offset: -1,
            log_end_offset: -1,
            batches: Vec::new(),
        },
    }
}
