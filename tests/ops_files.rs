//! The deployment files in `ops/` are valid and in step with the broker: the alert rules, their
//! unit tests and the scrape config pass `promtool`, the systemd unit passes `systemd-analyze verify`, the example
//! `ringlog.toml` loads with the real config loader and names every key it accepts with the
//! true defaults, and every metric the dashboard and the alert rules use is one a live broker
//! exports.

mod common_kafka;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::Command;

use common_kafka::{http_get, parse_metrics, Broker};
use ringlog::config::{ServeArgs, ServerConfig};

fn ops_file(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("ops").join(name)
}

/// `tool` from PATH, or a failure that says which package brings it.
fn tool(name: &str, package: &str) -> PathBuf {
    let found = std::env::var_os("PATH").and_then(|path| {
        std::env::split_paths(&path)
            .map(|dir| dir.join(name))
            .find(|candidate| candidate.is_file())
    });
    found.unwrap_or_else(|| {
        panic!(
            "{name} not found on PATH: install the Debian package `{package}` \
             (./scripts/test.sh does when run as root)"
        )
    })
}

fn run(command: &mut Command) -> (bool, String) {
    let output = command.output().expect("the tool runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.success(), text)
}

#[test]
fn alert_rules_and_scrape_config_pass_promtool() {
    let promtool = tool("promtool", "prometheus");
    let (ok, text) = run(Command::new(&promtool)
        .args(["check", "rules"])
        .arg(ops_file("ringlog-alerts.yml")));
    assert!(ok, "{text}");
    // The rules fire as intended on series shaped like ringlog's.
    let (ok, text) = run(Command::new(&promtool)
        .args(["test", "rules"])
        .arg(ops_file("ringlog-alerts.test.yml")));
    assert!(ok, "{text}");
    // The scrape config names the rules file beside it.
    let (ok, text) = run(Command::new(&promtool)
        .args(["check", "config"])
        .arg(ops_file("prometheus.yml")));
    assert!(ok, "{text}");
}

#[test]
fn systemd_unit_passes_systemd_analyze_verify() {
    let analyze = tool("systemd-analyze", "systemd");
    // verify checks that ExecStart exists: point it at the binary just built.
    let unit = std::fs::read_to_string(ops_file("ringlog.service")).expect("the unit");
    assert!(
        unit.contains("ExecStart=/usr/local/bin/ringlog serve"),
        "{unit}"
    );
    let unit = unit.replace("/usr/local/bin/ringlog", env!("CARGO_BIN_EXE_ringlog"));
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ringlog.service");
    std::fs::write(&path, unit).unwrap();
    let (ok, text) = run(Command::new(analyze).arg("verify").arg(&path));
    assert!(ok, "{text}");
    assert!(
        !text.contains("ringlog.service"),
        "systemd-analyze has remarks about the unit:\n{text}"
    );
}

fn load(path: &Path) -> anyhow::Result<ServerConfig> {
    ServerConfig::resolve(&ServeArgs {
        config: Some(path.to_path_buf()),
        ..ServeArgs::default()
    })
}

/// Every key the loader accepts where `unknown_key_toml` puts an unknown one: serde names
/// them all when it refuses it.
fn accepted_keys_at(unknown_key_toml: &str) -> BTreeSet<String> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bogus.toml");
    std::fs::write(&path, unknown_key_toml).unwrap();
    let error = format!("{:#}", load(&path).expect_err("an unknown key is refused"));
    let (_, expected) = error
        .split_once("expected one of")
        .unwrap_or_else(|| panic!("the loader lists its keys: {error}"));
    expected
        .split('`')
        .skip(1)
        .step_by(2)
        .map(str::to_string)
        .collect()
}

/// Every top-level key the loader accepts.
fn accepted_keys() -> BTreeSet<String> {
    accepted_keys_at("no_such_key = 1\n")
}

/// Every key the `[group]` table accepts.
fn accepted_group_keys() -> BTreeSet<String> {
    accepted_keys_at("[group]\nno_such_key = 1\n")
}

/// The `key = value` lines of table `[name]`.
fn table_keys(text: &str, name: &str) -> BTreeSet<String> {
    let header = format!("[{name}]");
    text.lines()
        .skip_while(|line| *line != header)
        .skip(1)
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| line.split_once(" = ").map(|(key, _)| key.to_string()))
        .filter(|key| !key.starts_with('#'))
        .collect()
}

/// `key = value` lines before the first table, set or commented out (`# key = value`).
fn documented_keys(text: &str) -> BTreeSet<String> {
    text.lines()
        .take_while(|line| !line.starts_with('['))
        .filter_map(|line| {
            let line = line.strip_prefix("# ").unwrap_or(line);
            let (key, _) = line.split_once(" = ")?;
            key.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_')
                .then(|| key.to_string())
        })
        .collect()
}

