//! The sparse indexes of one segment: an offset index (relative offset → file position) and a
//! time index (max timestamp of everything before a relative offset). Both live in memory,
//! bounded by `segment.bytes / index.interval.bytes` entries, and are persisted in Kafka's
//! layouts: `.index` holds 8-byte entries (u32 relative offset, u32 position), `.timeindex`
//! 12-byte entries (i64 timestamp, u32 relative offset), big-endian. Both can always be rebuilt
//! from the log, so they are synced only when their segment is sealed.

use std::rc::Rc;

use super::appender::Appender;
use super::error::Result;

pub const OFFSET_ENTRY_SIZE_BYTES: usize = 8;
pub const TIME_ENTRY_SIZE_BYTES: usize = 12;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OffsetEntry {
    pub relative_offset: u32,
    pub position: u32,
}

/// Every batch before `relative_offset` has a max timestamp of at most `timestamp_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TimeEntry {
    pub timestamp_ms: i64,
    pub relative_offset: u32,
}

pub struct SegmentIndex {
    offsets: Vec<OffsetEntry>,
    times: Vec<TimeEntry>,
    /// Present while the segment is active: where new entries are appended.
    files: Option<IndexFiles>,
}

pub struct IndexFiles {
    pub offsets: Rc<Appender>,
    pub times: Rc<Appender>,
}

impl IndexFiles {
    /// Cuts the offset and time index files durably to these sizes. Each cut ends in a flush:
    /// the two reach the device together rather than one after the other.
    pub async fn truncate(&self, offsets_bytes: u64, times_bytes: u64) -> Result<()> {
        futures_util::future::try_join(
            self.offsets.truncate(offsets_bytes),
            self.times.truncate(times_bytes),
        )
        .await?;
        Ok(())
    }
}

/// Parses an offset index file, keeping the longest prefix of strictly increasing entries.
/// Zero padding from preallocation or a torn page ends the prefix.
pub fn parse_offset_entries(bytes: &[u8]) -> Vec<OffsetEntry> {
    let mut entries: Vec<OffsetEntry> = Vec::new();
    for chunk in bytes.chunks_exact(OFFSET_ENTRY_SIZE_BYTES) {
        let entry = OffsetEntry {
            relative_offset: u32::from_be_bytes(chunk[0..4].try_into().expect("4 bytes")),
            position: u32::from_be_bytes(chunk[4..8].try_into().expect("4 bytes")),
        };
        // Entries are never made for position 0, so a zero entry is padding.
        let increasing = match entries.last() {
            Some(last) => {
                entry.relative_offset > last.relative_offset && entry.position > last.position
            }
            None => entry.position > 0,
        };
        if !increasing {
            break;
        }
        entries.push(entry);
    }
    entries
}

/// Parses a time index file, keeping the longest prefix increasing in both fields.
pub fn parse_time_entries(bytes: &[u8]) -> Vec<TimeEntry> {
    let mut entries: Vec<TimeEntry> = Vec::new();
    for chunk in bytes.chunks_exact(TIME_ENTRY_SIZE_BYTES) {
        let entry = TimeEntry {
            timestamp_ms: i64::from_be_bytes(chunk[0..8].try_into().expect("8 bytes")),
            relative_offset: u32::from_be_bytes(chunk[8..12].try_into().expect("4 bytes")),
        };
        let increasing = match entries.last() {
            Some(last) => {
                entry.timestamp_ms > last.timestamp_ms
                    && entry.relative_offset >= last.relative_offset
            }
            None => entry.relative_offset > 0,
        };
        if !increasing {
            break;
        }
        entries.push(entry);
    }
    entries
}

impl SegmentIndex {
    pub fn new(
        offsets: Vec<OffsetEntry>,
        times: Vec<TimeEntry>,
        files: Option<IndexFiles>,
    ) -> Self {
        SegmentIndex {
            offsets,
            times,
            files,
        }
    }

    pub fn offsets(&self) -> &[OffsetEntry] {
        &self.offsets
    }

    pub fn times(&self) -> &[TimeEntry] {
        &self.times
    }

    pub fn files(&self) -> Option<&IndexFiles> {
        self.files.as_ref()
    }

    pub fn take_files(&mut self) -> Option<IndexFiles> {
        self.files.take()
    }

    pub fn set_files(&mut self, files: IndexFiles) {
        self.files = Some(files);
    }

    /// The last entry at or before `relative_offset`; scanning the log from its position finds
    /// the batch holding that offset. `None` means scan from the segment's start.
    pub fn lookup_offset(&self, relative_offset: u32) -> Option<OffsetEntry> {
        let index = self
            .offsets
            .partition_point(|e| e.relative_offset <= relative_offset);
        index.checked_sub(1).map(|i| self.offsets[i])
    }

