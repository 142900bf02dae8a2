//! `ringlog group list|describe|reset-offsets|delete`: consumer groups as the group coordinator
//! sees them. Members and their assignments come from ListGroups/DescribeGroups, committed
//! offsets from OffsetFetch through a consumer that carries the group's id but never joins it,
//! end offsets from ListOffsets; resetting commits new offsets the same way.

use std::collections::{BTreeMap, BTreeSet};
use std::process::ExitCode;

use anyhow::{anyhow, bail};
use clap::Subcommand;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::groups::GroupInfo;
use rdkafka::{Offset, TopicPartitionList};

use super::admin::Admin;
use super::assignment;
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
    /// List consumer groups with their state and member count.
    #[command(after_help = "Examples:\n  ringlog group list")]
    List,
    /// Show members, their assignments, and per partition the committed offset, end offset
    /// and lag.
    #[command(after_help = "Examples:\n  ringlog group describe billing")]
    Describe {
        /// The group's id.
        group: String,
    },
    /// Move a group's committed offsets; the group must have no active members.
    #[command(after_help = "Examples:\n  \
        ringlog group reset-offsets billing --topic orders --to-earliest\n  \
        ringlog group reset-offsets billing --topic orders --partition 0 --to-offset 42 --dry-run\n  \
        ringlog group reset-offsets billing --topic orders --topic audit --to-latest")]
    ResetOffsets {
        /// The group's id.
        group: String,
        /// A topic whose offsets to reset (repeatable).
        #[arg(long = "topic", required = true)]
        topics: Vec<String>,
        /// Only these partitions (repeatable; default: all).
        #[arg(long = "partition")]
        partitions: Vec<i32>,
        #[command(flatten)]
        target: Target,
        /// Print the new offsets without committing them.
        #[arg(long)]
        dry_run: bool,
    },
    /// Delete consumer groups and their committed offsets.
    #[command(
        after_help = "Examples:\n  ringlog group delete billing\n  ringlog group delete a b"
    )]
    Delete {
        /// One or more group ids.
        #[arg(required = true)]
        groups: Vec<String>,
    },
}

#[derive(clap::Args)]
#[group(required = true, multiple = false)]
struct Target {
    /// Each partition's oldest offset (its low watermark).
    #[arg(long)]
    to_earliest: bool,
    /// Each partition's end (its high watermark): skip everything there is.
    #[arg(long)]
    to_latest: bool,
    /// This offset, kept within each partition's low and high watermarks.
    #[arg(long, value_name = "OFFSET")]
    to_offset: Option<i64>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    let connect = &args.connect;
    match args.command {
        Command::List => list(connect),
        Command::Describe { group } => describe(connect, &group),
        Command::ResetOffsets {
            group,
            topics,
            partitions,
            target,
            dry_run,
        } => reset_offsets(connect, &group, &topics, &partitions, &target, dry_run),
        Command::Delete { groups } => delete(connect, &groups),
    }?;
    Ok(ExitCode::SUCCESS)
}

/// A consumer that speaks for `group` in OffsetFetch and OffsetCommit without joining it.
fn group_consumer(connect: &ConnectArgs, group: &str) -> anyhow::Result<BaseConsumer<CliContext>> {
    let consumer = connect.consumer(&[("group.id", group), ("enable.auto.commit", "false")])?;
    client::fetch_metadata(consumer.client(), None, connect)?;
    Ok(consumer)
}

fn list(connect: &ConnectArgs) -> anyhow::Result<()> {
    let consumer = connect.consumer(&[])?;
    client::fetch_metadata(consumer.client(), None, connect)?;
    let groups = consumer
        .fetch_group_list(None, connect.timeout())
        .map_err(|e| client::broker_error(&e, connect))?;
    let mut table = Table::new(&["GROUP", "STATE", "PROTOCOL-TYPE", "MEMBERS"]);
    let mut rows: Vec<_> = groups.groups().iter().collect();
    rows.sort_unstable_by(|a, b| a.name().cmp(b.name()));
    for group in rows {
        table.row(vec![
            group.name().to_string(),
            group.state().to_string(),
            group.protocol_type().to_string(),
            group.members().len().to_string(),
        ]);
    }
    if table.is_empty() {
        eprintln!("no consumer groups");
    } else {
        print!("{}", table.render(""));
    }
    Ok(())
}

/// The coordinator's view of one group; a group it does not know comes back as `Dead`.
fn group_info(
    consumer: &BaseConsumer<CliContext>,
    connect: &ConnectArgs,
    group: &str,
) -> anyhow::Result<Option<GroupSummary>> {
    let list = consumer
        .fetch_group_list(Some(group), connect.timeout())
        .map_err(|e| client::broker_error(&e, connect))?;
    Ok(list
        .groups()
        .iter()
        .find(|g| g.name() == group)
        .map(GroupSummary::from))
}

