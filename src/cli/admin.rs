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

use anyhow::{anyhow, bail};
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

/// The outcome for one named topic, config resource or group.
pub type Named<T> = (String, Result<T, Refusal>);

/// A topic config as DescribeConfigs reports it.
#[derive(Clone, Debug)]
pub struct ConfigEntry {
    pub name: String,
    pub value: Option<String>,
    /// Set on the topic itself, as opposed to a broker or built-in default.
    pub set_on_topic: bool,
    pub is_sensitive: bool,
}

/// One admin API as librdkafka's functions for it: `send` takes an array of request objects
/// (`T`), the result event holds a result (`R`) listing one item (`I`) per object.
struct Api<T, R, I> {
    op: rd::rd_kafka_admin_op_t,
    send: unsafe extern "C" fn(
        *mut rd::rd_kafka_t,
        *mut *mut T,
        usize,
        *const rd::rd_kafka_AdminOptions_t,
        *mut rd::rd_kafka_queue_t,
    ),
    result: unsafe extern "C" fn(*mut rd::rd_kafka_event_t) -> *const R,
    items: unsafe extern "C" fn(*const R, *mut usize) -> *mut *const I,
    /// Whether librdkafka accepts an operation timeout: only for requests that wait on the
    /// broker for the change to complete.
    waits_for_completion: bool,
}

const CREATE_TOPICS: Api<
    rd::rd_kafka_NewTopic_t,
    rd::rd_kafka_CreateTopics_result_t,
    rd::rd_kafka_topic_result_t,
> = Api {
    op: rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_CREATETOPICS,
    send: rd::rd_kafka_CreateTopics,
    result: rd::rd_kafka_event_CreateTopics_result,
    items: rd::rd_kafka_CreateTopics_result_topics,
    waits_for_completion: true,
};

const DELETE_TOPICS: Api<
    rd::rd_kafka_DeleteTopic_t,
    rd::rd_kafka_DeleteTopics_result_t,
    rd::rd_kafka_topic_result_t,
> = Api {
    op: rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETETOPICS,
    send: rd::rd_kafka_DeleteTopics,
    result: rd::rd_kafka_event_DeleteTopics_result,
    items: rd::rd_kafka_DeleteTopics_result_topics,
    waits_for_completion: true,
};

const DESCRIBE_CONFIGS: Api<
    rd::rd_kafka_ConfigResource_t,
    rd::rd_kafka_DescribeConfigs_result_t,
    rd::rd_kafka_ConfigResource_t,
> = Api {
    op: rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DESCRIBECONFIGS,
    send: rd::rd_kafka_DescribeConfigs,
    result: rd::rd_kafka_event_DescribeConfigs_result,
    items: rd::rd_kafka_DescribeConfigs_result_resources,
    waits_for_completion: false,
};

const ALTER_CONFIGS: Api<
    rd::rd_kafka_ConfigResource_t,
    rd::rd_kafka_AlterConfigs_result_t,
    rd::rd_kafka_ConfigResource_t,
> = Api {
    op: rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_ALTERCONFIGS,
    send: rd::rd_kafka_AlterConfigs,
    result: rd::rd_kafka_event_AlterConfigs_result,
    items: rd::rd_kafka_AlterConfigs_result_resources,
    waits_for_completion: false,
};

const DELETE_GROUPS: Api<
    rd::rd_kafka_DeleteGroup_t,
    rd::rd_kafka_DeleteGroups_result_t,
    rd::rd_kafka_group_result_t,
