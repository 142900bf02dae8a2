//! Request frames and response encoding. A frame is a 4-byte big-endian size followed by that
//! many bytes: a request header (whose version depends on the API key and version) and a body.
//! Responses are encoded into `ChunkedBuf` so record bytes stay where they are.

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::messages::{ApiKey, RequestHeader, ResponseHeader};
use kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion};

use super::chunked::ChunkedBuf;

/// Why a frame could not be understood. Each of these closes the connection.
#[derive(Debug, thiserror::Error)]
pub enum FrameError {
    #[error("frame of {size_bytes} bytes is too short for a request header")]
    TooShort { size_bytes: usize },
    #[error("unknown API key {api_key}")]
    UnknownApiKey { api_key: i16 },
    #[error("malformed {what}: {reason}")]
    Malformed { what: &'static str, reason: String },
}

/// A request whose header is parsed; the body is decoded by the handler that knows its type.
#[derive(Debug, Clone)]
pub struct RequestFrame {
    pub header: RequestHeader,
    pub api_key: ApiKey,
    pub body: Bytes,
    /// The client's IP address, for group membership descriptions.
    pub client_host: std::rc::Rc<str>,
}

/// The fixed start of every header: key, version, correlation id. Readable even when the rest
/// of the request is not, so that errors can still be answered.
pub fn peek_ids(frame: &[u8]) -> Option<(i16, i16, i32)> {
    if frame.len() < 8 {
        return None;
    }
    let mut buf = frame;
    Some((buf.get_i16(), buf.get_i16(), buf.get_i32()))
}

impl RequestFrame {
    pub fn parse(frame: Bytes, client_host: std::rc::Rc<str>) -> Result<Self, FrameError> {
        let (api_key_code, api_version, _) = peek_ids(&frame).ok_or(FrameError::TooShort {
            size_bytes: frame.len(),
        })?;
        let api_key = ApiKey::try_from(api_key_code).map_err(|_| FrameError::UnknownApiKey {
            api_key: api_key_code,
        })?;
        let mut body = frame;
        let header = RequestHeader::decode(&mut body, api_key.request_header_version(api_version))
            .map_err(|e| FrameError::Malformed {
                what: "request header",
                reason: e.to_string(),
            })?;
        Ok(RequestFrame {
            header,
            api_key,
            body,
            client_host,
        })
    }

    pub fn api_version(&self) -> i16 {
        self.header.request_api_version
    }

    pub fn correlation_id(&self) -> i32 {
        self.header.correlation_id
    }

    /// Decodes the body as `T` at the request's version.
    pub fn decode<T: Decodable>(&self) -> Result<T, FrameError> {
        let mut body = self.body.clone();
        let decoded =
            T::decode(&mut body, self.api_version()).map_err(|e| FrameError::Malformed {
                what: "request body",
                reason: e.to_string(),
            })?;
        Ok(decoded)
    }
}

/// Encodes a response (size prefix, header, body) as chunks for one vectored write. `buf` may
/// carry records registered with `ChunkedBuf::register_records`.
pub fn encode_response<R: Encodable + HeaderVersion>(
    mut buf: ChunkedBuf,
    correlation_id: i32,
    api_version: i16,
    response: &R,
) -> anyhow::Result<Vec<Bytes>> {
    let mut header = ResponseHeader::default();
    header.correlation_id = correlation_id;
    header.encode(&mut buf, R::header_version(api_version))?;
    response.encode(&mut buf, api_version)?;
    let mut chunks = buf.into_chunks();
    let size: usize = chunks.iter().map(Bytes::len).sum();
    let size = i32::try_from(size)?;
    let mut prefix = BytesMut::with_capacity(4);
    prefix.extend_from_slice(&size.to_be_bytes());
    chunks.insert(0, prefix.freeze());
    Ok(chunks)
}
