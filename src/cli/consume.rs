//! `ringlog consume TOPIC`: prints messages to stdout, one a line, as values, `key<sep>value`,
//! or JSON objects. Without `--group` it reads the partitions directly (assign); with `--group`
//! it joins the consumer group (or, with `--partition`, reads those partitions and commits to
//! the group) and commits what it printed before it exits. Ctrl-C stops it cleanly.

use std::borrow::Cow;
use std::collections::BTreeSet;
use std::io::{self, Write};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::ValueEnum;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::{Offset, TopicPartitionList};

use super::client::{self, CliContext, ConnectArgs};

/// The group id of a consumer without `--group`: never joined, never committed to.
const ASSIGN_ONLY_GROUP_ID: &str = "ringlog-consume-assign-only";
/// How long one poll waits before the loop looks at Ctrl-C and flushes stdout.
const POLL_INTERVAL: Duration = Duration::from_millis(100);

#[derive(clap::Args)]
#[command(after_help = "Examples:\n  \
    ringlog consume orders --from-beginning --exit-at-end\n  \
    ringlog consume orders --group billing --from-beginning --count 100\n  \
    ringlog consume orders --partition 0 --offset 42 --format json\n  \
    ringlog consume orders --format key-value --key-separator ' => '")]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    /// The topic to read.
    topic: String,
    /// Start at the oldest message when there is no committed offset (default: only new ones).
    #[arg(long)]
    from_beginning: bool,
    /// Consume as this consumer group, committing offsets.
    #[arg(long, short = 'g')]
    group: Option<String>,
    /// Read only this partition (repeatable).
    #[arg(long = "partition", short = 'p')]
    partitions: Vec<i32>,
    /// Where to start in each partition: an offset, `earliest` or `latest`.
    #[arg(long, short = 'o', value_parser = parse_start)]
    offset: Option<Start>,
    /// Stop after this many messages.
    #[arg(long, short = 'c')]
    count: Option<u64>,
    /// Stop when every partition read has been read to its end.
    #[arg(long, short = 'e')]
    exit_at_end: bool,
    #[arg(long, value_enum, default_value_t = Format::Value)]
    format: Format,
    /// What goes between key and value with `--format key-value`.
    #[arg(long, default_value = "\t")]
    key_separator: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
enum Format {
    /// The value only, bytes unchanged.
    Value,
    /// Key, separator, value.
    KeyValue,
    /// One JSON object a line: topic, partition, offset, timestamp, key, value, headers
    /// (keys, values and headers as UTF-8 text; invalid bytes become U+FFFD).
    Json,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Start {
    Earliest,
    Latest,
    At(i64),
}

fn parse_start(text: &str) -> Result<Start, String> {
    match text {
        "earliest" | "beginning" => Ok(Start::Earliest),
        "latest" | "end" => Ok(Start::Latest),
        number => match number.parse::<i64>() {
            Ok(offset) if offset >= 0 => Ok(Start::At(offset)),
            _ => Err(format!(
                "expected an offset (0 or more), 'earliest' or 'latest', got '{text}'"
            )),
        },
    }
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if args.offset.is_some() && args.partitions.is_empty() {
        bail!("--offset needs --partition: an offset means something only within one partition");
    }
    let consumer = create_consumer(&args)?;
    let partitions = client::topic_partitions(consumer.client(), &args.topic, &args.connect)?;
    for partition in &args.partitions {
        if !partitions.contains(partition) {
            bail!(
                "topic '{}' has no partition {partition} (it has {})",
                args.topic,
                partitions.len()
            );
        }
    }
    let subscribed = args.group.is_some() && args.partitions.is_empty();
    if subscribed {
        consumer
            .subscribe(&[&args.topic])
            .map_err(|e| anyhow::anyhow!("cannot subscribe: {}", client::describe(&e)))?;
    } else {
        let chosen = if args.partitions.is_empty() {
            &partitions
        } else {
            &args.partitions
        };
        consumer
            .assign(&assignment(&args, chosen)?)
            .map_err(|e| anyhow::anyhow!("cannot assign partitions: {}", client::describe(&e)))?;
    }

    let stop = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&stop)).context("signal handler")?;
    }
    let outcome = consume_loop(&consumer, &args, &stop);
    if args.group.is_some() {
        // Commit what was printed, even when the loop ended on an error.
        match consumer.commit_consumer_state(CommitMode::Sync) {
            Ok(())
            | Err(KafkaError::ConsumerCommit(rdkafka::types::RDKafkaErrorCode::NoOffset)) => {}
            Err(error) => eprintln!(
                "ringlog: cannot commit offsets: {}",
                client::describe(&error)
            ),
        }
    }
    let printed = outcome?;
    eprintln!("consumed {printed} messages");
    Ok(ExitCode::SUCCESS)
}

fn create_consumer(args: &Args) -> anyhow::Result<BaseConsumer<CliContext>> {
    let reset = if args.from_beginning {
        "earliest"
    } else {
        "latest"
    };
    let mut extra = vec![
        ("auto.offset.reset", reset),
        ("enable.partition.eof", "true"),
        // Offsets are stored only for messages printed, and committed at exit and every second.
        ("enable.auto.offset.store", "false"),
    ];
    match &args.group {
        Some(group) => {
            extra.push(("group.id", group.as_str()));
            extra.push(("enable.auto.commit", "true"));
            extra.push(("auto.commit.interval.ms", "1000"));
        }
        None => {
            // librdkafka assigns partitions only through a consumer group handle, which needs
            // a group id; without --group nothing is ever committed under it.
            extra.push(("group.id", ASSIGN_ONLY_GROUP_ID));
            extra.push(("enable.auto.commit", "false"));
        }
    }
    args.connect.consumer(&extra)
}

