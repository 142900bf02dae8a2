//! `ringlog bench produce|consume|e2e`: a load generator and latency meter for any Kafka
//! broker, built on librdkafka so it measures what real clients see. This module owns the
//! flags and the run: preparing the topic, starting producer and consumer threads, the
//! progress loop (deadline, Ctrl-C, end conditions) and turning their outcomes into a result.

mod consumer;
mod latency;
mod plot;
mod producer;
mod progress;
mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread::ScopedJoinHandle;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use clap::Subcommand;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::Offset;

use self::consumer::{ConsumerCounters, ConsumerOutcome, ConsumerPlan};
use self::latency::LatencyRecorder;
use self::producer::{ProducerCounters, ProducerOutcome, ProducerPlan};
use self::progress::{Progress, Totals};
use self::report::{BenchResult, Settings, Throughput};
use super::admin::Admin;
use super::client::{self, CliContext, ConnectArgs};

/// How often the progress line and the throughput samples are updated.
const TICK: Duration = Duration::from_millis(100);
/// How long an end-to-end run waits for its consumers to receive the last messages after the
/// producers are done, and a consume run waits without any new message, before it stops.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(10);
/// Messages sent when neither `--count` nor `--duration-s` is given.
const COUNT_DEFAULT: u64 = 1_000_000;

#[derive(clap::Args)]
pub struct Args {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Producers only: throughput, and latency from send to delivery report.
    #[command(after_help = "Examples:\n  \
        ringlog bench produce --count 1000000 --message-size-bytes 100\n  \
        ringlog bench produce --duration-s 30 --rate 50000 --acks 1 --partitions 8 --producers 2\n  \
        ringlog bench produce --compression lz4 --linger-ms 20 --json result.json --plot latency.svg")]
    Produce(ProduceArgs),
    /// Consumers only: read what a topic holds, from the beginning, and report throughput.
    #[command(after_help = "Examples:\n  \
        ringlog bench produce --count 1000000 && ringlog bench consume\n  \
        ringlog bench consume --topic orders --consumers 2 --count 500000 --json consume.json")]
    Consume(ConsumeArgs),
    /// Producers and consumers together: throughput, produce latency and end-to-end latency
    /// (from the send time each producer writes into the payload to its arrival).
    #[command(after_help = "Examples:\n  \
        ringlog bench e2e --count 200000 --rate 20000\n  \
        ringlog bench e2e --duration-s 60 --rate 10000 --partitions 4 --consumers 2 --plot e2e.svg")]
    E2e(E2eArgs),
}

/// Where and how results go, for every bench.
#[derive(clap::Args)]
struct Common {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The topic to use; produce and e2e create it when it is missing.
    #[arg(long, default_value = "ringlog-bench")]
    topic: String,
    /// Write the whole result as JSON to this file.
    #[arg(long, value_name = "FILE")]
    json: Option<PathBuf>,
    /// Draw latency over time, latency by percentile and throughput into this SVG file.
    #[arg(long, value_name = "FILE.svg")]
    plot: Option<PathBuf>,
}

/// What producers send.
#[derive(clap::Args)]
struct Load {
    /// Partitions of the topic when the bench creates it.
    #[arg(long, default_value_t = 1)]
    partitions: i32,
    /// Replication factor of the topic when the bench creates it.
    #[arg(long, default_value_t = 1)]
    replication_factor: i32,
    /// Payload size; the first 8 bytes carry the send time.
    #[arg(long, alias = "message-size", default_value_t = 100,
          value_parser = clap::value_parser!(u64).range(8..=100_000_000))]
    message_size_bytes: u64,
    /// Messages to send, in all (default 1,000,000 unless --duration-s is given).
    #[arg(long, conflicts_with = "duration_s")]
    count: Option<u64>,
    /// Send for this many seconds instead of a count.
    #[arg(long, alias = "duration", value_parser = positive)]
    duration_s: Option<f64>,
    /// Target rate in messages per second, over all producers (default: as fast as possible).
    #[arg(long, value_parser = positive)]
    rate: Option<f64>,
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// librdkafka's `batch.size`: the most bytes in one batch to a partition.
    #[arg(long, default_value_t = 1_000_000)]
    batch_size_bytes: u64,
    /// librdkafka's `linger.ms`: how long to wait for a batch to fill.
    #[arg(long, default_value_t = 5)]
    linger_ms: u64,
    /// Producer threads, each with its own client.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    producers: u16,
}

#[derive(clap::Args)]
struct ProduceArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    load: Load,
}

