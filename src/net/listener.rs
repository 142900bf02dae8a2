//! The shard's Kafka listener: every shard binds the same address with SO_REUSEPORT, so the
//! kernel spreads connections over shards. Built with socket2 to set the options glommio does
//! not (SO_REUSEADDR, so a restart binds at once over connections of the last run), and to keep
//! the descriptor: at shutdown the socket is shut down before it is dropped, because an accept
//! still queued in io_uring would otherwise keep it listening after the process is gone.

use std::io;
use std::net::SocketAddr;
use std::os::unix::io::{FromRawFd, IntoRawFd, RawFd};

use glommio::net::TcpListener;
use socket2::{Domain, Socket, Type};

/// Pending connections per shard before the kernel refuses more.
const BACKLOG: i32 = 1024;

pub struct ShardListener {
    pub listener: TcpListener,
    fd: RawFd,
}

impl ShardListener {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let fd = socket.into_raw_fd();
        // SAFETY: `fd` is a listening TCP socket we own; the listener takes ownership.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        Ok(ShardListener { listener, fd })
    }

    /// Stops listening now, even while an accept is still queued in io_uring.
    pub fn close(self) {
        // SAFETY: `fd` is still owned by `self.listener`, which is dropped right after.
        unsafe { libc::shutdown(self.fd, libc::SHUT_RDWR) };
        drop(self.listener);
    }
}
