//! Incremental fetch sessions (KIP-227), as librdkafka and the Java consumer use them: a client
//! that asks for a session (session id 0, epoch 0) gets an id; later fetches (same id, next
//! epoch) name only the partitions whose position changed, and the answer carries only the
//! partitions with news (records, an error, a moved high watermark or log start). Sessions
//! live on the shard that created them, bounded in count; a client that reconnects to another
//! shard, or whose session was evicted, gets FETCH_SESSION_ID_NOT_FOUND and starts a new one.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::time::Instant;

use super::messages::ReadAt;
use crate::partition::{FetchOutcome, TopicPartition};

/// Sessions kept per shard; the least recently used is evicted first.
pub const SESSIONS_MAX: usize = 1000;
/// Partitions one session may hold.
pub const SESSION_PARTITIONS_MAX: usize = 10_000;

pub const INVALID_SESSION_ID: i32 = 0;
/// The epoch that asks for a new session (with session id 0) or replaces one.
pub const INITIAL_EPOCH: i32 = 0;
/// The epoch of a fetch without a session (with session id 0) or that closes one.
pub const FINAL_EPOCH: i32 = -1;

#[derive(Debug, Clone)]
struct SessionPartition {
    at: ReadAt,
    /// What the client was last told, to leave unchanged partitions out of answers.
    high_watermark: i64,
    log_start_offset: i64,
}

#[derive(Debug)]
struct Session {
    /// The epoch the next fetch of this session must carry.
    next_epoch: i32,
    partitions: Vec<(TopicPartition, SessionPartition)>,
    last_used: Instant,
}

/// Why a session fetch cannot be served.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionError {
    NotFound,
    InvalidEpoch,
    TooManyPartitions,
}

pub struct FetchSessions {
    sessions: RefCell<HashMap<i32, Session>>,
    next_id: Cell<i32>,
}

impl FetchSessions {
    /// Ids start apart per shard, so a session id read in a log names its shard.
    pub fn new(shard_id: usize) -> Self {
        FetchSessions {
            sessions: RefCell::new(HashMap::new()),
            next_id: Cell::new((shard_id as i32 & 0x7f) << 24 | 1),
        }
    }

    pub fn close(&self, session_id: i32) {
        self.sessions.borrow_mut().remove(&session_id);
    }

    /// Starts a session over `reads`; returns its id, or `INVALID_SESSION_ID` when it is too
    /// large to keep (the client then goes on with full fetches).
    pub fn create(&self, reads: &[(TopicPartition, ReadAt)]) -> i32 {
        if reads.len() > SESSION_PARTITIONS_MAX {
            return INVALID_SESSION_ID;
        }
        let mut sessions = self.sessions.borrow_mut();
        if sessions.len() >= SESSIONS_MAX {
            let oldest = sessions
                .iter()
                .min_by_key(|(_, s)| s.last_used)
                .map(|(id, _)| *id);
            if let Some(oldest) = oldest {
                sessions.remove(&oldest);
            }
        }
        let mut id = self.next_id.get();
        while id == INVALID_SESSION_ID || sessions.contains_key(&id) {
            id = id.wrapping_add(1) & i32::MAX;
        }
        self.next_id.set(id.wrapping_add(1) & i32::MAX);
        let partitions = reads
            .iter()
            .map(|(id, at)| {
                (
                    id.clone(),
                    SessionPartition {
                        at: *at,
                        high_watermark: -1,
                        log_start_offset: -1,
                    },
                )
            })
            .collect();
        sessions.insert(
            id,
            Session {
                next_epoch: 1,
                partitions,
                last_used: Instant::now(),
            },
        );
        id
    }

