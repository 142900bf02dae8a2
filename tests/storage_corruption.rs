//! Whatever is on disk, opening and reading a log never panics: random byte flips, cuts,
//! garbage and missing files in segments, indexes and the partition state either recover
//! (cutting at the damage) or fail with a typed error.

mod common;

use std::path::{Path, PathBuf};

use common::*;
use proptest::prelude::*;
use ringlog::storage::{PartitionLog, ReadLimits};

#[derive(Debug, Clone)]
enum Damage {
    FlipByte {
        file_pick: usize,
        at_permille: u16,
        xor: u8,
    },
    Cut {
        file_pick: usize,
        at_permille: u16,
    },
    Garbage {
        file_pick: usize,
        length: u16,
        fill: u8,
    },
    Remove {
        file_pick: usize,
    },
}

fn damage() -> impl Strategy<Value = Damage> {
    prop_oneof![
        4 => (any::<usize>(), 0u16..1000, 1u8..=255).prop_map(|(file_pick, at_permille, xor)| Damage::FlipByte { file_pick, at_permille, xor }),
        2 => (any::<usize>(), 0u16..1000).prop_map(|(file_pick, at_permille)| Damage::Cut { file_pick, at_permille }),
        2 => (any::<usize>(), 0u16..3000, any::<u8>()).prop_map(|(file_pick, length, fill)| Damage::Garbage { file_pick, length, fill }),
        1 => any::<usize>().prop_map(|file_pick| Damage::Remove { file_pick }),
    ]
}

fn files(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

fn apply(dir: &Path, damage: &Damage) {
    let files = files(dir);
    if files.is_empty() {
        return;
    }
    let pick = |i: usize| &files[i % files.len()];
    match damage {
        Damage::FlipByte {
            file_pick,
            at_permille,
            xor,
        } => {
            let path = pick(*file_pick);
            let mut bytes = std::fs::read(path).unwrap();
            if !bytes.is_empty() {
                let at = bytes.len() * usize::from(*at_permille) / 1000;
                bytes[at] ^= xor;
                std::fs::write(path, bytes).unwrap();
            }
        }
        Damage::Cut {
            file_pick,
            at_permille,
        } => {
            let path = pick(*file_pick);
            let len = std::fs::metadata(path).unwrap().len();
            let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
            file.set_len(len * u64::from(*at_permille) / 1000).unwrap();
        }
        Damage::Garbage {
            file_pick,
            length,
            fill,
        } => {
            use std::io::Write;
            let path = pick(*file_pick);
            let mut file = std::fs::OpenOptions::new().append(true).open(path).unwrap();
            let garbage: Vec<u8> = (0..*length)
                .map(|i| fill.wrapping_add((i % 7) as u8))
                .collect();
            file.write_all(&garbage).unwrap();
        }
        Damage::Remove { file_pick } => std::fs::remove_file(pick(*file_pick)).unwrap(),
    }
}

async fn build_log(dir: &Path) {
    let log = open(dir, small_config()).await;
    for i in 0..400u64 {
        append(
            &log,
            &make_batch(
                i,
                (i % 4 + 1) as i32,
                100 + (i as usize * 37) % 2500,
                i as i64,
            ),
        )
        .await;
    }
    log.delete_records(20).await.unwrap();
    log.close().await.unwrap();
}

/// Opens and reads everything it can; any error is fine, a panic is not.
async fn open_and_read(dir: &Path) {
    let Ok((log, _)) = PartitionLog::open(
        dir,
        small_config(),
        std::rc::Rc::new(ringlog::storage::BatchCache::new(0)),
        std::rc::Rc::new(ringlog::storage::SpaceGuard::unlimited()),
    )
    .await
    else {
        return;
    };
    let end = log.log_end_offset();
    let mut offset = log.log_start_offset();
    while offset < end {
        match log
            .read(
                offset,
                ReadLimits {
                    end_offset_exclusive: end,
                    max_bytes: 50_000,
                },
            )
            .await
        {
            Ok(data) if !data.batches.is_empty() => {
                let last = data
                    .batches
                    .iter()
                    .filter_map(|b| {
                        ringlog::storage::batch::peek_header(b)
                            .ok()
                            .map(|h| h.last_offset())
                    })
                    .max();
                match last {
                    Some(last) if last >= offset => offset = last + 1,
                    _ => offset += 1,
                }
            }
            _ => offset += 1,
        }
    }
    let _ = log.find_offset_by_timestamp(150).await;
    // The log still takes writes (or refuses them with an error).
    let _ = log
        .append(bytes::BytesMut::from(&make_batch(9, 1, 10, 1)[..]), 0)
        .await;
    let _ = log.close().await;
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn damaged_logs_never_panic(damages in proptest::collection::vec(damage(), 1..6)) {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("damaged-0");
        run(move || async move {
            build_log(&dir).await;
            for d in &damages {
                apply(&dir, d);
            }
            open_and_read(&dir).await;
            // And once more: recovery's own writes must leave an openable log.
            open_and_read(&dir).await;
        });
    }
}
