//! The Kafka admin requests the tools send (CreateTopics, DeleteTopics, DescribeConfigs,
//! AlterConfigs, DeleteGroups), made through librdkafka's C API rather than the `rdkafka`
//! crate's `AdminClient`: that wrapper keeps only the error code of each topic, config
//! resource or group, dropping the message the broker sent with it ("Unknown topic config
//! name: retention.msx"), and for AlterConfigs and DescribeConfigs it drops the per-resource
//! error altogether, so a refused change looked like a success. This module is the only place
//! the tools call librdkafka's admin API unsafely; everything it returns is owned Rust data.
//!
//! Each request gets its own reply queue and is waited for on this thread with a deadline, so
//! no background poll thread is needed and no wait is unbounded.

use std::collections::BTreeMap;
use std::ffi::{c_char, c_int, CStr, CString};
use std::ptr::NonNull;
use std::time::Duration;

use anyhow::{anyhow, bail, Context};
use rdkafka::bindings as rd;
use rdkafka::client::Client;
use rdkafka::config::ClientConfig;
use rdkafka::error::RDKafkaErrorCode;
use rdkafka::types::RDKafkaType;

use super::client::{self, CliContext, ConnectArgs};

/// How long past the request timeout to wait for librdkafka's answer. librdkafka itself ends
/// every admin request with a result event once the request timeout has passed, so this only
/// covers the hand-over to the reply queue.
const REPLY_GRACE: Duration = Duration::from_secs(2);
/// Room for librdkafka's description of a malformed request argument.
const ERRSTR_SIZE_BYTES: usize = 512;

/// Why the broker (or librdkafka on its behalf) refused one topic, config resource or group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub code: RDKafkaErrorCode,
    /// The broker's own words, when it sent any; librdkafka's generic text for the code is
    /// not kept here, so that callers can tell the two apart.
    pub message: Option<String>,
}

impl Refusal {
    /// The broker's message, or librdkafka's description of the code when there is none.
    pub fn text(&self) -> String {
        match &self.message {
            Some(message) => message.clone(),
            None => client::code_text(self.code),
        }
    }
}

/// The outcome for one named topic or group of a request about several.
pub type NamedResult = (String, Result<(), Refusal>);

/// A topic config as DescribeConfigs reports it.
#[derive(Clone, Debug)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Set on the topic itself, as opposed to a broker or built-in default.
    pub set_on_topic: bool,
    pub is_sensitive: bool,
}

/// A librdkafka client that sends admin requests and reports every refusal with the broker's
/// message.
pub struct Admin {
    client: Client<CliContext>,
    connect: ConnectArgs,
}

impl Admin {
    pub fn new(connect: &ConnectArgs) -> anyhow::Result<Admin> {
        let config: ClientConfig = connect.client_config(&[]);
        let native = config
            .create_native_config()
            .map_err(client::creation_error)?;
        // librdkafka has no admin client type; like the rdkafka crate, pose as a producer,
        // the lighter of the two.
        let client = Client::new(&config, native, RDKafkaType::RD_KAFKA_PRODUCER, CliContext)
            .map_err(client::creation_error)?;
        Ok(Admin {
            client,
            connect: connect.clone(),
        })
    }

    /// For metadata requests, which are not admin requests.
    pub fn client(&self) -> &Client<CliContext> {
        &self.client
    }

