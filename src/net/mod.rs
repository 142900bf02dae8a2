//! Per-shard networking: each shard binds the Kafka port with SO_REUSEPORT and serves the
//! connections it accepts; frames are read in order, handled concurrently up to a bound, and
//! answered in request order with vectored zero-copy writes. Clients cannot make a shard hold
//! more than its request budget, or the broker more connections than its limits.

pub mod admission;
pub mod budget;
pub mod close_log;
pub mod connection;
pub mod listener;
pub mod send;
