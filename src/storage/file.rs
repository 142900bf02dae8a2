//! The storage file layer: the only place that calls glommio's file API, so that moving to
//! another io_uring runtime touches this file and `runtime` alone. Everything here is
//! shard-local; blocking filesystem calls (directory listing, rename, statvfs) run on glommio's
//! blocking thread pool, never on the shard thread.

use std::cell::RefCell;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::sync::mpsc;
use std::thread::{self, ThreadId};

use bytes::Bytes;
use glommio::io::{DmaBuffer, DmaFile, OpenOptions, ReadResult};

use super::error::{Result, StorageError};
use crate::metrics::{timed_io, IoOp};

/// O_DIRECT alignment assumed by the log format (positions of tail rewrites, read windows).
pub const PAGE_SIZE_BYTES: u64 = 4096;

pub fn align_down(value: u64) -> u64 {
    value & !(PAGE_SIZE_BYTES - 1)
}

pub fn align_up(value: u64) -> u64 {
    align_down(value + PAGE_SIZE_BYTES - 1)
}

/// An aligned buffer that the kernel can DMA from.
pub type AlignedBuffer = DmaBuffer;

/// One open direct-IO file. Cheap to clone; the descriptor closes with the last clone.
#[derive(Clone)]
pub struct DirectFile {
    file: Rc<DmaFile>,
    path: Rc<PathBuf>,
}

