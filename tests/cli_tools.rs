//! The `topic`, `produce`, `consume` and `group` tools run as processes against the real
//! broker: a file goes in and comes back byte for byte, `topic describe` shows the end
//! offsets, a group that read everything has lag 0, offsets can be reset and groups deleted;
//! and every failure (no broker, unknown topic, bad flag) is one line on stderr with a
//! non-zero exit.

mod common_cli;
mod common_kafka;

use common_cli::{eventually, ringlog, ringlog_into_closed_pipe, Background, Fed, Run};
use common_kafka::Broker;

/// Groups complete their first rebalance at once, so tests do not wait out Kafka's delay.
const FAST_GROUPS: &str = "[group]\ngroup_initial_rebalance_delay_ms = 0\n";

fn assert_one_line_error(run: &Run, expected: &str) {
    assert!(!run.status.success(), "expected a failure: {}", run.stderr);
    let lines: Vec<&str> = run.stderr.lines().collect();
    assert_eq!(lines.len(), 1, "one line on stderr, got:\n{}", run.stderr);
    assert!(lines[0].starts_with("ringlog: "), "{}", lines[0]);
    assert!(lines[0].contains(expected), "'{expected}' in: {}", lines[0]);
    assert!(!run.stderr.contains("panicked"), "{}", run.stderr);
}

/// The rows of a table the tools print, split into cells, below the header starting with
/// `header`.
fn table_rows(text: &str, header: &str) -> Vec<Vec<String>> {
    text.lines()
        .map(str::trim)
        .skip_while(|line| !line.starts_with(header))
        .skip(1)
        .take_while(|line| !line.is_empty())
        .map(|line| line.split_whitespace().map(str::to_string).collect())
        .collect()
}

/// Lines of every kind a file may hold: text, tabs, an empty line, a carriage return, bytes
/// that are not UTF-8, and a long line.
fn awkward_file() -> Vec<u8> {
    let mut file = Vec::new();
    for index in 0..500 {
        file.extend_from_slice(format!("line {index}\twith a tab").as_bytes());
        file.push(b'\n');
    }
    file.extend_from_slice(b"\n");
    file.extend_from_slice(b"carriage\r\n");
    file.extend_from_slice(&[0xff, 0xfe, 0x00, 0x80, b'\n']);
    file.extend_from_slice(&vec![b'x'; 100_000]);
    file.push(b'\n');
    file
}

#[test]
fn a_file_round_trips_and_topics_show_their_offsets() {
    let broker = Broker::start_with_config(FAST_GROUPS);
    let brokers = broker.kafka_addr.to_string();
    let run = |args: &[&str]| ringlog(&brokers, args, b"");

    let created = run(&[
        "topic",
        "create",
        "lines",
        "--config",
        "retention.ms=86400000",
    ])
    .ok();
    assert!(
        created.stderr.contains("created topic 'lines'"),
        "{}",
        created.stderr
    );
    let again = run(&["topic", "create", "lines"]);
    assert_one_line_error(&again, "already exists");
    run(&["topic", "create", "lines", "--if-not-exists"]).ok();
    let listed = run(&["topic", "list"]).ok().stdout_text();
    assert!(listed.lines().any(|l| l == "lines"), "{listed}");

    let file = awkward_file();
    let dir = tempfile::tempdir().expect("temporary directory");
    let path = dir.path().join("input.txt");
    std::fs::write(&path, &file).expect("write input");
    let path = path.to_str().expect("UTF-8 path");
    let produced = run(&["produce", "lines", "--file", path, "--acks", "all"]).ok();
    assert!(produced.stdout.is_empty(), "stdout stays clean");
    assert!(
        produced.stderr.contains("produced 504 of 504 messages"),
        "{}",
        produced.stderr
    );

    let consumed = run(&["consume", "lines", "--from-beginning", "--exit-at-end"]).ok();
    assert!(
        consumed.stdout == file,
        "consumed bytes differ from the file"
    );
    let counted = run(&["consume", "lines", "--from-beginning", "--count", "3"]).ok();
    assert_eq!(
        counted.stdout_text(),
        "line 0\twith a tab\nline 1\twith a tab\nline 2\twith a tab\n"
    );

    let described = run(&["topic", "describe", "lines"]).ok().stdout_text();
    let rows = table_rows(&described, "PARTITION");
    // PARTITION LEADER REPLICAS ISR LOW HIGH MESSAGES
    assert_eq!(
        rows,
        vec![vec!["0", "0", "0", "0", "0", "504", "504"]],
        "{described}"
    );
    assert!(described.contains("retention.ms=86400000"), "{described}");

    run(&[
        "topic",
        "alter-config",
        "lines",
        "--config",
        "segment.ms=3600000",
    ])
    .ok();
    run(&[
        "topic",
        "alter-config",
        "lines",
        "--delete-config",
        "retention.ms",
    ])
    .ok();
    let described = run(&["topic", "describe", "lines"]).ok().stdout_text();
    assert!(described.contains("segment.ms=3600000"), "{described}");
    assert!(!described.contains("retention.ms=86400000"), "{described}");

    run(&["topic", "delete", "lines"]).ok();
    let listed = run(&["topic", "list"]).ok().stdout_text();
    assert!(!listed.lines().any(|l| l == "lines"), "{listed}");
    assert_one_line_error(
        &run(&["topic", "describe", "lines"]),
        "topic 'lines' does not exist",
    );
    assert_one_line_error(
        &run(&["consume", "lines", "--exit-at-end"]),
        "topic 'lines' does not exist",
    );
}

