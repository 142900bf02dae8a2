//! `ringlog produce TOPIC`: every line of stdin (or `--file`) becomes one message, optionally
//! split into key and value at `--key-separator`. Lines are bytes, not text: whatever is
//! between two newlines is sent unchanged. The summary goes to stderr so stdout stays clean.
//!
//! Input is read on a thread of its own, so that a signal is noticed even while stdin has
//! nothing to give: the first SIGINT or SIGTERM stops the reading and leaves `--timeout-ms` to
//! deliver what was queued, as kcat does; a second one ends the process at once.

use std::fs::File;
use std::io::{BufRead, BufReader, Read};
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, DeliveryResult, Producer, ProducerContext};
use rdkafka::ClientContext;

use super::client::{self, CliContext, ConnectArgs, FirstError};

/// How long librdkafka keeps trying to deliver one message before reporting it failed; it
/// also bounds the final flush.
const MESSAGE_TIMEOUT_MS: u64 = 30_000;
/// How long the producer waits for input before it looks at the signals again.
const INPUT_WAIT: Duration = Duration::from_millis(100);
/// How long one flush waits before the producer looks at the signals again.
const FLUSH_SLICE: Duration = Duration::from_millis(100);
/// How long librdkafka is told the producer is flushing before each slice: long enough for
/// its broker threads to wake and send what lingers.
const LINGER_NUDGE: Duration = Duration::from_millis(10);
/// The reader hands lines over in batches of at most this many lines or bytes (a longer line
/// goes alone), and sooner when no more input is ready.
const BATCH_LINES_MAX: usize = 1024;
const BATCH_SIZE_MAX_BYTES: usize = 1024 * 1024;
/// Batches read but not yet queued in librdkafka; past this the reader waits.
const BATCHES_AHEAD_MAX: usize = 4;
/// How long to let librdkafka drain its queue when it is full before trying again.
const QUEUE_FULL_WAIT: Duration = Duration::from_millis(50);
/// Delivery reports are served every this many messages, so the callback counts stay current
/// without a poll per message.
const POLL_EVERY_MESSAGES: u64 = 1024;
/// Lines longer than this are refused rather than buffered without limit.
const LINE_SIZE_MAX_BYTES: usize = 64 * 1024 * 1024;

#[derive(clap::Args)]
#[command(
    after_help = "The first Ctrl-C (or SIGTERM) stops reading the input and waits up to \
    --timeout-ms for the messages already queued, then prints the summary; a second one quits \
    at once.\n\n\
    Examples:\n  \
    seq 1 1000 | ringlog produce orders\n  \
    ringlog produce orders --file orders.txt --key-separator ':'\n  \
    ringlog produce orders --acks all --compression zstd --header source=import --header v=2"
)]
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
    let interrupted = on_signals()?;
    let input: Box<dyn Read + Send> = match &args.file {
        Some(path) => {
            Box::new(File::open(path).with_context(|| format!("cannot open {}", path.display()))?)
        }
        None => Box::new(std::io::stdin()),
    };
    let message_timeout_ms = MESSAGE_TIMEOUT_MS.to_string();
    let config = args.connect.client_config(&[
        ("acks", args.acks.as_str()),
        ("compression.type", args.compression.as_str()),
        ("message.timeout.ms", message_timeout_ms.as_str()),
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

    let (sender, batches) = mpsc::sync_channel(BATCHES_AHEAD_MAX);
    // Left running at exit when blocked on input: nothing it holds needs releasing.
    std::thread::Builder::new()
        .name("produce-input".into())
        .spawn(move || read_lines(input, &sender))
        .context("starting the input thread")?;
    let mut queued = Queued::default();
    // What was queued before a bad line or a refused message is still delivered and counted.
    let stopped_early = queue_input(&producer, &args, &batches, &interrupted, &mut queued);
    let in_time = deliver(&producer, &interrupted, &args.connect);

    let context = producer.context();
    let delivered = context.delivered.load(Ordering::Relaxed);
    let Queued { sent, sent_bytes } = queued;
    eprintln!(
        "produced {delivered} of {sent} messages ({sent_bytes} bytes) to '{}'",
        args.topic
    );
    stopped_early?;
    if delivered != sent {
        let reason = match context.first_error.get() {
            Some(reason) => reason,
            None if in_time => "unknown".to_string(),
            None => "no delivery report in time".to_string(),
        };
        bail!(
            "{} of {sent} messages were not delivered: {reason}",
            sent - delivered
        );
    }
    Ok(ExitCode::SUCCESS)
}

/// A flag raised by the first SIGINT or SIGTERM; the second ends the process at once, with the
/// shell's status for death by that signal.
fn on_signals() -> anyhow::Result<Arc<AtomicBool>> {
    let interrupted = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        // Registered first, so that it runs before the flag is raised: it ends the process
        // only when an earlier signal raised it.
        signal_hook::flag::register_conditional_shutdown(
            signal,
            128 + signal,
            Arc::clone(&interrupted),
        )
        .context("signal handler")?;
        signal_hook::flag::register(signal, Arc::clone(&interrupted)).context("signal handler")?;
    }
    Ok(interrupted)
}

/// Lines as the input thread hands them over, or why it stopped early.
type Batch = anyhow::Result<Vec<Vec<u8>>>;