    pub fn create_topic(
        &self,
        topic: &str,
        partitions: i32,
        replication_factor: i32,
        configs: &[(String, String)],
    ) -> anyhow::Result<Result<(), Refusal>> {
        let name = c_string(topic)?;
        let mut errstr = [0 as c_char; ERRSTR_SIZE_BYTES];
        // SAFETY: `name` and `errstr` outlive the call, which copies the name and writes at
        // most `errstr.len()` bytes, NUL included.
        let raw = unsafe {
            rd::rd_kafka_NewTopic_new(
                name.as_ptr(),
                partitions,
                replication_factor,
                errstr.as_mut_ptr(),
                errstr.len(),
            )
        };
        // SAFETY: a new topic from `rd_kafka_NewTopic_new`, owned by nothing else.
        let Some(new_topic) = (unsafe { Owned::new(raw, rd::rd_kafka_NewTopic_destroy) }) else {
            // SAFETY: librdkafka wrote a NUL-terminated message into `errstr` on failure.
            let reason = unsafe { CStr::from_ptr(errstr.as_ptr()) }.to_string_lossy();
            bail!("cannot create topic '{topic}': {reason}");
        };
        for (key, value) in configs {
            let (key_c, value_c) = (c_string(key)?, c_string(value)?);
            // SAFETY: a live new topic and NUL-terminated strings, which librdkafka copies.
            let code = unsafe {
                rd::rd_kafka_NewTopic_set_config(new_topic.ptr(), key_c.as_ptr(), value_c.as_ptr())
            };
            check_argument(code, key)?;
        }
        let results = self.request(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS,
            |rk, options, queue| {
                let mut topics = [new_topic.ptr()];
                // SAFETY: every pointer is live for the call; librdkafka copies the topics
                // and options and keeps its own reference to the queue.
                unsafe { rd::rd_kafka_CreateTopics(rk, topics.as_mut_ptr(), 1, options, queue) }
            },
            |event| {
                // SAFETY: a live event; the result is null unless it answers CreateTopics.
                let result = unsafe { rd::rd_kafka_event_CreateTopics_result(event) };
                if result.is_null() {
                    return None;
                }
                let mut count = 0;
                // SAFETY: a CreateTopics result owned by `event`.
                let topics = unsafe { rd::rd_kafka_CreateTopics_result_topics(result, &mut count) };
                // SAFETY: librdkafka's array of `count` topic results, owned by `event`.
                Some(unsafe { topic_results(topics, count) })
            },
        )?;
        only_one(results, topic)
    }

    pub fn delete_topics(&self, topics: &[&str]) -> anyhow::Result<Vec<NamedResult>> {
        let mut owned = Vec::with_capacity(topics.len());
        for topic in topics {
            let name = c_string(topic)?;
            // SAFETY: the name is NUL-terminated and copied by librdkafka.
            let raw = unsafe { rd::rd_kafka_DeleteTopic_new(name.as_ptr()) };
            // SAFETY: a delete-topic object just made, owned by nothing else.
            owned.push(
                unsafe { Owned::new(raw, rd::rd_kafka_DeleteTopic_destroy) }
                    .ok_or_else(|| anyhow!("cannot delete topic '{topic}': out of memory"))?,
            );
        }
        self.request(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETETOPICS,
            |rk, options, queue| {
                let mut pointers: Vec<_> = owned.iter().map(Owned::ptr).collect();
                // SAFETY: as for CreateTopics; `pointers` holds `len` live objects.
                unsafe {
                    rd::rd_kafka_DeleteTopics(
                        rk,
                        pointers.as_mut_ptr(),
                        pointers.len(),
                        options,
                        queue,
                    )
                }
            },
            |event| {
                // SAFETY: a live event; the result is null unless it answers DeleteTopics.
                let result = unsafe { rd::rd_kafka_event_DeleteTopics_result(event) };
                if result.is_null() {
                    return None;
                }
                let mut count = 0;
                // SAFETY: a DeleteTopics result owned by `event`.
                let topics = unsafe { rd::rd_kafka_DeleteTopics_result_topics(result, &mut count) };
                // SAFETY: librdkafka's array of `count` topic results, owned by `event`.
                Some(unsafe { topic_results(topics, count) })
            },
        )
    }

