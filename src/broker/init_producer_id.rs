//! InitProducerId: a producer id for an idempotent producer (the Java producer is idempotent by
//! default). Ids come in blocks from the controller and are never reused. A producer that asks
//! with its current id and epoch (KIP-360) gets the epoch bumped. Transactions are not
//! supported yet.

use std::rc::Rc;

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};

use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: InitProducerIdRequest = request.decode()?;
    let mut response = InitProducerIdResponse::default();
    response.producer_id = ProducerId(-1);
    response.producer_epoch = -1;
    if body.transactional_id.is_some() {
        response.error_code = codes::TRANSACTIONAL_ID_AUTHORIZATION_FAILED;
        return respond(request, &response);
    }
    let current = body.producer_id.0;
    if current >= 0 && body.producer_epoch >= 0 && body.producer_epoch < i16::MAX - 1 {
        response.error_code = codes::NONE;
        response.producer_id = ProducerId(current);
        response.producer_epoch = body.producer_epoch + 1;
        return respond(request, &response);
    }
    match shard.next_producer_id().await {
        Ok(id) => {
            response.error_code = codes::NONE;
            response.producer_id = ProducerId(id);
            response.producer_epoch = 0;
        }
        Err(error) => response.error_code = error.code,
    }
    respond(request, &response)
}
