//! One check per kind of setting: read it under the host root, compare it with the profile,
//! and say which writes would fix it.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::cpulist;
use super::profile::{BlockProfile, Bounds, IrqProfile, IrqbalanceWanted, SysctlWanted};
use super::{Host, Item, Status, Write};

fn item(setting: impl Into<String>, current: impl Into<String>, wanted: impl Into<String>) -> Item {
    Item {
        setting: setting.into(),
        current: current.into(),
        wanted: wanted.into(),
        status: Status::Ok,
        why: String::new(),
        writes: Vec::new(),
    }
}

/// The selected word of a sysfs choice list: `none [mq-deadline] kyber` → `mq-deadline`.
fn selected(choices: &str) -> Option<&str> {
    let start = choices.find('[')? + 1;
    let end = start + choices[start..].find(']')?;
    Some(&choices[start..end])
}

fn offered(choices: &str) -> Vec<String> {
    choices
        .split_whitespace()
        .map(|w| w.trim_matches(['[', ']']).to_string())
        .collect()
}

pub fn governor(host: &Host, wanted: &str) -> Item {
    let cpu_dir = host.path("/sys/devices/system/cpu");
    let mut by_governor: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    let mut writes = Vec::new();
    let mut not_offered = false;
    for name in host.list(&cpu_dir) {
        let Some(cpu) = name
            .strip_prefix("cpu")
            .and_then(|n| n.parse::<usize>().ok())
        else {
            continue;
        };
        let freq = cpu_dir.join(&name).join("cpufreq");
        let Some(current) = host.read(&freq.join("scaling_governor")) else {
            continue;
        };
        if current != wanted {
            let available = host
                .read(&freq.join("scaling_available_governors"))
                .unwrap_or_default();
            not_offered |= !available.split_whitespace().any(|g| g == wanted);
            writes.push(Write {
                path: freq.join("scaling_governor"),
                value: wanted.to_string(),
            });
        }
        by_governor.entry(current).or_default().push(cpu);
    }
    let mut result = item("cpu frequency governor", "", wanted);
    if by_governor.is_empty() {
        result.current = "no cpufreq".into();
        result.status = Status::Absent;
        result.why = "the hypervisor or firmware controls CPU frequency here".into();
        return result;
    }
    result.current = by_governor
        .iter()
        .map(|(governor, cpus)| format!("{governor} on {}", cpulist::format(cpus)))
        .collect::<Vec<_>>()
        .join(", ");
    result.why = "shards poll and spin: frequency scaling adds wake-up latency to requests".into();
    if writes.is_empty() {
        return result;
    }
    if not_offered {
        result.status = Status::Manual;
        result.why =
            format!("the cpufreq driver does not offer '{wanted}' (check the BIOS power profile)");
    } else {
        result.status = Status::Change;
        result.writes = writes;
    }
    result
}

/// CPUs that take interrupts: the profile's list, or CPU 0 and its hyperthread siblings.
fn housekeeping_cpus(host: &Host, wanted: Option<&str>) -> Vec<usize> {
    match wanted {
        Some(list) if list != "auto" => cpulist::parse(list).unwrap_or_else(|| vec![0]),
        _ => host
            .read(&host.path("/sys/devices/system/cpu/cpu0/topology/thread_siblings_list"))
            .and_then(|list| cpulist::parse(&list))
            .filter(|cpus| !cpus.is_empty())
            .unwrap_or_else(|| vec![0]),
    }
}

/// The interrupt numbers of the device behind `device_link` (`/sys/class/net/eth0/device`):
/// its MSI vectors, or its legacy line, found on it or the nearest parent bus device that has
/// them (a virtio disk's interrupts belong to its PCI function).
fn device_irqs(host: &Host, device_link: &Path) -> Vec<u32> {
    let Ok(mut dir) = std::fs::canonicalize(device_link) else {
        return Vec::new();
    };
    let devices_root = std::fs::canonicalize(host.path("/sys/devices")).unwrap_or_default();
    loop {
        let msi: Vec<u32> = host
            .list(&dir.join("msi_irqs"))
            .iter()
            .filter_map(|n| n.parse().ok())
            .collect();
        if !msi.is_empty() {
            return msi;
        }
        if let Some(irq) = host.read(&dir.join("irq")).and_then(|t| t.parse().ok()) {
            if irq != 0 {
                return vec![irq];
            }
        }
        if !dir.pop() || !dir.starts_with(&devices_root) || dir == devices_root {
            return Vec::new();
        }
    }
}

