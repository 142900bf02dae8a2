//! The partition's small state file, `partition.state`: the log start offset (moved by
//! `delete_records`), the leader-epoch history (epoch → first offset) and the recovery point
//! (below it every segment is sealed). Rewritten atomically and rarely (a new epoch, a delete,
//! a truncation, a finished seal); parsed defensively.

use std::path::Path;

use super::error::Result;
use super::file;

pub const FILE_NAME: &str = "partition.state";
const HEADER: &str = "ringlog-partition-state v1";
/// Offsets beyond this are damage, not data: appends must never overflow an `i64`.
const OFFSET_MAX: i64 = 1 << 62;
/// Leader epochs kept; older ones are folded away (Kafka keeps a similar bounded cache).
pub const EPOCHS_MAX: usize = 4096;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PartitionCheckpoint {
    pub log_start_offset: i64,
    /// (leader epoch, first offset written in it), increasing in both.
    pub epochs: Vec<(i32, i64)>,
    /// Every segment that ends at or below this offset (the next one starts there or before)
    /// was sealed: data durable, indexes complete. Kafka's recovery point: `open` trusts those
    /// segments and recovers the ones after. `None` in a file written before it existed, when
    /// only the last two segments can be unsealed.
    pub recovery_point: Option<i64>,
}

impl PartitionCheckpoint {
    pub fn encode(&self) -> Vec<u8> {
        let mut text = format!("{HEADER}\nlog_start_offset {}\n", self.log_start_offset);
        for (epoch, start_offset) in &self.epochs {
            text.push_str(&format!("epoch {epoch} {start_offset}\n"));
        }
        if let Some(offset) = self.recovery_point {
            text.push_str(&format!("recovery_point {offset}\n"));
        }
        text.into_bytes()
    }

    /// Parses the file; anything unreadable yields `None` and the log falls back to what its
    /// segments say.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != HEADER {
            return None;
        }
        let mut checkpoint = PartitionCheckpoint::default();
        for line in lines {
            let fields: Vec<&str> = line.split_whitespace().collect();
            match fields.as_slice() {
                ["log_start_offset", value] => {
                    checkpoint.log_start_offset =
                        value.parse().ok().filter(|o| (0..OFFSET_MAX).contains(o))?;
                }
                ["epoch", epoch, start] => {
                    let entry: (i32, i64) = (epoch.parse().ok()?, start.parse().ok()?);
                    if entry.0 < 0 || !(0..OFFSET_MAX).contains(&entry.1) {
                        return None;
                    }
                    if checkpoint
                        .epochs
                        .last()
                        .is_some_and(|last| entry.0 <= last.0 || entry.1 < last.1)
                    {
                        return None;
                    }
                    checkpoint.epochs.push(entry);
                }
                ["recovery_point", value] => {
                    checkpoint.recovery_point =
                        Some(value.parse().ok().filter(|o| (0..OFFSET_MAX).contains(o))?);
                }
                [] => {}
                _ => return None,
            }
        }
        Some(checkpoint)
    }

    pub async fn load(dir: &Path) -> Result<Option<Self>> {
        let bytes = file::read_small_file(&dir.join(FILE_NAME)).await?;
        Ok(bytes.and_then(|b| {
            let decoded = Self::decode(&b);
            if decoded.is_none() {
                tracing::warn!(dir = %dir.display(), "unreadable {FILE_NAME}, ignoring it");
            }
            decoded
        }))
    }

    pub async fn store(&self, dir: &Path) -> Result<()> {
        file::write_file_atomic(&dir.join(FILE_NAME), self.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_rejects_garbage() {
        let mut checkpoint = PartitionCheckpoint {
            log_start_offset: 17,
            epochs: vec![(0, 0), (3, 100)],
            recovery_point: None,
        };
        assert_eq!(
            PartitionCheckpoint::decode(&checkpoint.encode()),
            Some(checkpoint.clone())
        );
        checkpoint.recovery_point = Some(4096);
        assert_eq!(
            PartitionCheckpoint::decode(&checkpoint.encode()),
            Some(checkpoint)
        );
        assert_eq!(
            PartitionCheckpoint::decode(format!("{HEADER}\nrecovery_point -5\n").as_bytes()),
            None
        );
        assert_eq!(PartitionCheckpoint::decode(b"nonsense"), None);
        assert_eq!(
            PartitionCheckpoint::decode(format!("{HEADER}\nepoch 3 5\nepoch 2 9\n").as_bytes()),
            None
        );
    }
}