/// What `describe` and `reset-offsets` need of a group, copied out of librdkafka's list.
struct GroupSummary {
    state: String,
    protocol_type: String,
    protocol: String,
    members: Vec<Member>,
}

struct Member {
    id: String,
    client_id: String,
    host: String,
    assignment: anyhow::Result<assignment::Assignment>,
}

impl From<&GroupInfo> for GroupSummary {
    fn from(info: &GroupInfo) -> GroupSummary {
        let is_consumer = info.protocol_type() == "consumer";
        GroupSummary {
            state: info.state().to_string(),
            protocol_type: info.protocol_type().to_string(),
            protocol: info.protocol().to_string(),
            members: info
                .members()
                .iter()
                .map(|m| Member {
                    id: m.id().to_string(),
                    client_id: m.client_id().to_string(),
                    host: m.client_host().to_string(),
                    assignment: if is_consumer {
                        assignment::decode(m.assignment().unwrap_or_default())
                    } else {
                        Ok(assignment::Assignment::new())
                    },
                })
                .collect(),
        }
    }
}

fn describe(connect: &ConnectArgs, group: &str) -> anyhow::Result<()> {
    let consumer = group_consumer(connect, group)?;
    let info = group_info(&consumer, connect, group)?;
    // Which member reads each partition, for the offsets table.
    let mut owners: BTreeMap<(String, i32), String> = BTreeMap::new();
    if let Some(info) = &info {
        for member in &info.members {
            if let Ok(assigned) = &member.assignment {
                for (topic, partitions) in assigned {
                    for &partition in partitions {
                        owners.insert((topic.clone(), partition), member.id.clone());
                    }
                }
            }
        }
    }
    let committed = committed_offsets(&consumer, connect, &owners)?;
    let known = info
        .as_ref()
        .is_some_and(|i| i.state != "Dead" || !i.members.is_empty());
    if !known && committed.is_empty() {
        bail!("consumer group '{group}' does not exist");
    }

    match &info {
        Some(info) => println!(
            "Group: {group}  state: {}  protocol: {}/{}  members: {}",
            info.state,
            info.protocol_type,
            if info.protocol.is_empty() {
                "-"
            } else {
                &info.protocol
            },
            info.members.len()
        ),
        None => println!("Group: {group}  state: unknown  members: 0"),
    }
    if let Some(info) = info.as_ref().filter(|i| !i.members.is_empty()) {
        let mut table = Table::new(&["MEMBER", "CLIENT-ID", "HOST", "ASSIGNMENT"]);
        for member in &info.members {
            let assigned = match &member.assignment {
                Ok(assigned) => assignment::render(assigned),
                Err(error) => format!("(unreadable: {error})"),
            };
            table.row(vec![
                member.id.clone(),
                member.client_id.clone(),
                member.host.clone(),
                assigned,
            ]);
        }
        println!();
        print!("{}", table.render(""));
    }

    let mut table = Table::new(&["TOPIC", "PARTITION", "COMMITTED", "END", "LAG", "MEMBER"]);
    let rows: BTreeSet<(String, i32)> = committed.keys().chain(owners.keys()).cloned().collect();
    for (topic, partition) in rows {
        let (_, end) = consumer
            .fetch_watermarks(&topic, partition, connect.timeout())
            .map_err(|e| client::broker_error(&e, connect))?;
        let committed = committed.get(&(topic.clone(), partition)).copied();
        let lag = committed.map_or("-".to_string(), |c| (end - c).max(0).to_string());
        let owner = owners
            .get(&(topic.clone(), partition))
            .cloned()
            .unwrap_or_else(|| "-".to_string());
        table.row(vec![
            topic,
            partition.to_string(),
            committed.map_or("-".to_string(), |c| c.to_string()),
            end.to_string(),
            lag,
            owner,
        ]);
    }
    println!();
    if table.is_empty() {
        println!("no committed offsets");
    } else {
        print!("{}", table.render(""));
    }
    Ok(())
}

