//! Partition directories and the metadata that explains them. A directory `<topic>-<n>` holds
//! its topic's id in `partition.metadata` (Kafka's file); this module reads and writes that
//! marker, decides whether a directory may be used for a partition the metadata places, and
//! finds the directories the metadata does not explain.
//!
//! The rule: data is never deleted because metadata is missing or unreadable. A directory is
//! discarded only when its marker names a topic id the metadata log records as deleted; one
//! whose marker is unreadable, or names an id the metadata does not know, is kept and reported
//! (an orphan), and `ringlog recover-metadata` adopts it.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use uuid::Uuid;

use super::naming;
use super::store::METADATA_LOG_DIR_NAME;
use crate::storage::file;

/// The file naming the topic a partition directory belongs to (Kafka's `partition.metadata`).
pub const PARTITION_METADATA_FILE: &str = "partition.metadata";
/// Suffix of directories being deleted; whatever carries it at start-up is removed.
pub const DELETED_DIR_SUFFIX: &str = "-delete";
/// Extension of segment files: a directory holding one has data.
const SEGMENT_FILE_EXTENSION: &str = ".log";

/// What a directory's `partition.metadata` says.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Marker {
    /// No marker file.
    Missing,
    /// A marker that cannot be parsed; the reason.
    Unreadable(String),
    Topic(Uuid),
}

/// The marker's contents for `topic_id`.
pub fn marker_contents(topic_id: Uuid) -> String {
    format!("version: 0\ntopic_id: {topic_id}\n")
}

/// Parses a marker: `version: 0` and `topic_id: <uuid>` lines.
pub fn parse_marker(bytes: &[u8]) -> Marker {
    let Ok(text) = std::str::from_utf8(bytes) else {
        return Marker::Unreadable("not UTF-8".into());
    };
    let mut version = None;
    let mut topic_id = None;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let Some((key, value)) = line.split_once(':') else {
            return Marker::Unreadable(format!("line {line:?} is not `key: value`"));
        };
        match key.trim() {
            "version" => version = Some(value.trim().to_string()),
            "topic_id" => match Uuid::parse_str(value.trim()) {
                Ok(id) if !id.is_nil() => topic_id = Some(id),
                _ => return Marker::Unreadable(format!("topic_id {:?}", value.trim())),
            },
            other => return Marker::Unreadable(format!("unknown key {other:?}")),
        }
    }
    match (version.as_deref(), topic_id) {
        (Some("0"), Some(id)) => Marker::Topic(id),
        (Some("0"), None) => Marker::Unreadable("no topic_id".into()),
        (other, _) => Marker::Unreadable(format!("version {other:?}")),
    }
}

pub async fn read_marker(dir: &Path) -> crate::storage::Result<Marker> {
    Ok(
        match file::read_small_file(&dir.join(PARTITION_METADATA_FILE)).await? {
            None => Marker::Missing,
            Some(bytes) => parse_marker(&bytes),
        },
    )
}

/// Whether `dir` holds any segment file.
async fn has_segments(dir: &Path) -> bool {
    match file::list_dir_if_exists(dir).await {
        Ok(None) => false,
        Ok(Some(names)) => names.iter().any(|n| n.ends_with(SEGMENT_FILE_EXTENSION)),
        // Unlistable: assume data, so that nothing is discarded on a guess.
        Err(_) => true,
    }
}

/// Why a directory cannot serve the partition the metadata places there; the partition stays
/// offline and the data stays where it is.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ClaimRefused {
    #[error("its partition.metadata is unreadable ({0}); the data is kept: run `ringlog recover-metadata` with the broker stopped to adopt it")]
    UnreadableMarker(String),
    #[error("it holds data of topic id {0}, which the metadata does not know; the data is kept: run `ringlog recover-metadata` with the broker stopped, or move the directory away")]
    UnknownTopic(Uuid),
    #[error("it holds segments but no partition.metadata; the data is kept: run `ringlog recover-metadata` with the broker stopped to adopt it")]
    NoMarker,
    #[error("{0}")]
    Storage(#[from] crate::storage::StorageError),
}

/// Makes `dir` the home of a partition of topic `topic_id`. A directory left by a deleted
/// topic of the same name (deleted while the broker was down, or not yet removed) is
/// discarded first, so a recreated topic never sees old data; any other stranger is refused.
pub async fn claim(
    dir: &Path,
    topic_id: Uuid,
    deleted_topic_ids: &BTreeSet<Uuid>,
) -> Result<(), ClaimRefused> {
    match read_marker(dir).await? {
        Marker::Topic(found) if found == topic_id => return Ok(()),
        Marker::Topic(found) if deleted_topic_ids.contains(&found) => {
            tracing::info!(dir = %dir.display(), topic_id = %found, "directory belongs to a deleted topic of the same name; discarding it");
            discard(dir).await?;
        }
        Marker::Topic(found) => return Err(ClaimRefused::UnknownTopic(found)),
        Marker::Unreadable(reason) => return Err(ClaimRefused::UnreadableMarker(reason)),
        Marker::Missing if has_segments(dir).await => return Err(ClaimRefused::NoMarker),
        Marker::Missing => {}
    }
    file::create_dir_all(dir).await?;
    write_marker(dir, topic_id).await?;
    Ok(())
}

