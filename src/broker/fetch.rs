//! Fetch: reads each partition on its owning shard and answers with the stored batches as
//! zero-copy chunks. A fetch that finds less than `min_bytes` parks on its partitions until new
//! data arrives or `max_wait_ms` passes (long poll), then reads again.
//!
//! Fetch sessions (KIP-227) live in `fetch_session`.

use std::collections::BTreeMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

use kafka_protocol::messages::fetch_response::{FetchableTopicResponse, PartitionData};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::protocol::StrBytes;

use super::fetch_session::{
    FetchSessions, SessionError, FINAL_EPOCH, INITIAL_EPOCH, INVALID_SESSION_ID,
};
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

/// How a fetch relates to sessions.
enum SessionPlan {
    /// A full fetch without a session.
    None,
    /// A full fetch that starts the session with this id.
    New(i32),
    /// An incremental fetch in this session: only partitions with news are answered.
    Incremental(i32),
}

/// A full fetch that opens a session, or goes without one when the session is too large.
fn start_session(sessions: &FetchSessions, reads: &[(TopicPartition, ReadAt)]) -> SessionPlan {
    match sessions.create(reads) {
        INVALID_SESSION_ID => SessionPlan::None,
        id => SessionPlan::New(id),
    }
}

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: FetchRequest = request.decode()?;
    let version = request.api_version();
    let response_max_bytes = if version >= 3 {
        (body.max_bytes.max(1) as usize).min(PLACEHOLDER_BYTES_MAX)
    } else {
        PLACEHOLDER_BYTES_MAX
    };
    let mut asked = Vec::new();
    for topic in &body.topics {
        for partition in &topic.partitions {
            asked.push((
                TopicPartition::new(topic.topic.0.to_string(), partition.partition),
                ReadAt {
                    offset: partition.fetch_offset,
                    max_bytes: (partition.partition_max_bytes.max(0) as usize)
                        .min(response_max_bytes),
                },
            ));
        }
    }
    let sessions = shard.fetch_sessions();
    let (reads, plan) = match (body.session_id, body.session_epoch) {
        (INVALID_SESSION_ID, epoch) if epoch == INITIAL_EPOCH && version >= 7 => {
            let plan = start_session(sessions, &asked);
            (asked, plan)
        }
        (INVALID_SESSION_ID, _) => (asked, SessionPlan::None),
        (id, FINAL_EPOCH) => {
            sessions.close(id);
            (asked, SessionPlan::None)
        }
        (id, INITIAL_EPOCH) => {
            sessions.close(id);
            let plan = start_session(sessions, &asked);
            (asked, plan)
        }
        (id, epoch) => {
            let forgotten: Vec<TopicPartition> = body
                .forgotten_topics_data
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| TopicPartition::new(t.topic.0.to_string(), *p))
                })
                .collect();
            match sessions.update(id, epoch, &asked, &forgotten) {
                Ok(reads) => (reads, SessionPlan::Incremental(id)),
                Err(error) => {
                    let mut response = FetchResponse::default();
                    response.error_code = match error {
                        SessionError::InvalidEpoch => codes::INVALID_FETCH_SESSION_EPOCH,
                        SessionError::NotFound | SessionError::TooManyPartitions => {
                            codes::FETCH_SESSION_ID_NOT_FOUND
                        }
                    };
                    return respond(request, &response);
                }
            }
        }
    };

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

    crate::metrics::requests::errors(
        request.api_key as i16,
        outcomes.iter().map(|o| o.error_code),
    );
    let (session_id, answered) = match plan {
        SessionPlan::None => (INVALID_SESSION_ID, vec![true; outcomes.len()]),
        SessionPlan::New(id) => {
            sessions.news(id, &outcomes);
            (id, vec![true; outcomes.len()])
        }
        SessionPlan::Incremental(id) => (id, sessions.news(id, &outcomes)),
    };
    let mut response = FetchResponse::default();
    let mut buf = ChunkedBuf::new();
    let mut budget = response_max_bytes;
    let mut first = true;
    for (((id, _), outcome), answer) in reads.iter().zip(outcomes).zip(answered) {
        if !answer {
            continue;
        }
        let mut batches = Vec::new();
        for batch in outcome.data.batches {
            if batch.len() > budget && !(first && batches.is_empty()) {
                break;
            }
            budget = budget.saturating_sub(batch.len());
            batches.push(batch);
        }
        first &= batches.is_empty();
        crate::metrics::topic_fetched(&id.topic, &batches);
        let mut data = PartitionData::default();
        data.partition_index = id.partition;
        data.error_code = outcome.error_code;
        data.high_watermark = outcome.data.high_watermark;
        data.last_stable_offset = outcome.data.high_watermark;
        data.log_start_offset = outcome.data.log_start_offset;
        data.aborted_transactions = (version >= 4).then(Vec::new);
        data.preferred_read_replica = BrokerId(-1);
        // Empty, not null: librdkafka cannot parse a null record set.
        data.records = Some(buf.register_records(batches).unwrap_or_default());
        // Partitions of one topic travel together, in the order they were asked for.
        match response.responses.last_mut() {
            Some(topic) if topic.topic.0.as_str() == id.topic => topic.partitions.push(data),
            _ => {
                let mut topic = FetchableTopicResponse::default();
                topic.topic = TopicName(StrBytes::from_string(id.topic.clone()));
                topic.partitions.push(data);
                response.responses.push(topic);
            }
        }
    }
    response.session_id = if version >= 7 {
        session_id
    } else {
        INVALID_SESSION_ID
    };
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
                None => failed(self.absent_partition_code(&id)),
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