/// The group's committed offsets. OffsetFetch needs the partitions named, so it asks about
/// every partition of every topic (internal ones aside) plus those assigned to members.
fn committed_offsets(
    consumer: &BaseConsumer<CliContext>,
    connect: &ConnectArgs,
    assigned: &BTreeMap<(String, i32), String>,
) -> anyhow::Result<BTreeMap<(String, i32), i64>> {
    let metadata = client::fetch_metadata(consumer.client(), None, connect)?;
    let mut wanted: BTreeSet<(String, i32)> = assigned.keys().cloned().collect();
    for topic in metadata.topics() {
        if topic.name().starts_with("__") {
            continue;
        }
        for partition in topic.partitions() {
            wanted.insert((topic.name().to_string(), partition.id()));
        }
    }
    let mut list = TopicPartitionList::with_capacity(wanted.len());
    for (topic, partition) in &wanted {
        list.add_partition(topic, *partition);
    }
    if list.count() == 0 {
        return Ok(BTreeMap::new());
    }
    let answered = consumer
        .committed_offsets(list, connect.timeout())
        .map_err(|e| client::broker_error(&e, connect))?;
    Ok(answered
        .elements()
        .iter()
        .filter_map(|e| match e.offset() {
            Offset::Offset(offset) => Some(((e.topic().to_string(), e.partition()), offset)),
            _ => None,
        })
        .collect())
}

fn reset_offsets(
    connect: &ConnectArgs,
    group: &str,
    topics: &[String],
    only_partitions: &[i32],
    target: &Target,
    dry_run: bool,
) -> anyhow::Result<()> {
    let consumer = group_consumer(connect, group)?;
    if let Some(info) = group_info(&consumer, connect, group)? {
        if !info.members.is_empty() {
            bail!(
                "consumer group '{group}' has {} active member(s) (state {}); offsets can only \
                 be reset while no consumer is in the group",
                info.members.len(),
                info.state
            );
        }
    }
    let committed = committed_offsets(&consumer, connect, &BTreeMap::new())?;
    let mut table = Table::new(&["TOPIC", "PARTITION", "CURRENT", "NEW"]);
    let mut list = TopicPartitionList::new();
    for topic in topics {
        let partitions = client::topic_partitions(consumer.client(), topic, connect)?;
        for &partition in only_partitions {
            if !partitions.contains(&partition) {
                bail!("topic '{topic}' has no partition {partition}");
            }
        }
        for partition in partitions
            .into_iter()
            .filter(|p| only_partitions.is_empty() || only_partitions.contains(p))
        {
            let (low, high) = consumer
                .fetch_watermarks(topic, partition, connect.timeout())
                .map_err(|e| client::broker_error(&e, connect))?;
            let new = match (target.to_earliest, target.to_latest, target.to_offset) {
                (true, _, _) => low,
                (_, true, _) => high,
                (_, _, Some(offset)) => {
                    let kept = offset.clamp(low, high);
                    if kept != offset {
                        eprintln!(
                            "note: {topic}-{partition} holds offsets {low} to {high}; \
                             {offset} becomes {kept}"
                        );
                    }
                    kept
                }
                _ => bail!("give one of --to-earliest, --to-latest, --to-offset"),
            };
            let current = committed
                .get(&(topic.clone(), partition))
                .map_or("-".to_string(), |c| c.to_string());
            table.row(vec![
                topic.clone(),
                partition.to_string(),
                current,
                new.to_string(),
            ]);
            list.add_partition_offset(topic, partition, Offset::Offset(new))
                .map_err(|e| anyhow!("{}", client::describe(&e)))?;
        }
    }
    print!("{}", table.render(""));
    if dry_run {
        eprintln!("dry run: nothing committed");
        return Ok(());
    }
    consumer
        .commit(&list, CommitMode::Sync)
        .map_err(|e| anyhow!("cannot commit offsets: {}", client::describe(&e)))?;
    eprintln!("reset offsets of group '{group}'");
    Ok(())
}

fn delete(connect: &ConnectArgs, groups: &[String]) -> anyhow::Result<()> {
    let admin = Admin::new(connect)?;
    client::fetch_metadata(admin.client(), None, connect)?;
    let names: Vec<&str> = groups.iter().map(String::as_str).collect();
    let mut failures = Vec::new();
    // DeleteGroups answers with codes only; where librdkafka has a message of its own (a
    // coordinator it could not find, say) that is what `text` gives.
    for (name, outcome) in admin.delete_groups(&names)? {
        match outcome {
            Ok(()) => eprintln!("deleted consumer group '{name}'"),
            Err(refusal) if refusal.code == RDKafkaErrorCode::GroupIdNotFound => {
                failures.push(format!("consumer group '{name}' does not exist"))
            }
            Err(refusal) if refusal.code == RDKafkaErrorCode::NonEmptyGroup => failures.push(
                format!("consumer group '{name}' still has members; stop them first"),
            ),
            Err(refusal) => {
                failures.push(format!("cannot delete group '{name}': {}", refusal.text()))
            }
        }
    }
    if !failures.is_empty() {
        bail!("{}", failures.join("; "));
    }
    Ok(())
}