/// The partitions to read, each with its start offset.
fn assignment(args: &Args, partitions: &[i32]) -> anyhow::Result<TopicPartitionList> {
    let start = match args.offset {
        Some(Start::Earliest) => Offset::Beginning,
        Some(Start::Latest) => Offset::End,
        Some(Start::At(offset)) => Offset::Offset(offset),
        // With a group, the committed offset wins; `auto.offset.reset` covers its absence.
        None if args.group.is_some() => Offset::Stored,
        None if args.from_beginning => Offset::Beginning,
        None => Offset::End,
    };
    let mut list = TopicPartitionList::new();
    for &partition in partitions {
        list.add_partition_offset(&args.topic, partition, start)
            .map_err(|e| anyhow::anyhow!("{}", client::describe(&e)))?;
    }
    Ok(list)
}

/// Polls and prints until `--count`, the end (`--exit-at-end`), Ctrl-C or an error; returns
/// how many messages it printed.
fn consume_loop(
    consumer: &BaseConsumer<CliContext>,
    args: &Args,
    stop: &AtomicBool,
) -> anyhow::Result<u64> {
    let stdout = io::stdout();
    let mut out = io::BufWriter::new(stdout.lock());
    let mut printed = 0u64;
    let mut at_end: BTreeSet<i32> = BTreeSet::new();
    while !stop.load(Ordering::Relaxed) && args.count.is_none_or(|count| printed < count) {
        match consumer.poll(POLL_INTERVAL) {
            None => {
                if flush_or_stop(&mut out)? {
                    break;
                }
            }
            Some(Ok(message)) => {
                at_end.remove(&message.partition());
                match write_message(&mut out, &message, args) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::BrokenPipe => break,
                    Err(e) => return Err(e).context("writing to stdout"),
                }
                printed += 1;
                if args.group.is_some() {
                    consumer
                        .store_offset_from_message(&message)
                        .map_err(|e| anyhow::anyhow!("{}", client::describe(&e)))?;
                }
            }
            Some(Err(KafkaError::PartitionEOF(partition))) => {
                at_end.insert(partition);
                if args.exit_at_end && everything_read(consumer, &at_end) {
                    break;
                }
            }
            Some(Err(error)) => {
                let _ = out.flush();
                bail!("{}", client::describe(&error));
            }
        }
    }
    flush_or_stop(&mut out)?;
    Ok(printed)
}

/// Flushes stdout; true when the reader has gone away (a closed pipe ends the tool quietly).
fn flush_or_stop(out: &mut impl Write) -> anyhow::Result<bool> {
    match out.flush() {
        Ok(()) => Ok(false),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => Ok(true),
        Err(e) => Err(e).context("writing to stdout"),
    }
}

/// Whether every partition assigned to this consumer has reported its end.
fn everything_read(consumer: &BaseConsumer<CliContext>, at_end: &BTreeSet<i32>) -> bool {
    match consumer.assignment() {
        Ok(assigned) => {
            assigned.count() > 0
                && assigned
                    .elements()
                    .iter()
                    .all(|e| at_end.contains(&e.partition()))
        }
        Err(_) => false,
    }
}

fn write_message(
    out: &mut impl Write,
    message: &BorrowedMessage<'_>,
    args: &Args,
) -> io::Result<()> {
    match args.format {
        Format::Value => {
            out.write_all(message.payload().unwrap_or_default())?;
        }
        Format::KeyValue => {
            out.write_all(message.key().unwrap_or_default())?;
            out.write_all(args.key_separator.as_bytes())?;
            out.write_all(message.payload().unwrap_or_default())?;
        }
        Format::Json => {
            serde_json::to_writer(&mut *out, &to_json(message)).map_err(io::Error::other)?;
        }
    }
    out.write_all(b"\n")
}

/// One message as `--format json` prints it; fields in this order.
#[derive(serde::Serialize)]
struct JsonMessage<'a> {
    topic: &'a str,
    partition: i32,
    offset: i64,
    /// Milliseconds since the Unix epoch, when the message has one.
    timestamp: Option<i64>,
    key: Option<Cow<'a, str>>,
    value: Option<Cow<'a, str>>,
    headers: Vec<JsonHeader<'a>>,
}

#[derive(serde::Serialize)]
struct JsonHeader<'a> {
    key: &'a str,
    value: Option<Cow<'a, str>>,
}

fn to_json<'a>(message: &'a BorrowedMessage<'_>) -> JsonMessage<'a> {
    let text = |bytes: Option<&'a [u8]>| bytes.map(String::from_utf8_lossy);
    JsonMessage {
        topic: message.topic(),
        partition: message.partition(),
        offset: message.offset(),
        timestamp: message.timestamp().to_millis(),
        key: text(message.key()),
        value: text(message.payload()),
        headers: message
            .headers()
            .map(|headers| {
                headers
                    .iter()
                    .map(|h| JsonHeader {
                        key: h.key,
                        value: text(h.value),
                    })
                    .collect()
            })
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn start_offsets_parse() {
        assert_eq!(parse_start("earliest"), Ok(Start::Earliest));
        assert_eq!(parse_start("latest"), Ok(Start::Latest));
        assert_eq!(parse_start("42"), Ok(Start::At(42)));
        assert!(parse_start("-1").is_err());
        assert!(parse_start("soon").is_err());
    }
}
