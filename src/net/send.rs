//! Vectored writes of response chunks straight from their buffers. glommio's `TcpStream` has no
//! real vectored write and its accepted sockets are blocking, so this calls `sendmsg` on the raw
//! descriptor with `MSG_DONTWAIT`, up to `IOVECS_MAX` chunks at a time, and when the socket is
//! full falls back to glommio's own write of the current chunk, which parks until writable.

use std::io;
use std::os::unix::io::AsRawFd;

use bytes::Bytes;
use futures_lite::AsyncWriteExt;
use glommio::net::TcpStream;

/// Chunks handed to one `sendmsg` (Linux's IOV_MAX is 1024).
const IOVECS_MAX: usize = 1024;

/// Writes every chunk in order, all or an error.
pub async fn write_chunks(stream: &mut TcpStream, chunks: &[Bytes]) -> io::Result<()> {
    let mut index = 0;
    let mut offset = 0;
    while index < chunks.len() {
        if chunks[index].len() == offset {
            index += 1;
            offset = 0;
            continue;
        }
        match send_some(stream.as_raw_fd(), chunks, index, offset) {
            Ok(written) => advance(chunks, &mut index, &mut offset, written),
            Err(error) if error.kind() == io::ErrorKind::WouldBlock => {
                let written = stream.write(&chunks[index][offset..]).await?;
                if written == 0 {
                    return Err(io::ErrorKind::WriteZero.into());
                }
                advance(chunks, &mut index, &mut offset, written);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(error),
        }
    }
    Ok(())
}

fn advance(chunks: &[Bytes], index: &mut usize, offset: &mut usize, mut written: usize) {
    while written > 0 {
        let left = chunks[*index].len() - *offset;
        if written < left {
            *offset += written;
            return;
        }
        written -= left;
        *index += 1;
        *offset = 0;
    }
}

fn send_some(fd: i32, chunks: &[Bytes], index: usize, offset: usize) -> io::Result<usize> {
    let mut iovecs: Vec<libc::iovec> = Vec::with_capacity((chunks.len() - index).min(IOVECS_MAX));
    for (i, chunk) in chunks[index..].iter().enumerate().take(IOVECS_MAX) {
        let slice = if i == 0 { &chunk[offset..] } else { &chunk[..] };
        if slice.is_empty() {
            continue;
        }
        iovecs.push(libc::iovec {
            iov_base: slice.as_ptr() as *mut libc::c_void,
            iov_len: slice.len(),
        });
    }
    // The caller skips finished chunks, so the first slice is never empty: an empty sendmsg
    // would return 0 and the caller would loop without progress.
    debug_assert!(!iovecs.is_empty());
    // SAFETY: an all-zero msghdr is valid (no name, no control data).
    let mut message: libc::msghdr = unsafe { std::mem::zeroed() };
    message.msg_iov = iovecs.as_mut_ptr();
    message.msg_iovlen = iovecs.len() as _;
    // SAFETY: `fd` is the caller's open socket; `message` points at `iovecs`, whose entries
    // point into the `Bytes` of `chunks`, all borrowed for this synchronous call. The kernel
    // only reads them (copies into the socket buffer) and keeps no pointer after it returns,
    // unlike an io_uring send, which is why a glommio write of a slice is the fallback.
    let sent = unsafe { libc::sendmsg(fd, &message, libc::MSG_DONTWAIT | libc::MSG_NOSIGNAL) };
    if sent < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(sent as usize)
}