#[test]
fn refused_admin_requests_fail_with_the_brokers_reason() {
    let broker = Broker::start();
    let brokers = broker.kafka_addr.to_string();
    let run = |args: &[&str]| ringlog(&brokers, args, b"");
    run(&["topic", "create", "kept", "--config", "segment.ms=3600000"]).ok();

    // Each refusal names the config at fault, which only the broker's message does:
    // librdkafka's own text for the code is "Configuration is invalid".
    for (config, named) in [
        ("retention.ms=soon", "retention.ms"),
        ("retention.msx=1000", "retention.msx"),
    ] {
        let refused = run(&["topic", "alter-config", "kept", "--config", config]);
        assert_one_line_error(&refused, "cannot alter the configs of 'kept'");
        assert!(refused.stderr.contains(named), "{}", refused.stderr);
        let refused = run(&["topic", "create", "other", "--config", config]);
        assert_one_line_error(&refused, "cannot create topic 'other'");
        assert!(refused.stderr.contains(named), "{}", refused.stderr);
    }
    let missing = run(&[
        "topic",
        "alter-config",
        "missing",
        "--config",
        "retention.ms=1000",
    ]);
    assert_one_line_error(&missing, "'missing'");
    let described = run(&["topic", "describe", "kept"]).ok().stdout_text();
    assert!(described.contains("segment.ms=3600000"), "{described}");
    assert!(!described.contains("retention.ms"), "{described}");
    let listed = run(&["topic", "list"]).ok().stdout_text();
    assert_eq!(listed, "kept\n");

    // A partial failure is a failure, and says what did happen.
    let deleted = run(&["topic", "delete", "kept", "missing"]);
    assert!(!deleted.status.success(), "{}", deleted.stderr);
    assert!(
        deleted.stderr.contains("deleted topic 'kept'"),
        "{}",
        deleted.stderr
    );
    assert!(
        deleted
            .stderr
            .contains("ringlog: topic 'missing' does not exist"),
        "{}",
        deleted.stderr
    );
}

