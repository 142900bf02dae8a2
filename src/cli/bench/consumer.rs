//! One bench consumer: a thread with its own librdkafka `BaseConsumer`, reading an explicit
//! set of partitions (no consumer group, so no rebalance pauses in the figures), counting
//! messages and bytes and, in an end-to-end run, timing each message from the send time its
//! producer wrote into the payload to its arrival here.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::Message;
use rdkafka::{Offset, TopicPartitionList};

use super::latency::LatencyRecorder;
use super::producer::SEND_TIME_BYTES;
use crate::cli::client::{self, CliContext, ConnectArgs};

/// How long one poll waits before the loop looks at `stop`.
const POLL_INTERVAL: Duration = Duration::from_millis(100);
/// The shared counters are updated every this many messages.
const PUBLISH_EVERY_MESSAGES: u64 = 256;
/// The group id librdkafka needs before it assigns partitions; nothing joins or commits.
const ASSIGN_ONLY_GROUP_ID: &str = "ringlog-bench-assign-only";

pub struct ConsumerPlan<'a> {
    pub connect: &'a ConnectArgs,
    pub topic: &'a str,
    /// Partitions to read and where to start in each.
    pub start: Vec<(i32, Offset)>,
    pub origin: Instant,
    pub stop: &'a AtomicBool,
    /// Stop once every partition has been read to its end.
    pub stop_at_end: bool,
    /// Read the producer's send time from each payload and record the latency.
    pub end_to_end: bool,
}

#[derive(Default)]
pub struct ConsumerCounters {
    pub consumed: AtomicU64,
    /// Every partition has been read to its end once: the consumer is fetching at the tip.
    pub ready: AtomicBool,
}

pub struct ConsumerOutcome {
    pub consumed: u64,
    pub bytes: u64,
    pub latency: LatencyRecorder,
    /// When the first and the last message arrived, since the run started.
    pub first_message_at: Option<Duration>,
    pub last_message_at: Duration,
}

pub fn run(
    plan: &ConsumerPlan<'_>,
    counters: Arc<ConsumerCounters>,
) -> anyhow::Result<ConsumerOutcome> {
    let consumer: BaseConsumer<CliContext> = plan.connect.consumer(&[
        ("group.id", ASSIGN_ONLY_GROUP_ID),
        ("enable.auto.commit", "false"),
        // End-of-partition events tell when the consumer is at the tip, and when it is done.
        ("enable.partition.eof", "true"),
    ])?;
    let mut assignment = TopicPartitionList::with_capacity(plan.start.len());
    for &(partition, offset) in &plan.start {
        assignment
            .add_partition_offset(plan.topic, partition, offset)
            .map_err(|e| anyhow!("{}", client::describe(&e)))?;
    }
    consumer
        .assign(&assignment)
        .map_err(|e| anyhow!("cannot assign partitions: {}", client::describe(&e)))?;

    let mut outcome = ConsumerOutcome {
        consumed: 0,
        bytes: 0,
        latency: LatencyRecorder::default(),
        first_message_at: None,
        last_message_at: Duration::ZERO,
    };
    let mut at_end = BTreeSet::new();
    let mut reached_end = BTreeSet::new();
    while !plan.stop.load(Ordering::Relaxed) {
        match consumer.poll(POLL_INTERVAL) {
            // Idle: whoever waits for the last messages must see the exact count.
            None => counters.consumed.store(outcome.consumed, Ordering::Relaxed),
            Some(Ok(message)) => {
                let now = plan.origin.elapsed();
                let payload = message.payload().unwrap_or_default();
                outcome.consumed += 1;
                outcome.bytes += payload.len() as u64;
                outcome.first_message_at.get_or_insert(now);
                outcome.last_message_at = now;
                if plan.end_to_end {
                    if let Some(sent_at) = send_time(payload) {
                        outcome.latency.record(now, now.saturating_sub(sent_at));
                    }
                }
                if outcome.consumed % PUBLISH_EVERY_MESSAGES == 0 {
                    counters.consumed.store(outcome.consumed, Ordering::Relaxed);
                }
                at_end.remove(&message.partition());
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                counters.consumed.store(outcome.consumed, Ordering::Relaxed);
                at_end.insert(partition);
                reached_end.insert(partition);
                if reached_end.len() == plan.start.len() {
                    counters.ready.store(true, Ordering::Relaxed);
                }
                if plan.stop_at_end && at_end.len() == plan.start.len() {
                    break;
                }
            }
            Some(Err(error)) => return Err(anyhow!("consumer: {}", client::describe(&error))),
        }
    }
    counters.consumed.store(outcome.consumed, Ordering::Relaxed);
    Ok(outcome)
}

/// The send time a bench producer put at the start of the payload.
fn send_time(payload: &[u8]) -> Option<Duration> {
    let bytes: [u8; SEND_TIME_BYTES] = payload.get(..SEND_TIME_BYTES)?.try_into().ok()?;
    Some(Duration::from_micros(u64::from_le_bytes(bytes)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn send_time_is_read_from_the_first_bytes() {
        let mut payload = 1234u64.to_le_bytes().to_vec();
        payload.extend_from_slice(b"rest");
        assert_eq!(send_time(&payload), Some(Duration::from_micros(1234)));
        assert_eq!(send_time(b"short"), None);
    }
}
