//! `ringlog tune`: checks and applies the host settings a profile names (`profile`): CPU
//! frequency governor, IRQ affinity of NICs and disks, I/O schedulers, transparent huge pages,
//! the memlock limit and sysctls. Everything is read from and written to `/proc` and `/sys`
//! with plain `std::fs`: this runs as a command-line tool, never on a shard.
//!
//! `check` turns a profile into `Item`s, one per setting: what it is, what the profile wants,
//! whether they differ, why it matters, and the file writes that would fix it. `apply` makes
//! those writes (or lists them for a dry run) and reports each one that fails, without
//! stopping at the first.

mod checks;
mod cpulist;
pub mod profile;
mod report;

use std::io;
use std::path::{Path, PathBuf};

pub use profile::Profile;
pub use report::{print_apply, print_check};

#[derive(Debug, thiserror::Error)]
pub enum TuneError {
    #[error(
        "profile '{profile}' is neither a built-in profile ({known}) nor a readable file: {source}"
    )]
    ProfileUnreadable {
        profile: String,
        known: String,
        source: io::Error,
    },
    #[error("{profile}: {reason}")]
    ProfileInvalid { profile: String, reason: String },
}

/// The machine's `/proc` and `/sys`, under `root` (`/` for the real ones; a directory tree of
/// the same shape in tests).
#[derive(Debug, Clone)]
pub struct Host {
    root: PathBuf,
}

impl Host {
    pub fn new(root: impl Into<PathBuf>) -> Self {
        Host { root: root.into() }
    }

    /// `absolute` (`/proc/sys/vm/swappiness`) under the root.
    pub fn path(&self, absolute: &str) -> PathBuf {
        self.root.join(absolute.trim_start_matches('/'))
    }

    /// A small file's contents without the trailing newline; `None` when it cannot be read.
    fn read(&self, path: &Path) -> Option<String> {
        std::fs::read_to_string(path)
            .ok()
            .map(|text| text.trim_end().to_string())
    }

    /// Names of the entries of a directory, sorted; empty when it cannot be read.
    fn list(&self, path: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(path)
            .map(|entries| {
                entries
                    .filter_map(|e| e.ok())
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }
}

/// How a setting compares with the profile.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// As the profile wants.
    Ok,
    /// Differs; `apply` can change it by writing files.
    Change,
    /// Differs, and needs a step `tune` does not take (the hint says which).
    Manual,
    /// Not present on this machine (no cpufreq in a VM, no such device): nothing to do.
    Absent,
}

impl Status {
    pub fn label(self) -> &'static str {
        match self {
            Status::Ok => "ok",
            Status::Change => "CHANGE",
            Status::Manual => "MANUAL",
            Status::Absent => "n/a",
        }
    }
}

/// One file write of a change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub path: PathBuf,
    pub value: String,
}

/// One setting as checked against the profile.
#[derive(Debug, Clone)]
pub struct Item {
    pub setting: String,
    pub current: String,
    pub wanted: String,
    pub status: Status,
    pub why: String,
    /// What brings the setting to `wanted` (for `Change`).
    pub writes: Vec<Write>,
}

/// Every setting the profile names, as it is on `host`.
pub fn check(host: &Host, profile: &Profile) -> Vec<Item> {
    let mut items = Vec::new();
    if let Some(governor) = profile.cpu.as_ref().and_then(|c| c.governor.as_deref()) {
        items.push(checks::governor(host, governor));
    }
    if let Some(irq) = &profile.irq {
        items.extend(checks::irqs(host, irq));
    }
    for block in &profile.block {
        items.extend(checks::schedulers(host, block));
    }
    if let Some(memory) = &profile.memory {
        if let Some(thp) = &memory.transparent_hugepages {
            items.push(checks::transparent_hugepages(host, thp));
        }
        if let Some(min_bytes) = memory.memlock_min_bytes {
            items.push(checks::memlock(min_bytes));
        }
    }
    for (name, wanted) in &profile.sysctl {
        items.push(checks::sysctl(host, name, wanted));
    }
    items
}

/// What happened to one change.
#[derive(Debug, Clone)]
pub enum Outcome {
    Applied,
    /// Dry run: these writes would be made.
    WouldApply,
    /// Needs a step `tune` does not take.
    Manual,
    Failed(String),
}

/// Makes the writes of every `Change` item (none on a dry run); each item's outcome, in order.
pub fn apply(items: &[Item], dry_run: bool) -> Vec<(&Item, Outcome)> {
    items
        .iter()
        .filter(|item| matches!(item.status, Status::Change | Status::Manual))
        .map(|item| {
            let outcome = if item.status == Status::Manual {
                Outcome::Manual
            } else if dry_run {
                Outcome::WouldApply
            } else {
                write_all(&item.writes)
            };
            (item, outcome)
        })
        .collect()
}

/// Every write is tried, even after one fails: the others are independent settings.
fn write_all(writes: &[Write]) -> Outcome {
    let failures: Vec<String> = writes
        .iter()
        .filter_map(|write| {
            std::fs::write(&write.path, &write.value)
                .err()
                .map(|error| format!("{}: {}", write.path.display(), explain(&error)))
        })
        .collect();
    if failures.is_empty() {
        Outcome::Applied
    } else {
        Outcome::Failed(failures.join("; "))
    }
}

/// Why a write to /proc or /sys failed, in the terms an operator acts on.
fn explain(error: &io::Error) -> String {
    match (error.kind(), error.raw_os_error()) {
        (io::ErrorKind::PermissionDenied, _) => "permission denied: run as root".into(),
        (_, Some(libc::EROFS)) => "read-only filesystem (a container's /proc or /sys?)".into(),
        (io::ErrorKind::NotFound, _) => "not present on this machine".into(),
        (_, Some(libc::EIO)) => {
            "refused by the kernel (a kernel-managed IRQ cannot be moved)".into()
        }
        (_, Some(libc::EINVAL)) => "value refused by the kernel".into(),
        _ => error.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_write_is_reported_and_the_others_still_made() {
        let dir = tempfile::tempdir().unwrap();
        let good = dir.path().join("good");
        let blocked = dir.path().join("a-file");
        std::fs::write(&blocked, "x").unwrap();
        let writes = [
            Write {
                path: blocked.join("below-a-file"),
                value: "1".into(),
            },
            Write {
                path: good.clone(),
                value: "2".into(),
            },
        ];
        match write_all(&writes) {
            Outcome::Failed(reason) => assert!(reason.contains("below-a-file"), "{reason}"),
            other => panic!("{other:?}"),
        }
        assert_eq!(std::fs::read_to_string(good).unwrap(), "2");
    }
}