impl DirectFile {
    /// Opens `path` for reading and writing, creating it when `create` is set.
    pub async fn open(path: &Path, create: bool) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(create)
            .dma_open(path)
            .await
            .map_err(|e| StorageError::io(format!("opening {}", path.display()), e.into()))?;
        Ok(DirectFile {
            file: Rc::new(file),
            path: Rc::new(path.to_path_buf()),
        })
    }

    /// Opens the same file again with O_DSYNC: a write through it completes only once its bytes
    /// and the metadata needed to read them back (an unwritten extent's conversion) are
    /// durable. One write is then one round trip through the ring instead of a write and an
    /// fdatasync, each reaped separately.
    pub async fn open_dsync_twin(&self) -> Result<Self> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DSYNC)
            .dma_open(self.path.as_path())
            .await
            .map_err(|e| self.error("opening (O_DSYNC)", e.into()))?;
        Ok(DirectFile {
            file: Rc::new(file),
            path: Rc::clone(&self.path),
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The descriptor's status flags (`fcntl(F_GETFL)`): O_DIRECT, O_DSYNC and the like.
    pub fn status_flags(&self) -> Result<i32> {
        use std::os::fd::AsRawFd;
        // SAFETY: F_GETFL only reads the flags of a descriptor this value keeps open.
        let flags = unsafe { libc::fcntl(self.file.as_raw_fd(), libc::F_GETFL) };
        if flags < 0 {
            return Err(self.error("fcntl", io::Error::last_os_error()));
        }
        Ok(flags)
    }

    pub fn alloc_buffer(&self, size_bytes: usize) -> AlignedBuffer {
        debug_assert_eq!(size_bytes as u64 % PAGE_SIZE_BYTES, 0);
        self.file.alloc_dma_buffer(size_bytes)
    }

    /// Writes the whole aligned buffer at the aligned `position`; the caller keeps a handle
    /// on the buffer so that it can be reused once the write completes.
    pub async fn write_rc_at(&self, buffer: Rc<AlignedBuffer>, position: u64) -> Result<()> {
        debug_assert_eq!(position % PAGE_SIZE_BYTES, 0);
        let expected = buffer.len();
        let written = timed_io(IoOp::Write, self.file.write_rc_at(buffer, position))
            .await
            .map_err(|e| self.error("writing", e.into()))?;
        if written != expected {
            return Err(self.error(
                "writing",
                io::Error::new(io::ErrorKind::WriteZero, "short direct write"),
            ));
        }
        Ok(())
    }

    /// Reads up to `size_bytes` at any `position`, returning fewer at end of file. The bytes are
    /// the DMA buffer itself, handed out without a copy.
    pub async fn read_at(&self, position: u64, size_bytes: usize) -> Result<Bytes> {
        collect_foreign_garbage();
        if size_bytes == 0 {
            return Ok(Bytes::new());
        }
        let result = timed_io(IoOp::Read, self.file.read_at(position, size_bytes))
            .await
            .map_err(|e| self.error("reading", e.into()))?;
        Ok(Bytes::from_owner(ShardOwned::new(result)))
    }

    pub async fn sync(&self) -> Result<()> {
        timed_io(IoOp::Fsync, self.file.fdatasync())
            .await
            .map_err(|e| self.error("fdatasync", e.into()))
    }

    /// Reserves blocks up to `size_bytes` (the file size grows too; unwritten blocks read as
    /// zeros), so that later writes neither allocate nor fail with ENOSPC.
    pub async fn preallocate(&self, size_bytes: u64) -> Result<()> {
        self.file
            .pre_allocate(size_bytes, false)
            .await
            .map_err(|e| self.error("preallocating", e.into()))
    }

    pub async fn truncate(&self, size_bytes: u64) -> Result<()> {
        self.file
            .truncate(size_bytes)
            .await
            .map_err(|e| self.error("truncating", e.into()))
    }

    pub async fn size_bytes(&self) -> Result<u64> {
        self.file
            .file_size()
            .await
            .map_err(|e| self.error("stat", e.into()))
    }

    fn error(&self, what: &str, source: io::Error) -> StorageError {
        StorageError::io(format!("{what} {}", self.path.display()), source)
    }
}

/// Keeps a shard-local value (a glommio read buffer, whose bookkeeping is `Rc`-based) alive
/// inside a `Bytes` that may travel to another shard. Other threads only read the bytes; the
/// value itself is always dropped on its home thread: a drop elsewhere sends it home, and the
/// home shard frees it at its next read or housekeeping pass.
///
/// glommio's `ReadResult` shares its buffer through non-atomic `Rc`s with the file's read
/// scheduler (reads of the same range are deduplicated onto one buffer) and frees it into the
/// shard's registered-buffer arena, a `RefCell`ed allocator: touched from two threads, either
/// is a data race that frees memory twice.
struct ShardOwned {
    /// `Some` until dropped.
    value: Option<ReadResult>,
    home: ThreadId,
    home_graveyard: mpsc::Sender<Corpse>,
}

/// A value in transit to its home thread; only ever dropped there.
struct Corpse {
    /// `Some` until dropped.
    buffer: Option<ReadResult>,
    home: ThreadId,
}

// SAFETY: a `Corpse` is created on a foreign thread from a `ShardOwned` and only moved from
// there; its `Drop` frees the buffer on the home thread alone and leaks it anywhere else (see
// `Corpse::drop`), so no thread but the home thread touches the `Rc`s inside.
unsafe impl Send for Corpse {}
// SAFETY: other threads only read the DMA memory through `as_ref`, which touches no `Rc`; the
// memory is never written once the read completed (glommio hands a buffer to one read, and a
// deduplicated read shares it read-only). The `Rc`s inside `ReadResult` are touched only by
// `drop`, which runs on the home thread (see `Drop`).
unsafe impl Send for ShardOwned {}

thread_local! {
    static GRAVEYARD: (mpsc::Sender<Corpse>, RefCell<mpsc::Receiver<Corpse>>) = {
        let (sender, receiver) = mpsc::channel();
        (sender, RefCell::new(receiver))
    };
}

impl ShardOwned {
    fn new(value: ReadResult) -> Self {
        ShardOwned {
            value: Some(value),
            home: thread::current().id(),
            home_graveyard: GRAVEYARD.with(|(sender, _)| sender.clone()),
        }
    }
}

impl AsRef<[u8]> for ShardOwned {
    fn as_ref(&self) -> &[u8] {
        self.value.as_deref().unwrap_or_default()
    }
}

impl Drop for ShardOwned {
    fn drop(&mut self) {
        let Some(value) = self.value.take() else {
            return;
        };
        if thread::current().id() == self.home {
            drop(value);
            return;
        }
        let corpse = Corpse {
            buffer: Some(value),
            home: self.home,
        };
        if let Err(mpsc::SendError(mut corpse)) = self.home_graveyard.send(corpse) {
            // The home shard has exited; its executor and buffers are gone with it.
            if let Some(buffer) = corpse.buffer.take() {
                std::mem::forget(buffer);
            }
        }
    }
}

impl Drop for Corpse {
    fn drop(&mut self) {
        let Some(buffer) = self.buffer.take() else {
            return;
        };
        if thread::current().id() == self.home {
            drop(buffer);
        } else {
            // Only the channel's own teardown could drop a corpse elsewhere (its last sender
            // going away on a foreign thread with corpses still queued): leaking the buffer
            // there is the price of never touching its `Rc`s off the home thread.
            debug_assert!(
                false,
                "a read buffer reached its drop away from its home thread"
            );
            std::mem::forget(buffer);
        }
    }
}

/// Frees read buffers that other shards have finished with. Called on every read and by the
/// shard's housekeeping; the backlog is bounded by the fetch responses in flight. Dropping a
/// corpse frees a buffer and nothing else, so this never re-enters itself.
pub fn collect_foreign_garbage() {
    GRAVEYARD.with(|(_, receiver)| {
        let receiver = receiver.borrow();
        while let Ok(corpse) = receiver.try_recv() {
            drop(corpse);
        }
    });
}

async fn blocking<R: Send + 'static>(f: impl FnOnce() -> R + Send + 'static) -> R {
    glommio::executor().spawn_blocking(f).await
}

