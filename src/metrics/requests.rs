//! Request accounting around a shard's frame handler: counts, latency, bytes in and out, and
//! requests that closed their connection, by API. Wraps the handler instead of living inside
//! it, so that adding a Kafka API needs nothing here.

use std::future::Future;
use std::time::Instant;

use bytes::Bytes;

use crate::net::connection::Outcome;

/// Bytes of the size prefix in front of every Kafka frame.
const SIZE_PREFIX_BYTES: usize = 4;

/// Runs `handle(frame)` and records the request under the API key its header names.
pub async fn timed<H, F>(frame: Bytes, handle: H) -> Outcome
where
    H: FnOnce(Bytes) -> F,
    F: Future<Output = Outcome>,
{
    // A frame too short for an API key is counted as `unknown`; the handler closes it.
    let api_key = frame
        .get(..2)
        .map_or(-1, |key| i16::from_be_bytes([key[0], key[1]]));
    super::shard_local::request_started(frame.len() + SIZE_PREFIX_BYTES);
    let started = Instant::now();
    let outcome = handle(frame).await;
    let (sent_bytes, closed) = match &outcome {
        Outcome::Respond(chunks) => (chunks.iter().map(Bytes::len).sum(), false),
        Outcome::Silent => (0, false),
        Outcome::Close(_) => (0, true),
    };
    super::shard_local::request_done(api_key, started.elapsed(), sent_bytes, closed);
    outcome
}

pub use super::shard_local::request_errors as errors;
