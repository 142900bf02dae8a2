//! The Kafka topic configs ringlog knows: each one's name, type, default and validation rule,
//! as Kafka 3.9 defines them (the last release that still knows every name here). Defaults of
//! the settings the partition log owns come from the broker-wide `LogConfig` instead, so that
//! DescribeConfigs shows what ringlog really does.
//!
//! Parsing follows Kafka's `ConfigDef`: values are trimmed, numbers are Java `int`/`long`,
//! booleans are `true`/`false` in any case, lists are comma-separated.

use crate::storage::LogConfig;

/// Kafka's config types, with the codes DescribeConfigs v3+ reports (`ConfigType`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    Boolean,
    String,
    Int,
    Long,
    Double,
    List,
}

impl ConfigType {
    pub fn kafka_code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
        }
    }
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum Rule {
    Any,
    /// Integers at least this.
    AtLeast(i64),
    /// Doubles within [min, max].
    Between(f64, f64),
    /// One of these strings, case-sensitive.
    OneOf(&'static [&'static str]),
    /// A list whose every element is one of these strings.
    ListOf(&'static [&'static str]),
}

#[derive(Debug, Clone, Copy)]
pub(crate) enum DefaultValue {
    Kafka(&'static str),
    /// Owned by the partition log: the broker-wide `LogConfig` says.
    Log(fn(&LogConfig) -> String),
}

#[derive(Debug, Clone, Copy)]
pub(crate) struct ConfigDef {
    pub name: &'static str,
    pub config_type: ConfigType,
    pub default: DefaultValue,
    pub rule: Rule,
}

/// Kafka's "never" for time and count limits.
const LONG_MAX: &str = "9223372036854775807";
pub(crate) const CLEANUP_POLICY: &str = "cleanup.policy";
pub(crate) const CLEANUP_POLICY_DELETE: &str = "delete";

fn optional_u64(value: Option<u64>, absent: i64) -> String {
    value
        .map_or(absent, |v| i64::try_from(v).unwrap_or(i64::MAX))
        .to_string()
}

/// Every known topic config, sorted by name (the order DescribeConfigs lists them in).
pub(crate) const CONFIG_DEFS: &[ConfigDef] = &[
    ConfigDef {
        name: CLEANUP_POLICY,
        config_type: ConfigType::List,
        default: DefaultValue::Kafka(CLEANUP_POLICY_DELETE),
        rule: Rule::ListOf(&["compact", "delete"]),
    },
    ConfigDef {
        name: "compression.type",
        config_type: ConfigType::String,
        default: DefaultValue::Kafka("producer"),
        rule: Rule::OneOf(&["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"]),
    },
    ConfigDef {
        name: "delete.retention.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Kafka("86400000"),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "file.delete.delay.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Kafka("60000"),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "flush.messages",
        config_type: ConfigType::Long,
        default: DefaultValue::Log(|c| optional_u64(c.flush_messages, i64::MAX)),
        rule: Rule::AtLeast(1),
    },
    ConfigDef {
        name: "flush.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Log(|c| optional_u64(c.flush_ms, i64::MAX)),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "index.interval.bytes",
        config_type: ConfigType::Int,
        default: DefaultValue::Log(|c| c.index_interval_bytes.to_string()),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "max.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Kafka(LONG_MAX),
        rule: Rule::AtLeast(1),
    },
    ConfigDef {
        name: "max.message.bytes",
        config_type: ConfigType::Int,
        default: DefaultValue::Log(|c| c.max_message_bytes.to_string()),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "message.downconversion.enable",
        config_type: ConfigType::Boolean,
        default: DefaultValue::Kafka("true"),
        rule: Rule::Any,
    },
    ConfigDef {
        name: "message.timestamp.after.max.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Log(|c| optional_u64(c.timestamp_after_max_ms, i64::MAX)),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "message.timestamp.before.max.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Log(|c| optional_u64(c.timestamp_before_max_ms, i64::MAX)),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "message.timestamp.difference.max.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Log(|c| optional_u64(c.timestamp_difference_max_ms, i64::MAX)),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "message.timestamp.type",
        config_type: ConfigType::String,
        default: DefaultValue::Log(|c| {
            if c.log_append_time {
                "LogAppendTime"
            } else {
                "CreateTime"
            }
            .to_string()
        }),
        rule: Rule::OneOf(&["CreateTime", "LogAppendTime"]),
    },
    ConfigDef {
        name: "min.cleanable.dirty.ratio",
        config_type: ConfigType::Double,
        default: DefaultValue::Kafka("0.5"),
        rule: Rule::Between(0.0, 1.0),
    },
    ConfigDef {
        name: "min.compaction.lag.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Kafka("0"),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "min.insync.replicas",
        config_type: ConfigType::Int,
        default: DefaultValue::Kafka("1"),
        rule: Rule::AtLeast(1),
    },
    ConfigDef {
        name: "preallocate",
        config_type: ConfigType::Boolean,
        default: DefaultValue::Kafka("false"),
        rule: Rule::Any,
    },
    ConfigDef {
        name: "retention.bytes",
        config_type: ConfigType::Long,
        default: DefaultValue::Log(|c| optional_u64(c.retention_bytes, -1)),
        rule: Rule::Any,
    },
    ConfigDef {
        name: "retention.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Log(|c| optional_u64(c.retention_ms, -1)),
        rule: Rule::AtLeast(-1),
    },
    ConfigDef {
        name: "segment.bytes",
        config_type: ConfigType::Int,
        default: DefaultValue::Log(|c| c.segment_bytes.to_string()),
        rule: Rule::AtLeast(14),
    },
    ConfigDef {
        name: "segment.index.bytes",
        config_type: ConfigType::Int,
        default: DefaultValue::Kafka("10485760"),
        rule: Rule::AtLeast(4),
    },
    ConfigDef {
        name: "segment.jitter.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Kafka("0"),
        rule: Rule::AtLeast(0),
    },
    ConfigDef {
        name: "segment.ms",
        config_type: ConfigType::Long,
        default: DefaultValue::Log(|c| optional_u64(c.segment_ms, i64::MAX)),
        rule: Rule::AtLeast(1),
    },
    ConfigDef {
        name: "unclean.leader.election.enable",
        config_type: ConfigType::Boolean,
        default: DefaultValue::Kafka("false"),
        rule: Rule::Any,
    },
];

pub(crate) fn find(name: &str) -> Option<&'static ConfigDef> {
    CONFIG_DEFS
        .binary_search_by(|def| def.name.cmp(name))
        .ok()
        .map(|i| &CONFIG_DEFS[i])
}