    /// Every config of `topic`, defaults included.
    pub fn describe_topic_configs(
        &self,
        topic: &str,
    ) -> anyhow::Result<Result<Vec<ConfigEntry>, Refusal>> {
        let resource = topic_resource(topic, &BTreeMap::new())?;
        let mut results = self.request(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS,
            |rk, options, queue| {
                let mut resources = [resource.ptr()];
                // SAFETY: as for CreateTopics.
                unsafe {
                    rd::rd_kafka_DescribeConfigs(rk, resources.as_mut_ptr(), 1, options, queue)
                }
            },
            |event| {
                // SAFETY: a live event; the result is null unless it answers DescribeConfigs.
                let result = unsafe { rd::rd_kafka_event_DescribeConfigs_result(event) };
                if result.is_null() {
                    return None;
                }
                let mut count = 0;
                // SAFETY: a DescribeConfigs result owned by `event`.
                let resources =
                    unsafe { rd::rd_kafka_DescribeConfigs_result_resources(result, &mut count) };
                // SAFETY: librdkafka's array of `count` resources, owned by `event`.
                let resources = unsafe { array(resources, count) };
                Some(
                    resources
                        .iter()
                        // SAFETY: each a live config resource owned by `event`.
                        .map(|&resource| unsafe { config_result(resource) })
                        .collect::<Vec<_>>(),
                )
            },
        )?;
        if results.len() != 1 {
            bail!(
                "the broker answered DescribeConfigs for '{topic}' with {} resources",
                results.len()
            );
        }
        Ok(results.remove(0))
    }

    /// Replaces every config set on `topic` with `configs` (Kafka's AlterConfigs: a config
    /// left out returns to its default).
    pub fn replace_topic_configs(
        &self,
        topic: &str,
        configs: &BTreeMap<String, String>,
    ) -> anyhow::Result<Result<(), Refusal>> {
        let resource = topic_resource(topic, configs)?;
        let mut results = self.request(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONFIGS,
            |rk, options, queue| {
                let mut resources = [resource.ptr()];
                // SAFETY: as for CreateTopics.
                unsafe { rd::rd_kafka_AlterConfigs(rk, resources.as_mut_ptr(), 1, options, queue) }
            },
            |event| {
                // SAFETY: a live event; the result is null unless it answers AlterConfigs.
                let result = unsafe { rd::rd_kafka_event_AlterConfigs_result(event) };
                if result.is_null() {
                    return None;
                }
                let mut count = 0;
                // SAFETY: an AlterConfigs result owned by `event`.
                let resources =
                    unsafe { rd::rd_kafka_AlterConfigs_result_resources(result, &mut count) };
                // SAFETY: librdkafka's array of `count` resources, owned by `event`.
                let resources = unsafe { array(resources, count) };
                Some(
                    resources
                        .iter()
                        // SAFETY: each a live config resource owned by `event`.
                        .map(|&resource| unsafe { config_result(resource) }.map(|_| ()))
                        .collect::<Vec<_>>(),
                )
            },
        )?;
        if results.len() != 1 {
            bail!(
                "the broker answered AlterConfigs for '{topic}' with {} resources",
                results.len()
            );
        }
        Ok(results.remove(0))
    }

