//! `ringlog tune`: `--check` prints its table on this machine; on a fake /proc and /sys tree
//! (`--sysroot`), `--apply --dry-run` lists every change and modifies nothing, `--apply` changes
//! exactly what the profile names and a second `--check` finds nothing left to do. The real
//! machine is only ever read.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// The profile the fake-tree tests use: every kind of setting, no memlock (that one depends on
/// the test process's own limit).
const PROFILE: &str = r#"
description = "test profile"
[cpu]
governor = "performance"
[irq]
housekeeping_cpus = "auto"
[[block]]
devices = "nvme*"
scheduler = "none"
[memory]
transparent_hugepages = "madvise"
[sysctl]
"vm.swappiness" = { max = 1 }
"fs.aio-max-nr" = { min = 1048576 }
"net.core.somaxconn" = 4096
"#;

fn tune(args: &[&str]) -> (i32, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_ringlog"))
        .arg("tune")
        .args(args)
        .output()
        .expect("run ringlog tune");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    (output.status.code().expect("an exit code"), text)
}

fn put(root: &Path, path: &str, contents: &str) {
    let path = root.join(path);
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("{contents}\n")).unwrap();
}

fn link(root: &Path, from: &str, to: &str) {
    let from = root.join(from);
    std::fs::create_dir_all(from.parent().unwrap()).unwrap();
    std::fs::create_dir_all(root.join(to)).unwrap();
    std::os::unix::fs::symlink(root.join(to), from).unwrap();
}

/// A 4-CPU machine with a NIC (IRQs 40, 41) and an NVMe disk (IRQ 50) on PCI, every setting
/// away from the test profile, plus a sysctl the profile does not name.
fn fake_host() -> tempfile::TempDir {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path();
    put(root, "sys/devices/system/cpu/online", "0-3");
    for cpu in 0..4 {
        let freq = format!("sys/devices/system/cpu/cpu{cpu}/cpufreq");
        put(root, &format!("{freq}/scaling_governor"), "powersave");
        put(
            root,
            &format!("{freq}/scaling_available_governors"),
            "performance powersave",
        );
    }
    put(
        root,
        "sys/devices/system/cpu/cpu0/topology/thread_siblings_list",
        "0",
    );
    let nic = "sys/devices/pci0000:00/0000:00:03.0";
    put(root, &format!("{nic}/msi_irqs/40"), "msix");
    put(root, &format!("{nic}/msi_irqs/41"), "msix");
    link(root, "sys/class/net/eth0/device", nic);
    std::fs::create_dir_all(root.join("sys/class/net/lo")).unwrap(); // virtual: no device
    let disk = "sys/devices/pci0000:00/0000:00:04.0";
    put(root, &format!("{disk}/msi_irqs/50"), "msix");
    link(
        root,
        "sys/block/nvme0n1/device",
        &format!("{disk}/nvme/nvme0"),
    );
    put(
        root,
        "sys/block/nvme0n1/queue/scheduler",
        "[mq-deadline] none",
    );
    for irq in [40, 41, 50] {
        put(root, &format!("proc/irq/{irq}/smp_affinity_list"), "0-3");
    }
    put(
        root,
        "sys/kernel/mm/transparent_hugepage/enabled",
        "[always] madvise never",
    );
    put(root, "proc/sys/vm/swappiness", "60");
    put(root, "proc/sys/fs/aio-max-nr", "65536");
    put(root, "proc/sys/net/core/somaxconn", "4096");
    put(root, "proc/sys/kernel/not_in_profile", "7");
    dir
}

/// Every regular file under `root` and its contents.
fn snapshot(root: &Path) -> BTreeMap<PathBuf, String> {
    let mut files = BTreeMap::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let entry = entry.unwrap();
            let kind = entry.file_type().unwrap();
            if kind.is_dir() {
                stack.push(entry.path());
            } else if kind.is_file() {
                files.insert(entry.path(), std::fs::read_to_string(entry.path()).unwrap());
            }
        }
    }
    files
}

fn profile_file(dir: &Path) -> String {
    let path = dir.join("profile.toml");
    std::fs::write(&path, PROFILE).unwrap();
    path.to_str().unwrap().to_string()
}

#[test]
fn check_prints_a_table_of_this_machine() {
    for profile in ["production", "vm"] {
        let (code, text) = tune(&["--check", "--profile", profile]);
        assert!(code == 0 || code == 1, "exit {code}:\n{text}");
        println!("{text}");
        let header = text.lines().nth(1).unwrap_or_default();
        for column in ["SETTING", "CURRENT", "WANTED", "STATUS", "WHY"] {
            assert!(header.contains(column), "{text}");
        }
        for sysctl in [
            "fs.aio-max-nr",
            "vm.swappiness",
            "net.core.somaxconn",
            "net.core.rmem_max",
        ] {
            assert!(
                text.lines().any(|l| l.starts_with(sysctl)),
                "{sysctl} in\n{text}"
            );
        }
        assert!(text.contains("memlock limit") && text.contains("transparent hugepages"));
    }
}

#[test]
fn dry_run_on_this_machine_changes_nothing() {
    let watched = [
        "/proc/sys/vm/swappiness",
        "/proc/sys/fs/aio-max-nr",
        "/proc/sys/net/core/somaxconn",
        "/proc/sys/net/core/rmem_max",
        "/proc/sys/net/core/wmem_max",
        "/sys/kernel/mm/transparent_hugepage/enabled",
    ];
    let read = || watched.map(|p| std::fs::read_to_string(p).unwrap_or_default());
    let before = read();
    let (code, text) = tune(&["--apply", "--dry-run", "--profile", "production"]);
    assert!(code == 0 || code == 1, "exit {code}:\n{text}");
    assert_eq!(read(), before, "--dry-run changed the machine:\n{text}");
}

