//! The compression codecs of Kafka record batches, for the few places the broker looks inside a
//! compressed batch (the keys of a compacted topic's records). The hot path never decompresses:
//! batches are stored and served as they came.
//!
//! Codec ids are the low three bits of a batch's attributes: 1 gzip, 2 snappy (raw, or in the
//! xerial framing the Java client writes), 3 lz4 (frame format), 4 zstd. Every decoder is
//! bounded: a batch that would decompress past `size_max_bytes` is an error, never an
//! allocation.

use std::io::Read;

/// The xerial snappy stream header: magic, then version and compatible version (big endian).
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";
const XERIAL_HEADER_BYTES: usize = 16;

/// Decompresses the records area of a batch compressed with `codec`.
pub fn decompress(codec: i16, compressed: &[u8], size_max_bytes: usize) -> Result<Vec<u8>, String> {
    match codec {
        1 => read_bounded(flate2::read::GzDecoder::new(compressed), size_max_bytes),
        2 => snappy(compressed, size_max_bytes),
        3 => read_bounded(
            lz4_flex::frame::FrameDecoder::new(compressed),
            size_max_bytes,
        ),
        4 => {
            let decoder =
                zstd::stream::read::Decoder::new(compressed).map_err(|e| format!("zstd: {e}"))?;
            read_bounded(decoder, size_max_bytes)
        }
        other => Err(format!("unknown compression codec {other}")),
    }
}

/// Reads `reader` to its end, refusing more than `size_max_bytes`.
fn read_bounded(reader: impl Read, size_max_bytes: usize) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    reader
        .take(size_max_bytes as u64 + 1)
        .read_to_end(&mut out)
        .map_err(|e| format!("cannot decompress: {e}"))?;
    if out.len() > size_max_bytes {
        return Err(format!("decompresses to more than {size_max_bytes} bytes"));
    }
    Ok(out)
}

fn snappy(compressed: &[u8], size_max_bytes: usize) -> Result<Vec<u8>, String> {
    if !compressed.starts_with(XERIAL_MAGIC) {
        return snappy_block(compressed, size_max_bytes);
    }
    let mut rest = compressed
        .get(XERIAL_HEADER_BYTES..)
        .ok_or("truncated xerial snappy header")?;
    let mut out = Vec::new();
    while !rest.is_empty() {
        let (length, after) = rest
            .split_at_checked(4)
            .ok_or("truncated xerial chunk length")?;
        let length = u32::from_be_bytes(length.try_into().expect("four bytes")) as usize;
        let (chunk, after) = after
            .split_at_checked(length)
            .ok_or("truncated xerial chunk")?;
        let room = size_max_bytes.saturating_sub(out.len());
        out.extend(snappy_block(chunk, room)?);
        rest = after;
    }
    Ok(out)
}

fn snappy_block(block: &[u8], size_max_bytes: usize) -> Result<Vec<u8>, String> {
    let length = snap::raw::decompress_len(block).map_err(|e| format!("snappy: {e}"))?;
    if length > size_max_bytes {
        return Err(format!("decompresses to more than {size_max_bytes} bytes"));
    }
    snap::raw::Decoder::new()
        .decompress_vec(block)
        .map_err(|e| format!("snappy: {e}"))
}

#[cfg(test)]
pub(crate) mod tests {
    use std::io::Write;

    use super::*;

    /// Compresses `data` as a Kafka client would with `codec`, for tests.
    pub(crate) fn compress(codec: i16, data: &[u8]) -> Vec<u8> {
        match codec {
            1 => {
                let mut encoder =
                    flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            }
            2 => snap::raw::Encoder::new().compress_vec(data).unwrap(),
            3 => {
                let mut encoder = lz4_flex::frame::FrameEncoder::new(Vec::new());
                encoder.write_all(data).unwrap();
                encoder.finish().unwrap()
            }
            4 => zstd::encode_all(data, 3).unwrap(),
            _ => unreachable!(),
        }
    }

    #[test]
    fn every_codec_round_trips_and_refuses_to_grow_past_its_bound() {
        let data: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        for codec in 1..=4 {
            let compressed = compress(codec, &data);
            assert_eq!(decompress(codec, &compressed, data.len()).unwrap(), data);
            assert!(decompress(codec, &compressed, data.len() - 1).is_err());
            assert!(decompress(codec, &compressed[..compressed.len() / 2], 1 << 20).is_err());
        }
        assert!(decompress(5, b"", 10).is_err());
    }

    #[test]
    fn xerial_framed_snappy_as_the_java_client_writes_it() {
        let data = b"kafka records kafka records kafka records".repeat(100);
        let mut framed = XERIAL_MAGIC.to_vec();
        framed.extend(1u32.to_be_bytes());
        framed.extend(1u32.to_be_bytes());
        for half in data.chunks(data.len() / 2 + 1) {
            let block = snap::raw::Encoder::new().compress_vec(half).unwrap();
            framed.extend((block.len() as u32).to_be_bytes());
            framed.extend(block);
        }
        assert_eq!(decompress(2, &framed, data.len()).unwrap(), data);
        assert!(decompress(2, &framed, data.len() - 1).is_err());
        assert!(decompress(2, &framed[..framed.len() - 3], data.len()).is_err());
    }
}