    pub fn delete_groups(&self, groups: &[&str]) -> anyhow::Result<Vec<NamedResult>> {
        let mut owned = Vec::with_capacity(groups.len());
        for group in groups {
            let name = c_string(group)?;
            // SAFETY: the name is NUL-terminated and copied by librdkafka.
            let raw = unsafe { rd::rd_kafka_DeleteGroup_new(name.as_ptr()) };
            // SAFETY: a delete-group object just made, owned by nothing else.
            owned.push(
                unsafe { Owned::new(raw, rd::rd_kafka_DeleteGroup_destroy) }
                    .ok_or_else(|| anyhow!("cannot delete group '{group}': out of memory"))?,
            );
        }
        self.request(
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETEGROUPS,
            |rk, options, queue| {
                let mut pointers: Vec<_> = owned.iter().map(Owned::ptr).collect();
                // SAFETY: as for CreateTopics; `pointers` holds `len` live objects.
                unsafe {
                    rd::rd_kafka_DeleteGroups(
                        rk,
                        pointers.as_mut_ptr(),
                        pointers.len(),
                        options,
                        queue,
                    )
                }
            },
            |event| {
                // SAFETY: a live event; the result is null unless it answers DeleteGroups.
                let result = unsafe { rd::rd_kafka_event_DeleteGroups_result(event) };
                if result.is_null() {
                    return None;
                }
                let mut count = 0;
                // SAFETY: a DeleteGroups result owned by `event`.
                let groups = unsafe { rd::rd_kafka_DeleteGroups_result_groups(result, &mut count) };
                // SAFETY: librdkafka's array of `count` group results, owned by `event`.
                let groups = unsafe { array(groups, count) };
                Some(
                    groups
                        .iter()
                        .map(|&group| {
                            // SAFETY: a live group result owned by `event`; its error is null
                            // when the group was deleted, else owned by the result.
                            unsafe {
                                let name = text(rd::rd_kafka_group_result_name(group));
                                let error = rd::rd_kafka_group_result_error(group);
                                let outcome = if error.is_null() {
                                    Ok(())
                                } else {
                                    Err(refusal(
                                        rd::rd_kafka_error_code(error),
                                        rd::rd_kafka_error_string(error),
                                    ))
                                };
                                (name.unwrap_or_default(), outcome)
                            }
                        })
                        .collect(),
                )
            },
        )
    }

    /// Sends one admin request on a reply queue of its own and waits for its result event:
    /// `start` issues the request, `read` copies what it needs out of the event (None when the
    /// event is not the expected result). A failure of the request as a whole (no broker, a
    /// timeout) becomes one line, diagnosed as `client::broker_error` does.
    fn request<T>(
        &self,
        api: rd::rd_kafka_admin_op_t,
        start: impl FnOnce(
            *mut rd::rd_kafka_t,
            *const rd::rd_kafka_AdminOptions_t,
            *mut rd::rd_kafka_queue_t,
        ),
        read: impl FnOnce(*mut rd::rd_kafka_event_t) -> Option<T>,
    ) -> anyhow::Result<T> {
        let rk = self.client.native_ptr();
        let timeout_ms = millis(self.connect.timeout());
        // SAFETY: `rk` is this client's live handle.
        let options = unsafe {
            Owned::new(
                rd::rd_kafka_AdminOptions_new(rk, api),
                rd::rd_kafka_AdminOptions_destroy,
            )
        }
        .ok_or_else(|| anyhow!("cannot set up an admin request"))?;
        let mut errstr = [0 as c_char; ERRSTR_SIZE_BYTES];
        let mut setters: Vec<SetTimeout> = vec![rd::rd_kafka_AdminOptions_set_request_timeout];
        // Only these wait on the broker for the change to complete; librdkafka refuses the
        // option for the others.
        if matches!(
            api,
            rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS
                | rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETETOPICS
        ) {
            setters.push(rd::rd_kafka_AdminOptions_set_operation_timeout);
        }
        for set in setters {
            // SAFETY: live options; librdkafka writes at most `errstr.len()` bytes.
            let code = unsafe { set(options.ptr(), timeout_ms, errstr.as_mut_ptr(), errstr.len()) };
            if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                // SAFETY: librdkafka wrote a NUL-terminated message into `errstr`.
                let reason = unsafe { CStr::from_ptr(errstr.as_ptr()) }.to_string_lossy();
                bail!("--timeout-ms {}: {reason}", self.connect.timeout_ms);
            }
        }
        // SAFETY: `rk` is live; the queue is this request's alone.
        let queue = unsafe { Owned::new(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy) }
            .ok_or_else(|| anyhow!("cannot set up an admin request"))?;
        start(rk, options.ptr(), queue.ptr());
        let wait_ms = millis(self.connect.timeout() + REPLY_GRACE);
        // SAFETY: a live queue. Should the wait end first, dropping the queue is still safe:
        // librdkafka holds its own reference until it has answered.
        let raw = unsafe { rd::rd_kafka_queue_poll(queue.ptr(), wait_ms) };
        // SAFETY: an event from the queue, owned by this function from now on.
        let Some(event) = (unsafe { Owned::new(raw, rd::rd_kafka_event_destroy) }) else {
            return Err(client::request_error(
                RDKafkaErrorCode::OperationTimedOut,
                &self.connect,
            ));
        };
        // SAFETY: a live event.
        let code = unsafe { rd::rd_kafka_event_error(event.ptr()) };
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let code = RDKafkaErrorCode::from(code);
            if client::is_connection_failure(code) {
                return Err(client::request_error(code, &self.connect));
            }
            // SAFETY: a live event; the string, when there is one, is owned by it.
            let message = unsafe { text(rd::rd_kafka_event_error_string(event.ptr())) };
            return Err(anyhow!(message.unwrap_or_else(|| client::code_text(code))));
        }
        read(event.ptr()).context("librdkafka answered an admin request with the wrong result")
    }
}

