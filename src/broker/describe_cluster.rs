//! DescribeCluster (v0-1): the one broker with its advertised address, the cluster id, and
//! this broker as the controller. Only the broker endpoint type exists here.

use std::rc::Rc;

use kafka_protocol::messages::describe_cluster_response::DescribeClusterBroker;
use kafka_protocol::messages::{BrokerId, DescribeClusterRequest, DescribeClusterResponse};
use kafka_protocol::protocol::StrBytes;

use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

/// Kafka's `EndpointType` BROKER.
const ENDPOINT_TYPE_BROKER: i8 = 1;
/// Kafka's "not requested" for authorized operations.
const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// What Kafka without an authorizer allows on the cluster: a bit per `AclOperation` code
/// (CREATE 5, ALTER 7, DESCRIBE 8, CLUSTER_ACTION 9, DESCRIBE_CONFIGS 10, ALTER_CONFIGS 11,
/// IDEMPOTENT_WRITE 12). ringlog has no ACLs, so every client may do all of these.
const CLUSTER_OPERATIONS_ALL: i32 = 1 << 5 | 1 << 7 | 1 << 8 | 1 << 9 | 1 << 10 | 1 << 11 | 1 << 12;

pub fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: DescribeClusterRequest = request.decode()?;
    let mut response = DescribeClusterResponse::default();
    // Endpoint types exist from v1; v0 asks for brokers.
    if request.api_version() >= 1 {
        response.endpoint_type = ENDPOINT_TYPE_BROKER;
        if body.endpoint_type != ENDPOINT_TYPE_BROKER {
            response.error_code = codes::UNSUPPORTED_ENDPOINT_TYPE;
            response.error_message = Some(StrBytes::from_string(format!(
                "The request was sent to an endpoint of type BROKER, but it asked for endpoint \
                 type {}",
                body.endpoint_type
            )));
            return respond(request, &response);
        }
    }
    let node = BrokerId(shard.config.node_id);
    let mut broker = DescribeClusterBroker::default();
    broker.broker_id = node;
    broker.host = StrBytes::from_string(shard.config.advertised_host.clone());
    broker.port = shard.config.advertised_port;
    broker.rack = None;
    response.error_code = codes::NONE;
    response.cluster_id = StrBytes::from_string(shard.metadata().cluster_id.clone());
    response.controller_id = node;
    response.brokers = vec![broker];
    response.cluster_authorized_operations = if body.include_cluster_authorized_operations {
        CLUSTER_OPERATIONS_ALL
    } else {
        OPERATIONS_NOT_REQUESTED
    };
    respond(request, &response)
}
