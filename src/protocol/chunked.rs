//! Zero-copy response encoding. `ChunkedBuf` is a `ByteBufMut` for kafka-protocol's encoders
//! that copies the small fields into a buffer of its own but recognises registered record
//! `Bytes` by pointer and length and emits them as chunks of their own: the response becomes a
//! list of `Bytes` for one vectored `sendmsg`, and record bytes are never copied.
//!
//! A fetch answer for one partition may span several batches from different buffers, while the
//! protocol type is one `Bytes`: such records are encoded through a placeholder, a distinct
//! slice of a static zero region with the right length, which `put_slice` replaces by the real
//! batches. The placeholder's bytes are never read.

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::protocol::buf::ByteBufMut;

/// Largest records field that can go through a placeholder; fetch responses are capped below.
pub const PLACEHOLDER_BYTES_MAX: usize = 64 * 1024 * 1024;
/// Distinct placeholders per response (one per partition answered).
pub const PLACEHOLDERS_MAX: usize = 64 * 1024;

static ZEROS: [u8; PLACEHOLDER_BYTES_MAX + PLACEHOLDERS_MAX] =
    [0; PLACEHOLDER_BYTES_MAX + PLACEHOLDERS_MAX];

struct Registered {
    address: usize,
    length: usize,
    chunks: Vec<Bytes>,
}

#[derive(Default)]
pub struct ChunkedBuf {
    done: Vec<Bytes>,
    done_bytes: usize,
    current: BytesMut,
    registered: Vec<Registered>,
}

impl ChunkedBuf {
    pub fn new() -> Self {
        Self::default()
    }

    /// Returns the `Bytes` to put in the message's records field for these batches: the batch
    /// itself when there is one, else a placeholder. Either way, encoding it emits `batches`
    /// as chunks without copying. `None` when there are no batches.
    pub fn register_records(&mut self, batches: Vec<Bytes>) -> Option<Bytes> {
        let total: usize = batches.iter().map(Bytes::len).sum();
        if batches.is_empty() {
            return None;
        }
        let field = if batches.len() == 1 {
            batches[0].clone()
        } else {
            let start = self.registered.len();
            if total > PLACEHOLDER_BYTES_MAX || start >= PLACEHOLDERS_MAX {
                // Beyond the placeholder region (never with capped fetches): copy instead.
                let mut joined = BytesMut::with_capacity(total);
                for batch in &batches {
                    joined.extend_from_slice(batch);
                }
                return Some(joined.freeze());
            }
            Bytes::from_static(&ZEROS[start..start + total])
        };
        self.registered.push(Registered {
            address: field.as_ptr() as usize,
            length: field.len(),
            chunks: batches,
        });
        Some(field)
    }

    /// The encoded message as chunks, in order.
    pub fn into_chunks(mut self) -> Vec<Bytes> {
        if !self.current.is_empty() {
            self.done.push(self.current.split().freeze());
        }
        self.done
    }

    fn take_registered(&mut self, src: &[u8]) -> Option<Vec<Bytes>> {
        let address = src.as_ptr() as usize;
        let index = self
            .registered
            .iter()
            .position(|r| r.address == address && r.length == src.len() && r.length > 0)?;
        Some(std::mem::take(&mut self.registered[index].chunks)).filter(|chunks| !chunks.is_empty())
    }
}

// SAFETY: every method delegates to the inner `BytesMut`, which upholds `BufMut`'s contract;
// `put_slice` only adds whole chunks in front of a fresh buffer.
unsafe impl BufMut for ChunkedBuf {
    fn remaining_mut(&self) -> usize {
        self.current.remaining_mut()
    }

    unsafe fn advance_mut(&mut self, cnt: usize) {
        // SAFETY: forwarded under the caller's guarantee.
        unsafe { self.current.advance_mut(cnt) }
    }

    fn chunk_mut(&mut self) -> &mut bytes::buf::UninitSlice {
        self.current.chunk_mut()
    }

    fn put_slice(&mut self, src: &[u8]) {
        match self.take_registered(src) {
            Some(chunks) => {
                if !self.current.is_empty() {
                    let head = self.current.split().freeze();
                    self.done_bytes += head.len();
                    self.done.push(head);
                }
                for chunk in chunks {
                    self.done_bytes += chunk.len();
                    self.done.push(chunk);
                }
            }
            None => self.current.extend_from_slice(src),
        }
    }
}

impl ByteBufMut for ChunkedBuf {
    fn offset(&self) -> usize {
        self.done_bytes + self.current.len()
    }

    fn seek(&mut self, offset: usize) {
        assert!(
            offset >= self.done_bytes,
            "encoders only seek within the current chunk"
        );
        self.current.resize(offset - self.done_bytes, 0);
    }

    fn range(&mut self, r: std::ops::Range<usize>) -> &mut [u8] {
        assert!(
            r.start >= self.done_bytes,
            "encoders only patch the current chunk"
        );
        &mut self.current[r.start - self.done_bytes..r.end - self.done_bytes]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn registered_records_become_chunks_in_place() {
        let mut buf = ChunkedBuf::new();
        let a = Bytes::from(vec![1u8; 10]);
        let b = Bytes::from(vec![2u8; 20]);
        let field = buf.register_records(vec![a.clone(), b.clone()]).unwrap();
        assert_eq!(field.len(), 30);
        buf.put_i32(30);
        buf.put_slice(&field);
        buf.put_u8(9);
        assert_eq!(buf.offset(), 35);
        let chunks = buf.into_chunks();
        assert_eq!(chunks.len(), 4);
        assert_eq!(chunks[1].as_ptr(), a.as_ptr());
        assert_eq!(chunks[2].as_ptr(), b.as_ptr());
        let joined: Vec<u8> = chunks.iter().flat_map(|c| c.iter().copied()).collect();
        let mut expected = 30i32.to_be_bytes().to_vec();
        expected.extend_from_slice(&a);
        expected.extend_from_slice(&b);
        expected.push(9);
        assert_eq!(joined, expected);
    }

    #[test]
    fn single_batch_is_its_own_field() {
        let mut buf = ChunkedBuf::new();
        let a = Bytes::from(vec![3u8; 7]);
        let field = buf.register_records(vec![a.clone()]).unwrap();
        assert_eq!(field.as_ptr(), a.as_ptr());
        buf.put_slice(&field);
        assert_eq!(buf.into_chunks()[0].as_ptr(), a.as_ptr());
        assert!(ChunkedBuf::new().register_records(Vec::new()).is_none());
    }
}