#[test]
fn dry_run_lists_every_change_and_modifies_nothing() {
    let host = fake_host();
    let profile = profile_file(host.path());
    let before = snapshot(host.path());
    let sysroot = host.path().to_str().unwrap();
    let (code, text) = tune(&[
        "--apply",
        "--dry-run",
        "--profile",
        &profile,
        "--sysroot",
        sysroot,
    ]);
    assert_eq!(code, 1, "{text}");
    for change in [
        "would change cpu frequency governor: powersave on 0-3 -> performance",
        "would change irq affinity nic eth0 (irq 40-41): 0-3 -> 0",
        "would change irq affinity disk nvme0n1 (irq 50): 0-3 -> 0",
        "would change io scheduler nvme0n1: mq-deadline -> none",
        "would change transparent hugepages: always -> madvise",
        "would change vm.swappiness: 60 -> 1",
        "would change fs.aio-max-nr: 65536 -> 1048576",
    ] {
        assert!(text.contains(change), "missing '{change}' in\n{text}");
    }
    assert!(
        text.contains(&format!("write '1' to {sysroot}/proc/sys/vm/swappiness")),
        "{text}"
    );
    assert!(!text.contains("would change net.core.somaxconn"), "{text}");
    assert_eq!(snapshot(host.path()), before, "--dry-run modified files");
}

#[test]
fn apply_changes_exactly_what_the_profile_names() {
    let host = fake_host();
    let profile = profile_file(host.path());
    let sysroot = host.path().to_str().unwrap();
    let before = snapshot(host.path());
    let (code, text) = tune(&["--apply", "--profile", &profile, "--sysroot", sysroot]);
    assert_eq!(code, 0, "{text}");
    let after = snapshot(host.path());
    let changed: BTreeMap<String, String> = after
        .iter()
        .filter(|(path, contents)| before.get(*path) != Some(contents))
        .map(|(path, contents)| {
            let relative = path.strip_prefix(host.path()).unwrap();
            (
                relative.display().to_string(),
                contents.trim_end().to_string(),
            )
        })
        .collect();
    let mut expected: BTreeMap<String, String> = BTreeMap::new();
    for cpu in 0..4 {
        expected.insert(
            format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_governor"),
            "performance".into(),
        );
    }
    for irq in [40, 41, 50] {
        expected.insert(format!("proc/irq/{irq}/smp_affinity_list"), "0".into());
    }
    expected.insert("sys/block/nvme0n1/queue/scheduler".into(), "none".into());
    expected.insert(
        "sys/kernel/mm/transparent_hugepage/enabled".into(),
        "madvise".into(),
    );
    expected.insert("proc/sys/vm/swappiness".into(), "1".into());
    expected.insert("proc/sys/fs/aio-max-nr".into(), "1048576".into());
    assert_eq!(changed, expected, "{text}");

    let (code, text) = tune(&["--check", "--profile", &profile, "--sysroot", sysroot]);
    assert_eq!(code, 0, "nothing left to change:\n{text}");
}

#[test]
fn what_tune_cannot_do_is_reported_not_hidden() {
    let host = fake_host();
    let root = host.path();
    put(root, "proc/4242/comm", "irqbalance");
    std::fs::remove_dir_all(root.join("sys/devices/system/cpu/cpu0/cpufreq")).unwrap();
    for cpu in 1..4 {
        // A governor the driver does not offer.
        put(
            root,
            &format!("sys/devices/system/cpu/cpu{cpu}/cpufreq/scaling_available_governors"),
            "powersave",
        );
    }
    let profile = root.join("profile.toml");
    std::fs::write(
        &profile,
        format!("{PROFILE}\n\"net.ipv4.no_such_sysctl\" = 1\n").replace(
            "housekeeping_cpus = \"auto\"",
            "housekeeping_cpus = \"auto\"\nirqbalance = \"stopped\"",
        ),
    )
    .unwrap();
    let sysroot = root.to_str().unwrap();
    let (code, text) = tune(&[
        "--apply",
        "--profile",
        profile.to_str().unwrap(),
        "--sysroot",
        sysroot,
    ]);
    assert_eq!(code, 3, "{text}");
    assert!(text.contains("not changed  irqbalance: it moves interrupts back onto shard cores: systemctl disable --now irqbalance"), "{text}");
    assert!(
        text.contains(
            "not changed  cpu frequency governor: the cpufreq driver does not offer 'performance'"
        ),
        "{text}"
    );
    assert!(
        text.lines()
            .any(|l| l.starts_with("net.ipv4.no_such_sysctl") && l.contains("n/a")),
        "{text}"
    );
    // The rest was still applied.
    assert!(
        text.contains("applied      vm.swappiness: 60 -> 1"),
        "{text}"
    );
    assert_eq!(
        std::fs::read_to_string(root.join("proc/sys/vm/swappiness")).unwrap(),
        "1"
    );
}

#[test]
fn a_bad_profile_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.toml");
    std::fs::write(
        &path,
        "[sysctl]\n\"vm.swappiness\" = { min = 9, max = 1 }\n",
    )
    .unwrap();
    let (code, text) = tune(&["--check", "--profile", path.to_str().unwrap()]);
    assert_eq!(code, 2, "{text}");
    assert!(text.contains("min is above max"), "{text}");
    let (code, text) = tune(&["--check", "--profile", "no-such-profile"]);
    assert_eq!(code, 2, "{text}");
    let (code, _) = tune(&["--dry-run"]);
    assert_eq!(code, 2, "--dry-run alone is a usage error");
}
