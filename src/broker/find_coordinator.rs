//! FindCoordinator: on a single broker, every group (key type 0) and transactional id (key
//! type 1) is coordinated by this node. librdkafka also looks for this API to decide whether
//! the broker supports LZ4.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

pub fn handle(shard: &Shard, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: FindCoordinatorRequest = request.decode()?;
    let node = BrokerId(shard.config.node_id);
    let host = StrBytes::from_string(shard.config.advertised_host.clone());
    let port = shard.config.advertised_port;
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
                coordinator.error_code = codes::NONE;
                coordinator
            })
            .collect();
    } else {
        response.error_code = codes::NONE;
        response.node_id = node;
        response.host = host;
        response.port = port;
    }
    respond(request, &response)
}
