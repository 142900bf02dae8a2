//! Tuning profiles: TOML files naming the host settings a broker wants (`tuning/*.toml`). The
//! repository's profiles are built into the binary, so `--profile production` works anywhere;
//! a path to a file works too. A profile names only what it wants changed; `tune` leaves
//! everything else alone.

use std::collections::BTreeMap;
use std::path::Path;

use serde::Deserialize;

use super::TuneError;

/// The profiles shipped in `tuning/`, by name.
pub const BUILT_IN: [(&str, &str); 2] = [
    ("production", include_str!("../../tuning/production.toml")),
    ("vm", include_str!("../../tuning/vm.toml")),
];

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Profile {
    pub description: Option<String>,
    pub cpu: Option<CpuProfile>,
    pub irq: Option<IrqProfile>,
    #[serde(default)]
    pub block: Vec<BlockProfile>,
    pub memory: Option<MemoryProfile>,
    /// Kernel parameters by their `sysctl` name (`vm.swappiness`).
    #[serde(default)]
    pub sysctl: BTreeMap<String, SysctlWanted>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CpuProfile {
    /// cpufreq scaling governor for every CPU (`performance`).
    pub governor: Option<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IrqProfile {
    /// CPUs that take NIC and disk interrupts, as a list (`0,1`) or `auto` (CPU 0 and its
    /// hyperthread siblings).
    pub housekeeping_cpus: Option<String>,
    /// `stopped`: irqbalance must not run (it moves interrupts back onto shard cores).
    pub irqbalance: Option<IrqbalanceWanted>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum IrqbalanceWanted {
    Stopped,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BlockProfile {
    /// Block device names, with a trailing `*` as a wildcard (`nvme*`).
    pub devices: String,
    /// I/O scheduler (`none`, `mq-deadline`…).
    pub scheduler: String,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MemoryProfile {
    /// `always`, `madvise` or `never`.
    pub transparent_hugepages: Option<String>,
    /// Smallest acceptable locked-memory limit (RLIMIT_MEMLOCK) for the broker.
    pub memlock_min_bytes: Option<u64>,
}

/// What a sysctl should be: exactly a value, or within bounds.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(untagged)]
pub enum SysctlWanted {
    Number(i64),
    Text(String),
    Bounds(Bounds),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Bounds {
    pub min: Option<i64>,
    pub max: Option<i64>,
}

impl Profile {
    /// A built-in profile by name, or a profile file by path.
    pub fn load(name_or_path: &str) -> Result<(String, Profile), TuneError> {
        let (origin, text) = match BUILT_IN.iter().find(|(name, _)| *name == name_or_path) {
            Some((name, text)) => (format!("built-in profile '{name}'"), text.to_string()),
            None => {
                let path = Path::new(name_or_path);
                let text = std::fs::read_to_string(path).map_err(|source| {
                    TuneError::ProfileUnreadable {
                        profile: name_or_path.to_string(),
                        known: BUILT_IN
                            .iter()
                            .map(|(n, _)| *n)
                            .collect::<Vec<_>>()
                            .join(", "),
                        source,
                    }
                })?;
                (format!("profile {}", path.display()), text)
            }
        };
        let profile: Profile = toml::from_str(&text).map_err(|e| TuneError::ProfileInvalid {
            profile: origin.clone(),
            reason: e.to_string(),
        })?;
        profile
            .validate()
            .map_err(|reason| TuneError::ProfileInvalid {
                profile: origin.clone(),
                reason,
            })?;
        Ok((origin, profile))
    }

    fn validate(&self) -> Result<(), String> {
        for (name, wanted) in &self.sysctl {
            let valid_name = !name.is_empty()
                && name.split('.').all(|part| {
                    !part.is_empty()
                        && part
                            .chars()
                            .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
                });
            if !valid_name {
                return Err(format!("sysctl '{name}' is not a sysctl name"));
            }
            if let SysctlWanted::Bounds(Bounds { min, max }) = wanted {
                match (min, max) {
                    (None, None) => {
                        return Err(format!("sysctl '{name}': give min, max or a value"))
                    }
                    (Some(min), Some(max)) if min > max => {
                        return Err(format!("sysctl '{name}': min is above max"))
                    }
                    _ => {}
                }
            }
        }
        if let Some(memory) = &self.memory {
            if let Some(thp) = &memory.transparent_hugepages {
                if !["always", "madvise", "never"].contains(&thp.as_str()) {
                    return Err(format!(
                        "transparent_hugepages '{thp}': always, madvise or never"
                    ));
                }
            }
        }
        if let Some(cpus) = self
            .irq
            .as_ref()
            .and_then(|irq| irq.housekeeping_cpus.as_deref())
        {
            if cpus != "auto" {
                crate::config::parse_cpu_list(cpus)
                    .map_err(|e| format!("housekeeping_cpus: {e}"))?;
            }
        }
        for block in &self.block {
            let pattern_ok = !block.devices.is_empty() && !block.devices.contains('/');
            if !pattern_ok || block.scheduler.trim().is_empty() {
                return Err(format!(
                    "block devices '{}': a device name pattern and a scheduler",
                    block.devices
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn built_in_profiles_load() {
        for (name, _) in BUILT_IN {
            let (_, profile) = Profile::load(name).unwrap();
            assert!(!profile.sysctl.is_empty(), "{name}");
        }
        let (_, production) = Profile::load("production").unwrap();
        assert_eq!(
            production.sysctl["vm.swappiness"],
            SysctlWanted::Bounds(Bounds {
                min: None,
                max: Some(1)
            })
        );
    }

    #[test]
    fn bad_profiles_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("bad.toml");
        for text in [
            "[sysctl]\n\"vm.swappiness\" = { min = 5, max = 1 }\n",
            "[sysctl]\n\"../etc/passwd\" = 1\n",
            "[memory]\ntransparent_hugepages = \"sometimes\"\n",
            "[irq]\nhousekeeping_cpus = \"x\"\n",
            "surprise = 1\n",
        ] {
            std::fs::write(&path, text).unwrap();
            assert!(Profile::load(path.to_str().unwrap()).is_err(), "{text}");
        }
        assert!(Profile::load("no-such-profile").is_err());
    }
}
