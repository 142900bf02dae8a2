//! Reading a segment: batches from its log file (each checked against its CRC, as the device
//! may hand back what was never written) or from the not-yet-written list, and the search by
//! timestamp.

use std::ops::ControlFlow;

use bytes::Bytes;

use super::*;

impl Segment {
    /// Reads whole batches: the one holding `start_offset` and those after it, each ending
    /// below `end_offset_exclusive`, until `max_bytes` (the first batch always comes whole).
    pub async fn read(
        &self,
        start_offset: i64,
        end_offset_exclusive: i64,
        max_bytes: usize,
        config: &LogConfig,
    ) -> Result<Vec<Bytes>> {
        self.prune_pending();
        let mut found = Vec::new();
        let mut size_bytes = 0usize;
        let mut next_offset = start_offset;
        let from_pending = self.read_pending(
            start_offset,
            end_offset_exclusive,
            max_bytes,
            &mut found,
            &mut size_bytes,
        );
        if from_pending {
            return Ok(found);
        }
        let written = match self.appender.borrow().as_ref() {
            Some(appender) => appender.written_position().min(self.size_bytes()),
            None => self.size_bytes(),
        };
        let mut position = self
            .index
            .borrow()
            .lookup_offset((start_offset - self.base_offset).max(0) as u32)
            .map_or(0, |e| u64::from(e.position));
        // The batch holding `start_offset` lies at most an index interval past the index entry.
        let slack_bytes = config.index_interval_bytes as usize;
        let window_size = (max_bytes.min(READ_SIZE_MAX_BYTES) + slack_bytes)
            .min(written.saturating_sub(position) as usize);
        let mut window = self.log.read_at(position, window_size).await?;
        let mut in_window = 0usize;
        let batch_size_max = config.segment_bytes.max(config.max_message_bytes) as usize;
        while position < written {
            let header = match batch::peek_header(&window[in_window..]) {
                Ok(header) => header,
                Err(_)
                    if window.len() - in_window < BATCH_HEADER_SIZE_BYTES && found.is_empty() =>
                {
                    // Header cut by the window: read from here.
                    window = self
                        .log
                        .read_at(position, slack_bytes.min((written - position) as usize))
                        .await?;
                    in_window = 0;
                    if window.len() < BATCH_HEADER_SIZE_BYTES {
                        break;
                    }
                    continue;
                }
                Err(_) if window.len() - in_window < BATCH_HEADER_SIZE_BYTES => break,
                Err(error) => {
                    if found.is_empty() {
                        return Err(StorageError::CorruptBatch(error));
                    }
                    break;
                }
            };
            let batch_size = header.size_bytes();
            let last_offset = header.last_offset();
            if batch_size > batch_size_max || position + batch_size as u64 > written {
                if found.is_empty() && batch_size > batch_size_max {
                    return Err(StorageError::LogFailed(format!(
                        "batch at {position} in segment {} claims {batch_size} bytes",
                        self.base_offset
                    )));
                }
                break;
            }
            if last_offset >= end_offset_exclusive {
                break;
            }
            let wanted = last_offset >= start_offset;
            if wanted && !found.is_empty() && size_bytes + batch_size > max_bytes {
                break;
            }
            if window.len() - in_window < batch_size {
                if wanted && !found.is_empty() {
                    break;
                }
                window = self
                    .log
                    .read_at(position, batch_size.max(window_size))
                    .await?;
                in_window = 0;
                if window.len() < batch_size {
                    break;
                }
                continue;
            }
            if wanted {
                let batch_bytes = window.slice(in_window..in_window + batch_size);
                // The device may hand back what was never written (bit rot, a damaged sector):
                // a batch that fails its CRC is never served as if it were data.
                if let Err(error) = batch::validate(&batch_bytes) {
                    if !found.is_empty() {
                        break;
                    }
                    return Err(self.stored_batch_damaged(position, error));
                }
                found.push(batch_bytes);
                size_bytes += batch_size;
                next_offset = last_offset + 1;
            }
            in_window += batch_size;
            position += batch_size as u64;
        }
        if position >= written && size_bytes < max_bytes && !found.is_empty() {
            self.read_pending(
                next_offset,
                end_offset_exclusive,
                max_bytes,
                &mut found,
                &mut size_bytes,
            );
        }
        Ok(found)
    }

    /// The error for a stored batch that fails validation when read back; logged once per
    /// segment, as consumers retry the same offset.
    fn stored_batch_damaged(&self, position: u64, error: batch::BatchError) -> StorageError {
        let reason = format!(
            "stored batch at byte {position} of segment {}/{:020}.log is damaged: {error}",
            self.dir.display(),
            self.base_offset
        );
        if !self.damage_reported.replace(true) {
            tracing::error!(%reason, "reads of this offset fail with KAFKA_STORAGE_ERROR");
            crate::metrics::storage_read_damaged();
        }
        StorageError::LogFailed(reason)
    }

    /// Serves batches from the not-yet-written list; true if it found the batch holding
    /// `start_offset` there.
    fn read_pending(
        &self,
        start_offset: i64,
        end_offset_exclusive: i64,
        max_bytes: usize,
        found: &mut Vec<Bytes>,
        size_bytes: &mut usize,
    ) -> bool {
        let pending = self.pending.borrow();
        let Some(first) = pending.iter().position(|p| p.last_offset >= start_offset) else {
            return false;
        };
        if pending[first].base_offset > start_offset {
            return false;
        }
        let mut any = false;
        for batch in pending.iter().skip(first) {
            if batch.last_offset >= end_offset_exclusive
                || (!found.is_empty() && *size_bytes + batch.bytes.len() > max_bytes)
            {
                break;
            }
            *size_bytes += batch.bytes.len();
            found.push(batch.bytes.clone());
            any = true;
        }
        any || !found.is_empty()
    }

    /// The first batch whose max timestamp is at least `timestamp_ms`: (base offset, max
    /// timestamp).
    pub async fn find_by_timestamp(&self, timestamp_ms: i64) -> Result<Option<(i64, i64)>> {
        if self.max_timestamp_ms() < timestamp_ms {
            return Ok(None);
        }
        let start_position = {
            let index = self.index.borrow();
            let relative_offset = index.lookup_time(timestamp_ms);
            index
                .lookup_offset(relative_offset)
                .map_or(0, |e| u64::from(e.position))
        };
        let written = match self.appender.borrow().as_ref() {
            Some(appender) => appender.written_position().min(self.size_bytes()),
            None => self.size_bytes(),
        };
        let mut answer = None;
        scan::scan(
            &self.log,
            start_position,
            written,
            false,
            None,
            usize::MAX,
            |batch| {
                answer = batch::first_record_at_or_after(&batch.bytes, timestamp_ms);
                if answer.is_some() {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .await?;
        if answer.is_none() {
            answer = self
                .pending
                .borrow()
                .iter()
                .find_map(|p| batch::first_record_at_or_after(&p.bytes, timestamp_ms));
        }
        Ok(answer)
    }
}