#[test]
fn keys_headers_and_json() {
    let broker = Broker::start();
    let brokers = broker.kafka_addr.to_string();
    ringlog(&brokers, &["topic", "create", "keyed"], b"").ok();
    ringlog(
        &brokers,
        &[
            "produce",
            "keyed",
            "-K",
            ":",
            "--header",
            "source=test",
            "-H",
            "v=2",
        ],
        b"k1:first\nno key here\nk3:a:b\n",
    )
    .ok();
    let consumed = ringlog(
        &brokers,
        &[
            "consume",
            "keyed",
            "--from-beginning",
            "--exit-at-end",
            "--format",
            "json",
        ],
        b"",
    )
    .ok()
    .stdout_text();
    let messages: Vec<serde_json::Value> = consumed
        .lines()
        .map(|line| serde_json::from_str(line).expect("one JSON object a line"))
        .collect();
    assert_eq!(messages.len(), 3, "{consumed}");
    let keys: Vec<&serde_json::Value> = messages.iter().map(|m| &m["key"]).collect();
    assert_eq!(
        keys,
        [
            &serde_json::json!("k1"),
            &serde_json::Value::Null,
            &serde_json::json!("k3")
        ]
    );
    let values: Vec<&str> = messages
        .iter()
        .filter_map(|m| m["value"].as_str())
        .collect();
    assert_eq!(values, ["first", "no key here", "a:b"]);
    for (offset, message) in messages.iter().enumerate() {
        assert_eq!(message["topic"], "keyed");
        assert_eq!(message["partition"], 0);
        assert_eq!(message["offset"], offset);
        assert!(
            message["timestamp"].as_i64().is_some_and(|t| t > 0),
            "{message}"
        );
        assert_eq!(
            message["headers"],
            serde_json::json!([{"key": "source", "value": "test"}, {"key": "v", "value": "2"}])
        );
    }
    let key_value = ringlog(
        &brokers,
        &[
            "consume",
            "keyed",
            "-p",
            "0",
            "-o",
            "2",
            "-e",
            "--format",
            "key-value",
        ],
        b"",
    )
    .ok();
    assert_eq!(key_value.stdout_text(), "k3\ta:b\n");
}

#[test]
fn groups_commit_show_lag_reset_and_delete() {
    let broker = Broker::start_with_config(FAST_GROUPS);
    let brokers = broker.kafka_addr.to_string();
    let run = |args: &[&str]| ringlog(&brokers, args, b"");
    run(&["topic", "create", "orders", "--partitions", "3"]).ok();
    let lines: String = (0..90).map(|i| format!("key{i}:order {i}\n")).collect();
    ringlog(
        &brokers,
        &["produce", "orders", "-K", ":"],
        lines.as_bytes(),
    )
    .ok();
    let described = run(&["topic", "describe", "orders"]).ok().stdout_text();
    let ends: i64 = table_rows(&described, "PARTITION")
        .iter()
        .map(|row| row[5].parse::<i64>().expect("high watermark"))
        .sum();
    assert_eq!(ends, 90, "{described}");

    let consumed = run(&[
        "consume",
        "orders",
        "--group",
        "billing",
        "--from-beginning",
        "--exit-at-end",
    ])
    .ok();
    assert_eq!(consumed.stdout_text().lines().count(), 90);
    let listed = run(&["group", "list"]).ok().stdout_text();
    assert!(
        listed.lines().any(|l| l.starts_with("billing ")),
        "{listed}"
    );
    let described = run(&["group", "describe", "billing"]).ok().stdout_text();
    let rows = table_rows(&described, "TOPIC");
    // TOPIC PARTITION COMMITTED END LAG MEMBER
    let committed: Vec<(&str, &str)> = rows
        .iter()
        .filter(|row| row[0] == "orders" && row[2] != "-")
        .map(|row| (row[2].as_str(), row[4].as_str()))
        .collect();
    assert!(!committed.is_empty(), "{described}");
    for row in rows.iter().filter(|row| row[2] != "-") {
        assert_eq!(row[2], row[3], "committed = end: {described}");
        assert_eq!(row[4], "0", "lag 0: {described}");
    }
    let committed_total: i64 = rows
        .iter()
        .filter_map(|row| row[2].parse::<i64>().ok())
        .sum();
    assert_eq!(committed_total, 90, "{described}");

    // A member while it runs: its assignment, and resets refused.
    let member = Background::start(&brokers, &["consume", "orders", "--group", "billing"]);
    let described = eventually("the consumer shows as a member", || {
        let text = run(&["group", "describe", "billing"]).ok().stdout_text();
        text.contains("orders[0,1,2]").then_some(text)
    });
    assert!(described.contains("state: Stable"), "{described}");
    let refused = run(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
    ]);
    assert_one_line_error(&refused, "active member");
    let (status, stderr) = member.stop();
    assert!(
        status.success(),
        "consume ends cleanly on SIGTERM: {stderr}"
    );

    // Resets: a dry run changes nothing; a real one moves every partition to its start.
    let dry = run(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
        "--dry-run",
    ])
    .ok();
    assert!(dry.stderr.contains("dry run"), "{}", dry.stderr);
    let lag_total = |text: &str| -> i64 {
        table_rows(text, "TOPIC")
            .iter()
            .filter_map(|row| row[4].parse::<i64>().ok())
            .sum()
    };
    let described = run(&["group", "describe", "billing"]).ok().stdout_text();
    assert_eq!(lag_total(&described), 0, "{described}");
    run(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--to-earliest",
    ])
    .ok();
    let described = run(&["group", "describe", "billing"]).ok().stdout_text();
    assert_eq!(lag_total(&described), 90, "{described}");
    run(&[
        "group",
        "reset-offsets",
        "billing",
        "--topic",
        "orders",
        "--partition",
        "0",
        "--to-offset",
        "1",
    ])
    .ok();
    let described = run(&["group", "describe", "billing"]).ok().stdout_text();
    let partition_0 = table_rows(&described, "TOPIC")
        .into_iter()
        .find(|row| row[1] == "0")
        .expect("partition 0 row");
    let expected_committed = if partition_0[3] == "0" { "0" } else { "1" };
    assert_eq!(partition_0[2], expected_committed, "{described}");

    run(&["group", "delete", "billing"]).ok();
    assert_one_line_error(
        &run(&["group", "describe", "billing"]),
        "consumer group 'billing' does not exist",
    );
}

