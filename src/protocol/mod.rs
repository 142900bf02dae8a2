//! The Kafka wire protocol at ringlog's edge: which APIs and versions the broker speaks,
//! request framing and header parsing, response encoding into zero-copy chunks, and the one
//! place where typed errors become Kafka error codes. Types come from the `kafka-protocol`
//! crate; nothing here touches files or shards.

pub mod chunked;
pub mod codes;
pub mod frame;
pub mod versions;

pub use chunked::ChunkedBuf;
pub use frame::{encode_response, RequestFrame};