#[derive(clap::Args)]
struct ConsumeArgs {
    #[command(flatten)]
    common: Common,
    /// Stop after this many messages (default: everything the topic holds).
    #[arg(long)]
    count: Option<u64>,
    /// Consumer threads, each with its own client, reading a share of the partitions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    consumers: u16,
}

#[derive(clap::Args)]
struct E2eArgs {
    #[command(flatten)]
    common: Common,
    #[command(flatten)]
    load: Load,
    /// Consumer threads, each with its own client, reading a share of the partitions.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=256))]
    consumers: u16,
}

/// A finite number above zero, for rates and durations.
fn positive(text: &str) -> Result<f64, String> {
    match text.parse::<f64>() {
        Ok(value) if value.is_finite() && value > 0.0 => Ok(value),
        _ => Err(format!("expected a number above 0, got '{text}'")),
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let stop_requested = Arc::new(AtomicBool::new(false));
    let (common, result) = match &args.command {
        Command::Produce(a) => (
            &a.common,
            run_bench(&a.common, Some(&a.load), 0, None, &stop_requested)?,
        ),
        Command::Consume(a) => (
            &a.common,
            run_bench(
                &a.common,
                None,
                a.consumers.into(),
                a.count,
                &stop_requested,
            )?,
        ),
        Command::E2e(a) => (
            &a.common,
            run_bench(
                &a.common,
                Some(&a.load),
                a.consumers.into(),
                None,
                &stop_requested,
            )?,
        ),
    };
    // The files first: a reader of stdout that has gone away ends the tool at its first write.
    if let Some(path) = &common.json {
        result.write_json(path)?;
    }
    if let Some(path) = &common.plot {
        plot::write_svg(path, &result)?;
    }
    print!("{}", result.summary());
    let undelivered = result.produce.as_ref().map_or(0, |p| p.errors);
    if undelivered > 0 {
        bail!("{undelivered} messages were not delivered (see the notes above)");
    }
    Ok(ExitCode::SUCCESS)
}

/// Everything one run needs to know, shared by reference with its threads.
struct Run<'a> {
    common: &'a Common,
    load: Option<&'a Load>,
    partitions: Vec<i32>,
    origin: Instant,
    stop_producers: AtomicBool,
    stop_consumers: AtomicBool,
    stop_requested: &'a AtomicBool,
}

/// Runs producers (when there is a load), consumers (when `consumer_count` > 0) or both.
fn run_bench(
    common: &Common,
    load: Option<&Load>,
    consumer_count: usize,
    consume_count: Option<u64>,
    stop_requested: &Arc<AtomicBool>,
) -> anyhow::Result<BenchResult> {
    // One client answers every metadata and watermark question of the run.
    let metadata = common.connect.consumer(&[])?;
    let partitions = match load {
        Some(load) => prepare_topic(common, load, &metadata)?,
        None => client::topic_partitions(metadata.client(), &common.topic, &common.connect)?,
    };
    let watermarks = partitions
        .iter()
        .map(|&partition| {
            metadata
                .fetch_watermarks(&common.topic, partition, common.connect.timeout())
                .map(|(low, high)| (partition, low, high))
                .map_err(|e| client::broker_error(&e, &common.connect))
        })
        .collect::<anyhow::Result<Vec<_>>>()?;
    drop(metadata);
    let available: u64 = watermarks
        .iter()
        .map(|(_, low, high)| u64::try_from(high - low).unwrap_or(0))
        .sum();
    if load.is_none() && available == 0 {
        bail!(
            "topic '{}' holds no messages; run `ringlog bench produce --topic {}` first",
            common.topic,
            common.topic
        );
    }
    let run = Run {
        common,
        load,
        partitions,
        origin: Instant::now(),
        stop_producers: AtomicBool::new(false),
        stop_consumers: AtomicBool::new(false),
        stop_requested,
    };
    let consumer_plans = run.consumer_plans(consumer_count, &watermarks);
    let expected = match load {
        Some(load) if load.duration_s.is_none() => Some(load.count.unwrap_or(COUNT_DEFAULT)),
        Some(_) => None,
        None => Some(consume_count.map_or(available, |c| c.min(available))),
    };
    // From here on, Ctrl-C ends the run early with a result instead of killing the process.
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(stop_requested))
            .context("signal handler")?;
    }
    let mut notes = Vec::new();
    let (producers, consumers, started_at, samples) =
        run.drive(&consumer_plans, expected, &mut notes)?;
    Ok(run.result(
        consumer_count,
        consume_count,
        producers,
        consumers,
        started_at,
        samples,
        notes,
    ))
}

