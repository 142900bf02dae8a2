//! Produce: each partition's record set goes to the shard that owns the partition (the bytes
//! move, they are not copied), is validated and appended there, and is answered per `acks`.

use std::rc::Rc;
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use kafka_protocol::protocol::StrBytes;

use super::messages::ShardRequest;
use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::partition::{ProduceOutcome, TopicPartition};
use crate::protocol::{codes, RequestFrame};

/// Extra time a remote owner gets beyond the request's own timeout before the mesh gives up.
const MESH_SLACK: Duration = Duration::from_secs(5);

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: ProduceRequest = request.decode()?;
    let acks = body.acks;
    let timeout = Duration::from_millis(body.timeout_ms.max(0) as u64);
    let refusal = if !matches!(acks, -1..=1) {
        Some((
            codes::INVALID_REQUIRED_ACKS,
            "acks must be 0, 1 or -1 (all)",
        ))
    } else if body.transactional_id.is_some() {
        Some((
            codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED,
            "transactions are not supported yet",
        ))
    } else {
        None
    };
    let mut work = Vec::new();
    for topic in &body.topic_data {
        for partition in &topic.partition_data {
            let id = TopicPartition::new(topic.name.0.to_string(), partition.index);
            work.push((id, partition.records.clone()));
        }
    }
    let outcomes = futures_util::future::join_all(work.iter().cloned().map(|(id, records)| {
        let shard = Rc::clone(shard);
        async move {
            if let Some((code, message)) = refusal {
                return ProduceOutcome::error(code, message);
            }
            if crate::cluster::is_internal_topic(&id.topic) {
                // Only the coordinator writes its records there; Kafka refuses clients alike.
                return ProduceOutcome::error(
                    codes::INVALID_TOPIC_EXCEPTION,
                    "internal topics are written by the broker only",
                );
            }
            match records {
                Some(records) if !records.is_empty() => {
                    shard.produce(&id, records, acks, timeout).await
                }
                _ => ProduceOutcome::error(codes::CORRUPT_MESSAGE, "empty record set"),
            }
        }
    }))
    .await;
    crate::metrics::requests::errors(
        request.api_key as i16,
        outcomes.iter().map(|o| o.error_code),
    );
    if acks == 0 {
        return Ok(Outcome::Silent);
    }
    let mut response = ProduceResponse::default();
    let mut outcomes = outcomes.into_iter();
    for topic in &body.topic_data {
        let mut topic_response = TopicProduceResponse::default();
        topic_response.name = topic.name.clone();
        for partition in &topic.partition_data {
            let outcome = outcomes.next().expect("one outcome per partition");
            let mut answer = PartitionProduceResponse::default();
            answer.index = partition.index;
            answer.error_code = outcome.error_code;
            answer.base_offset = outcome.base_offset;
            answer.log_append_time_ms = outcome.log_append_time_ms;
            answer.log_start_offset = outcome.log_start_offset;
            answer.error_message = outcome.error_message.map(StrBytes::from_string);
            answer.record_errors = outcome
                .record_errors
                .into_iter()
                .map(|(batch_index, message)| {
                    let mut error = BatchIndexAndErrorMessage::default();
                    error.batch_index = batch_index;
                    error.batch_index_error_message = Some(StrBytes::from_string(message));
                    error
                })
                .collect();
            topic_response.partition_responses.push(answer);
        }
        response.responses.push(topic_response);
    }
    respond(request, &response)
}

impl Shard {
    /// Produces to `id` on whichever shard owns it.
    pub async fn produce(
        self: &Rc<Self>,
        id: &TopicPartition,
        records: Bytes,
        acks: i16,
        timeout: Duration,
    ) -> ProduceOutcome {
        let owner = match self.owner_of(id) {
            Ok(owner) => owner,
            Err(code) => {
                return ProduceOutcome::error(code, format!("unknown partition {}", id.dir_name()))
            }
        };
        if owner == self.id {
            return self.produce_local(id, records, acks, timeout).await;
        }
        let partition = id.clone();
        self.mesh
            .call(owner, timeout + MESH_SLACK, |reply| ShardRequest::Produce {
                partition,
                records,
                acks,
                timeout_ms: timeout.as_millis() as u64,
                reply,
            })
            .await
            .unwrap_or_else(|error| {
                ProduceOutcome::error(codes::REQUEST_TIMED_OUT, error.to_string())
            })
    }

    pub(crate) async fn produce_local(
        &self,
        id: &TopicPartition,
        records: Bytes,
        acks: i16,
        timeout: Duration,
    ) -> ProduceOutcome {
        match self.partition(id) {
            Some(partition) => partition.produce(records, acks, timeout).await,
            None => ProduceOutcome::error(
                self.absent_partition_code(id),
                match self.offline_reason(id) {
                    Some(reason) => format!("partition {} is offline: {reason}", id.dir_name()),
                    None => format!("partition {} is not open on this shard", id.dir_name()),
                },
            ),
        }
    }
}
