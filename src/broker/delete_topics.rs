//! DeleteTopics (v1-6; v6 may name topics by id): each topic is deleted on the controller,
//! and every shard has closed the topic's partitions and removed their directories before
//! the answer goes out, so the name can be created again right away.

use std::collections::HashMap;
use std::rc::Rc;

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::protocol::StrBytes;
use uuid::Uuid;

use super::messages::ControllerOp;
use super::{respond, Shard};
use crate::net::connection::Outcome;
use crate::protocol::{codes, RequestFrame};

/// One topic of the request as the client named it, by name or (v6) by id.
struct Named {
    name: Option<String>,
    id: Uuid,
}

pub async fn handle(shard: &Rc<Shard>, request: &RequestFrame) -> anyhow::Result<Outcome> {
    let body: DeleteTopicsRequest = request.decode()?;
    let version = request.api_version();
    let named: Vec<Named> = if version >= 6 {
        body.topics
            .iter()
            .map(|t| Named {
                name: t.name.as_ref().map(|n| n.0.to_string()),
                id: t.topic_id,
            })
            .collect()
    } else {
        body.topic_names
            .iter()
            .map(|n| Named {
                name: Some(n.0.to_string()),
                id: Uuid::nil(),
            })
            .collect()
    };
    let mut mentions: HashMap<String, usize> = HashMap::new();
    for topic in &named {
        if let Some(key) = mention_key(topic) {
            *mentions.entry(key).or_default() += 1;
        }
    }
    let mut response = DeleteTopicsResponse::default();
    for topic in &named {
        let duplicate = mention_key(topic).is_some_and(|key| mentions[&key] > 1);
        let (name, outcome) = if duplicate {
            (
                topic.name.clone(),
                Err((codes::INVALID_REQUEST, "Duplicate topic name.".to_string())),
            )
        } else {
            delete_one(shard, topic).await
        };
        let mut result = DeletableTopicResult::default();
        result.name = name.map(|n| TopicName(StrBytes::from_string(n)));
        if version >= 6 {
            result.topic_id = topic.id;
        }
        match outcome {
            Ok(()) => result.error_code = codes::NONE,
            Err((code, message)) => {
                result.error_code = code;
                // Error messages exist from v5.
                if version >= 5 {
                    result.error_message = Some(StrBytes::from_string(message));
                }
            }
        }
        response.responses.push(result);
    }
    respond(request, &response)
}

/// What makes two entries of a request the same topic: its name, else its id.
fn mention_key(topic: &Named) -> Option<String> {
    match &topic.name {
        Some(name) => Some(format!("name:{name}")),
        None if !topic.id.is_nil() => Some(format!("id:{}", topic.id)),
        None => None,
    }
}

/// Deletes one topic; returns its name (resolved from the id when needed) and the outcome.
async fn delete_one(
    shard: &Rc<Shard>,
    topic: &Named,
) -> (Option<String>, Result<(), (i16, String)>) {
    let name = match (&topic.name, topic.id.is_nil()) {
        (Some(_), false) => {
            return (
                topic.name.clone(),
                Err((
                    codes::INVALID_REQUEST,
                    "You may not specify both topic name and topic id.".into(),
                )),
            )
        }
        (Some(name), true) => name.clone(),
        (None, true) => {
            return (
                None,
                Err((
                    codes::INVALID_REQUEST,
                    "Neither topic name nor id were specified.".into(),
                )),
            )
        }
        (None, false) => match shard.metadata().topic_by_id(&topic.id) {
            Some(found) => found.name.clone(),
            None => {
                return (
                    None,
                    Err((
                        codes::UNKNOWN_TOPIC_ID,
                        "This server does not host this topic ID.".into(),
                    )),
                )
            }
        },
    };
    let op = ControllerOp::DeleteTopic {
        name: name.clone(),
        id: (!topic.id.is_nil()).then_some(topic.id),
    };
    let outcome = match shard.controller(op).await.into_topic() {
        Ok(deleted) => {
            tracing::info!(topic = %deleted.name, partitions = deleted.partitions.len(), "deleted topic");
            Ok(())
        }
        Err(error) => Err((error.code, error.message)),
    };
    (Some(name), outcome)
}
