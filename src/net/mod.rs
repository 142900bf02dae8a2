//! Per-shard networking: each shard binds the Kafka port with SO_REUSEPORT and serves the
//! connections it accepts; frames are read in order, handled concurrently up to a bound, and
//! answered in request order with vectored zero-copy writes.

pub mod connection;
pub mod listener;
pub mod send;