/// Physical NICs and disks (those with a `device`), each with its interrupts.
fn devices_with_irqs(host: &Host) -> Vec<(String, Vec<u32>)> {
    let mut devices = Vec::new();
    for (class_dir, kind) in [("/sys/class/net", "nic"), ("/sys/block", "disk")] {
        let dir = host.path(class_dir);
        for name in host.list(&dir) {
            let link = dir.join(&name).join("device");
            if !link.exists() {
                continue; // virtual: lo, bridges, loop and zram devices
            }
            let irqs = device_irqs(host, &link);
            if !irqs.is_empty() {
                devices.push((format!("{kind} {name}"), irqs));
            }
        }
    }
    devices
}

pub fn irqs(host: &Host, profile: &IrqProfile) -> Vec<Item> {
    let housekeeping = housekeeping_cpus(host, profile.housekeeping_cpus.as_deref());
    let wanted = cpulist::format(&housekeeping);
    let online = host
        .read(&host.path("/sys/devices/system/cpu/online"))
        .and_then(|list| cpulist::parse(&list))
        .unwrap_or_default();
    let mut items = Vec::new();
    if profile.housekeeping_cpus.is_some() {
        let shard_cpus: Vec<usize> = online
            .iter()
            .copied()
            .filter(|c| !housekeeping.contains(c))
            .collect();
        if shard_cpus.is_empty() {
            let mut only = item(
                "irq housekeeping cpus",
                format!("online {}", cpulist::format(&online)),
                wanted.clone(),
            );
            only.status = Status::Absent;
            only.why = "no CPU would be left for shards; interrupts stay where they are".into();
            return vec![only];
        }
        for (device, irqs) in devices_with_irqs(host) {
            let mut current_cpus = Vec::new();
            let mut writes = Vec::new();
            for irq in &irqs {
                let path = host.path(&format!("/proc/irq/{irq}/smp_affinity_list"));
                let Some(cpus) = host.read(&path).and_then(|l| cpulist::parse(&l)) else {
                    continue;
                };
                if cpus.iter().any(|cpu| !housekeeping.contains(cpu)) {
                    writes.push(Write {
                        path,
                        value: wanted.clone(),
                    });
                }
                current_cpus.extend(cpus);
            }
            let irq_numbers: Vec<usize> = irqs.iter().map(|i| *i as usize).collect();
            let mut row = item(
                format!(
                    "irq affinity {device} (irq {})",
                    cpulist::format(&irq_numbers)
                ),
                cpulist::format(&current_cpus),
                wanted.clone(),
            );
            row.why = format!(
                "keep its interrupts off the shard CPUs ({}): an interrupt steals time from a shard's requests",
                cpulist::format(&shard_cpus)
            );
            if !writes.is_empty() {
                row.status = Status::Change;
                row.writes = writes;
            }
            items.push(row);
        }
    }
    if profile.irqbalance == Some(IrqbalanceWanted::Stopped) {
        let running = irqbalance_running(host);
        let mut row = item(
            "irqbalance",
            if running { "running" } else { "not running" },
            "not running",
        );
        row.why = "it moves interrupts back onto shard cores".into();
        if running {
            row.status = Status::Manual;
            row.why =
                "it moves interrupts back onto shard cores: systemctl disable --now irqbalance"
                    .into();
        }
        items.push(row);
    }
    items
}

fn irqbalance_running(host: &Host) -> bool {
    let proc_dir = host.path("/proc");
    host.list(&proc_dir)
        .iter()
        .filter(|name| name.bytes().all(|b| b.is_ascii_digit()))
        .any(|pid| host.read(&proc_dir.join(pid).join("comm")).as_deref() == Some("irqbalance"))
}

fn matches(pattern: &str, name: &str) -> bool {
    match pattern.strip_suffix('*') {
        Some(prefix) => name.starts_with(prefix),
        None => name == pattern,
    }
}

pub fn schedulers(host: &Host, profile: &BlockProfile) -> Vec<Item> {
    let block = host.path("/sys/block");
    let mut items = Vec::new();
    for name in host
        .list(&block)
        .into_iter()
        .filter(|n| matches(&profile.devices, n))
    {
        let path: PathBuf = block.join(&name).join("queue/scheduler");
        let Some(choices) = host.read(&path) else {
            continue;
        };
        let current = selected(&choices).unwrap_or(choices.as_str()).to_string();
        let mut row = item(
            format!("io scheduler {name}"),
            current.clone(),
            profile.scheduler.clone(),
        );
        row.why = format!(
            "{}: the device queues requests itself; a kernel scheduler adds latency",
            profile.devices
        );
        if current != profile.scheduler {
            if offered(&choices).contains(&profile.scheduler) {
                row.status = Status::Change;
                row.writes = vec![Write {
                    path,
                    value: profile.scheduler.clone(),
                }];
            } else {
                row.status = Status::Manual;
                row.why = format!("this kernel offers {choices}, not '{}'", profile.scheduler);
            }
        }
        items.push(row);
    }
    if items.is_empty() {
        let mut row = item(
            format!("io scheduler {}", profile.devices),
            "no such device",
            profile.scheduler.clone(),
        );
        row.status = Status::Absent;
        row.why = "no block device of that name here".into();
        items.push(row);
    }
    items
}