    /// Applies an incremental fetch (`changed` partitions added or updated, `forgotten` ones
    /// removed) and returns every partition of the session to read.
    pub fn update(
        &self,
        session_id: i32,
        epoch: i32,
        changed: &[(TopicPartition, ReadAt)],
        forgotten: &[TopicPartition],
    ) -> Result<Vec<(TopicPartition, ReadAt)>, SessionError> {
        let mut sessions = self.sessions.borrow_mut();
        let session = sessions
            .get_mut(&session_id)
            .ok_or(SessionError::NotFound)?;
        if epoch != session.next_epoch {
            return Err(SessionError::InvalidEpoch);
        }
        // As Kafka: changes first, then removals, so a partition both named and forgotten goes.
        for (id, at) in changed {
            match session
                .partitions
                .iter_mut()
                .find(|(existing, _)| existing == id)
            {
                Some((_, partition)) => partition.at = *at,
                None => session.partitions.push((
                    id.clone(),
                    SessionPartition {
                        at: *at,
                        high_watermark: -1,
                        log_start_offset: -1,
                    },
                )),
            }
        }
        session.partitions.retain(|(id, _)| !forgotten.contains(id));
        if session.partitions.len() > SESSION_PARTITIONS_MAX {
            sessions.remove(&session_id);
            return Err(SessionError::TooManyPartitions);
        }
        session.next_epoch = if session.next_epoch == i32::MAX {
            1
        } else {
            session.next_epoch + 1
        };
        session.last_used = Instant::now();
        Ok(session
            .partitions
            .iter()
            .map(|(id, p)| (id.clone(), p.at))
            .collect())
    }

    /// Which of `outcomes` (for the session's partitions, in order) an incremental answer must
    /// carry, remembering what the client is told.
    pub fn news(&self, session_id: i32, outcomes: &[FetchOutcome]) -> Vec<bool> {
        let mut sessions = self.sessions.borrow_mut();
        let Some(session) = sessions.get_mut(&session_id) else {
            return vec![true; outcomes.len()];
        };
        session
            .partitions
            .iter_mut()
            .zip(outcomes)
            .map(|((_, known), outcome)| {
                let news = outcome.error_code != 0
                    || !outcome.data.batches.is_empty()
                    || outcome.data.high_watermark != known.high_watermark
                    || outcome.data.log_start_offset != known.log_start_offset;
                known.high_watermark = outcome.data.high_watermark;
                known.log_start_offset = outcome.data.log_start_offset;
                news
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(offset: i64) -> ReadAt {
        ReadAt {
            offset,
            max_bytes: 1024,
        }
    }

    #[test]
    fn sessions_follow_epochs_and_track_changes() {
        let sessions = FetchSessions::new(1);
        let a = TopicPartition::new("t", 0);
        let b = TopicPartition::new("t", 1);
        let id = sessions.create(&[(a.clone(), at(0)), (b.clone(), at(0))]);
        assert_ne!(id, INVALID_SESSION_ID);
        let reads = sessions.update(id, 1, &[(a.clone(), at(5))], &[]).unwrap();
        assert_eq!(reads.len(), 2);
        assert_eq!(reads[0].1.offset, 5);
        assert_eq!(
            sessions.update(id, 1, &[], &[]),
            Err(SessionError::InvalidEpoch)
        );
        let reads = sessions
            .update(id, 2, &[], std::slice::from_ref(&b))
            .unwrap();
        assert_eq!(reads, vec![(a.clone(), at(5))]);
        sessions.close(id);
        assert_eq!(
            sessions.update(id, 3, &[], &[]),
            Err(SessionError::NotFound)
        );
    }

    #[test]
    fn the_session_count_is_bounded() {
        let sessions = FetchSessions::new(0);
        let first = sessions.create(&[(TopicPartition::new("t", 0), at(0))]);
        for _ in 0..SESSIONS_MAX {
            sessions.create(&[(TopicPartition::new("t", 0), at(0))]);
        }
        assert_eq!(sessions.sessions.borrow().len(), SESSIONS_MAX);
        assert_eq!(
            sessions.update(first, 1, &[], &[]),
            Err(SessionError::NotFound)
        );
    }
}