/// Reads lines and sends them on in batches until the input ends, fails, or the producer
/// stops listening. The lines before a failure go first, then the failure.
fn read_lines(input: Box<dyn Read + Send>, batches: &SyncSender<Batch>) {
    let mut reader = BufReader::new(input);
    let mut batch = Vec::new();
    let mut batch_bytes = 0;
    let mut lines_read = 0u64;
    let outcome = loop {
        lines_read += 1;
        let line = match read_line(&mut reader, lines_read) {
            Ok(Some(line)) => line,
            Ok(None) => break Ok(()),
            Err(error) => break Err(error),
        };
        batch_bytes += line.len();
        batch.push(line);
        let input_waits = reader.buffer().is_empty();
        if input_waits || batch.len() >= BATCH_LINES_MAX || batch_bytes >= BATCH_SIZE_MAX_BYTES {
            if batches.send(Ok(std::mem::take(&mut batch))).is_err() {
                return;
            }
            batch_bytes = 0;
        }
    };
    if !batch.is_empty() && batches.send(Ok(batch)).is_err() {
        return;
    }
    if let Err(error) = outcome {
        let _ = batches.send(Err(error));
    }
}

/// Line `number` without its newline; None at the end of the input.
fn read_line(
    reader: &mut BufReader<Box<dyn Read + Send>>,
    number: u64,
) -> anyhow::Result<Option<Vec<u8>>> {
    let mut line = Vec::new();
    let read = reader
        .take(LINE_SIZE_MAX_BYTES as u64 + 1)
        .read_until(b'\n', &mut line)
        .context("reading input")?;
    if read == 0 {
        return Ok(None);
    }
    if line.last() == Some(&b'\n') {
        line.pop();
    } else if line.len() > LINE_SIZE_MAX_BYTES {
        bail!("line {number} is longer than {LINE_SIZE_MAX_BYTES} bytes");
    }
    Ok(Some(line))
}

/// Messages handed to librdkafka.
#[derive(Default)]
struct Queued {
    sent: u64,
    sent_bytes: u64,
}

/// Queues every line the input thread hands over until the input ends, a signal comes, or
/// a line cannot be read or sent.
fn queue_input(
    producer: &BaseProducer<CountingContext>,
    args: &Args,
    batches: &Receiver<Batch>,
    interrupted: &AtomicBool,
    queued: &mut Queued,
) -> anyhow::Result<()> {
    while !interrupted.load(Ordering::Relaxed) {
        let lines = match batches.recv_timeout(INPUT_WAIT) {
            Ok(batch) => batch?,
            Err(RecvTimeoutError::Timeout) => {
                producer.poll(Duration::ZERO);
                continue;
            }
            Err(RecvTimeoutError::Disconnected) => break,
        };
        for line in &lines {
            let (key, value) = split_key(line, args.key_separator.as_deref().map(str::as_bytes));
            if !send(producer, args, key, value, interrupted)? {
                break;
            }
            queued.sent += 1;
            queued.sent_bytes += line.len() as u64;
            if queued.sent % POLL_EVERY_MESSAGES == 0 {
                producer.poll(Duration::ZERO);
            }
        }
    }
    Ok(())
}

/// Waits for the delivery reports of everything queued: as long as librdkafka may take to
/// deliver a message, or only `--timeout-ms` once a signal has come. True when every report
/// arrived.
fn deliver(
    producer: &BaseProducer<CountingContext>,
    interrupted: &AtomicBool,
    connect: &ConnectArgs,
) -> bool {
    let mut deadline = Instant::now() + Duration::from_millis(MESSAGE_TIMEOUT_MS);
    let mut noted = false;
    loop {
        if interrupted.load(Ordering::Relaxed) && !noted {
            noted = true;
            deadline = deadline.min(Instant::now() + connect.timeout());
            eprintln!(
                "interrupted: input no longer read; waiting up to {} ms for the queued \
                 messages (signal again to quit at once)",
                connect.timeout_ms
            );
        }
        let now = Instant::now();
        if now >= deadline {
            return producer.in_flight_count() == 0;
        }
        send_lingering(producer);
        if producer.flush((deadline - now).min(FLUSH_SLICE)).is_ok() {
            return true;
        }
    }
}

/// Sends the messages librdkafka holds back for `linger.ms`, as its own flush does: the
/// rdkafka crate's flush is a loop of zero-length librdkafka flushes (it must serve delivery
/// reports between them), each too short for the broker threads to see the producer as
/// flushing, so alone it waits out the linger. A `-X linger.ms` of minutes would otherwise
/// keep the last messages, and a Ctrl-C, waiting that long.
fn send_lingering(producer: &BaseProducer<CountingContext>) {
    // SAFETY: the producer's live handle. The crate's producer takes delivery reports as
    // events, so this call serves no queue and calls back into no Rust code; it waits at
    // most LINGER_NUDGE for librdkafka's count of undelivered messages to reach zero, which
    // it cannot before those events are polled, so it does wait that long.
    unsafe {
        rdkafka::bindings::rd_kafka_flush(
            producer.client().native_ptr(),
            LINGER_NUDGE.as_millis() as std::ffi::c_int,
        );
    }
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

/// Queues one message, waiting while librdkafka's queue is full; false when a signal came
/// before there was room.
fn send(
    producer: &BaseProducer<CountingContext>,
    args: &Args,
    key: Option<&[u8]>,
    value: &[u8],
    interrupted: &AtomicBool,
) -> anyhow::Result<bool> {
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
            Ok(()) => return Ok(true),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _))
                if interrupted.load(Ordering::Relaxed) =>
            {
                return Ok(false)
            }
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
            Err((error, _)) => self.first_error.record(error),
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
