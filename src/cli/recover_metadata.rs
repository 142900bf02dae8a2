//! `ringlog recover-metadata`: with the broker stopped, rebuilds the cluster metadata of the
//! partition directories it no longer explains, so their data is served again. The broker
//! never deletes such data; this is how an operator gets it back after the metadata log was
//! lost, damaged or cut.
//!
//! It backs up `__cluster_metadata-0` first, opens the metadata keeping every record before
//! any damage, then: topics whose directories remain but whose records are gone are recreated
//! (under the topic id their directories name, with default configs); partitions past a
//! topic's known count are added; unreadable or missing `partition.metadata` files of
//! partitions the metadata does place are rewritten. Directories that belong to another
//! incarnation of a known topic are reported and left alone.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::rc::Rc;

use anyhow::Context;
use uuid::Uuid;

use crate::cluster::partition_dirs::{self, Marker, OrphanDir};
use crate::cluster::{MetadataStore, OpenMode, METADATA_LOG_DIR_NAME};
use crate::storage::config::MIB;
use crate::storage::{BatchCache, SpaceGuard};

#[derive(clap::Args)]
pub struct Args {
    /// The stopped broker's data directory.
    #[arg(long, default_value = "./ringlog-data")]
    data_dir: PathBuf,
    /// The shard count the broker runs with (`--smp`); adopted partitions are spread over
    /// these shards [default: one per CPU, as `ringlog serve`].
    #[arg(long)]
    smp: Option<usize>,
    /// This broker's node id (`--node-id`).
    #[arg(long, default_value_t = 0)]
    node_id: i32,
}

/// What the recovery did, for its report.
#[derive(Default)]
struct Outcome {
    done: Vec<String>,
    left: Vec<String>,
}