pub async fn write_marker(dir: &Path, topic_id: Uuid) -> crate::storage::Result<()> {
    file::write_file_atomic(
        &dir.join(PARTITION_METADATA_FILE),
        marker_contents(topic_id).into_bytes(),
    )
    .await
}

/// Deletes a partition directory crash-safely: renamed aside first, then removed.
pub async fn discard(dir: &Path) -> crate::storage::Result<()> {
    let name = dir
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let doomed = dir.with_file_name(format!(
        "{name}.{}{DELETED_DIR_SUFFIX}",
        Uuid::new_v4().simple()
    ));
    file::rename(dir, &doomed).await?;
    file::remove_dir_all(&doomed).await
}

/// Removes directories whose deletion a crash interrupted. Shard 0, at start-up.
pub async fn remove_interrupted_deletions(data_dir: &Path) -> crate::storage::Result<()> {
    for name in file::list_dir(data_dir).await? {
        if name.ends_with(DELETED_DIR_SUFFIX) {
            file::remove_dir_all(&data_dir.join(&name)).await?;
        }
    }
    Ok(())
}

/// `<topic>-<n>` split into topic and partition, for names that can be partition directories.
pub fn parse_dir_name(name: &str) -> Option<(&str, i32)> {
    if name == METADATA_LOG_DIR_NAME {
        return None;
    }
    let (topic, partition) = name.rsplit_once('-')?;
    if partition.is_empty() || !partition.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    naming::validate_topic_name(topic).ok()?;
    Some((topic, partition.parse().ok()?))
}

/// A partition directory the metadata does not explain, kept with its data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrphanDir {
    pub dir_name: String,
    pub topic: String,
    pub partition: i32,
    pub marker: Marker,
}

/// Partition directories under `data_dir` whose partition the metadata does not have, and
/// which hold data of a topic not known as deleted. `is_placed(topic, partition)` says whether
/// the metadata has the partition; `deleted` are the ids it records as deleted. Directories of
/// deleted topics are returned apart, for removal.
pub async fn find_unexplained(
    data_dir: &Path,
    is_placed: impl Fn(&str, i32) -> bool,
    deleted: &BTreeSet<Uuid>,
) -> crate::storage::Result<(Vec<OrphanDir>, Vec<PathBuf>)> {
    let mut orphans = Vec::new();
    let mut of_deleted_topics = Vec::new();
    let mut names = file::list_dir(data_dir).await?;
    names.sort();
    for name in names {
        let Some((topic, partition)) = parse_dir_name(&name) else {
            continue;
        };
        if is_placed(topic, partition) {
            continue;
        }
        let dir = data_dir.join(&name);
        // `list_dir` fails on a plain file: only directories are partitions.
        if file::list_dir(&dir).await.is_err() {
            continue;
        }
        let marker = read_marker(&dir).await?;
        match &marker {
            Marker::Topic(id) if deleted.contains(id) => {
                of_deleted_topics.push(dir);
                continue;
            }
            Marker::Missing if !has_segments(&dir).await => continue,
            _ => {}
        }
        orphans.push(OrphanDir {
            dir_name: name.clone(),
            topic: topic.to_string(),
            partition,
            marker,
        });
    }
    Ok((orphans, of_deleted_topics))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn markers_round_trip_and_damage_is_unreadable() {
        let id = Uuid::new_v4();
        assert_eq!(
            parse_marker(marker_contents(id).as_bytes()),
            Marker::Topic(id)
        );
        for damaged in [
            &b"version: 0\ntopic_id: zz\n"[..],
            b"version: 1\ntopic_id: 00000000-0000-0000-0000-000000000001\n",
            b"\xff\xfe",
            b"",
            b"garbage",
        ] {
            assert!(
                matches!(parse_marker(damaged), Marker::Unreadable(_)),
                "{damaged:?}"
            );
        }
    }

    #[test]
    fn only_partition_shaped_names_parse() {
        assert_eq!(parse_dir_name("orders-12"), Some(("orders", 12)));
        assert_eq!(parse_dir_name("a-b-0"), Some(("a-b", 0)));
        assert_eq!(parse_dir_name(METADATA_LOG_DIR_NAME), None);
        assert_eq!(parse_dir_name("orders-"), None);
        assert_eq!(parse_dir_name("orders-1.abc-delete"), None);
        assert_eq!(parse_dir_name("ballast"), None);
    }
}
