//! What every networked CLI tool shares: the connection flags (`--brokers`, `--timeout-ms`,
//! `-X key=value`), the librdkafka configuration built from them, a client context that keeps
//! librdkafka's own log lines off the terminal, and the mapping of librdkafka errors to one
//! readable line. The tools run outside any shard, so blocking calls are fine here.

use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::sync::Mutex;
use std::time::Duration;

use anyhow::{anyhow, bail};
use rdkafka::client::Client;
use rdkafka::config::{ClientConfig, FromClientConfigAndContext, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::metadata::Metadata;
use rdkafka::ClientContext;

/// The broker a tool talks to when neither `--brokers` nor `RINGLOG_BROKERS` says otherwise:
/// `ringlog serve`'s default listener.
pub const DEFAULT_BROKERS: &str = "127.0.0.1:9092";

/// How long the diagnosis of an unreachable broker waits for one TCP connection.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// librdkafka refuses connection set-up timeouts below one second.
const CONNECTION_SETUP_TIMEOUT_MIN_MS: u64 = 1000;

/// Flags shared by every tool that talks to a broker.
#[derive(clap::Args, Clone, Debug)]
pub struct ConnectArgs {
    /// Bootstrap brokers, `host:port[,host:port...]`.
    #[arg(
        long,
        short = 'b',
        global = true,
        env = "RINGLOG_BROKERS",
        default_value = DEFAULT_BROKERS
    )]
    pub brokers: String,
    /// How long to wait for a broker to answer before giving up.
    #[arg(long, global = true, default_value_t = 5000, value_name = "MS")]
    pub timeout_ms: u64,
    /// Any librdkafka client property, e.g. `-X security.protocol=ssl` (repeatable).
    #[arg(short = 'X', long = "client-config", global = true, value_name = "KEY=VALUE",
          value_parser = parse_key_value)]
    pub client_config: Vec<(String, String)>,
}

impl ConnectArgs {
    pub fn timeout(&self) -> Duration {
        Duration::from_millis(self.timeout_ms)
    }

    /// The librdkafka configuration every client starts from; `-X` properties come last so
    /// they override anything set here.
    pub fn client_config(&self, extra: &[(&str, &str)]) -> ClientConfig {
        let mut config = ClientConfig::new();
        let setup_timeout_ms = self.timeout_ms.max(CONNECTION_SETUP_TIMEOUT_MIN_MS);
        config
            .set("bootstrap.servers", &self.brokers)
            .set("client.id", "ringlog-cli")
            .set(
                "socket.connection.setup.timeout.ms",
                setup_timeout_ms.to_string(),
            )
            // A closed idle connection is routine; librdkafka would otherwise report it as an error.
            .set("log.connection.close", "false");
        for (key, value) in extra {
            config.set(*key, *value);
        }
        for (key, value) in &self.client_config {
            config.set(key, value);
        }
        config
    }

    /// A consumer for metadata, watermarks and offsets. Being a consumer matters: librdkafka
    /// lets a consumer's metadata request auto-create nothing, so asking about a topic that is
    /// not there does not create it.
    pub fn consumer(&self, extra: &[(&str, &str)]) -> anyhow::Result<BaseConsumer<CliContext>> {
        create(&self.client_config(extra), CliContext)
    }
}

/// Creates any librdkafka client, turning a configuration mistake into one line.
pub fn create<T, C>(config: &ClientConfig, context: C) -> anyhow::Result<T>
where
    T: FromClientConfigAndContext<C>,
    C: ClientContext,
{
    config.create_with_context(context).map_err(creation_error)
}

/// One line for a client that librdkafka would not create: a bad `-X` property names itself.
pub fn creation_error(error: KafkaError) -> anyhow::Error {
    match error {
        KafkaError::ClientConfig(_, description, key, value) => {
            anyhow!("client property {key}={value}: {description}")
        }
        other => anyhow!("cannot create a Kafka client: {}", describe(&other)),
    }
}

/// Parses `key=value` (the value may itself contain `=`).
pub fn parse_key_value(text: &str) -> Result<(String, String), String> {
    match text.split_once('=') {
        Some((key, value)) if !key.is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!("expected KEY=VALUE, got '{text}'")),
    }
}

/// A client context that sends librdkafka's log lines and global errors to `tracing` at debug
/// level (`--log-level librdkafka=debug` shows them) instead of the terminal: the tools report
/// failures themselves, as one line.
#[derive(Default)]
pub struct CliContext;

impl ClientContext for CliContext {
    fn log(&self, _: RDKafkaLogLevel, facility: &str, message: &str) {
        tracing::debug!(target: "librdkafka", "{facility} {message}");
    }

    fn error(&self, error: KafkaError, reason: &str) {
        tracing::debug!(target: "librdkafka", "{error}: {reason}");
    }
}

impl ConsumerContext for CliContext {}

/// The first of many failures (delivery reports, say), kept for the final error line.
#[derive(Default)]
pub struct FirstError(Mutex<Option<String>>);

impl FirstError {
    pub fn record(&self, error: &KafkaError) {
        if let Ok(mut first) = self.0.lock() {
            first.get_or_insert_with(|| describe(error));
        }
    }

    pub fn get(&self) -> Option<String> {
        self.0.lock().ok().and_then(|first| first.clone())
    }
}

/// Fetches metadata (for one topic, or all of them), which is also the check that a broker
/// answers at all: a broker that is not there fails here, after `--timeout-ms`, with one line.
pub fn fetch_metadata<C: ClientContext>(
    client: &Client<C>,
    topic: Option<&str>,
    connect: &ConnectArgs,
) -> anyhow::Result<Metadata> {
    client
        .fetch_metadata(topic, connect.timeout())
        .map_err(|error| broker_error(&error, connect))
}