pub fn transparent_hugepages(host: &Host, wanted: &str) -> Item {
    let path = host.path("/sys/kernel/mm/transparent_hugepage/enabled");
    let mut row = item("transparent hugepages", "", wanted);
    row.why =
        "khugepaged compaction stalls shards; direct I/O gains nothing from huge pages".into();
    match host.read(&path) {
        None => {
            row.current = "not present".into();
            row.status = Status::Absent;
            row.why = "this kernel has no transparent huge pages".into();
        }
        Some(choices) => {
            row.current = selected(&choices).unwrap_or(choices.as_str()).to_string();
            if row.current != wanted {
                row.status = Status::Change;
                row.writes = vec![Write {
                    path,
                    value: wanted.to_string(),
                }];
            }
        }
    }
    row
}

/// The locked-memory limit of this process, which a broker started from the same shell or
/// service manager settings inherits.
pub fn memlock(min_bytes: u64) -> Item {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    let known = unsafe { libc::getrlimit(libc::RLIMIT_MEMLOCK, &mut limit) } == 0;
    let unlimited = limit.rlim_cur == libc::RLIM_INFINITY;
    let mut row = item(
        "memlock limit",
        match (known, unlimited) {
            (false, _) => "unknown".to_string(),
            (true, true) => "unlimited".to_string(),
            (true, false) => format!("{} KiB", limit.rlim_cur / 1024),
        },
        format!("at least {} KiB", min_bytes / 1024),
    );
    row.why = "io_uring locks about 768 KiB per shard".into();
    if known && !unlimited && limit.rlim_cur < min_bytes {
        row.status = Status::Manual;
        row.why = "io_uring locks about 768 KiB per shard: set LimitMEMLOCK= in ringlog.service, or memlock in /etc/security/limits.d for the broker's user".into();
    }
    row
}

pub fn sysctl(host: &Host, name: &str, wanted: &SysctlWanted) -> Item {
    let path = host.path(&format!("/proc/sys/{}", name.replace('.', "/")));
    let wanted_text = match wanted {
        SysctlWanted::Number(n) => n.to_string(),
        SysctlWanted::Text(t) => t.clone(),
        SysctlWanted::Bounds(Bounds { min, max }) => match (min, max) {
            (Some(min), Some(max)) => format!("{min}..{max}"),
            (Some(min), None) => format!(">= {min}"),
            (None, Some(max)) => format!("<= {max}"),
            (None, None) => "anything".into(),
        },
    };
    let mut row = item(name, "", wanted_text);
    row.why = sysctl_why(name).into();
    let Some(current) = host.read(&path) else {
        row.current = "not present".into();
        row.status = Status::Absent;
        row.why = "this kernel (or network namespace) has no such sysctl".into();
        return row;
    };
    let normalized: String = current.split_whitespace().collect::<Vec<_>>().join(" ");
    row.current = normalized.clone();
    let target = match wanted {
        SysctlWanted::Number(n) => (normalized != n.to_string()).then(|| n.to_string()),
        SysctlWanted::Text(t) => {
            let t = t.split_whitespace().collect::<Vec<_>>().join(" ");
            (normalized != t).then_some(t)
        }
        SysctlWanted::Bounds(Bounds { min, max }) => match normalized.parse::<i64>() {
            Ok(value) if min.is_some_and(|m| value < m) => min.map(|m| m.to_string()),
            Ok(value) if max.is_some_and(|m| value > m) => max.map(|m| m.to_string()),
            Ok(_) => None,
            Err(_) => {
                row.status = Status::Manual;
                row.why = "not a number: the profile's bounds do not apply".into();
                return row;
            }
        },
    };
    if let Some(value) = target {
        row.status = Status::Change;
        row.writes = vec![Write { path, value }];
    }
    row
}

fn sysctl_why(name: &str) -> &'static str {
    match name {
        "fs.aio-max-nr" => "system-wide async I/O limit that every shard's file I/O counts against",
        "vm.swappiness" => "keeps the batch cache and indexes out of swap",
        "net.core.somaxconn" => {
            "pending connections per listener: reconnect storms after a restart"
        }
        "net.core.rmem_max" | "net.core.wmem_max" => {
            "largest socket buffer: multi-MiB fetch responses at 10+ Gbit/s"
        }
        _ => "named by the profile",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn choice_lists_parse() {
        assert_eq!(
            selected("none [mq-deadline] kyber bfq"),
            Some("mq-deadline")
        );
        assert_eq!(selected("always [madvise] never"), Some("madvise"));
        assert_eq!(offered("[none] mq-deadline"), vec!["none", "mq-deadline"]);
        assert!(matches("nvme*", "nvme0n1") && !matches("nvme*", "vda") && matches("vda", "vda"));
    }
}
