//! A topic's config overrides: the validated, non-default Kafka topic configs set on it, and
//! what follows from them: the effective `LogConfig` of its partitions, the DescribeConfigs
//! listing, and Kafka's AlterConfigs / IncrementalAlterConfigs operations.
//!
//! `cleanup.policy` is accepted and stored, but compaction is not implemented: a topic whose
//! policy lacks `delete` keeps all of its data (retention is switched off) rather than losing
//! keys that compaction would have kept.

use std::collections::BTreeMap;

use super::config_defs::{self, ConfigDef, ConfigType, CLEANUP_POLICY, CLEANUP_POLICY_DELETE};
use super::error::MetadataError;
use crate::storage::LogConfig;

/// A config value longer than this is refused: every valid value is far shorter, and the
/// bound keeps metadata records small.
pub const CONFIG_VALUE_LENGTH_MAX_BYTES: usize = 1024;

/// Validated overrides, name → value (trimmed, otherwise as given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicConfigs {
    overrides: BTreeMap<String, String>,
}

/// One IncrementalAlterConfigs operation (Kafka's `AlterConfigOp.OpType` 0..3).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Sets the override.
    Set(String, String),
    /// Removes the override: the config returns to its default.
    Delete(String),
    /// LIST configs only: adds the comma-separated elements missing from the current value.
    Append(String, String),
    /// LIST configs only: removes the comma-separated elements from the current value.
    Subtract(String, String),
}

/// Where a described value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// An override set on the topic. Kafka: TOPIC_CONFIG (1).
    Topic,
    /// The default. Kafka: DEFAULT_CONFIG (5).
    Default,
}

impl ConfigSource {
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigSource::Topic => 1,
            ConfigSource::Default => 5,
        }
    }
}

/// One row of DescribeConfigs for a topic.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    pub name: &'static str,
    pub value: String,
    pub source: ConfigSource,
    pub config_type: ConfigType,
    pub read_only: bool,
    pub is_sensitive: bool,
}

impl ConfigEntry {
    pub fn is_default(&self) -> bool {
        self.source == ConfigSource::Default
    }
}

impl ConfigChange {
    /// From IncrementalAlterConfigs: `op` 0 SET, 1 DELETE, 2 APPEND, 3 SUBTRACT.
    pub fn from_kafka(op: i8, name: String, value: Option<String>) -> Result<Self, MetadataError> {
        let value = || {
            value.clone().ok_or_else(|| {
                MetadataError::InvalidRequest(format!("Null value not supported for : {name}"))
            })
        };
        Ok(match op {
            0 => ConfigChange::Set(name.clone(), value()?),
            1 => ConfigChange::Delete(name),
            2 => ConfigChange::Append(name.clone(), value()?),
            3 => ConfigChange::Subtract(name.clone(), value()?),
            _ => {
                return Err(MetadataError::InvalidRequest(format!(
                    "Unknown alter configs operation {op} for config {name}"
                )))
            }
        })
    }

    pub fn name(&self) -> &str {
        match self {
            ConfigChange::Set(name, _)
            | ConfigChange::Delete(name)
            | ConfigChange::Append(name, _)
            | ConfigChange::Subtract(name, _) => name,
        }
    }
}

fn known(name: &str) -> Result<&'static ConfigDef, MetadataError> {
    config_defs::find(name)
        .ok_or_else(|| MetadataError::InvalidConfig(format!("Unknown topic config name: {name}")))
}

fn check_value(def: &ConfigDef, value: &str) -> Result<(), MetadataError> {
    if value.len() > CONFIG_VALUE_LENGTH_MAX_BYTES {
        return Err(MetadataError::InvalidConfig(format!(
            "Invalid value for configuration {}: longer than {CONFIG_VALUE_LENGTH_MAX_BYTES} bytes",
            def.name
        )));
    }
    def.validate(value).map_err(MetadataError::InvalidConfig)
}

fn refuse_duplicates<'a>(names: impl Iterator<Item = &'a str>) -> Result<(), MetadataError> {
    let mut seen = std::collections::BTreeSet::new();
    for name in names {
        if !seen.insert(name) {
            return Err(MetadataError::InvalidRequest(format!(
                "Error due to duplicate config keys: {name}"
            )));
        }
    }
    Ok(())
}

