//! The API versions ringlog accepts and advertises, chosen for what current kafka-python,
//! librdkafka and Java clients negotiate (DESIGN.md, "Kafka clients and versions").

use kafka_protocol::messages::ApiKey;

/// (API key, lowest version accepted, lowest advertised, highest).
#[derive(Debug, Clone, Copy)]
pub struct Supported {
    pub api_key: ApiKey,
    pub min_accepted: i16,
    pub min_advertised: i16,
    pub max: i16,
}

const fn api(api_key: ApiKey, min: i16, max: i16) -> Supported {
    Supported {
        api_key,
        min_accepted: min,
        min_advertised: min,
        max,
    }
}

/// Every API the broker serves.
pub const SUPPORTED: &[Supported] = &[
    // Advertised from v0 although v0-2 (magic 0/1 message sets) are refused: librdkafka
    // silently disables compression when the advertised minimum is 3.
    Supported {
        api_key: ApiKey::Produce,
        min_accepted: 3,
        min_advertised: 0,
        max: 11,
    },
    api(ApiKey::Fetch, 4, 12),
    api(ApiKey::ListOffsets, 1, 7),
    api(ApiKey::Metadata, 0, 12),
    api(ApiKey::ApiVersions, 0, 3),
    api(ApiKey::CreateTopics, 2, 7),
    api(ApiKey::InitProducerId, 0, 4),
    api(ApiKey::FindCoordinator, 0, 4),
    api(ApiKey::DeleteTopics, 1, 6),
    api(ApiKey::CreatePartitions, 0, 3),
    api(ApiKey::DescribeConfigs, 1, 4),
    api(ApiKey::AlterConfigs, 0, 2),
    api(ApiKey::IncrementalAlterConfigs, 0, 1),
    api(ApiKey::DescribeCluster, 0, 1),
    api(ApiKey::DeleteRecords, 0, 2),
    api(ApiKey::JoinGroup, 0, 9),
    api(ApiKey::SyncGroup, 0, 5),
    api(ApiKey::Heartbeat, 0, 4),
    api(ApiKey::LeaveGroup, 0, 5),
    api(ApiKey::OffsetCommit, 2, 8),
    api(ApiKey::OffsetFetch, 1, 8),
    api(ApiKey::ListGroups, 0, 5),
    api(ApiKey::DescribeGroups, 0, 5),
    api(ApiKey::DeleteGroups, 0, 2),
    api(ApiKey::OffsetDelete, 0, 0),
    // v0-1 are encoded here: kafka-protocol 0.18 knows v2+ only.
    api(ApiKey::OffsetForLeaderEpoch, 0, 4),
];

pub fn find(api_key: i16) -> Option<&'static Supported> {
    SUPPORTED.iter().find(|s| s.api_key as i16 == api_key)
}

/// Whether a request of this key and version can be served.
pub fn is_supported(api_key: i16, api_version: i16) -> bool {
    find(api_key).is_some_and(|s| (s.min_accepted..=s.max).contains(&api_version))
}