/// The partitions of `topic`, in order, or a clear error if the topic does not exist.
pub fn topic_partitions<C: ClientContext>(
    client: &Client<C>,
    topic: &str,
    connect: &ConnectArgs,
) -> anyhow::Result<Vec<i32>> {
    let metadata = fetch_metadata(client, Some(topic), connect)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic '{topic}' does not exist");
    };
    if let Some(error) = found.error() {
        let code = RDKafkaErrorCode::from(error);
        if code == RDKafkaErrorCode::UnknownTopicOrPartition {
            bail!("topic '{topic}' does not exist");
        }
        bail!("topic '{topic}': {}", code_text(code));
    }
    let mut partitions: Vec<i32> = found.partitions().iter().map(|p| p.id()).collect();
    if partitions.is_empty() {
        bail!("topic '{topic}' does not exist");
    }
    partitions.sort_unstable();
    Ok(partitions)
}

/// Turns a failed broker call into one line: "no broker answered" when the cause is the
/// connection, the broker's own message otherwise.
pub fn broker_error(error: &KafkaError, connect: &ConnectArgs) -> anyhow::Error {
    match error_code(error) {
        Some(code) if is_connection_failure(code) => request_error(code, connect),
        _ => anyhow!("{}", describe(error)),
    }
}

/// Whether a request failed for want of a broker rather than by a broker's refusal.
pub fn is_connection_failure(code: RDKafkaErrorCode) -> bool {
    matches!(
        code,
        RDKafkaErrorCode::BrokerTransportFailure
            | RDKafkaErrorCode::AllBrokersDown
            | RDKafkaErrorCode::OperationTimedOut
            | RDKafkaErrorCode::RequestTimedOut
            | RDKafkaErrorCode::Resolve
    )
}

/// One line for a request that failed as a whole with `code`: for a connection failure, "no
/// broker answered" with what a plain TCP connection can tell about why.
pub fn request_error(code: RDKafkaErrorCode, connect: &ConnectArgs) -> anyhow::Error {
    if !is_connection_failure(code) {
        return anyhow!("{}", code_text(code));
    }
    anyhow!(
        "no Kafka broker answered at {} within {} ms ({}); is the broker running? \
         (set --brokers or RINGLOG_BROKERS)",
        connect.brokers,
        connect.timeout_ms,
        probe(&connect.brokers, connect.timeout())
    )
}

/// Why the bootstrap brokers did not answer, as far as a plain TCP connection can tell.
/// librdkafka reports its connection failures only through events nobody polls during a
/// blocking call, so the tools look for themselves, and only once a call has failed.
fn probe(brokers: &str, timeout: Duration) -> String {
    let mut findings = Vec::new();
    for broker in brokers.split(',').map(str::trim).filter(|b| !b.is_empty()) {
        let addresses: Vec<SocketAddr> = match broker.to_socket_addrs() {
            Ok(addresses) => addresses.collect(),
            Err(error) => {
                findings.push(format!("{broker}: {error}"));
                continue;
            }
        };
        let Some(address) = addresses.first() else {
            findings.push(format!("{broker}: no address"));
            continue;
        };
        match TcpStream::connect_timeout(address, timeout.min(PROBE_TIMEOUT)) {
            Ok(_) => findings.push(format!(
                "{broker} accepts connections but did not answer as a Kafka broker"
            )),
            Err(error) => findings.push(format!("{broker}: {}", io_reason(&error))),
        }
    }
    findings.join("; ")
}

/// The OS's words for a connection failure, without Rust's "(os error N)" suffix.
fn io_reason(error: &std::io::Error) -> String {
    let text = error.to_string();
    match text.find(" (os error") {
        Some(at) => text[..at].to_string(),
        None => text,
    }
}

/// The librdkafka or broker error code behind `error`, where there is one (rdkafka's own
/// accessor leaves out admin operations).
pub fn error_code(error: &KafkaError) -> Option<RDKafkaErrorCode> {
    match error {
        KafkaError::AdminOp(code) => Some(*code),
        other => other.rdkafka_error_code(),
    }
}

/// One readable line for a librdkafka error, without the `KafkaError (...)` wrapping.
pub fn describe(error: &KafkaError) -> String {
    match error_code(error) {
        Some(code) => code_text(code),
        None => error.to_string(),
    }
}

/// librdkafka's description of an error code ("Broker: Topic already exists"), without the
/// variant name that rdkafka's `Display` puts in front of it.
pub fn code_text(code: RDKafkaErrorCode) -> String {
    let shown = code.to_string();
    match (shown.find(" ("), shown.ends_with(')')) {
        (Some(start), true) => shown[start + 2..shown.len() - 1].to_string(),
        _ => shown,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_value_splits_at_the_first_equals_sign() {
        assert_eq!(
            parse_key_value("retention.ms=1000"),
            Ok(("retention.ms".into(), "1000".into()))
        );
        assert_eq!(parse_key_value("k=a=b"), Ok(("k".into(), "a=b".into())));
        assert_eq!(parse_key_value("k="), Ok(("k".into(), String::new())));
        assert!(parse_key_value("novalue").is_err());
        assert!(parse_key_value("=v").is_err());
    }

    #[test]
    fn error_codes_read_as_librdkafka_describes_them() {
        assert_eq!(
            code_text(RDKafkaErrorCode::TopicAlreadyExists),
            "Broker: Topic already exists"
        );
    }

    #[test]
    fn a_closed_port_is_reported_plainly() {
        // Bind then drop, so nothing listens on the port.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .map(|a| a.port())
            .expect("a free port");
        let finding = probe(&format!("127.0.0.1:{port}"), Duration::from_secs(1));
        assert_eq!(finding, format!("127.0.0.1:{port}: Connection refused"));
    }
}