impl TopicConfigs {
    /// Validates a full set of overrides, as CreateTopics and AlterConfigs carry them.
    pub fn parse(pairs: Vec<(String, String)>) -> Result<Self, MetadataError> {
        refuse_duplicates(pairs.iter().map(|(name, _)| name.as_str()))?;
        let mut overrides = BTreeMap::new();
        for (name, value) in pairs {
            let def = known(&name)?;
            check_value(def, &value)?;
            overrides.insert(name, value.trim().to_string());
        }
        Ok(TopicConfigs { overrides })
    }

    /// Validates overrides read back from the metadata log.
    pub(crate) fn from_map(map: BTreeMap<String, String>) -> Result<Self, MetadataError> {
        Self::parse(map.into_iter().collect())
    }

    pub(crate) fn to_map(&self) -> BTreeMap<String, String> {
        self.overrides.clone()
    }

    pub fn get(&self, name: &str) -> Option<&str> {
        self.overrides.get(name).map(String::as_str)
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.overrides
            .iter()
            .map(|(name, value)| (name.as_str(), value.as_str()))
    }

    pub fn len(&self) -> usize {
        self.overrides.len()
    }

    pub fn is_empty(&self) -> bool {
        self.overrides.is_empty()
    }

    /// Applies IncrementalAlterConfigs operations, in order, to a copy. Append and Subtract
    /// start from the current value: the override, else Kafka's default.
    pub fn with_changes(&self, changes: &[ConfigChange]) -> Result<Self, MetadataError> {
        refuse_duplicates(changes.iter().map(ConfigChange::name))?;
        let mut overrides = self.overrides.clone();
        for change in changes {
            let def = known(change.name())?;
            match change {
                ConfigChange::Set(name, value) => {
                    check_value(def, value)?;
                    overrides.insert(name.clone(), value.trim().to_string());
                }
                ConfigChange::Delete(name) => {
                    overrides.remove(name);
                }
                ConfigChange::Append(name, value) | ConfigChange::Subtract(name, value) => {
                    if def.config_type != ConfigType::List {
                        let verb = match change {
                            ConfigChange::Append(..) => "append",
                            _ => "subtract",
                        };
                        return Err(MetadataError::InvalidConfig(format!(
                            "Config value {verb} is not allowed for config key: {name}"
                        )));
                    }
                    check_value(def, value)?;
                    // LIST configs have Kafka's defaults, never the log's.
                    let current = overrides
                        .get(name)
                        .cloned()
                        .unwrap_or_else(|| def.default_value(&LogConfig::default()));
                    let mut elements: Vec<&str> = config_defs::split_list(&current).collect();
                    let operands: Vec<&str> = config_defs::split_list(value).collect();
                    if matches!(change, ConfigChange::Append(..)) {
                        for operand in operands {
                            if !elements.contains(&operand) {
                                elements.push(operand);
                            }
                        }
                    } else {
                        elements.retain(|e| !operands.contains(e));
                    }
                    let joined = elements.join(",");
                    overrides.insert(name.clone(), joined);
                }
            }
        }
        Ok(TopicConfigs { overrides })
    }

    /// The log settings of this topic's partitions: the broker-wide `defaults` with the
    /// overrides the partition log understands applied on top.
    pub fn effective_log_config(&self, defaults: &LogConfig) -> LogConfig {
        let mut config = defaults.clone();
        for (name, value) in self.iter() {
            match config.set(name, value) {
                Ok(_) => {}
                // Kafka allows 0 for both; the log's parser wants a positive number.
                Err(_) if name == "index.interval.bytes" => config.index_interval_bytes = 1,
                Err(_) if name == "max.message.bytes" => config.max_message_bytes = 0,
                Err(reason) => {
                    debug_assert!(false, "validated config refused by the log: {reason}");
                    tracing::error!(%reason, "topic config ignored by the partition log");
                }
            }
        }
        let policy = self.get(CLEANUP_POLICY).unwrap_or(CLEANUP_POLICY_DELETE);
        config.keys_required = config_defs::split_list(policy).any(|p| p == "compact");
        if !config_defs::split_list(policy).any(|p| p == CLEANUP_POLICY_DELETE) {
            // Compaction is not implemented: keep everything rather than delete by age or size.
            config.retention_ms = None;
            config.retention_bytes = None;
        }
        config
    }