pub async fn create_dir_all(path: &Path) -> Result<()> {
    let owned = path.to_path_buf();
    blocking(move || std::fs::create_dir_all(&owned))
        .await
        .map_err(|e| StorageError::io(format!("creating {}", path.display()), e))
}

/// The names of the entries of a directory.
pub async fn list_dir(path: &Path) -> Result<Vec<String>> {
    let owned = path.to_path_buf();
    blocking(move || entry_names(&owned))
        .await
        .map_err(|e| StorageError::io(format!("listing {}", path.display()), e))
}

/// `list_dir`, with `None` for a directory that does not exist.
pub async fn list_dir_if_exists(path: &Path) -> Result<Option<Vec<String>>> {
    let owned = path.to_path_buf();
    blocking(move || match entry_names(&owned) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        other => other.map(Some),
    })
    .await
    .map_err(|e| StorageError::io(format!("listing {}", path.display()), e))
}

/// The names in directory `path`; blocking.
fn entry_names(path: &Path) -> io::Result<Vec<String>> {
    let mut names = Vec::new();
    for entry in std::fs::read_dir(path)? {
        names.push(entry?.file_name().to_string_lossy().into_owned());
    }
    Ok(names)
}

pub async fn remove_file(path: &Path) -> Result<()> {
    let owned = path.to_path_buf();
    blocking(move || match std::fs::remove_file(&owned) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    })
    .await
    .map_err(|e| StorageError::io(format!("removing {}", path.display()), e))
}

/// Renames a file or directory, durably (the parent directory is synced).
pub async fn rename(from: &Path, to: &Path) -> Result<()> {
    let (owned_from, owned_to) = (from.to_path_buf(), to.to_path_buf());
    blocking(move || -> io::Result<()> {
        std::fs::rename(&owned_from, &owned_to)?;
        if let Some(parent) = owned_to.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|e| {
        StorageError::io(
            format!("renaming {} to {}", from.display(), to.display()),
            e,
        )
    })
}

pub async fn remove_dir_all(path: &Path) -> Result<()> {
    let owned = path.to_path_buf();
    blocking(move || match std::fs::remove_dir_all(&owned) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        other => other,
    })
    .await
    .map_err(|e| StorageError::io(format!("removing {}", path.display()), e))
}