> = Api {
    op: rd::rd_kafka_admin_op_t::RD_KAFKA_ADMIN_OP_DELETEGROUPS,
    send: rd::rd_kafka_DeleteGroups,
    result: rd::rd_kafka_event_DeleteGroups_result,
    items: rd::rd_kafka_DeleteGroups_result_groups,
    waits_for_completion: false,
};

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
        let new_topic = new_topic(topic, partitions, replication_factor, configs)?;
        let results = self.request(&CREATE_TOPICS, &[new_topic], topic_result)?;
        only_one(results, topic)
    }

    pub fn delete_topics(&self, topics: &[&str]) -> anyhow::Result<Vec<Named<()>>> {
        let objects = by_name(
            topics,
            rd::rd_kafka_DeleteTopic_new,
            rd::rd_kafka_DeleteTopic_destroy,
        )?;
        self.request(&DELETE_TOPICS, &objects, topic_result)
    }

    /// Every config of `topic`, defaults included.
    pub fn describe_topic_configs(
        &self,
        topic: &str,
    ) -> anyhow::Result<Result<Vec<ConfigEntry>, Refusal>> {
        let resource = topic_resource(topic, &BTreeMap::new())?;
        let results = self.request(&DESCRIBE_CONFIGS, &[resource], config_result)?;
        only_one(results, topic)
    }

    /// Replaces every config set on `topic` with `configs` (Kafka's AlterConfigs: a config
    /// left out returns to its default).
    pub fn replace_topic_configs(
        &self,
        topic: &str,
        configs: &BTreeMap<String, String>,
    ) -> anyhow::Result<Result<(), Refusal>> {
        let resource = topic_resource(topic, configs)?;
        let results = self.request(&ALTER_CONFIGS, &[resource], config_result)?;
        Ok(only_one(results, topic)?.map(|_| ()))
    }

    pub fn delete_groups(&self, groups: &[&str]) -> anyhow::Result<Vec<Named<()>>> {
        let objects = by_name(
            groups,
            rd::rd_kafka_DeleteGroup_new,
            rd::rd_kafka_DeleteGroup_destroy,
        )?;
        self.request(&DELETE_GROUPS, &objects, group_result)
    }

    /// Sends one admin request about `objects` on a reply queue of its own, waits for its
    /// result event, and reads each item of the result with `read`. A failure of the request
    /// as a whole (no broker, a timeout) becomes one line, diagnosed as
    /// `client::broker_error` does.
    fn request<T, R, I, X>(
        &self,
        api: &Api<T, R, I>,
        objects: &[Owned<T>],
        read: unsafe fn(*const I) -> X,
    ) -> anyhow::Result<Vec<X>> {
        let rk = self.client.native_ptr();
        let options = self.options(api)?;
        // SAFETY: `rk` is live; the queue is this request's alone.
        let queue = unsafe { Owned::new(rd::rd_kafka_queue_new(rk), rd::rd_kafka_queue_destroy) }
            .ok_or_else(|| anyhow!("cannot set up an admin request"))?;
        let mut pointers: Vec<*mut T> = objects.iter().map(Owned::ptr).collect();
        // SAFETY: every pointer is live for the call; librdkafka copies the objects and the
        // options, and keeps its own reference to the queue.
        unsafe {
            (api.send)(
                rk,
                pointers.as_mut_ptr(),
                pointers.len(),
                options.ptr(),
                queue.ptr(),
            )
        };
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
        // SAFETY: a live event; the result is null unless the event answers this API.
        let result = unsafe { (api.result)(event.ptr()) };
        if result.is_null() {
            bail!("librdkafka answered an admin request with the wrong result");
        }
        let mut count = 0;
        // SAFETY: a result of this API, owned by `event`, like the array of items.
        let items = unsafe { (api.items)(result, &mut count) };
        // SAFETY: librdkafka's array of `count` items, live as long as `event`.
        let items = unsafe { array(items, count) };
        Ok(items
            .iter()
            // SAFETY: each an item of this API's result, live as long as `event`, which
            // outlives the owned copies `read` makes.
            .map(|&item| unsafe { read(item) })
            .collect())
    }

    /// Options that bound the request by `--timeout-ms`.
    fn options<T, R, I>(
        &self,
        api: &Api<T, R, I>,
    ) -> anyhow::Result<Owned<rd::rd_kafka_AdminOptions_t>> {
        let rk = self.client.native_ptr();
        // SAFETY: `rk` is this client's live handle.
        let options = unsafe {
            Owned::new(
                rd::rd_kafka_AdminOptions_new(rk, api.op),
                rd::rd_kafka_AdminOptions_destroy,
            )
        }
        .ok_or_else(|| anyhow!("cannot set up an admin request"))?;
        let mut setters: Vec<SetTimeout> = vec![rd::rd_kafka_AdminOptions_set_request_timeout];
        if api.waits_for_completion {
            setters.push(rd::rd_kafka_AdminOptions_set_operation_timeout);
        }
        let timeout_ms = millis(self.connect.timeout());
        let mut errstr = [0 as c_char; ERRSTR_SIZE_BYTES];
        for set in setters {
            // SAFETY: live options; librdkafka writes at most `errstr.len()` bytes.
            let code = unsafe { set(options.ptr(), timeout_ms, errstr.as_mut_ptr(), errstr.len()) };
            if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
                // SAFETY: librdkafka wrote a NUL-terminated message into `errstr`.
                let reason = unsafe { CStr::from_ptr(errstr.as_ptr()) }.to_string_lossy();
                bail!("--timeout-ms {}: {reason}", self.connect.timeout_ms);
            }
        }
        Ok(options)
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

/// Adds `configs` to a new topic or a config resource with librdkafka's `set` for it, which
/// copies them; it refuses a name or value only when it is not a string at all.
fn set_configs<'a, T>(
    object: &Owned<T>,
    configs: impl Iterator<Item = (&'a str, &'a str)>,
    set: unsafe extern "C" fn(*mut T, *const c_char, *const c_char) -> rd::rd_kafka_resp_err_t,
) -> anyhow::Result<()> {
    for (key, value) in configs {
        let (key_c, value_c) = (c_string(key)?, c_string(value)?);
        // SAFETY: a live object of the type `set` belongs to and NUL-terminated strings.
        let code = unsafe { set(object.ptr(), key_c.as_ptr(), value_c.as_ptr()) };
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            bail!("config '{key}': {}", client::code_text(code.into()));
        }
    }
    Ok(())
}

