//! Broker configuration: every setting is a flag of `ringlog serve` and may also come from a
//! TOML file (`--config`); flags win over the file, the file over the embedded defaults.
//! `ops/ringlog.toml` documents every key.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::storage::LogConfig;

pub const DEFAULT_KAFKA_ADDR: &str = "127.0.0.1:9092";
pub const DEFAULT_ADMIN_ADDR: &str = "127.0.0.1:9644";
pub const DEFAULT_DATA_DIR: &str = "./ringlog-data";

#[derive(clap::Args, Debug, Default, Clone)]
pub struct ServeArgs {
    /// TOML file with any of these settings and broker-wide topic defaults.
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Where logs and metadata live [default: ./ringlog-data].
    #[arg(long)]
    pub data_dir: Option<PathBuf>,
    /// Kafka listener; every shard binds it with SO_REUSEPORT [default: 127.0.0.1:9092].
    #[arg(long)]
    pub kafka_addr: Option<SocketAddr>,
    /// What Metadata tells clients to connect to [default: the Kafka listener].
    #[arg(long)]
    pub advertised_addr: Option<String>,
    /// HTTP admin listener: metrics, health [default: 127.0.0.1:9644].
    #[arg(long)]
    pub admin_addr: Option<SocketAddr>,
    /// This broker's id [default: 0].
    #[arg(long)]
    pub node_id: Option<i32>,
    /// Number of shards [default: one per online CPU].
    #[arg(long)]
    pub smp: Option<usize>,
    /// Which CPUs to run shards on, e.g. `0,2-3` (implies --smp).
    #[arg(long)]
    pub cpus: Option<String>,
    /// Also export per-partition metric series (offsets, sizes, consumer lag); off by default
    /// to keep the number of series bounded.
    #[arg(long)]
    pub metrics_per_partition: bool,
    /// Bytes of requests one shard holds while they are read, queued or handled
    /// (queued.max.request.bytes); -1 for no limit [default: 104857600].
    #[arg(long, allow_hyphen_values = true)]
    pub queued_max_request_bytes: Option<i64>,
    /// Client connections the broker keeps open, all shards together [default: 100000].
    #[arg(long)]
    pub max_connections: Option<usize>,
    /// Client connections from one IP address [default: max_connections].
    #[arg(long)]
    pub max_connections_per_ip: Option<usize>,
    /// Close a connection with nothing in flight and nothing read for this long
    /// [default: 600000].
    #[arg(long)]
    pub connections_max_idle_ms: Option<u64>,
    /// Close a connection whose frame is not whole this long after its first byte
    /// [default: 30000].
    #[arg(long)]
    pub request_read_timeout_ms: Option<u64>,
}