/// Makes the directory's entries (new or removed files) durable.
pub async fn sync_dir(path: &Path) -> Result<()> {
    let owned = path.to_path_buf();
    blocking(move || std::fs::File::open(&owned)?.sync_all())
        .await
        .map_err(|e| StorageError::io(format!("syncing directory {}", path.display()), e))
}

/// Replaces a small file atomically and durably: write a temporary, fsync, rename, fsync the
/// directory. For rarely written state such as checkpoints.
pub async fn write_file_atomic(path: &Path, contents: Vec<u8>) -> Result<()> {
    let owned = path.to_path_buf();
    blocking(move || -> io::Result<()> {
        use std::io::Write;
        let temporary = owned.with_extension("tmp");
        let mut file = std::fs::File::create(&temporary)?;
        file.write_all(&contents)?;
        file.sync_all()?;
        std::fs::rename(&temporary, &owned)?;
        if let Some(parent) = owned.parent() {
            std::fs::File::open(parent)?.sync_all()?;
        }
        Ok(())
    })
    .await
    .map_err(|e| StorageError::io(format!("writing {}", path.display()), e))
}

/// Reads a small file whole; `None` when it does not exist.
pub async fn read_small_file(path: &Path) -> Result<Option<Vec<u8>>> {
    let owned = path.to_path_buf();
    blocking(move || match std::fs::read(&owned) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    })
    .await
    .map_err(|e| StorageError::io(format!("reading {}", path.display()), e))
}

/// Bytes available to unprivileged writers on the filesystem holding `path`.
pub async fn free_space_bytes(path: &Path) -> Result<u64> {
    let owned = path.to_path_buf();
    blocking(move || statvfs_available_bytes(&owned))
        .await
        .map_err(|e| StorageError::io(format!("statvfs {}", path.display()), e))
}

fn statvfs_available_bytes(path: &Path) -> io::Result<u64> {
    use std::os::unix::ffi::OsStrExt;
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "path contains NUL"))?;
    let mut stat = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is NUL-terminated and `stat` is a valid out-pointer for statvfs.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stat.as_mut_ptr()) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so it filled `stat`.
    let stat = unsafe { stat.assume_init() };
    Ok(stat.f_bavail * stat.f_frsize)
}

/// Creates (or keeps) a preallocated ballast file of `size_bytes`. Deleting it frees that much
/// space at once when the disk fills, enough to let the broker recover.
pub async fn ensure_ballast(path: &Path, size_bytes: u64) -> Result<()> {
    if size_bytes == 0 {
        return Ok(());
    }
    let file = DirectFile::open(path, true).await?;
    if file.size_bytes().await? < size_bytes {
        file.preallocate(size_bytes).await?;
        file.sync().await?;
    }
    Ok(())
}

/// Opens a non-empty file on the device of `dir` before any other direct-IO file. glommio probes
/// each device for polled I/O with a read of the first file it opens there, and remembers the
/// answer per thread; if that file is empty, the probe wrongly concludes polled I/O works and
/// every later read fails with EOPNOTSUPP on virtio disks (glommio #605/#670). Every shard
/// calls this once per data directory before opening any log.
pub async fn prime_device(dir: &Path) -> Result<()> {
    create_dir_all(dir).await?;
    let probe_path = match ensure_probe_file(dir).await {
        Ok(path) => path,
        // A full disk must not keep the broker from starting to serve reads: any non-empty
        // file already there primes the device as well.
        Err(error) => match find_non_empty_file(dir).await {
            Some(path) => path,
            None => return Err(error),
        },
    };
    let probe = DirectFile::open(&probe_path, false).await?;
    let bytes = probe.read_at(0, PAGE_SIZE_BYTES as usize).await?;
    drop(probe);
    if bytes.is_empty() {
        return Err(StorageError::io(
            format!("reading {}", probe_path.display()),
            io::Error::new(io::ErrorKind::UnexpectedEof, "short read of the I/O probe"),
        ));
    }
    Ok(())
}

