//! ApiVersions: what the broker speaks. Its response header is always v0, and an unsupported
//! version is answered in v0 format with UNSUPPORTED_VERSION and the supported list.

use bytes::{BufMut, BytesMut};
use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::ApiVersionsResponse;

use super::respond;
use crate::net::connection::Outcome;
use crate::protocol::{codes, versions, RequestFrame};

fn supported_list() -> Vec<ApiVersion> {
    versions::SUPPORTED
        .iter()
        .map(|s| {
            let mut version = ApiVersion::default();
            version.api_key = s.api_key as i16;
            version.min_version = s.min_advertised;
            version.max_version = s.max;
            version
        })
        .collect()
}

pub fn handle(request: &RequestFrame) -> anyhow::Result<Outcome> {
    let mut response = ApiVersionsResponse::default();
    response.error_code = codes::NONE;
    response.api_keys = supported_list();
    respond(request, &response)
}

/// The v0-format answer to an ApiVersions request of a version the broker does not know.
pub fn unsupported(correlation_id: i32) -> Outcome {
    let list = supported_list();
    let mut body = BytesMut::new();
    body.put_i32(correlation_id);
    body.put_i16(codes::UNSUPPORTED_VERSION);
    body.put_i32(list.len() as i32);
    for version in &list {
        body.put_i16(version.api_key);
        body.put_i16(version.min_version);
        body.put_i16(version.max_version);
    }
    let mut framed = BytesMut::with_capacity(4 + body.len());
    framed.put_i32(body.len() as i32);
    framed.extend_from_slice(&body);
    Outcome::Respond(vec![framed.freeze()])
}