pub fn run(args: Args) -> anyhow::Result<ExitCode> {
    if !args.data_dir.join(METADATA_LOG_DIR_NAME).exists()
        && std::fs::read_dir(&args.data_dir).is_err()
    {
        anyhow::bail!("{} is not a data directory", args.data_dir.display());
    }
    let _lock = crate::server::lock_data_dir(&args.data_dir)?;
    let backup = back_up_metadata(&args.data_dir)?;
    if let Some(backup) = &backup {
        eprintln!("metadata log backed up to {}", backup.display());
    }
    let shard_count = match args.smp {
        Some(count) if count > 0 => count,
        Some(_) => anyhow::bail!("--smp must be at least 1"),
        None => std::thread::available_parallelism().map_or(1, |n| n.get()),
    };
    let data_dir = args.data_dir.clone();
    let node_id = args.node_id;
    let outcome = crate::runtime::run_on_executor("recover-metadata", move || async move {
        recover(&data_dir, node_id, shard_count as u32).await
    })
    .context("starting the executor")??;
    for line in &outcome.done {
        println!("{line}");
    }
    for line in &outcome.left {
        eprintln!("left alone: {line}");
    }
    if outcome.done.is_empty() && outcome.left.is_empty() {
        println!("nothing to recover: the metadata explains every partition directory");
    }
    Ok(if outcome.left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

/// Copies the metadata log directory aside, named so that it never looks like a partition.
fn back_up_metadata(data_dir: &Path) -> anyhow::Result<Option<PathBuf>> {
    let source = data_dir.join(METADATA_LOG_DIR_NAME);
    let Ok(entries) = std::fs::read_dir(&source) else {
        return Ok(None);
    };
    let backup = data_dir.join(format!(
        "{METADATA_LOG_DIR_NAME}.{}-backup",
        crate::storage::now_ms()
    ));
    std::fs::create_dir(&backup).with_context(|| format!("creating {}", backup.display()))?;
    for entry in entries {
        let entry = entry?;
        std::fs::copy(entry.path(), backup.join(entry.file_name()))
            .with_context(|| format!("copying {}", entry.path().display()))?;
    }
    Ok(Some(backup))
}

async fn recover(data_dir: &Path, node_id: i32, shard_count: u32) -> anyhow::Result<Outcome> {
    crate::storage::file::prime_device(data_dir).await?;
    let store = MetadataStore::open_as(
        data_dir,
        node_id,
        shard_count,
        Rc::new(BatchCache::new(MIB as usize)),
        Rc::new(SpaceGuard::unlimited()),
        OpenMode::Recover,
    )
    .await
    .context("opening the cluster metadata")?;
    let mut outcome = Outcome::default();
    let mut by_topic: BTreeMap<String, Vec<OrphanDir>> = BTreeMap::new();
    for orphan in store.orphans() {
        by_topic
            .entry(orphan.topic.clone())
            .or_default()
            .push(orphan.clone());
    }
    for (topic, orphans) in by_topic {
        adopt(&store, data_dir, &topic, &orphans, &mut outcome).await;
    }
    repair_markers(&store, data_dir, &mut outcome).await?;
    store.close().await?;
    Ok(outcome)
}

/// Recreates `topic`, or grows it, to take in its orphaned partition directories.
async fn adopt(
    store: &MetadataStore,
    data_dir: &Path,
    topic: &str,
    orphans: &[OrphanDir],
    outcome: &mut Outcome,
) {
    let names = || {
        orphans
            .iter()
            .map(|o| o.dir_name.as_str())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let mut ids: Vec<Uuid> = orphans
        .iter()
        .filter_map(|o| match o.marker {
            Marker::Topic(id) => Some(id),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    let known = store.snapshot().topic(topic).map(|t| t.id);
    let id = match (known, ids.as_slice()) {
        (Some(known), []) => known,
        (Some(known), [id]) if *id == known => known,
        (Some(known), _) => {
            outcome.left.push(format!(
                "{} belong to another topic named '{topic}' than the current one ({known}); move them away or delete the current topic first",
                names()
            ));
            return;
        }
        (None, []) => crate::cluster::generate_topic_id(),
        (None, [id]) => *id,
        (None, _) => {
            outcome.left.push(format!(
                "{} name different topic ids ({ids:?}); move away the ones not wanted",
                names()
            ));
            return;
        }
    };
    let partition_count = orphans.iter().map(|o| o.partition).max().unwrap_or(0) + 1;
    let result = match known {
        Some(_) => store
            .create_partitions(topic, partition_count, false)
            .await
            .map(|_| format!("added partitions of '{topic}' up to {partition_count} to take in {}", names())),
        None => store
            .adopt_topic(topic, id, partition_count)
            .await
            .map(|_| format!("recreated topic '{topic}' (id {id}, {partition_count} partitions, default configs) from {}", names())),
    };
    match result {
        Ok(line) => outcome.done.push(line),
        Err(error) => {
            outcome
                .left
                .push(format!("{}: cannot adopt them: {error}", names()));
            return;
        }
    }
    for orphan in orphans {
        if !matches!(orphan.marker, Marker::Topic(_)) {
            let dir = data_dir.join(&orphan.dir_name);
            if let Err(error) = partition_dirs::write_marker(&dir, id).await {
                outcome.left.push(format!(
                    "{}: cannot write its partition.metadata: {error}",
                    dir.display()
                ));
            }
        }
    }
}

/// Rewrites the unreadable or missing `partition.metadata` of partitions the metadata places.
async fn repair_markers(
    store: &MetadataStore,
    data_dir: &Path,
    outcome: &mut Outcome,
) -> anyhow::Result<()> {
    let metadata = store.snapshot();
    for topic in metadata.topics.values() {
        for partition in 0..topic.partition_count() {
            let dir = data_dir.join(format!("{}-{partition}", topic.name));
            if !dir.is_dir() {
                continue;
            }
            match partition_dirs::read_marker(&dir).await? {
                Marker::Topic(id) if id == topic.id => {}
                Marker::Topic(id) if metadata.deleted_topic_ids.contains(&id) => {}
                Marker::Topic(id) => outcome.left.push(format!(
                    "{} holds data of topic id {id}, not of the current '{}' ({}); move it away to serve the partition",
                    dir.display(),
                    topic.name,
                    topic.id
                )),
                Marker::Missing | Marker::Unreadable(_) => {
                    partition_dirs::write_marker(&dir, topic.id).await?;
                    outcome.done.push(format!(
                        "rewrote the partition.metadata of {} for topic '{}'",
                        dir.display(),
                        topic.name
                    ));
                }
            }
        }
    }
    Ok(())
}
