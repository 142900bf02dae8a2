//! `ringlog bench` against the real broker, small: its JSON result has the message counts it
//! was asked for and ordered percentiles, and its plot is a well-formed SVG. Figures of time
//! are never asserted on.

mod common_cli;
mod common_kafka;

use std::path::Path;

use common_cli::ringlog;
use common_kafka::Broker;
use serde_json::Value;

const MESSAGES: u64 = 20_000;

fn read_json(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).expect("the JSON result was written");
    serde_json::from_str(&text).expect("the result is JSON")
}

fn number(value: &Value, what: &str) -> f64 {
    value
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {value}"))
}

/// p50 ≤ p90 ≤ p99 ≤ p99.9 ≤ max, all positive, `count` samples, and a percentile curve that
/// never goes down.
fn assert_latency_plausible(latency: &Value, count: u64) {
    assert_eq!(latency["count"], count, "{latency}");
    let figures: Vec<f64> = ["min_ms", "p50_ms", "p90_ms", "p99_ms", "p99_9_ms", "max_ms"]
        .iter()
        .map(|name| number(&latency[*name], name))
        .collect();
    assert!(figures[0] > 0.0, "{latency}");
    assert!(
        figures.windows(2).all(|pair| pair[0] <= pair[1]),
        "percentiles out of order: {figures:?}"
    );
    let curve: Vec<f64> = latency["percentiles"]
        .as_array()
        .expect("percentile curve")
        .iter()
        .map(|point| number(&point["latency_ms"], "curve point"))
        .collect();
    assert!(curve.len() > 10, "{curve:?}");
    assert!(curve.windows(2).all(|pair| pair[0] <= pair[1]), "{curve:?}");
    let slots = latency["over_time"].as_array().expect("latency over time");
    let in_slots: u64 = slots.iter().filter_map(|slot| slot["count"].as_u64()).sum();
    assert_eq!(in_slots, count, "every sample lands in a time slot");
}

fn assert_svg(path: &Path) {
    let text = std::fs::read_to_string(path).expect("the plot was written");
    assert!(text.starts_with("<svg"), "{}", &text[..text.len().min(200)]);
    let document = roxmltree::Document::parse(&text).expect("the plot is well-formed XML");
    assert_eq!(document.root_element().tag_name().name(), "svg");
    let texts: Vec<&str> = document
        .descendants()
        .filter(|node| node.has_tag_name("text"))
        .filter_map(|node| node.text())
        .collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("latency (ms)") || t.contains("messages per second")),
        "axis titles are drawn as text: {texts:?}"
    );
}

#[test]
fn produce_consume_and_e2e_results_are_plausible() {
    let broker = Broker::start();
    let brokers = broker.kafka_addr.to_string();
    let dir = tempfile::tempdir().expect("temporary directory");
    let file = |name: &str| dir.path().join(name);
    let path = |name: &str| file(name).to_str().expect("UTF-8 path").to_string();
    let count = MESSAGES.to_string();

    let produced = ringlog(
        &brokers,
        &[
            "bench",
            "produce",
            "--topic",
            "bench",
            "--partitions",
            "2",
            "--count",
            &count,
            "--message-size-bytes",
            "200",
            "--producers",
            "2",
            "--json",
            &path("produce.json"),
            "--plot",
            &path("produce.svg"),
        ],
        b"",
    )
    .ok();
    let summary = produced.stdout_text();
    assert!(summary.contains("produced: 20,000 messages"), "{summary}");
    assert!(summary.contains("p99.9"), "{summary}");
    let result = read_json(&file("produce.json"));
    assert_eq!(result["kind"], "produce");
    assert_eq!(result["settings"]["count"], MESSAGES);
    assert_eq!(result["settings"]["partitions"], 2);
    assert_eq!(result["produce"]["messages"], MESSAGES);
    assert_eq!(result["produce"]["errors"], 0);
    assert_eq!(result["produce"]["bytes"], MESSAGES * 200);
    assert!(number(&result["produce"]["msgs_per_s"], "msgs/s") > 0.0);
    assert!(result["consume"].is_null());
    assert_latency_plausible(&result["produce_latency"], MESSAGES);
    assert_svg(&file("produce.svg"));

    ringlog(
        &brokers,
        &[
            "bench",
            "consume",
            "--topic",
            "bench",
            "--consumers",
            "2",
            "--json",
            &path("consume.json"),
            "--plot",
            &path("consume.svg"),
        ],
        b"",
    )
    .ok();
    let result = read_json(&file("consume.json"));
    assert_eq!(result["kind"], "consume");
    assert_eq!(result["consume"]["messages"], MESSAGES);
    assert_eq!(result["consume"]["bytes"], MESSAGES * 200);
    assert!(result["produce"].is_null());
    assert_svg(&file("consume.svg"));

    ringlog(
        &brokers,
        &[
            "bench",
            "e2e",
            "--topic",
            "bench",
            "--count",
            &count,
            "--acks",
            "1",
            "--compression",
            "lz4",
            "--json",
            &path("e2e.json"),
            "--plot",
            &path("e2e.svg"),
        ],
        b"",
    )
    .ok();
    let result = read_json(&file("e2e.json"));
    assert_eq!(result["kind"], "e2e");
    assert_eq!(result["produce"]["messages"], MESSAGES);
    // Only this run's messages count, not the 20,000 the topic already held.
    assert_eq!(result["consume"]["messages"], MESSAGES);
    assert_latency_plausible(&result["produce_latency"], MESSAGES);
    assert_latency_plausible(&result["end_to_end_latency"], MESSAGES);
    assert_eq!(result["notes"], serde_json::json!([]));
    assert_svg(&file("e2e.svg"));
}
