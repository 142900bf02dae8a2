//! IncrementalAlterConfigs (v0-1): SET, DELETE, APPEND and SUBTRACT operations on a topic's
//! overrides, applied in order on the controller as one change. Broker resources are
//! read-only.

use std::rc::Rc;

use kafka_protocol::messages::incremental_alter_configs_request::AlterConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::config_resource::{alter, alterable_topic, Refusal};
use super::messages::ControllerOp;
use super::{respond, Shard};
use crate::cluster::{ConfigChange, MetadataError};
use crate::net::connection::Outcome;
use crate::protocol::RequestFrame;

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: IncrementalAlterConfigsRequest = request.decode()?;
    let mut response = IncrementalAlterConfigsResponse::default();
    for resource in &body.resources {
        let (error_code, error_message) = match plan(resource, body.validate_only) {
            Ok(op) => alter(shard, op).await,
            Err((code, message)) => (code, Some(message)),
        };
        let mut result = AlterConfigsResourceResponse::default();
        result.error_code = error_code;
        result.error_message = error_message.map(StrBytes::from_string);
        result.resource_type = resource.resource_type;
        result.resource_name = resource.resource_name.clone();
        response.responses.push(result);
    }
    respond(request, &response)
}

/// The controller operation for one resource, or why there is none.
fn plan(resource: &AlterConfigsResource, validate_only: bool) -> Result<ControllerOp, Refusal> {
    let name = alterable_topic(resource.resource_type, &resource.resource_name)?;
    let changes = resource
        .configs
        .iter()
        .map(|c| {
            ConfigChange::from_kafka(
                c.config_operation,
                c.name.to_string(),
                c.value.as_ref().map(|v| v.to_string()),
            )
        })
        .collect::<Result<Vec<_>, MetadataError>>()
        .map_err(|e| (e.kafka_code(), e.to_string()))?;
    Ok(ControllerOp::AlterConfigs {
        name,
        changes,
        validate_only,
    })
}
