//! FindCoordinator: on a single broker every group (key type 0) and transactional id (key
//! type 1) is coordinated by this node; the shard that owns the group is found internally.
//! The first group lookup creates `__consumer_offsets`, as in Kafka. librdkafka also looks
//! for this API to decide whether the broker supports LZ4.

use std::rc::Rc;

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

const KEY_TYPE_GROUP: i8 = 0;

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: FindCoordinatorRequest = request.decode()?;
    let error_code = if body.key_type == KEY_TYPE_GROUP {
        match shard.offsets_topic().await {
            Ok(_) => codes::NONE,
            Err(_) => codes::COORDINATOR_NOT_AVAILABLE,
        }
    } else {
        codes::NONE
    };
    let found = error_code == codes::NONE;
    let node = BrokerId(if found { shard.config.node_id } else { -1 });
    let host = if found {
        StrBytes::from_string(shard.config.advertised_host.clone())
    } else {
        StrBytes::default()
    };
    let port = if found {
        shard.config.advertised_port
    } else {
        -1
    };
    let mut response = FindCoordinatorResponse::default();
    if request.api_version() >= 4 {
        // v4 batches keys; each gets the same answer.
        response.coordinators = body
            .coordinator_keys
            .into_iter()
            .map(|key| {
                let mut coordinator = Coordinator::default();
                coordinator.key = key;
                coordinator.node_id = node;
                coordinator.host = host.clone();
                coordinator.port = port;
                coordinator.error_code = error_code;
                coordinator
            })
            .collect();
    } else {
        response.error_code = error_code;
        response.node_id = node;
        response.host = host;
        response.port = port;
    }
    respond(request, &response)
}
