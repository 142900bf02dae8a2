//! `ringlog produce TOPIC`: every line of stdin (or `--file`) becomes one message, optionally
//! split into key and value at `--key-separator`. Lines are bytes, not text: whatever is
//! between two newlines is sent unchanged. The summary goes to stderr so stdout stays clean.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::{bail, Context};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::client::{self, CliContext, ConnectArgs, FirstError};

/// How long librdkafka keeps trying to deliver one message before reporting it failed; it
/// also bounds the final flush.
const MESSAGE_TIMEOUT_MS: &str = "30000";
/// How long to let librdkafka drain its queue when it is full before trying again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(50);
/// Delivery reports are served every this many messages, so the callback counts stay current
/// without a poll per message.
const POLL_EVERY_MESSAGES: u64 = 1024;
/// Lines longer than this are refused rather than buffered without limit.
const LINE_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    seq 1 1000 | ringlog produce orders\n  \
    ringlog produce orders --file orders.txt --key-separator ':'\n  \
    ringlog produce orders --acks all --compression zstd --header source=import --header v=2")]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The topic to write to.
    topic: String,
    /// Read messages from this file instead of stdin.
    #[arg(long, short = 'f')]
    file: Option<PathBuf>,
    /// Split each line at the first occurrence of this text into key and value; lines without
    /// it get no key.
    #[arg(long, short = 'K')]
    key_separator: Option<String>,
    /// Send every message to this partition instead of letting the partitioner choose.
    #[arg(long, short = 'p')]
    partition: Option<i32>,
    /// Acknowledgements to wait for: 0, 1 or all.
    #[arg(long, default_value = "all", value_parser = ["0", "1", "all", "-1"])]
    acks: String,
    #[arg(long, default_value = "none", value_parser = ["none", "gzip", "snappy", "lz4", "zstd"])]
    compression: String,
    /// A header added to every message, `key=value` (repeatable).
    #[arg(long = "header", short = 'H', value_name = "KEY=VALUE",
          value_parser = client::parse_key_value)]
    headers: Vec<(String, String)>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let input: Box<dyn Read> = match &args.file {
        Some(path) => {
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        None => Box::new(std::io::stdin().lock()),
    };
    let config = args.connect.client_config(&[
        ("acks", args.acks.as_str()),
        ("compression.type", args.compression.as_str()),
        ("message.timeout.ms", MESSAGE_TIMEOUT_MS),
    ]);
    let producer: BaseProducer<CountingContext> =
        client::create(&config, CountingContext::default())?;
    // A producer's metadata request may auto-create the topic, as Kafka's console producer does.
    let partitions = client::topic_partitions(producer.client(), &args.topic, &args.connect)?;
    if let Some(partition) = args.partition {
        if !partitions.contains(&partition) {
            bail!(
                "topic '{}' has no partition {partition} (it has {})",
                args.topic,
                partitions.len()
            );
        }
    }

    let mut sent = 0u64;
    let mut sent_bytes = 0u64;
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        line.clear();
        let read = (&mut reader)
            .take(LINE_SIZE_MAX_BYTES as u64 + 1)
            .read_until(b'\n', &mut line)
            .context("reading input")?;
        if read == 0 {
            break;
        }
        if line.last() == Some(&b'\n') {
            line.pop();
        } else if line.len() > LINE_SIZE_MAX_BYTES {
            bail!(
                "line {} is longer than {LINE_SIZE_MAX_BYTES} bytes",
                sent + 1
            );
        }
        let (key, value) = split_key(&line, args.key_separator.as_deref().map(str::as_bytes));
        send(&producer, &args, key, value)?;
        sent += 1;
        sent_bytes += line.len() as u64;
        if sent % POLL_EVERY_MESSAGES == 0 {
            producer.poll(Duration::ZERO);
        }
    }
    producer
        .flush(Duration::from_millis(MESSAGE_TIMEOUT_MS.parse()?))
        .map_err(|e| client::broker_error(&e, &args.connect))?;

    let context = producer.context();
    let delivered = context.delivered.load(Ordering::Relaxed);
    let failed = context.failed.load(Ordering::Relaxed);
    eprintln!(
        "produced {delivered} of {sent} messages ({sent_bytes} bytes) to '{}'",
        args.topic
    );
    if failed > 0 || delivered != sent {
        let reason = context
            .first_error
            .get()
            .unwrap_or_else(|| "unknown".to_string());
        bail!(
            "{} of {sent} messages were not delivered: {reason}",
            sent - delivered
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// Key and value of one line: split at the first separator when one is given and present.
fn split_key<'a>(line: &'a [u8], separator: Option<&[u8]>) -> (Option<&'a [u8]>, &'a [u8]) {
    let Some(separator) = separator.filter(|s| !s.is_empty()) else {
        return (None, line);
    };
    match line
        .windows(separator.len())
        .position(|window| window == separator)
    {
        Some(at) => (Some(&line[..at]), &line[at + separator.len()..]),
        None => (None, line),
    }
}

/// Queues one message, waiting while librdkafka's queue is full.
fn send(
    producer: &BaseProducer<CountingContext>,
    args: &Args,
    key: Option<&[u8]>,
    value: &[u8],
) -> anyhow::Result<()> {
    let mut record: BaseRecord<'_, [u8], [u8]> = BaseRecord::to(&args.topic).payload(value);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(partition) = args.partition {
        record = record.partition(partition);
    }
    if !args.headers.is_empty() {
        let mut headers = OwnedHeaders::new_with_capacity(args.headers.len());
        for (key, value) in &args.headers {
            headers = headers.insert(Header {
                key,
                value: Some(value),
            });
        }
        record = record.headers(headers);
    }
    loop {
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), returned)) => {
                record = returned;
                producer.poll(QUEUE_FULL_WAIT);
            }
            Err((error, _)) => bail!("cannot send: {}", client::describe(&error)),
        }
    }
}

/// Counts delivery reports and keeps the first failure's reason.
#[derive(Default)]
struct CountingContext {
    cli: CliContext,
    delivered: AtomicU64,
    failed: AtomicU64,
    first_error: FirstError,
}

impl ClientContext for CountingContext {
    fn log(&self, level: rdkafka::config::RDKafkaLogLevel, facility: &str, message: &str) {
        self.cli.log(level, facility, message);
    }

    fn error(&self, error: KafkaError, reason: &str) {
        self.cli.error(error, reason);
    }
}

impl ProducerContext for CountingContext {
    type DeliveryOpaque = ();

    fn delivery(&self, result: &DeliveryResult<'_>, _: ()) {
        match result {
            Ok(_) => {
                self.delivered.fetch_add(1, Ordering::Relaxed);
            }
            Err((error, _)) => {
                self.failed.fetch_add(1, Ordering::Relaxed);
                self.first_error.record(error);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_split_at_the_first_separator() {
        assert_eq!(
            split_key(b"k:v:w", Some(b":")),
            (Some(&b"k"[..]), &b"v:w"[..])
        );
        assert_eq!(split_key(b"novalue", Some(b":")), (None, &b"novalue"[..]));
        assert_eq!(
            split_key(b"k::v", Some(b"::")),
            (Some(&b"k"[..]), &b"v"[..])
        );
        assert_eq!(split_key(b"k:v", None), (None, &b"k:v"[..]));
        assert_eq!(split_key(b":v", Some(b":")), (Some(&b""[..]), &b"v"[..]));
    }
}