    /// The last relative offset before which every batch is older than `timestamp_ms`; the first
    /// batch at or after `timestamp_ms` lies at or after it.
    pub fn lookup_time(&self, timestamp_ms: i64) -> u32 {
        let index = self
            .times
            .partition_point(|e| e.timestamp_ms < timestamp_ms);
        index
            .checked_sub(1)
            .map(|i| self.times[i].relative_offset)
            .unwrap_or(0)
    }

    pub fn last_offset_entry(&self) -> Option<OffsetEntry> {
        self.offsets.last().copied()
    }

    pub fn last_time(&self) -> Option<TimeEntry> {
        self.times.last().copied()
    }

    /// Records the entries in memory and returns their encodings for the files.
    pub fn push(
        &mut self,
        offset: OffsetEntry,
        time: Option<TimeEntry>,
    ) -> (
        [u8; OFFSET_ENTRY_SIZE_BYTES],
        Option<[u8; TIME_ENTRY_SIZE_BYTES]>,
    ) {
        if let Some(last) = self.offsets.last() {
            assert!(
                offset.relative_offset > last.relative_offset && offset.position > last.position
            );
        }
        self.offsets.push(offset);
        let mut offset_bytes = [0u8; OFFSET_ENTRY_SIZE_BYTES];
        offset_bytes[0..4].copy_from_slice(&offset.relative_offset.to_be_bytes());
        offset_bytes[4..8].copy_from_slice(&offset.position.to_be_bytes());
        let time_bytes = time.map(|time| self.push_time(time));
        (offset_bytes, time_bytes)
    }

    pub fn push_time(&mut self, time: TimeEntry) -> [u8; TIME_ENTRY_SIZE_BYTES] {
        if let Some(last) = self.times.last() {
            assert!(time.timestamp_ms > last.timestamp_ms);
            assert!(time.relative_offset >= last.relative_offset);
        }
        self.times.push(time);
        let mut bytes = [0u8; TIME_ENTRY_SIZE_BYTES];
        bytes[0..8].copy_from_slice(&time.timestamp_ms.to_be_bytes());
        bytes[8..12].copy_from_slice(&time.relative_offset.to_be_bytes());
        bytes
    }

    /// Drops every entry at or past `position` / `relative_offset` (after a log truncation).
    /// Returns the surviving entry counts.
    pub fn truncate(&mut self, position: u32, relative_offset: u32) -> (usize, usize) {
        self.offsets.retain(|e| e.position < position);
        self.times.retain(|e| e.relative_offset <= relative_offset);
        (self.offsets.len(), self.times.len())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encode_offsets(entries: &[(u32, u32)]) -> Vec<u8> {
        entries
            .iter()
            .flat_map(|(o, p)| o.to_be_bytes().into_iter().chain(p.to_be_bytes()))
            .collect()
    }

    #[test]
    fn parse_stops_at_padding_and_disorder() {
        let mut bytes = encode_offsets(&[(10, 4000), (20, 9000), (30, 12000)]);
        bytes.extend_from_slice(&[0u8; 64]);
        assert_eq!(parse_offset_entries(&bytes).len(), 3);
        let disordered = encode_offsets(&[(10, 4000), (5, 9000)]);
        assert_eq!(parse_offset_entries(&disordered).len(), 1);
        assert_eq!(parse_offset_entries(&bytes[..13]).len(), 1);
    }

    #[test]
    fn lookups_find_the_floor_entry() {
        let mut index = SegmentIndex::new(Vec::new(), Vec::new(), None);
        index.push(
            OffsetEntry {
                relative_offset: 10,
                position: 100,
            },
            Some(TimeEntry {
                timestamp_ms: 1_000,
                relative_offset: 10,
            }),
        );
        index.push(
            OffsetEntry {
                relative_offset: 20,
                position: 200,
            },
            Some(TimeEntry {
                timestamp_ms: 2_000,
                relative_offset: 20,
            }),
        );
        assert_eq!(index.lookup_offset(5), None);
        assert_eq!(index.lookup_offset(10).unwrap().position, 100);
        assert_eq!(index.lookup_offset(19).unwrap().position, 100);
        assert_eq!(index.lookup_offset(25).unwrap().position, 200);
        assert_eq!(index.lookup_time(500), 0);
        assert_eq!(index.lookup_time(1_000), 0);
        assert_eq!(index.lookup_time(1_001), 10);
        assert_eq!(index.lookup_time(5_000), 20);
    }
}
