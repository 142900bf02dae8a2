//! Logging of connections closed or refused for what a client did. Clients decide how often
//! that happens, so each kind logs its first `LINES_PER_INTERVAL_MAX` events of an interval,
//! one line each, and past that only one summary line per interval with the count. Reasons
//! quote client bytes through decoder messages, so they are put on one line and cut short.
//! Shard-local (a thread-local of the shard's thread); every call is synchronous.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::connection::StopSignal;

/// How long one logging interval lasts.
pub const INTERVAL: Duration = Duration::from_secs(10);
/// Lines logged one by one per kind and interval; the rest are counted in the summary.
const LINES_PER_INTERVAL_MAX: u64 = 5;
/// Characters of a reason kept in a log line.
const REASON_CHARS_MAX: usize = 240;

/// Why a connection was closed or refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CloseKind {
    /// A frame the broker cannot read or answer: bad size, header or body.
    Malformed,
    /// A frame that did not arrive whole within `request_read_timeout_ms`.
    ReadTimeout,
    /// Refused at accept: over `max_connections`.
    MaxConnections,
    /// Refused at accept: over `max_connections_per_ip`.
    MaxConnectionsPerIp,
}

const KINDS: [CloseKind; 4] = [
    CloseKind::Malformed,
    CloseKind::ReadTimeout,
    CloseKind::MaxConnections,
    CloseKind::MaxConnectionsPerIp,
];

impl CloseKind {
    fn index(self) -> usize {
        self as usize
    }

    fn summary(self, count: u64, interval: Duration) -> String {
        let seconds = interval.as_secs().max(1);
        match self {
            CloseKind::Malformed => {
                format!("closed {count} connections for malformed frames in the last {seconds} s")
            }
            CloseKind::ReadTimeout => format!(
                "closed {count} connections whose frame did not arrive within request_read_timeout_ms in the last {seconds} s"
            ),
            CloseKind::MaxConnections => {
                format!("refused {count} connections over max_connections in the last {seconds} s")
            }
            CloseKind::MaxConnectionsPerIp => format!(
                "refused {count} connections over max_connections_per_ip in the last {seconds} s"
            ),
        }
    }
}

struct CloseLog {
    shard: usize,
    interval_start: Instant,
    counts: [u64; KINDS.len()],
}

thread_local! {
    static LOG: RefCell<CloseLog> = RefCell::new(CloseLog {
        shard: 0,
        interval_start: Instant::now(),
        counts: [0; KINDS.len()],
    });
}

/// Logs (or counts, past the interval's first lines) a connection closed or refused.
pub fn record(kind: CloseKind, peer: &str, reason: &str) {
    flush(Instant::now(), false);
    let count = LOG.with(|log| {
        let mut log = log.borrow_mut();
        log.counts[kind.index()] += 1;
        log.counts[kind.index()]
    });
    if count <= LINES_PER_INTERVAL_MAX {
        let reason = one_line(reason);
        match kind {
            CloseKind::MaxConnections | CloseKind::MaxConnectionsPerIp => {
                tracing::info!(%peer, %reason, "refusing connection")
            }
            CloseKind::Malformed | CloseKind::ReadTimeout => {
                tracing::info!(%peer, %reason, "closing connection")
            }
        }
    }
}

/// Ends the interval once it is over (or at once when `force`): one summary line for each kind
/// that logged only some of its events.
fn flush(now: Instant, force: bool) {
    let ended = LOG.with(|log| {
        let mut log = log.borrow_mut();
        let elapsed = now.saturating_duration_since(log.interval_start);
        (force || elapsed >= INTERVAL).then(|| {
            log.interval_start = now;
            (log.shard, std::mem::take(&mut log.counts), elapsed)
        })
    });
    if let Some((shard, counts, elapsed)) = ended {
        for kind in KINDS {
            let count = counts[kind.index()];
            if count > LINES_PER_INTERVAL_MAX {
                tracing::info!(shard, "{}", kind.summary(count, elapsed));
            }
        }
    }
}

/// Writes the summaries of the shard's intervals as they end, and the last one at `stop`;
/// started once per shard, so that a burst is summarised even when no event follows it.
pub async fn flush_until_stopped(shard: usize, stop: Rc<StopSignal>) {
    LOG.with(|log| log.borrow_mut().shard = shard);
    while !stop.is_raised() {
        futures_lite::future::or(
            async {
                glommio::timer::sleep(INTERVAL).await;
            },
            stop.wait(),
        )
        .await;
        flush(Instant::now(), false);
    }
    flush(Instant::now(), true);
}

/// `reason` on one line: control characters escaped, surrounding space trimmed, cut at
/// `REASON_CHARS_MAX` characters.
pub fn one_line(reason: &str) -> String {
    let mut line = String::with_capacity(reason.len().min(REASON_CHARS_MAX) + 8);
    for (i, c) in reason.trim().chars().enumerate() {
        if i == REASON_CHARS_MAX {
            line.push('…');
            break;
        }
        if c.is_control() {
            line.extend(c.escape_default());
        } else {
            line.push(c);
        }
    }
    line
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reasons_become_one_bounded_line() {
        assert_eq!(
            one_line("Not enough bytes remaining in buffer!\n"),
            "Not enough bytes remaining in buffer!"
        );
        assert_eq!(one_line("a\nb\r\tc\u{1b}"), "a\\nb\\r\\tc\\u{1b}");
        let long = "x".repeat(10_000);
        assert_eq!(one_line(&long).chars().count(), REASON_CHARS_MAX + 1);
    }
}