#[test]
fn example_config_loads_and_documents_every_key_with_its_default() {
    let path = ops_file("ringlog.toml");
    let text = std::fs::read_to_string(&path).expect("ops/ringlog.toml");
    let accepted = accepted_keys();
    assert!(accepted.contains("data_dir") && accepted.contains("topic_defaults"));
    let mut documented = documented_keys(&text);
    documented.insert("topic_defaults".to_string()); // the [topic_defaults] table
    documented.insert("group".to_string()); // the [group] table
    assert_eq!(
        table_keys(&text, "group"),
        accepted_group_keys(),
        "[group] in ops/ringlog.toml must list exactly the settings GroupConfig accepts"
    );
    assert_eq!(
        documented, accepted,
        "ops/ringlog.toml must list exactly the keys src/config.rs accepts"
    );

    let example = load(&path).expect("ops/ringlog.toml loads");
    let defaults = ServerConfig::resolve(&ServeArgs::default()).unwrap();
    assert_eq!(example.data_dir, PathBuf::from("/var/lib/ringlog"));
    assert_eq!(example.kafka_addr, defaults.kafka_addr);
    assert_eq!(example.admin_addr, defaults.admin_addr);
    assert_eq!(example.node_id, defaults.node_id);
    assert_eq!(
        example.auto_create_topics_enable,
        defaults.auto_create_topics_enable
    );
    assert_eq!(example.num_partitions, defaults.num_partitions);
    assert_eq!(
        example.socket_request_max_bytes,
        defaults.socket_request_max_bytes
    );
    assert_eq!(
        example.batch_cache_bytes_per_shard,
        defaults.batch_cache_bytes_per_shard
    );
    assert_eq!(
        example.disk_free_threshold_bytes,
        defaults.disk_free_threshold_bytes
    );
    assert_eq!(example.ballast_bytes, defaults.ballast_bytes);
    assert_eq!(
        example.retention_check_interval_ms,
        defaults.retention_check_interval_ms
    );
    assert_eq!(
        example.metrics_per_partition,
        defaults.metrics_per_partition
    );
    assert_eq!(
        example.log_defaults, defaults.log_defaults,
        "[topic_defaults] shows the defaults"
    );
    assert_eq!(example.group, defaults.group, "[group] shows the defaults");

    // The commented examples are valid too.
    let uncommented: String = text
        .lines()
        .map(|line| match line.strip_prefix("# ") {
            Some(rest) if documented_keys(rest).len() == 1 => rest,
            _ => line,
        })
        .map(|line| format!("{line}\n"))
        .collect();
    let dir = tempfile::tempdir().unwrap();
    let all = dir.path().join("all.toml");
    std::fs::write(&all, uncommented).unwrap();
    let config = load(&all).expect("the commented examples load");
    assert_eq!(config.cpus, Some(vec![2, 3, 4, 5, 6, 7]));
    assert_eq!(config.advertised_host, "broker1.example.com");
}

/// The `ringlog_…` names in `text`.
fn metric_names_in(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(start) = rest.find("ringlog_") {
        let tail = &rest[start..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(tail[..end].to_string());
        rest = &tail[end..];
    }
    names
}

/// Every string of a JSON document that holds a PromQL query.
fn queries_in(value: &serde_json::Value, found: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "query" | "definition", serde_json::Value::String(query)) => {
                        found.push(query.clone())
                    }
                    _ => queries_in(value, found),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| queries_in(v, found)),
        _ => {}
    }
}

/// Every series name a live broker exports, histogram and counter suffixes included.
fn exported_names(broker: &Broker) -> BTreeSet<String> {
    let (status, text) = http_get(broker.admin_addr, "/metrics").expect("/metrics");
    assert_eq!(status, 200);
    let mut names: BTreeSet<String> = parse_metrics(&text).into_iter().map(|s| s.name).collect();
    for line in text.lines() {
        let Some(declaration) = line.strip_prefix("# TYPE ") else {
            continue;
        };
        let (name, kind) = declaration.split_once(' ').expect("# TYPE name kind");
        names.insert(name.to_string());
        if kind == "histogram" {
            for suffix in ["_bucket", "_sum", "_count"] {
                names.insert(format!("{name}{suffix}"));
            }
        }
    }
    names
}

#[test]
fn dashboard_and_alerts_use_only_exported_metrics() {
    let dashboard_text =
        std::fs::read_to_string(ops_file("grafana-dashboard.json")).expect("the dashboard");
    let dashboard: serde_json::Value =
        serde_json::from_str(&dashboard_text).expect("the dashboard is JSON");
    let mut queries = Vec::new();
    queries_in(&dashboard, &mut queries);
    assert!(queries.len() >= 30, "{} queries", queries.len());
    let used_by_dashboard: BTreeSet<String> =
        queries.iter().flat_map(|q| metric_names_in(q)).collect();
    let rules = std::fs::read_to_string(ops_file("ringlog-alerts.yml")).expect("the rules");
    let used_by_alerts = metric_names_in(&rules);

    let broker = Broker::start_with(&["--metrics-per-partition"]);
    let exported = exported_names(&broker);
    let missing: Vec<&String> = used_by_dashboard
        .iter()
        .chain(&used_by_alerts)
        .filter(|name| !exported.contains(*name))
        .collect();
    assert!(
        missing.is_empty(),
        "used but not exported: {missing:?}\nexported: {exported:?}"
    );
}