/// The data directory's probe file, written once and kept, so that later starts (on a disk
/// that may have filled since) only read it. Shards may race to write it: each writes its own
/// temporary file and renames it into place, and the contents are the same.
async fn ensure_probe_file(dir: &Path) -> Result<PathBuf> {
    const PROBE_FILE: &str = ".io-probe";
    let path = dir.join(PROBE_FILE);
    let temporary =
        dir.join(format!("{PROBE_FILE}.{:?}.tmp", thread::current().id()).replace(['(', ')'], ""));
    let (owned, owned_temporary) = (path.clone(), temporary.clone());
    blocking(move || -> io::Result<()> {
        if std::fs::metadata(&owned).is_ok_and(|m| m.len() >= PAGE_SIZE_BYTES) {
            return Ok(());
        }
        let written = std::fs::write(&owned_temporary, vec![0x5au8; PAGE_SIZE_BYTES as usize])
            .and_then(|()| std::fs::rename(&owned_temporary, &owned));
        if written.is_err() {
            let _ = std::fs::remove_file(&owned_temporary);
        }
        written
    })
    .await
    .map_err(|e| StorageError::io(format!("writing {}", path.display()), e))?;
    Ok(path)
}

/// A non-empty regular file in `dir` or one level below (a segment of any partition).
async fn find_non_empty_file(dir: &Path) -> Option<PathBuf> {
    let owned = dir.to_path_buf();
    blocking(move || {
        let is_non_empty =
            |path: &Path| std::fs::metadata(path).is_ok_and(|m| m.is_file() && m.len() > 0);
        let entries: Vec<PathBuf> = std::fs::read_dir(&owned)
            .ok()?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        if let Some(file) = entries.iter().find(|p| is_non_empty(p)) {
            return Some(file.clone());
        }
        entries
            .iter()
            .filter(|p| p.is_dir())
            .filter_map(|sub| std::fs::read_dir(sub).ok())
            .flat_map(|read| read.filter_map(|e| e.ok().map(|e| e.path())))
            .find(|p| is_non_empty(p))
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A DMA read handed to another shard and dropped there comes home to be freed: the
    /// glommio buffer inside is never dropped off its thread.
    #[test]
    fn a_read_buffer_dropped_on_another_thread_is_freed_at_home() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("segment");
        std::fs::write(&path, vec![7u8; PAGE_SIZE_BYTES as usize]).unwrap();
        crate::runtime::run_on_executor("file-test", move || async move {
            prime_device(path.parent().unwrap()).await.unwrap();
            let file = DirectFile::open(&path, false).await.unwrap();
            let bytes = file.read_at(0, 100).await.unwrap();
            assert_eq!(&bytes[..], &[7u8; 100][..]);
            let reader = bytes.clone();
            thread::spawn(move || {
                assert_eq!(reader.iter().map(|b| u64::from(*b)).sum::<u64>(), 700);
                drop(reader);
            })
            .join()
            .unwrap();
            // The other thread only dropped a reference; the last one is dropped over there.
            let last = bytes;
            thread::spawn(move || drop(last)).join().unwrap();
            let home = thread::current().id();
            let corpse = GRAVEYARD.with(|(_, receiver)| receiver.borrow().try_recv().ok());
            let corpse = corpse.expect("the buffer was sent home");
            assert_eq!(corpse.home, home);
            assert!(corpse.buffer.is_some());
            drop(corpse);
            collect_foreign_garbage();
        })
        .unwrap();
    }
}
