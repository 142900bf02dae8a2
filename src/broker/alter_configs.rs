//! AlterConfigs (v0-2): replaces every override of a topic on the controller; a config left
//! out, or sent with a null value, returns to its default. Broker resources are read-only.

use std::rc::Rc;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;

use super::config_resource::{alter, alterable_topic, non_null_configs};
use super::messages::ControllerOp;
use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::protocol::RequestFrame;

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: AlterConfigsRequest = request.decode()?;
    let mut response = AlterConfigsResponse::default();
    for resource in &body.resources {
        let (error_code, error_message) =
            match alterable_topic(resource.resource_type, &resource.resource_name) {
                Ok(name) => {
                    let all_configs =
                        non_null_configs(resource.configs.iter().map(|c| (&c.name, &c.value)));
                    let op = ControllerOp::ReplaceConfigs {
                        name,
                        all_configs,
                        validate_only: body.validate_only,
                    };
                    alter(shard, op).await
                }
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
