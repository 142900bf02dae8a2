//! `ringlog topic create|list|describe|delete|alter-config`: topic administration through the
//! Kafka admin APIs (librdkafka), so it works against any Kafka-compatible broker. Configs use
//! Kafka's names (`retention.ms`, `cleanup.policy`, ...).

use std::collections::BTreeMap;
use std::process::ExitCode;

use anyhow::{bail, Context};
use clap::Subcommand;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::error::RDKafkaErrorCode;

use super::admin::{Admin, ConfigEntry};
use super::client::{self, CliContext, ConnectArgs};
use super::table::Table;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    connect: ConnectArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create a topic.
    #[command(after_help = "Examples:\n  \
        ringlog topic create orders --partitions 3\n  \
        ringlog topic create audit --config retention.ms=86400000 --config cleanup.policy=delete\n  \
        ringlog topic create orders --if-not-exists")]
    Create {
        /// Name of the new topic.
        topic: String,
        #[arg(long, default_value_t = 1)]
        partitions: i32,
        #[arg(long, default_value_t = 1)]
        replication_factor: i32,
        /// A topic config with Kafka's name (repeatable).
        #[arg(long = "config", value_name = "KEY=VALUE", value_parser = client::parse_key_value)]
        configs: Vec<(String, String)>,
        /// Succeed without doing anything when the topic already exists.
        #[arg(long)]
        if_not_exists: bool,
    },
    /// List topics, one name a line.
    #[command(after_help = "Examples:\n  ringlog topic list\n  ringlog topic list --long")]
    List {
        /// Also print each topic's partition count.
        #[arg(long, short = 'l')]
        long: bool,
        /// Include internal topics (names starting with `__`).
        #[arg(long)]
        internal: bool,
    },
    /// Show partitions, leaders, low and high watermarks, and configs.
    #[command(after_help = "Examples:\n  \
        ringlog topic describe orders\n  \
        ringlog topic describe orders --all-configs")]
    Describe {
        /// One or more topics.
        #[arg(required = true)]
        topics: Vec<String>,
        /// Print every config, not only those set on the topic.
        #[arg(long)]
        all_configs: bool,
    },
    /// Delete topics and all their data.
    #[command(
        after_help = "Examples:\n  ringlog topic delete orders\n  ringlog topic delete a b c"
    )]
    Delete {
        /// One or more topics.
        #[arg(required = true)]
        topics: Vec<String>,
    },
    /// Set or remove configs on a topic; configs not named keep their values.
    #[command(after_help = "Examples:\n  \
        ringlog topic alter-config orders --config retention.ms=3600000\n  \
        ringlog topic alter-config orders --delete-config retention.ms")]
    AlterConfig {
        /// The topic whose configs change.
        topic: String,
        /// Set a config (repeatable).
        #[arg(long = "config", alias = "add-config", value_name = "KEY=VALUE",
              value_parser = client::parse_key_value)]
        set: Vec<(String, String)>,
        /// Return a config to its default (repeatable).
        #[arg(long = "delete-config", value_name = "KEY")]
        delete: Vec<String>,
    },
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let connect = &args.connect;
    match args.command {
        Command::Create {
            topic,
            partitions,
            replication_factor,
            configs,
            if_not_exists,
        } => create(
            connect,
            &topic,
            partitions,
            replication_factor,
            &configs,
            if_not_exists,
        ),
        Command::List { long, internal } => list(connect, long, internal),
        Command::Describe {
            topics,
            all_configs,
        } => describe(connect, &topics, all_configs),
        Command::Delete { topics } => delete(connect, &topics),
        Command::AlterConfig { topic, set, delete } => alter_config(connect, &topic, &set, &delete),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// An admin client that has shown it can reach a broker, so that later admin calls fail only
/// for reasons of their own.
fn connected_admin(connect: &ConnectArgs) -> anyhow::Result<Admin> {
    let admin = Admin::new(connect)?;
    client::fetch_metadata(admin.client(), None, connect)?;
    Ok(admin)
}

fn create(
    connect: &ConnectArgs,
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(String, String)],
    if_not_exists: bool,
) -> anyhow::Result<()> {
    let admin = connected_admin(connect)?;
    match admin.create_topic(topic, partitions, replication_factor, configs)? {
        Ok(()) => eprintln!("created topic '{topic}' with {partitions} partition(s)"),
        Err(refusal) if refusal.code == RDKafkaErrorCode::TopicAlreadyExists && if_not_exists => {
            eprintln!("topic '{topic}' already exists")
        }
        Err(refusal) => bail!("cannot create topic '{topic}': {}", refusal.text()),
    }
    Ok(())
}

fn list(connect: &ConnectArgs, long: bool, internal: bool) -> anyhow::Result<()> {
    let consumer: BaseConsumer<CliContext> = connect.consumer(&[])?;
    let metadata = client::fetch_metadata(consumer.client(), None, connect)?;
    let mut topics: Vec<(&str, usize)> = metadata
        .topics()
        .iter()
        .filter(|t| internal || !t.name().starts_with("__"))
        .map(|t| (t.name(), t.partitions().len()))
        .collect();
    topics.sort_unstable();
    if long {
        let mut table = Table::new(&["TOPIC", "PARTITIONS"]);
        for (name, partitions) in topics {
            table.row(vec![name.to_string(), partitions.to_string()]);
        }
        print!("{}", table.render(""));
    } else {
        for (name, _) in topics {
            println!("{name}");
        }
    }
    Ok(())
}