/// The signature of librdkafka's timeout setters for admin options.
type SetTimeout = unsafe extern "C" fn(
    *mut rd::rd_kafka_AdminOptions_t,
    c_int,
    *mut c_char,
    usize,
) -> rd::rd_kafka_resp_err_t;

/// A librdkafka object this module made and must destroy.
struct Owned<T> {
    ptr: NonNull<T>,
    destroy: unsafe extern "C" fn(*mut T),
}

impl<T> Owned<T> {
    /// None for a null pointer (librdkafka's way of saying it made nothing).
    ///
    /// # Safety
    /// `ptr` is null or was returned by the librdkafka constructor that `destroy` belongs to,
    /// and nothing else destroys it.
    unsafe fn new(ptr: *mut T, destroy: unsafe extern "C" fn(*mut T)) -> Option<Owned<T>> {
        NonNull::new(ptr).map(|ptr| Owned { ptr, destroy })
    }

    fn ptr(&self) -> *mut T {
        self.ptr.as_ptr()
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        // SAFETY: `new`'s contract: the pointer is live and destroyed only here.
        unsafe { (self.destroy)(self.ptr.as_ptr()) }
    }
}

fn c_string(text: &str) -> anyhow::Result<CString> {
    CString::new(text).map_err(|_| anyhow!("'{}' contains a NUL byte", text.escape_debug()))
}

fn millis(duration: Duration) -> c_int {
    c_int::try_from(duration.as_millis()).unwrap_or(c_int::MAX)
}

/// librdkafka refuses a config name or value only when it is not a string at all.
fn check_argument(code: rd::rd_kafka_resp_err_t, key: &str) -> anyhow::Result<()> {
    if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
        return Ok(());
    }
    bail!("config '{key}': {}", client::code_text(code.into()))
}

/// A topic config resource carrying `configs` (none for DescribeConfigs).
fn topic_resource(
    topic: &str,
    configs: &BTreeMap<String, String>,
) -> anyhow::Result<Owned<rd::rd_kafka_ConfigResource_t>> {
    let name = c_string(topic)?;
    // SAFETY: the name is NUL-terminated and copied by librdkafka.
    let raw = unsafe {
        rd::rd_kafka_ConfigResource_new(
            rd::rd_kafka_ResourceType_t::RD_KAFKA_RESOURCE_TOPIC,
            name.as_ptr(),
        )
    };
    // SAFETY: a config resource just made, owned by nothing else.
    let resource = unsafe { Owned::new(raw, rd::rd_kafka_ConfigResource_destroy) }
        .ok_or_else(|| anyhow!("cannot describe topic '{topic}': out of memory"))?;
    for (key, value) in configs {
        let (key_c, value_c) = (c_string(key)?, c_string(value)?);
        // SAFETY: a live resource and NUL-terminated strings, which librdkafka copies.
        let code = unsafe {
            rd::rd_kafka_ConfigResource_set_config(resource.ptr(), key_c.as_ptr(), value_c.as_ptr())
        };
        check_argument(code, key)?;
    }
    Ok(resource)
}