    /// Every known config with its effective value, for DescribeConfigs.
    pub fn describe(&self, log_defaults: &LogConfig) -> Vec<ConfigEntry> {
        config_defs::CONFIG_DEFS
            .iter()
            .map(|def| {
                let (value, source) = match self.get(def.name) {
                    Some(value) => (value.to_string(), ConfigSource::Topic),
                    None => (def.default_value(log_defaults), ConfigSource::Default),
                };
                ConfigEntry {
                    name: def.name,
                    value,
                    source,
                    config_type: def.config_type,
                    read_only: false,
                    is_sensitive: false,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pairs(items: &[(&str, &str)]) -> Vec<(String, String)> {
        items
            .iter()
            .map(|(n, v)| (n.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn parse_validates_names_values_and_duplicates() {
        let configs = TopicConfigs::parse(pairs(&[
            ("retention.ms", " 60000 "),
            ("cleanup.policy", "delete"),
        ]))
        .unwrap();
        assert_eq!(configs.get("retention.ms"), Some("60000"));
        assert_eq!(configs.len(), 2);

        let unknown = TopicConfigs::parse(pairs(&[("retention.hours", "1")])).unwrap_err();
        assert_eq!(unknown.kafka_code(), 40);
        assert_eq!(
            unknown.to_string(),
            "Unknown topic config name: retention.hours"
        );
        let bad = TopicConfigs::parse(pairs(&[("segment.bytes", "10")])).unwrap_err();
        assert_eq!(bad.kafka_code(), 40);
        let duplicate = TopicConfigs::parse(pairs(&[("retention.ms", "1"), ("retention.ms", "2")]))
            .unwrap_err();
        assert_eq!(duplicate.kafka_code(), 42);
        let long = "1".repeat(CONFIG_VALUE_LENGTH_MAX_BYTES + 1);
        assert!(TopicConfigs::parse(vec![("retention.ms".into(), long)]).is_err());
    }

    #[test]
    fn effective_log_config_applies_overrides_over_broker_defaults() {
        let defaults = LogConfig {
            retention_bytes: Some(1 << 30),
            ..LogConfig::default()
        };
        let configs = TopicConfigs::parse(pairs(&[
            ("retention.ms", "-1"),
            ("segment.bytes", "1048576"),
            ("max.message.bytes", "2000000"),
            ("flush.messages", "1"),
            ("compression.type", "lz4"),
        ]))
        .unwrap();
        let log = configs.effective_log_config(&defaults);
        assert_eq!(log.retention_ms, None);
        assert_eq!(log.retention_bytes, Some(1 << 30), "broker default kept");
        assert_eq!(log.segment_bytes, 1_048_576);
        assert_eq!(log.max_message_bytes, 2_000_000);
        assert_eq!(log.flush_messages, Some(1));
        assert_eq!(log.index_interval_bytes, defaults.index_interval_bytes);
        assert_eq!(
            TopicConfigs::default().effective_log_config(&defaults),
            defaults
        );

        let zeros = TopicConfigs::parse(pairs(&[
            ("index.interval.bytes", "0"),
            ("max.message.bytes", "0"),
        ]))
        .unwrap();
        let log = zeros.effective_log_config(&defaults);
        assert_eq!(log.index_interval_bytes, 1);
        assert_eq!(log.max_message_bytes, 0);
    }

    #[test]
    fn compact_only_topics_keep_their_data() {
        let defaults = LogConfig::default();
        for (policy, kept) in [
            ("compact", true),
            ("", true),
            ("compact,delete", false),
            ("delete", false),
        ] {
            let configs = TopicConfigs::parse(pairs(&[("cleanup.policy", policy)])).unwrap();
            let log = configs.effective_log_config(&defaults);
            assert_eq!(log.retention_ms.is_none(), kept, "{policy:?}");
        }
    }

    #[test]
    fn describe_lists_every_config_with_its_source() {
        let defaults = LogConfig::default();
        let configs = TopicConfigs::parse(pairs(&[("retention.ms", "1000")])).unwrap();
        let entries = configs.describe(&defaults);
        assert_eq!(entries.len(), config_defs::CONFIG_DEFS.len());
        let entry = |name: &str| entries.iter().find(|e| e.name == name).unwrap().clone();
        let retention = entry("retention.ms");
        assert_eq!(retention.value, "1000");
        assert_eq!(retention.source, ConfigSource::Topic);
        assert_eq!(retention.source.kafka_code(), 1);
        assert!(!retention.is_default());
        let segment = entry("segment.bytes");
        assert_eq!(segment.value, defaults.segment_bytes.to_string());
        assert!(segment.is_default());
        assert_eq!(segment.source.kafka_code(), 5);
        assert_eq!(segment.config_type.kafka_code(), 3);
        assert!(entries.iter().all(|e| !e.read_only && !e.is_sensitive));
    }

    #[test]
    fn incremental_changes_follow_kafka() {
        let configs = TopicConfigs::parse(pairs(&[("retention.ms", "1000")])).unwrap();
        let changed = configs
            .with_changes(&[
                ConfigChange::Set("segment.ms".into(), "60000".into()),
                ConfigChange::Delete("retention.ms".into()),
                ConfigChange::Append("cleanup.policy".into(), "compact".into()),
            ])
            .unwrap();
        assert_eq!(changed.get("segment.ms"), Some("60000"));
        assert_eq!(changed.get("retention.ms"), None);
        assert_eq!(
            changed.get("cleanup.policy"),
            Some("delete,compact"),
            "append starts from the default"
        );
        let subtracted = changed
            .with_changes(&[ConfigChange::Subtract(
                "cleanup.policy".into(),
                "delete".into(),
            )])
            .unwrap();
        assert_eq!(subtracted.get("cleanup.policy"), Some("compact"));
        let again = subtracted
            .with_changes(&[ConfigChange::Append(
                "cleanup.policy".into(),
                "compact".into(),
            )])
            .unwrap();
        assert_eq!(
            again.get("cleanup.policy"),
            Some("compact"),
            "no duplicates"
        );

        let not_a_list = configs
            .with_changes(&[ConfigChange::Append("retention.ms".into(), "5".into())])
            .unwrap_err();
        assert_eq!(not_a_list.kafka_code(), 40);
        let bad_element = configs
            .with_changes(&[ConfigChange::Append(
                "cleanup.policy".into(),
                "archive".into(),
            )])
            .unwrap_err();
        assert_eq!(bad_element.kafka_code(), 40);
        let unknown = configs
            .with_changes(&[ConfigChange::Delete("nope".into())])
            .unwrap_err();
        assert_eq!(unknown.kafka_code(), 40);
        let duplicate = configs
            .with_changes(&[
                ConfigChange::Set("retention.ms".into(), "1".into()),
                ConfigChange::Delete("retention.ms".into()),
            ])
            .unwrap_err();
        assert_eq!(duplicate.kafka_code(), 42);
        assert_eq!(
            configs.with_changes(&[]).unwrap(),
            configs,
            "no changes, same configs"
        );
    }

    #[test]
    fn kafka_operation_codes() {
        assert_eq!(
            ConfigChange::from_kafka(1, "retention.ms".into(), None).unwrap(),
            ConfigChange::Delete("retention.ms".into())
        );
        assert_eq!(
            ConfigChange::from_kafka(2, "cleanup.policy".into(), Some("compact".into())).unwrap(),
            ConfigChange::Append("cleanup.policy".into(), "compact".into())
        );
        assert_eq!(
            ConfigChange::from_kafka(0, "retention.ms".into(), None)
                .unwrap_err()
                .kafka_code(),
            42
        );
        assert_eq!(
            ConfigChange::from_kafka(4, "retention.ms".into(), Some("1".into()))
                .unwrap_err()
                .kafka_code(),
            42
        );
    }
}