#[test]
fn a_closed_stdout_ends_a_tool_quietly() {
    use std::os::unix::process::ExitStatusExt;

    let broker = Broker::start();
    let brokers = broker.kafka_addr.to_string();
    ringlog(&brokers, &["topic", "create", "piped"], b"").ok();
    ringlog(&brokers, &["produce", "piped"], b"one\ntwo\n").ok();
    let partition_dir = broker.data_dir().join("piped-0");
    let partition_dir = partition_dir.to_str().expect("UTF-8 path");
    for args in [
        &["topic", "list"][..],
        &["topic", "describe", "piped"],
        &["group", "list"],
        &["consume", "piped", "--from-beginning", "--exit-at-end"],
        &["bench", "produce", "--topic", "piped", "--count", "10"],
        &["dump-log", partition_dir],
    ] {
        let run = ringlog_into_closed_pipe(&brokers, args);
        // As a Unix tool ends: at once by SIGPIPE, or having noticed and stopped.
        assert!(
            run.status.success() || run.status.signal() == Some(libc::SIGPIPE),
            "{args:?} ended with {}: {}",
            run.status,
            run.stderr
        );
        assert!(!run.stderr.contains("panicked"), "{args:?}: {}", run.stderr);
    }
}

/// The sum of the high watermarks of `topic`'s partitions, as `topic describe` shows them.
fn high_watermarks(brokers: &str, topic: &str) -> i64 {
    let described = ringlog(brokers, &["topic", "describe", topic], b"")
        .ok()
        .stdout_text();
    table_rows(&described, "PARTITION")
        .iter()
        .map(|row| row[5].parse::<i64>().expect("high watermark"))
        .sum()
}

/// `ringlog produce TOPIC EXTRA_ARGS` fed fifteen lines in one write, which it reads at once:
/// the first ten fill a batch and go out, which this waits to see; the last five linger, unsent
/// until a flush.
fn produce_with_five_lingering(brokers: &str, topic: &str, extra_args: &[&str]) -> Fed {
    ringlog(brokers, &["topic", "create", topic], b"").ok();
    let lingering = [
        "-X",
        "batch.num.messages=10",
        "-X",
        "linger.ms=600000",
        "-X",
        "message.timeout.ms=900000",
    ];
    let args: Vec<&str> = ["produce", topic]
        .into_iter()
        .chain(lingering)
        .chain(extra_args.iter().copied())
        .collect();
    let mut producer = Fed::start(brokers, &args);
    let lines: String = (0..15).map(|i| format!("{i}\n")).collect();
    producer.feed(lines.as_bytes());
    eventually("the first batch arrives", || {
        (high_watermarks(brokers, topic) >= 10).then_some(())
    });
    producer
}