/// The TOML file: the same keys as the flags (with underscores) plus broker settings.
#[derive(Deserialize, Debug, Default)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    data_dir: Option<PathBuf>,
    kafka_addr: Option<SocketAddr>,
    advertised_addr: Option<String>,
    admin_addr: Option<SocketAddr>,
    node_id: Option<i32>,
    smp: Option<usize>,
    cpus: Option<String>,
    log_level: Option<String>,
    auto_create_topics_enable: Option<bool>,
    num_partitions: Option<i32>,
    socket_request_max_bytes: Option<usize>,
    batch_cache_bytes_per_shard: Option<usize>,
    disk_free_threshold_bytes: Option<u64>,
    ballast_bytes: Option<u64>,
    retention_check_interval_ms: Option<u64>,
    metrics_per_partition: Option<bool>,
    queued_max_request_bytes: Option<i64>,
    max_connections: Option<usize>,
    max_connections_per_ip: Option<usize>,
    connections_max_idle_ms: Option<u64>,
    request_read_timeout_ms: Option<u64>,
    /// Consumer-group coordinator settings (`[group]` table).
    group: Option<crate::group::GroupConfig>,
    /// Broker-wide defaults for topic configs, by Kafka name (`retention.ms = 86400000`).
    #[serde(default)]
    topic_defaults: std::collections::BTreeMap<String, toml::Value>,
}

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub data_dir: PathBuf,
    pub kafka_addr: SocketAddr,
    pub advertised_host: String,
    pub advertised_port: i32,
    pub admin_addr: SocketAddr,
    pub node_id: i32,
    pub shard_count: usize,
    pub cpus: Option<Vec<usize>>,
    pub log_level: Option<String>,
    pub auto_create_topics_enable: bool,
    pub num_partitions: i32,
    /// `socket.request.max.bytes`: larger frames close the connection.
    pub socket_request_max_bytes: usize,
    pub batch_cache_bytes_per_shard: usize,
    pub disk_free_threshold_bytes: u64,
    pub ballast_bytes: u64,
    /// `log.retention.check.interval.ms`: how often retention deletes old segments.
    pub retention_check_interval_ms: u64,
    /// Topic settings every topic starts from.
    pub log_defaults: LogConfig,
    /// Requests in flight per connection before its reader waits.
    pub connection_inflight_max: usize,
    /// Export per-partition metric series.
    pub metrics_per_partition: bool,
    /// `queued.max.request.bytes`, per shard: bytes of requests being read, queued or handled
    /// (`usize::MAX` for Kafka's -1). A larger frame closes its connection.
    pub queued_max_request_bytes: usize,
    /// `max.connections`, over all shards.
    pub max_connections: usize,
    /// `max.connections.per.ip`, over all shards.
    pub max_connections_per_ip: usize,
    /// `connections.max.idle.ms`.
    pub connections_max_idle_ms: u64,
    /// From a frame's first byte until all of it must have arrived.
    pub request_read_timeout_ms: u64,
    pub group: crate::group::GroupConfig,
}

pub fn parse_cpu_list(list: &str) -> Result<Vec<usize>, String> {
    let mut cpus = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let bad = || format!("--cpus: '{part}' is not a CPU number or range");
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b): (usize, usize) =
                    (a.parse().map_err(|_| bad())?, b.parse().map_err(|_| bad())?);
                if a > b {
                    return Err(bad());
                }
                cpus.extend(a..=b);
            }
            None => cpus.push(part.parse().map_err(|_| bad())?),
        }
    }
    cpus.sort_unstable();
    cpus.dedup();
    if cpus.is_empty() {
        return Err("--cpus names no CPU".into());
    }
    Ok(cpus)
}