/// The elements of a librdkafka result array (which may be null when empty).
///
/// # Safety
/// `items` is null or points to `count` elements that outlive the returned slice.
unsafe fn array<'a, T>(items: *mut *const T, count: usize) -> &'a [*const T] {
    if items.is_null() || count == 0 {
        return &[];
    }
    // SAFETY: the caller's contract.
    unsafe { std::slice::from_raw_parts(items, count) }
}

/// A copy of a NUL-terminated string owned by librdkafka; None for a null pointer.
///
/// # Safety
/// `ptr` is null or points to a NUL-terminated string live for the call.
unsafe fn text(ptr: *const c_char) -> Option<String> {
    if ptr.is_null() {
        return None;
    }
    // SAFETY: the caller's contract.
    Some(
        unsafe { CStr::from_ptr(ptr) }
            .to_string_lossy()
            .into_owned(),
    )
}

/// The refusal for `code`, keeping `message` only when it says more than librdkafka's own
/// description of the code, which librdkafka puts in its place when the broker sent none.
///
/// # Safety
/// As for `text`.
unsafe fn refusal(code: rd::rd_kafka_resp_err_t, message: *const c_char) -> Refusal {
    // SAFETY: the caller's contract; `rd_kafka_err2str` returns a static string.
    let (message, generic) = unsafe { (text(message), text(rd::rd_kafka_err2str(code))) };
    Refusal {
        code: code.into(),
        message: message.filter(|m| !m.is_empty() && Some(m) != generic.as_ref()),
    }
}

/// The named outcomes in a CreateTopics or DeleteTopics result.
///
/// # Safety
/// As for `array`, each element a live topic result.
unsafe fn topic_results(
    items: *mut *const rd::rd_kafka_topic_result_t,
    count: usize,
) -> Vec<NamedResult> {
    // SAFETY: the caller's contract.
    let items = unsafe { array(items, count) };
    items
        .iter()
        .map(|&topic| {
            // SAFETY: a live topic result; its strings are owned by it.
            unsafe {
                let name = text(rd::rd_kafka_topic_result_name(topic)).unwrap_or_default();
                let code = rd::rd_kafka_topic_result_error(topic);
                let outcome = if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                    Ok(())
                } else {
                    Err(refusal(code, rd::rd_kafka_topic_result_error_string(topic)))
                };
                (name, outcome)
            }
        })
        .collect()
}

/// The entries of one DescribeConfigs or AlterConfigs resource, or its refusal.
///
/// # Safety
/// `resource` is a live config resource whose entries and strings it owns.
unsafe fn config_result(
    resource: *const rd::rd_kafka_ConfigResource_t,
) -> Result<Vec<ConfigEntry>, Refusal> {
    // SAFETY: the caller's contract, here and for each entry below.
    unsafe {
        let code = rd::rd_kafka_ConfigResource_error(resource);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return Err(refusal(
                code,
                rd::rd_kafka_ConfigResource_error_string(resource),
            ));
        }
        let mut count = 0;
        let entries = rd::rd_kafka_ConfigResource_configs(resource, &mut count);
        Ok(array(entries, count)
            .iter()
            .map(|&entry| ConfigEntry {
                name: text(rd::rd_kafka_ConfigEntry_name(entry)).unwrap_or_default(),
                value: text(rd::rd_kafka_ConfigEntry_value(entry)),
                set_on_topic: rd::rd_kafka_ConfigEntry_source(entry)
                    == rd::rd_kafka_ConfigSource_t::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG,
                is_sensitive: rd::rd_kafka_ConfigEntry_is_sensitive(entry) != 0,
            })
            .collect())
    }
}

/// The one result of a request about one topic.
fn only_one(mut results: Vec<NamedResult>, topic: &str) -> anyhow::Result<Result<(), Refusal>> {
    match results.iter().position(|(name, _)| name == topic) {
        Some(at) if results.len() == 1 => Ok(results.remove(at).1),
        _ => bail!(
            "the broker answered about {} topics instead of '{topic}'",
            results.len()
        ),
    }
}
