//! One bench producer: a thread with its own librdkafka `BaseProducer`, sending fixed-size
//! messages as fast as allowed (or at a target rate) and timing each from `send` to its
//! delivery report. The hot loop allocates nothing: the payload buffer is reused (librdkafka
//! copies it), the send time travels as the delivery opaque, and delivery reports are served
//! by this same thread's `poll`, so there is no extra thread and no lock contention.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::bail;
use rdkafka::config::RDKafkaLogLevel;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::latency::LatencyRecorder;
use crate::cli::client::{self, CliContext, ConnectArgs, FirstError};

/// Delivery reports are served, and the shared counters updated, every this many sends.
const POLL_EVERY_MESSAGES: u64 = 64;
/// How long to serve delivery reports when librdkafka's queue is full before sending again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(1);
/// A paced producer sleeps only when it is this far ahead of its schedule.
const PACING_SLACK: Duration = Duration::from_millis(1);
/// How long librdkafka may try to deliver one message; also bounds the final flush.
pub const MESSAGE_TIMEOUT: Duration = Duration::from_secs(30);

/// Where the send time (microseconds since the run started, little-endian) sits in a payload.
pub const SEND_TIME_BYTES: usize = 8;

/// What one producer is asked to do.
pub struct ProducerPlan<'a> {
    pub connect: &'a ConnectArgs,
    pub topic: &'a str,
    /// librdkafka properties of the load: acks, compression, batching.
    pub properties: &'a [(&'a str, String)],
    pub message_size_bytes: usize,
    /// Messages to send; `None` sends until `stop`.
    pub quota: Option<u64>,
    pub rate_msgs_per_s: Option<f64>,
    pub origin: Instant,
    pub stop: &'a AtomicBool,
}

/// Counters the progress line reads while the producer runs.
#[derive(Default)]
pub struct ProducerCounters {
    pub sent: AtomicU64,
    pub acked: AtomicU64,
    pub failed: AtomicU64,
}

pub struct ProducerOutcome {
    pub sent: u64,
    pub acked: u64,
    pub failed: u64,
    pub latency: LatencyRecorder,
    /// When the last delivery report arrived, since the run started.
    pub last_ack_at: Duration,
    pub first_error: Option<String>,
}

pub fn run(
    plan: &ProducerPlan<'_>,
    counters: Arc<ProducerCounters>,
) -> anyhow::Result<ProducerOutcome> {
    let mut extra: Vec<(&str, &str)> = plan
        .properties
        .iter()
        .map(|(key, value)| (*key, value.as_str()))
        .collect();
    let message_timeout_ms = MESSAGE_TIMEOUT.as_millis().to_string();
    extra.push(("message.timeout.ms", &message_timeout_ms));
    let context = BenchContext {
        origin: plan.origin,
        counters: Arc::clone(&counters),
        latency: Mutex::new(LatencyRecorder::default()),
        last_ack_at_us: AtomicU64::new(0),
        first_error: FirstError::default(),
    };
    let producer: BaseProducer<BenchContext> =
        client::create(&plan.connect.client_config(&extra), context)?;

    let mut payload = filler(plan.message_size_bytes);
    let started = Instant::now();
    let mut sent = 0u64;
    while !plan.stop.load(Ordering::Relaxed) && plan.quota.is_none_or(|quota| sent < quota) {
        if let Some(rate) = plan.rate_msgs_per_s {
            keep_pace(&producer, started, sent, rate);
        }
        let sent_at_us = micros(plan.origin.elapsed());
        payload[..SEND_TIME_BYTES].copy_from_slice(&sent_at_us.to_le_bytes());
        let record: BaseRecord<'_, [u8], [u8], usize> =
            BaseRecord::with_opaque_to(plan.topic, sent_at_us as usize).payload(&payload[..]);
        send(&producer, record, plan.stop)?;
        sent += 1;
        if sent % POLL_EVERY_MESSAGES == 0 {
            counters.sent.store(sent, Ordering::Relaxed);
            producer.poll(Duration::ZERO);
        }
    }
    counters.sent.store(sent, Ordering::Relaxed);
    let flushed = producer.flush(MESSAGE_TIMEOUT);

    let context = producer.context();
    let mut first_error = context.first_error.get();
    if let Err(error) = flushed {
        first_error.get_or_insert_with(|| format!("flush: {}", client::describe(&error)));
    }
    let latency = std::mem::take(&mut *context.latency.lock().map_err(|_| poisoned())?);
    Ok(ProducerOutcome {
        sent,
        acked: counters.acked.load(Ordering::Relaxed),
        failed: counters.failed.load(Ordering::Relaxed),
        latency,
        last_ack_at: Duration::from_micros(context.last_ack_at_us.load(Ordering::Relaxed)),
        first_error,
    })
}

fn poisoned() -> anyhow::Error {
    anyhow::anyhow!("a delivery callback panicked")
}

fn micros(duration: Duration) -> u64 {
    u64::try_from(duration.as_micros()).unwrap_or(u64::MAX)
}

/// A payload of printable letters, like Kafka's own perf tool, so that compression has
/// something realistic to chew on rather than a run of one byte.
fn filler(size_bytes: usize) -> Vec<u8> {
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    (0..size_bytes.max(SEND_TIME_BYTES))
        .map(|_| {
            // xorshift64: cheap, and the same payload every run.
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            b'A' + (state % 26) as u8
        })
        .collect()
}

/// Waits, serving delivery reports meanwhile, while this producer is ahead of `rate`.
fn keep_pace(producer: &BaseProducer<BenchContext>, started: Instant, sent: u64, rate: f64) {
    let due = Duration::from_secs_f64(sent as f64 / rate);
    let ahead = due.saturating_sub(started.elapsed());
    if ahead > PACING_SLACK {
        producer.poll(ahead);
    }
}

/// Queues one message; while librdkafka's queue is full, serves delivery reports and retries.
fn send(
    producer: &BaseProducer<BenchContext>,
    mut record: BaseRecord<'_, [u8], [u8], usize>,
    stop: &AtomicBool,
) -> anyhow::Result<()> {
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned))
                if !stop.load(Ordering::Relaxed) =>
            {
                record = returned;
                producer.poll(QUEUE_FULL_WAIT);
            }
            Err((error, _)) => bail!("cannot send: {}", client::describe(&error)),
        }
    }
}

/// Receives this producer's delivery reports (on its own thread, inside `poll`).
struct BenchContext {
    origin: Instant,
    counters: Arc<ProducerCounters>,
    latency: Mutex<LatencyRecorder>,
    last_ack_at_us: AtomicU64,
    first_error: FirstError,
}

impl ClientContext for BenchContext {
    fn log(&self, level: RDKafkaLogLevel, facility: &str, message: &str) {
        CliContext.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        CliContext.error(error, reason);
    }
}

impl ProducerContext for BenchContext {
    /// The send time, microseconds since the run started.
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_at_us: usize) {
        let now = self.origin.elapsed();
        match result {
            Ok(_) => {
                self.counters.acked.fetch_add(1, Ordering::Relaxed);
                let latency = now.saturating_sub(Duration::from_micros(sent_at_us as u64));
                // Uncontended: only this producer's thread polls.
                if let Ok(mut recorder) = self.latency.lock() {
                    recorder.record(now, latency);
                }
                self.last_ack_at_us.store(micros(now), Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.counters.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error.record(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filler_is_printable_and_at_least_a_send_time_long() {
        assert_eq!(filler(3).len(), SEND_TIME_BYTES);
        let payload = filler(1000);
        assert_eq!(payload.len(), 1000);
        assert!(payload.iter().all(u8::is_ascii_uppercase));
    }
}