impl ConfigDef {
    pub fn default_value(&self, log_defaults: &LogConfig) -> String {
        match self.default {
            DefaultValue::Kafka(value) => value.to_string(),
            DefaultValue::Log(value_of) => value_of(log_defaults),
        }
    }

    /// Checks `value` as Kafka's `ConfigDef` would, with Kafka's message on failure.
    pub fn validate(&self, value: &str) -> Result<(), String> {
        let trimmed = value.trim();
        let invalid = |reason: String| {
            format!(
                "Invalid value {value} for configuration {}: {reason}",
                self.name
            )
        };
        let number = match self.config_type {
            ConfigType::Int => Some(
                trimmed
                    .parse::<i32>()
                    .map(i64::from)
                    .map_err(|_| invalid("Not a number of type INT".into()))?,
            ),
            ConfigType::Long => Some(
                trimmed
                    .parse::<i64>()
                    .map_err(|_| invalid("Not a number of type LONG".into()))?,
            ),
            ConfigType::Boolean => {
                if !trimmed.eq_ignore_ascii_case("true") && !trimmed.eq_ignore_ascii_case("false") {
                    return Err(invalid("Expected value to be either true or false".into()));
                }
                None
            }
            ConfigType::Double | ConfigType::String | ConfigType::List => None,
        };
        match self.rule {
            Rule::Any => Ok(()),
            Rule::AtLeast(min) => match number {
                Some(n) if n < min => Err(invalid(format!("Value must be at least {min}"))),
                _ => Ok(()),
            },
            Rule::Between(min, max) => {
                let x = trimmed
                    .parse::<f64>()
                    .map_err(|_| invalid("Not a number of type DOUBLE".into()))?;
                if x.is_nan() || x < min {
                    Err(invalid(format!("Value must be at least {min:?}")))
                } else if x > max {
                    Err(invalid(format!("Value must be no more than {max:?}")))
                } else {
                    Ok(())
                }
            }
            Rule::OneOf(allowed) => {
                if allowed.contains(&trimmed) {
                    Ok(())
                } else {
                    Err(invalid(format!(
                        "String must be one of: {}",
                        allowed.join(", ")
                    )))
                }
            }
            Rule::ListOf(allowed) => match split_list(trimmed).find(|e| !allowed.contains(e)) {
                Some(_) => Err(invalid(format!(
                    "String must be one of: {}",
                    allowed.join(", ")
                ))),
                None => Ok(()),
            },
        }
    }
}