/// Creates the topic unless it exists; returns its partitions.
fn prepare_topic(
    common: &Common,
    load: &Load,
    metadata: &BaseConsumer<CliContext>,
) -> anyhow::Result<Vec<i32>> {
    let connect = &common.connect;
    let admin = Admin::new(connect)?;
    client::fetch_metadata(admin.client(), None, connect)?;
    let topic = &common.topic;
    match admin.create_topic(topic, load.partitions, load.replication_factor, &[])? {
        Ok(()) => {}
        Err(refusal) if refusal.code == RDKafkaErrorCode::TopicAlreadyExists => {}
        Err(refusal) => bail!("cannot create topic '{topic}': {}", refusal.text()),
    }
    // A topic just created may take a moment to show in metadata.
    let deadline = Instant::now() + connect.timeout();
    loop {
        match client::topic_partitions(metadata.client(), &common.topic, connect) {
            Ok(partitions) => return Ok(partitions),
            Err(error) if Instant::now() >= deadline => return Err(error),
            Err(_) => std::thread::sleep(TICK),
        }
    }
}

impl Run<'_> {
    fn connect(&self) -> &ConnectArgs {
        &self.common.connect
    }

    /// Splits the partitions round-robin over the consumers. A consume run starts at each
    /// partition's low watermark; an end-to-end run at its high one, so it sees only its own
    /// messages. Explicit offsets also spare librdkafka a ListOffsets round trip per partition.
    fn consumer_plans(
        &self,
        count: usize,
        watermarks: &[(i32, i64, i64)],
    ) -> Vec<ConsumerPlan<'_>> {
        let end_to_end = self.load.is_some();
        let count = count.min(watermarks.len());
        if count == 0 {
            return Vec::new();
        }
        let mut starts: Vec<Vec<(i32, Offset)>> = vec![Vec::new(); count];
        for (index, &(partition, low, high)) in watermarks.iter().enumerate() {
            let start = if end_to_end { high } else { low };
            starts[index % count].push((partition, Offset::Offset(start)));
        }
        starts
            .into_iter()
            .map(|start| ConsumerPlan {
                connect: self.connect(),
                topic: &self.common.topic,
                start,
                origin: self.origin,
                stop: &self.stop_consumers,
                stop_at_end: !end_to_end,
                end_to_end,
            })
            .collect()
    }

    /// The librdkafka properties of the load.
    fn producer_properties(load: &Load) -> Vec<(&'static str, String)> {
        vec![
            ("acks", load.acks.clone()),
            ("compression.type", load.compression.clone()),
            ("batch.size", load.batch_size_bytes.to_string()),
            ("linger.ms", load.linger_ms.to_string()),
        ]
    }

    /// Starts the threads and runs the progress loop until the run is over; returns each
    /// side's outcomes, when the producers started (since `origin`) and the throughput samples.
    #[allow(clippy::type_complexity)]
    fn drive(
        &self,
        consumer_plans: &[ConsumerPlan<'_>],
        expected: Option<u64>,
        notes: &mut Vec<String>,
    ) -> anyhow::Result<(
        Vec<ProducerOutcome>,
        Vec<ConsumerOutcome>,
        Duration,
        Vec<progress::ThroughputSample>,
    )> {
        let properties = self.load.map(Self::producer_properties).unwrap_or_default();
        let producer_count = self.load.map_or(0, |l| usize::from(l.producers));
        let quotas = self
            .load
            .map_or(Vec::new(), |load| quotas(load, producer_count));
        let producer_counters: Vec<Arc<ProducerCounters>> =
            (0..producer_count).map(|_| Arc::default()).collect();
        let consumer_counters: Vec<Arc<ConsumerCounters>> =
            consumer_plans.iter().map(|_| Arc::default()).collect();

        let producer_plans: Vec<ProducerPlan<'_>> = quotas
            .iter()
            .filter_map(|quota| {
                let load = self.load?;
                Some(ProducerPlan {
                    connect: self.connect(),
                    topic: &self.common.topic,
                    properties: &properties,
                    message_size_bytes: load.message_size_bytes as usize,
                    quota: *quota,
                    rate_msgs_per_s: load.rate.map(|r| r / producer_count as f64),
                    origin: self.origin,
                    stop: &self.stop_producers,
                })
            })
            .collect();
        std::thread::scope(|scope| {
            let consumers: Vec<_> = consumer_plans
                .iter()
                .zip(&consumer_counters)
                .map(|(plan, counters)| {
                    let counters = Arc::clone(counters);
                    scope.spawn(move || consumer::run(plan, counters))
                })
                .collect();
            if self.load.is_some() && !consumers.is_empty() {
                self.wait_until_consumers_ready(&consumer_counters, notes);
            }
            let started_at = self.origin.elapsed();
            let producers: Vec<_> = producer_plans
                .iter()
                .zip(&producer_counters)
                .map(|(plan, counters)| {
                    let counters = Arc::clone(counters);
                    scope.spawn(move || producer::run(plan, counters))
                })
                .collect();

            let mut progress = Progress::new(expected, TICK);
            self.watch(
                &producers,
                &consumers,
                &producer_counters,
                &consumer_counters,
                started_at,
                expected,
                &mut progress,
                notes,
            );
            let producer_outcomes = join_all(producers);
            self.stop_consumers.store(true, Ordering::Relaxed);
            let consumer_outcomes = join_all(consumers);
            let totals = totals(&producer_counters, &consumer_counters);
            let samples = progress.finish(self.origin.elapsed().saturating_sub(started_at), totals);
            Ok((producer_outcomes?, consumer_outcomes?, started_at, samples))
        })
    }

    /// Before producing, lets every consumer reach the end of its partitions, so the first
    /// end-to-end latencies do not include the consumers' start-up.
    fn wait_until_consumers_ready(
        &self,
        counters: &[Arc<ConsumerCounters>],
        notes: &mut Vec<String>,
    ) {
        let deadline = Instant::now() + self.connect().timeout();
        while !counters.iter().all(|c| c.ready.load(Ordering::Relaxed)) {
            if Instant::now() >= deadline || self.stop_requested.load(Ordering::Relaxed) {
                notes.push("consumers were not all ready when the producers started".into());
                return;
            }
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// The progress loop: redraws, enforces `--duration-s` and Ctrl-C, and decides when the
    /// consumers have nothing more to wait for.
    #[allow(clippy::too_many_arguments)]
    fn watch<P, C>(
        &self,
        producers: &[ScopedJoinHandle<'_, P>],
        consumers: &[ScopedJoinHandle<'_, C>],
        producer_counters: &[Arc<ProducerCounters>],
        consumer_counters: &[Arc<ConsumerCounters>],
        started_at: Duration,
        expected: Option<u64>,
        progress: &mut Progress,
        notes: &mut Vec<String>,
    ) {
        let deadline = self
            .load
            .and_then(|l| l.duration_s)
            .map(|s| started_at + Duration::from_secs_f64(s.max(0.0)));
        let mut last_consumed = (0u64, Instant::now());
        loop {
            std::thread::sleep(TICK);
            let now = self.origin.elapsed();
            let totals = totals(producer_counters, consumer_counters);
            let position = if producers.is_empty() {
                totals.consumed
            } else {
                totals.produced
            };
            progress.update(now.saturating_sub(started_at), totals, position);
            if self.stop_requested.load(Ordering::Relaxed) {
                notes.push("stopped early by a signal".into());
                break;
            }
            if deadline.is_some_and(|d| now >= d) {
                self.stop_producers.store(true, Ordering::Relaxed);
            }
            if totals.consumed > last_consumed.0 {
                last_consumed = (totals.consumed, Instant::now());
            }
            if !producers.iter().all(|h| h.is_finished()) {
                continue;
            }
            if consumers.iter().all(|h| h.is_finished()) {
                break;
            }
            let wanted = if producers.is_empty() {
                expected.unwrap_or(u64::MAX)
            } else {
                totals.produced
            };
            if totals.consumed >= wanted {
                break;
            }
            if last_consumed.1.elapsed() >= DRAIN_TIMEOUT {
                notes.push(format!(
                    "consumers received {} of {wanted} messages; stopped after {} s without news",
                    totals.consumed,
                    DRAIN_TIMEOUT.as_secs()
                ));
                break;
            }
        }
        self.stop_producers.store(true, Ordering::Relaxed);
        self.stop_consumers.store(true, Ordering::Relaxed);
    }

    #[allow(clippy::too_many_arguments)]
    fn result(
        &self,
        consumer_count: usize,
        consume_count: Option<u64>,
        producers: Vec<ProducerOutcome>,
        consumers: Vec<ConsumerOutcome>,
        started_at: Duration,
        throughput_over_time: Vec<progress::ThroughputSample>,
        mut notes: Vec<String>,
    ) -> BenchResult {
        let load = self.load;
        let produce = load.map(|load| {
            let acked: u64 = producers.iter().map(|p| p.acked).sum();
            let sent: u64 = producers.iter().map(|p| p.sent).sum();
            let failed: u64 = producers.iter().map(|p| p.failed).sum();
            let errors = failed.max(sent - acked.min(sent));
            if errors > 0 {
                let reason = producers.iter().find_map(|p| p.first_error.clone());
                notes.push(format!(
                    "{errors} of {sent} messages were not delivered: {}",
                    reason.unwrap_or_else(|| "no reason given".into())
                ));
            }
            let last_ack_at = producers
                .iter()
                .map(|p| p.last_ack_at)
                .max()
                .unwrap_or_default();
            Throughput::new(
                acked,
                errors,
                acked * load.message_size_bytes,
                last_ack_at.saturating_sub(started_at),
            )
        });
        let consume = (consumer_count > 0).then(|| {
            let consumed: u64 = consumers.iter().map(|c| c.consumed).sum();
            let bytes: u64 = consumers.iter().map(|c| c.bytes).sum();
            let last_at = consumers
                .iter()
                .map(|c| c.last_message_at)
                .max()
                .unwrap_or_default();
            // Alone, consumers are timed from their first message, so that connecting and
            // finding the start offsets do not count as reading time.
            let first_at = match load {
                Some(_) => started_at,
                None => consumers
                    .iter()
                    .filter_map(|c| c.first_message_at)
                    .min()
                    .unwrap_or_default(),
            };
            Throughput::new(consumed, 0, bytes, last_at.saturating_sub(first_at))
        });
        let mut produce_latency = LatencyRecorder::default();
        let mut end_to_end_latency = LatencyRecorder::default();
        for outcome in producers {
            produce_latency.merge(outcome.latency);
        }
        for outcome in consumers {
            end_to_end_latency.merge(outcome.latency);
        }
        BenchResult {
            kind: match (load.is_some(), consumer_count > 0) {
                (true, false) => "produce",
                (false, _) => "consume",
                (true, true) => "e2e",
            },
            ringlog_version: env!("CARGO_PKG_VERSION"),
            librdkafka_version: rdkafka::util::get_rdkafka_version().1,
            settings: Settings {
                brokers: self.connect().brokers.clone(),
                topic: self.common.topic.clone(),
                partitions: self.partitions.len(),
                message_size_bytes: load.map(|l| l.message_size_bytes as usize),
                count: match load {
                    Some(l) if l.duration_s.is_none() => Some(l.count.unwrap_or(COUNT_DEFAULT)),
                    Some(_) => None,
                    None => consume_count,
                },
                duration_s: load.and_then(|l| l.duration_s),
                rate_msgs_per_s: load.and_then(|l| l.rate),
                acks: load.map(|l| l.acks.clone()),
                compression: load.map(|l| l.compression.clone()),
                batch_size_bytes: load.map(|l| l.batch_size_bytes),
                linger_ms: load.map(|l| l.linger_ms),
                producers: load.map_or(0, |l| usize::from(l.producers)),
                consumers: consumer_count.min(self.partitions.len()),
            },
            produce,
            consume,
            produce_latency: produce_latency.summary(started_at),
            end_to_end_latency: end_to_end_latency.summary(started_at),
            throughput_over_time,
            notes,
        }
    }
}

/// Each producer's share of `--count` (the first ones take the remainder), or no quota for a
/// timed run.
fn quotas(load: &Load, producers: usize) -> Vec<Option<u64>> {
    if load.duration_s.is_some() {
        return vec![None; producers];
    }
    let count = load.count.unwrap_or(COUNT_DEFAULT);
    let share = count / producers as u64;
    let remainder = count % producers as u64;
    (0..producers as u64)
        .map(|index| Some(share + u64::from(index < remainder)))
        .collect()
}

/// Messages acknowledged and consumed so far, over all threads.
fn totals(producers: &[Arc<ProducerCounters>], consumers: &[Arc<ConsumerCounters>]) -> Totals {
    Totals {
        produced: producers
            .iter()
            .map(|c| c.acked.load(Ordering::Relaxed))
            .sum(),
        consumed: consumers
            .iter()
            .map(|c| c.consumed.load(Ordering::Relaxed))
            .sum(),
    }
}

/// Joins every thread; the first failure wins.
fn join_all<T>(handles: Vec<ScopedJoinHandle<'_, anyhow::Result<T>>>) -> anyhow::Result<Vec<T>> {
    let mut outcomes = Vec::with_capacity(handles.len());
    let mut first_error = None;
    for handle in handles {
        match handle.join() {
            Ok(Ok(outcome)) => outcomes.push(outcome),
            Ok(Err(error)) => {
                first_error.get_or_insert(error);
            }
            Err(_) => {
                first_error.get_or_insert(anyhow!("a bench thread panicked"));
            }
        }
    }
    match first_error {
        Some(error) => Err(error),
        None => Ok(outcomes),
    }
}