fn new_topic(
    topic: &str,
    partitions: i32,
    replication_factor: i32,
    configs: &[(String, String)],
) -> anyhow::Result<Owned<rd::rd_kafka_NewTopic_t>> {
    let name = c_string(topic)?;
    let mut errstr = [0 as c_char; ERRSTR_SIZE_BYTES];
    // SAFETY: `name` and `errstr` outlive the call, which copies the name and writes at most
    // `errstr.len()` bytes, NUL included.
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
    let configs = configs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    set_configs(&new_topic, configs, rd::rd_kafka_NewTopic_set_config)?;
    Ok(new_topic)
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
    let configs = configs.iter().map(|(k, v)| (k.as_str(), v.as_str()));
    set_configs(&resource, configs, rd::rd_kafka_ConfigResource_set_config)?;
    Ok(resource)
}

/// Request objects that are nothing but a name (a topic or group to delete).
fn by_name<T>(
    names: &[&str],
    new: unsafe extern "C" fn(*const c_char) -> *mut T,
    destroy: unsafe extern "C" fn(*mut T),
) -> anyhow::Result<Vec<Owned<T>>> {
    let mut objects = Vec::with_capacity(names.len());
    for name in names {
        let name_c = c_string(name)?;
        // SAFETY: `new` and `destroy` are a librdkafka constructor and its destructor; the
        // name is NUL-terminated and copied by librdkafka.
        let object = unsafe { Owned::new(new(name_c.as_ptr()), destroy) }
            .ok_or_else(|| anyhow!("cannot set up a request about '{name}'"))?;
        objects.push(object);
    }
    Ok(objects)
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

/// One topic's outcome in a CreateTopics or DeleteTopics result.
///
/// # Safety
/// `topic` is a live topic result, owner of its strings.
unsafe fn topic_result(topic: *const rd::rd_kafka_topic_result_t) -> Named<()> {
    // SAFETY: the caller's contract.
    unsafe {
        let name = text(rd::rd_kafka_topic_result_name(topic)).unwrap_or_default();
        let code = rd::rd_kafka_topic_result_error(topic);
        if code == rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            return (name, Ok(()));
        }
        let message = rd::rd_kafka_topic_result_error_string(topic);
        (name, Err(refusal(code, message)))
    }
}

/// One group's outcome in a DeleteGroups result.
///
/// # Safety
/// `group` is a live group result, owner of its strings and of its error, which is null when
/// the group was deleted.
unsafe fn group_result(group: *const rd::rd_kafka_group_result_t) -> Named<()> {
    // SAFETY: the caller's contract.
    unsafe {
        let name = text(rd::rd_kafka_group_result_name(group)).unwrap_or_default();
        let error = rd::rd_kafka_group_result_error(group);
        if error.is_null() {
            return (name, Ok(()));
        }
        let code = rd::rd_kafka_error_code(error);
        (name, Err(refusal(code, rd::rd_kafka_error_string(error))))
    }
}

/// The entries of one DescribeConfigs or AlterConfigs resource, or its refusal.
///
/// # Safety
/// `resource` is a live config resource, owner of its entries and strings.
unsafe fn config_result(resource: *const rd::rd_kafka_ConfigResource_t) -> Named<Vec<ConfigEntry>> {
    // SAFETY: the caller's contract, here and for each entry below.
    unsafe {
        let name = text(rd::rd_kafka_ConfigResource_name(resource)).unwrap_or_default();
        let code = rd::rd_kafka_ConfigResource_error(resource);
        if code != rd::rd_kafka_resp_err_t::RD_KAFKA_RESP_ERR_NO_ERROR {
            let message = rd::rd_kafka_ConfigResource_error_string(resource);
            return (name, Err(refusal(code, message)));
        }
        let mut count = 0;
        let entries = rd::rd_kafka_ConfigResource_configs(resource, &mut count);
        let entries = array(entries, count)
            .iter()
            .map(|&entry| ConfigEntry {
                name: text(rd::rd_kafka_ConfigEntry_name(entry)).unwrap_or_default(),
                value: text(rd::rd_kafka_ConfigEntry_value(entry)),
                set_on_topic: rd::rd_kafka_ConfigEntry_source(entry)
                    == rd::rd_kafka_ConfigSource_t::RD_KAFKA_CONFIG_SOURCE_DYNAMIC_TOPIC_CONFIG,
                is_sensitive: rd::rd_kafka_ConfigEntry_is_sensitive(entry) != 0,
            })
            .collect();
        (name, Ok(entries))
    }
}

/// The outcome of a request about one topic.
fn only_one<T>(mut results: Vec<Named<T>>, topic: &str) -> anyhow::Result<Result<T, Refusal>> {
    match results.pop() {
        Some((name, outcome)) if results.is_empty() && name == topic => Ok(outcome),
        _ => bail!("the broker's answer is not about '{topic}' alone"),
    }
}