impl ServerConfig {
    pub fn resolve(args: &ServeArgs) -> anyhow::Result<Self> {
        let file: FileConfig = match &args.config {
            Some(path) => load_file(path)?,
            None => FileConfig::default(),
        };
        let kafka_addr = args
            .kafka_addr
            .or(file.kafka_addr)
            .unwrap_or_else(|| DEFAULT_KAFKA_ADDR.parse().expect("valid default"));
        let advertised = match args.advertised_addr.clone().or(file.advertised_addr) {
            Some(advertised) => advertised,
            // Clients cannot connect to 0.0.0.0: as Kafka does for a listener without a host,
            // advertise the machine's name.
            None if kafka_addr.ip().is_unspecified() => {
                format!("{}:{}", host_name()?, kafka_addr.port())
            }
            None => kafka_addr.to_string(),
        };
        let (advertised_host, advertised_port) = split_host_port(&advertised)?;
        if advertised_host
            .parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_unspecified())
        {
            anyhow::bail!(
                "--advertised-addr {advertised} is not an address clients can connect to: give the host name or address they should use"
            );
        }
        let cpus = match args.cpus.as_deref().or(file.cpus.as_deref()) {
            Some(list) => Some(parse_cpu_list(list).map_err(anyhow::Error::msg)?),
            None => None,
        };
        let online = std::thread::available_parallelism().map_or(1, |n| n.get());
        let shard_count = cpus
            .as_ref()
            .map(Vec::len)
            .or(args.smp)
            .or(file.smp)
            .unwrap_or(online);
        anyhow::ensure!(shard_count >= 1, "--smp must be at least 1");
        anyhow::ensure!(
            shard_count <= 256,
            "--smp {shard_count} is more shards than ringlog supports (256)"
        );
        let mut log_defaults = LogConfig::default();
        for (name, value) in &file.topic_defaults {
            let text = match value {
                toml::Value::String(s) => s.clone(),
                other => other.to_string(),
            };
            let known = log_defaults
                .set(name, &text)
                .map_err(|e| anyhow::anyhow!("topic_defaults: {e}"))?;
            anyhow::ensure!(known, "topic_defaults: unknown topic config '{name}'");
        }
        let group = file.group.unwrap_or_default();
        group
            .validate()
            .map_err(|e| anyhow::anyhow!("[group]: {e}"))?;
        let num_partitions = file.num_partitions.unwrap_or(1);
        anyhow::ensure!(num_partitions >= 1, "num_partitions must be at least 1");
        let queued_max_request_bytes = match args
            .queued_max_request_bytes
            .or(file.queued_max_request_bytes)
            .unwrap_or(100 * 1024 * 1024)
        {
            -1 => usize::MAX,
            bytes => usize::try_from(bytes)
                .ok()
                .filter(|bytes| *bytes > 0)
                .ok_or_else(|| {
                    anyhow::anyhow!("queued_max_request_bytes must be positive, or -1 for no limit")
                })?,
        };
        let max_connections = args
            .max_connections
            .or(file.max_connections)
            .unwrap_or(100_000);
        anyhow::ensure!(max_connections >= 1, "max_connections must be at least 1");
        let max_connections_per_ip = args
            .max_connections_per_ip
            .or(file.max_connections_per_ip)
            .unwrap_or(max_connections);
        anyhow::ensure!(
            max_connections_per_ip >= 1,
            "max_connections_per_ip must be at least 1"
        );
        let connections_max_idle_ms = args
            .connections_max_idle_ms
            .or(file.connections_max_idle_ms)
            .unwrap_or(600_000);
        anyhow::ensure!(
            connections_max_idle_ms >= 1,
            "connections_max_idle_ms must be at least 1"
        );
        let request_read_timeout_ms = args
            .request_read_timeout_ms
            .or(file.request_read_timeout_ms)
            .unwrap_or(30_000);
        anyhow::ensure!(
            request_read_timeout_ms >= 1,
            "request_read_timeout_ms must be at least 1"
        );
        Ok(ServerConfig {
            data_dir: args
                .data_dir
                .clone()
                .or(file.data_dir)
                .unwrap_or_else(|| PathBuf::from(DEFAULT_DATA_DIR)),
            kafka_addr,
            advertised_host,
            advertised_port,
            admin_addr: args
                .admin_addr
                .or(file.admin_addr)
                .unwrap_or_else(|| DEFAULT_ADMIN_ADDR.parse().expect("valid default")),
            node_id: args.node_id.or(file.node_id).unwrap_or(0),
            shard_count,
            cpus,
            log_level: file.log_level,
            auto_create_topics_enable: file.auto_create_topics_enable.unwrap_or(true),
            num_partitions,
            socket_request_max_bytes: file.socket_request_max_bytes.unwrap_or(100 * 1024 * 1024),
            batch_cache_bytes_per_shard: file
                .batch_cache_bytes_per_shard
                .unwrap_or(256 * 1024 * 1024),
            disk_free_threshold_bytes: file.disk_free_threshold_bytes.unwrap_or(256 * 1024 * 1024),
            ballast_bytes: file.ballast_bytes.unwrap_or(0),
            retention_check_interval_ms: file.retention_check_interval_ms.unwrap_or(300_000),
            log_defaults,
            connection_inflight_max: 32,
            metrics_per_partition: args.metrics_per_partition
                || file.metrics_per_partition.unwrap_or(false),
            queued_max_request_bytes,
            max_connections,
            max_connections_per_ip,
            connections_max_idle_ms,
            request_read_timeout_ms,
            group,
        })
    }
}

fn load_file(path: &Path) -> anyhow::Result<FileConfig> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading config {}: {e}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::anyhow!("config {}: {e}", path.display()))
}