/// The elements of a LIST value, as Kafka splits them: on commas, trimmed; "" is the empty
/// list.
pub(crate) fn split_list(value: &str) -> impl Iterator<Item = &str> {
    let value = value.trim();
    value
        .split(',')
        .map(str::trim)
        .filter(move |_| !value.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn table_is_sorted_and_complete() {
        assert!(CONFIG_DEFS.windows(2).all(|w| w[0].name < w[1].name));
        assert_eq!(CONFIG_DEFS.len(), 25);
        for def in CONFIG_DEFS {
            assert_eq!(find(def.name).map(|d| d.name), Some(def.name));
            let default = def.default_value(&LogConfig::default());
            assert_eq!(def.validate(&default), Ok(()), "default of {}", def.name);
        }
        assert!(find("log.retention.ms").is_none());
    }

    #[test]
    fn numbers_follow_their_types_and_bounds() {
        let segment_bytes = find("segment.bytes").unwrap();
        assert!(segment_bytes.validate("14").is_ok());
        assert!(segment_bytes.validate(" 1048576 ").is_ok());
        assert_eq!(
            segment_bytes.validate("13"),
            Err(
                "Invalid value 13 for configuration segment.bytes: Value must be at least 14"
                    .into()
            )
        );
        assert!(
            segment_bytes.validate("2147483648").is_err(),
            "INT overflow"
        );
        assert!(segment_bytes.validate("1e6").is_err());
        let retention_ms = find("retention.ms").unwrap();
        assert!(retention_ms.validate("-1").is_ok());
        assert!(retention_ms.validate("-2").is_err());
        assert!(retention_ms.validate("9223372036854775807").is_ok());
        assert!(retention_ms.validate("9223372036854775808").is_err());
        assert!(find("retention.bytes").unwrap().validate("-5").is_ok());
        assert!(find("segment.ms").unwrap().validate("0").is_err());
        assert!(find("min.insync.replicas").unwrap().validate("0").is_err());
        assert!(find("flush.messages").unwrap().validate("0").is_err());
    }

    #[test]
    fn strings_booleans_doubles_and_lists() {
        let compression = find("compression.type").unwrap();
        assert!(compression.validate("zstd").is_ok());
        assert!(compression.validate("ZSTD").is_err());
        assert!(compression.validate("brotli").is_err());
        let timestamp_type = find("message.timestamp.type").unwrap();
        assert!(timestamp_type.validate("LogAppendTime").is_ok());
        assert!(timestamp_type.validate("logappendtime").is_err());
        let preallocate = find("preallocate").unwrap();
        assert!(preallocate.validate("TRUE").is_ok());
        assert!(preallocate.validate("yes").is_err());
        let ratio = find("min.cleanable.dirty.ratio").unwrap();
        assert!(ratio.validate("0.25").is_ok());
        assert!(ratio.validate("1.5").is_err());
        assert!(ratio.validate("NaN").is_err());
        let cleanup = find(CLEANUP_POLICY).unwrap();
        assert!(cleanup.validate("compact,delete").is_ok());
        assert!(cleanup.validate(" delete , compact ").is_ok());
        assert!(cleanup.validate("").is_ok());
        assert!(cleanup.validate("delete,archive").is_err());
        assert_eq!(split_list(" a, b ,c").collect::<Vec<_>>(), ["a", "b", "c"]);
        assert_eq!(split_list(" ").count(), 0);
    }

    #[test]
    fn log_owned_defaults_come_from_the_broker() {
        let log = LogConfig {
            retention_ms: None,
            retention_bytes: Some(1024),
            flush_messages: None,
            ..LogConfig::default()
        };
        let value = |name: &str| find(name).unwrap().default_value(&log);
        assert_eq!(value("retention.ms"), "-1");
        assert_eq!(value("retention.bytes"), "1024");
        assert_eq!(value("flush.messages"), LONG_MAX);
        assert_eq!(value("segment.bytes"), log.segment_bytes.to_string());
        assert_eq!(value("compression.type"), "producer");
    }
}