#[test]
fn an_interrupted_produce_delivers_what_it_queued() {
    let broker = Broker::start();
    let brokers = broker.kafka_addr.to_string();
    let producer = produce_with_five_lingering(&brokers, "signalled", &[]);
    producer.signal(libc::SIGINT);
    let (status, stderr) = producer.wait();
    assert!(status.success(), "{status}: {stderr}");
    assert!(
        stderr.contains("produced 15 of 15 messages"),
        "the summary: {stderr}"
    );
    assert_eq!(high_watermarks(&brokers, "signalled"), 15);
}

#[test]
fn a_second_signal_ends_produce_at_once() {
    let mut broker = Broker::start();
    let brokers = broker.kafka_addr.to_string();
    // A long wait for the lingering messages, which would end in exit status 1.
    let mut producer = produce_with_five_lingering(&brokers, "stuck", &["--timeout-ms", "600000"]);
    broker.stop();
    producer.signal(libc::SIGINT);
    producer.wait_for_stderr("interrupted");
    producer.signal(libc::SIGTERM);
    let (status, stderr) = producer.wait();
    assert_eq!(
        status.code(),
        Some(128 + libc::SIGTERM),
        "{status}: {stderr}"
    );
}

#[test]
fn no_broker_is_one_clear_line() {
    // Bind then drop: nothing listens on this port.
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .expect("a free port")
        .port();
    let brokers = format!("127.0.0.1:{port}");
    for args in [
        &["topic", "list", "--timeout-ms", "2000"][..],
        &["topic", "create", "t", "--timeout-ms", "2000"],
        &["produce", "t", "--timeout-ms", "2000"],
        &["consume", "t", "--timeout-ms", "2000"],
        &["group", "list", "--timeout-ms", "2000"],
        &["bench", "produce", "--count", "10", "--timeout-ms", "2000"],
    ] {
        let run = ringlog(&brokers, args, b"x\n");
        assert_one_line_error(&run, &format!("no Kafka broker answered at {brokers}"));
        assert!(run.stderr.contains("Connection refused"), "{}", run.stderr);
    }
}

#[test]
fn usage_mistakes_are_one_line_and_every_command_has_examples() {
    let brokers = "127.0.0.1:9";
    let run = ringlog(brokers, &["topic", "create", "t", "--partiton", "3"], b"");
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert_one_line_error(&run, "unexpected argument '--partiton'");
    let run = ringlog(brokers, &["consume"], b"");
    assert_eq!(run.status.code(), Some(2), "{}", run.stderr);
    assert_one_line_error(&run, "<TOPIC>");
    let run = ringlog(brokers, &["consume", "t", "--offset", "5"], b"");
    assert_one_line_error(&run, "--offset needs --partition");
    let run = ringlog(
        brokers,
        &["bench", "produce", "--message-size-bytes", "4"],
        b"",
    );
    assert_one_line_error(&run, "--message-size-bytes");
    let run = ringlog(brokers, &["bench", "e2e", "--rate", "0"], b"");
    assert_one_line_error(&run, "expected a number above 0");

    for command in [
        &["topic", "create"][..],
        &["topic", "list"],
        &["topic", "describe"],
        &["topic", "delete"],
        &["topic", "alter-config"],
        &["produce"],
        &["consume"],
        &["group", "list"],
        &["group", "describe"],
        &["group", "reset-offsets"],
        &["group", "delete"],
        &["bench", "produce"],
        &["bench", "consume"],
        &["bench", "e2e"],
    ] {
        let args: Vec<&str> = command.iter().copied().chain(["--help"]).collect();
        let help = ringlog(brokers, &args, b"").ok().stdout_text();
        let examples = help.split("Examples:\n").nth(1).unwrap_or_default();
        assert!(examples.contains("ringlog "), "{command:?}:\n{help}");
    }
}