/// This machine's host name, what Kafka advertises for a listener bound to every address.
fn host_name() -> anyhow::Result<String> {
    let name = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let name = name.trim();
    if name.is_empty() {
        anyhow::bail!(
            "--kafka-addr binds every address and the host name is unknown: say what clients should connect to with --advertised-addr"
        );
    }
    Ok(name.to_string())
}

fn split_host_port(address: &str) -> anyhow::Result<(String, i32)> {
    let (host, port) = address
        .rsplit_once(':')
        .ok_or_else(|| anyhow::anyhow!("--advertised-addr '{address}' is not HOST:PORT"))?;
    let port: u16 = port
        .parse()
        .map_err(|_| anyhow::anyhow!("--advertised-addr '{address}': bad port"))?;
    Ok((host.trim_matches(['[', ']']).to_string(), i32::from(port)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_design() {
        let config = ServerConfig::resolve(&ServeArgs::default()).unwrap();
        assert_eq!(config.kafka_addr.to_string(), DEFAULT_KAFKA_ADDR);
        assert_eq!(config.admin_addr.to_string(), DEFAULT_ADMIN_ADDR);
        assert_eq!(config.advertised_host, "127.0.0.1");
        assert_eq!(config.advertised_port, 9092);
        assert_eq!(config.data_dir, PathBuf::from(DEFAULT_DATA_DIR));
        assert!(config.auto_create_topics_enable);
        assert_eq!(config.queued_max_request_bytes, 100 * 1024 * 1024);
        assert_eq!(config.max_connections_per_ip, config.max_connections);
        assert_eq!(config.connections_max_idle_ms, 600_000);
    }

    #[test]
    fn connection_limits_take_kafka_values() {
        let unbounded = ServeArgs {
            queued_max_request_bytes: Some(-1),
            ..ServeArgs::default()
        };
        let config = ServerConfig::resolve(&unbounded).unwrap();
        assert_eq!(config.queued_max_request_bytes, usize::MAX);
        for bad in [
            ServeArgs {
                queued_max_request_bytes: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                max_connections: Some(0),
                ..ServeArgs::default()
            },
            ServeArgs {
                request_read_timeout_ms: Some(0),
                ..ServeArgs::default()
            },
        ] {
            assert!(ServerConfig::resolve(&bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_wildcard_listener_advertises_the_host_name_and_never_the_wildcard() {
        let args = ServeArgs {
            kafka_addr: Some("0.0.0.0:9192".parse().unwrap()),
            ..ServeArgs::default()
        };
        let config = ServerConfig::resolve(&args).unwrap();
        assert_eq!(config.advertised_host, host_name().unwrap());
        assert_eq!(config.advertised_port, 9192);
        for wildcard in ["0.0.0.0:9092", "[::]:9092"] {
            let args = ServeArgs {
                advertised_addr: Some(wildcard.into()),
                ..ServeArgs::default()
            };
            let error = ServerConfig::resolve(&args).unwrap_err().to_string();
            assert!(error.contains("--advertised-addr"), "{error}");
        }
    }

    #[test]
    fn cpu_lists_parse() {
        assert_eq!(parse_cpu_list("0,2-4, 7").unwrap(), vec![0, 2, 3, 4, 7]);
        assert!(parse_cpu_list("3-1").is_err());
        assert!(parse_cpu_list("x").is_err());
        assert!(parse_cpu_list("").is_err());
    }

    #[test]
    fn file_settings_apply_and_flags_win() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("ringlog.toml");
        std::fs::write(
            &path,
            "kafka_addr = \"127.0.0.1:19092\"\nnode_id = 3\n[topic_defaults]\n\"retention.ms\" = 1000\n",
        )
        .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            node_id: Some(5),
            ..ServeArgs::default()
        };
        let config = ServerConfig::resolve(&args).unwrap();
        assert_eq!(config.kafka_addr.port(), 19092);
        assert_eq!(config.node_id, 5);
        assert_eq!(config.log_defaults.retention_ms, Some(1000));
        std::fs::write(&path, "bogus = 1\n").unwrap();
        assert!(ServerConfig::resolve(&args).is_err());
    }
}