fn describe(connect: &ConnectArgs, topics: &[String], all_configs: bool) -> anyhow::Result<()> {
    let consumer: BaseConsumer<CliContext> = connect.consumer(&[])?;
    let admin = Admin::new(connect)?;
    for (index, topic) in topics.iter().enumerate() {
        if index > 0 {
            println!();
        }
        describe_one(connect, &consumer, &admin, topic, all_configs)?;
    }
    Ok(())
}

fn describe_one(
    connect: &ConnectArgs,
    consumer: &BaseConsumer<CliContext>,
    admin: &Admin,
    topic: &str,
    all_configs: bool,
) -> anyhow::Result<()> {
    let metadata = client::fetch_metadata(consumer.client(), Some(topic), connect)?;
    // `topic_partitions` gives the clear "does not exist" error; the metadata above has the rest.
    client::topic_partitions(consumer.client(), topic, connect)?;
    let Some(found) = metadata.topics().iter().find(|t| t.name() == topic) else {
        bail!("topic '{topic}' does not exist");
    };
    let mut partitions: Vec<_> = found.partitions().iter().collect();
    partitions.sort_unstable_by_key(|p| p.id());
    let replication_factor = partitions.first().map_or(0, |p| p.replicas().len());
    println!(
        "Topic: {topic}  partitions: {}  replication factor: {replication_factor}",
        partitions.len()
    );
    let mut table = Table::new(&[
        "PARTITION",
        "LEADER",
        "REPLICAS",
        "ISR",
        "LOW",
        "HIGH",
        "MESSAGES",
    ]);
    for partition in partitions {
        let (low, high) = consumer
            .fetch_watermarks(topic, partition.id(), connect.timeout())
            .map_err(|e| client::broker_error(&e, connect))
            .with_context(|| format!("watermarks of {topic}-{}", partition.id()))?;
        table.row(vec![
            partition.id().to_string(),
            partition.leader().to_string(),
            join_ids(partition.replicas()),
            join_ids(partition.isr()),
            low.to_string(),
            high.to_string(),
            (high - low).max(0).to_string(),
        ]);
    }
    print!("{}", table.render("  "));

    let config = topic_config(admin, topic)?;
    let mut entries: Vec<_> = config
        .iter()
        .filter(|e| all_configs || e.set_on_topic)
        .collect();
    entries.sort_unstable_by(|a, b| a.name.cmp(&b.name));
    println!();
    if entries.is_empty() {
        println!("Configs: all defaults (--all-configs lists them)");
    } else {
        println!("Configs:");
        for entry in entries {
            let value = if entry.is_sensitive {
                "(sensitive)"
            } else {
                entry.value.as_deref().unwrap_or("(null)")
            };
            let marker = if entry.set_on_topic {
                ""
            } else {
                "  (default)"
            };
            println!("  {}={value}{marker}", entry.name);
        }
    }
    Ok(())
}

fn join_ids(ids: &[i32]) -> String {
    ids.iter()
        .map(|id| id.to_string())
        .collect::<Vec<_>>()
        .join(",")
}

fn topic_config(admin: &Admin, topic: &str) -> anyhow::Result<Vec<ConfigEntry>> {
    match admin.describe_topic_configs(topic)? {
        Ok(entries) => Ok(entries),
        Err(refusal) => bail!("cannot read the configs of '{topic}': {}", refusal.text()),
    }
}

fn delete(connect: &ConnectArgs, topics: &[String]) -> anyhow::Result<()> {
    let admin = connected_admin(connect)?;
    let names: Vec<&str> = topics.iter().map(String::as_str).collect();
    let results = admin.delete_topics(&names)?;
    let mut failures = Vec::new();
    for (name, outcome) in results {
        match outcome {
            Ok(()) => eprintln!("deleted topic '{name}'"),
            // librdkafka reads no message from a DeleteTopics answer, so this one says more.
            Err(refusal)
                if refusal.code == RDKafkaErrorCode::UnknownTopicOrPartition
                    && refusal.message.is_none() =>
            {
                failures.push(format!("topic '{name}' does not exist"))
            }
            Err(refusal) => {
                failures.push(format!("cannot delete topic '{name}': {}", refusal.text()))
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}

/// Kafka's AlterConfigs replaces a topic's whole config set, so the current topic-level configs
/// are read first and sent back with the changes applied: configs not named keep their values.
fn alter_config(
    connect: &ConnectArgs,
    topic: &str,
    set: &[(String, String)],
    delete: &[String],
) -> anyhow::Result<()> {
    if set.is_empty() && delete.is_empty() {
        bail!("nothing to change: give --config KEY=VALUE or --delete-config KEY");
    }
    let admin = connected_admin(connect)?;
    let current = topic_config(&admin, topic)?;
    let mut wanted: BTreeMap<String, String> = current
        .iter()
        .filter(|e| e.set_on_topic)
        .filter_map(|e| Some((e.name.clone(), e.value.clone()?)))
        .collect();
    for key in delete {
        if wanted.remove(key).is_none() {
            eprintln!("note: '{key}' was not set on '{topic}'");
        }
    }
    for (key, value) in set {
        wanted.insert(key.clone(), value.clone());
    }
    match admin.replace_topic_configs(topic, &wanted)? {
        Ok(()) => {
            eprintln!("updated configs of '{topic}'");
            Ok(())
        }
        Err(refusal) => bail!("cannot alter the configs of '{topic}': {}", refusal.text()),
    }
}
