//! The shard's Kafka listener: every shard binds the same address with SO_REUSEPORT, so the
//! kernel spreads connections over shards. Built with socket2 to set the options glommio does
//! not (SO_REUSEADDR, so a restart binds at once over connections of the last run), and to keep
//! a second descriptor of the socket: at shutdown the socket is shut down before it is dropped,
//! because an accept still queued in io_uring would otherwise keep it listening after the
//! process is gone.

use std::io;
use std::net::{Shutdown, SocketAddr};
use std::os::unix::io::{FromRawFd, IntoRawFd};

use glommio::net::{TcpListener, TcpStream};
use socket2::{Domain, Socket, Type};

/// Pending connections per shard before the kernel refuses more.
const BACKLOG: i32 = 1024;

pub struct ShardListener {
    listener: TcpListener,
    /// A duplicate descriptor of the same socket, owned here. `shutdown` acts on the socket,
    /// not the descriptor, so shutting this one down stops the listener; and since it is
    /// owned, it cannot have been closed and reused for another file by then, which a raw
    /// copy of the listener's own descriptor could not promise.
    control: Socket,
}

impl ShardListener {
    pub fn bind(addr: SocketAddr) -> io::Result<Self> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, None)?;
        socket.set_reuse_address(true)?;
        socket.set_reuse_port(true)?;
        socket.bind(&addr.into())?;
        socket.listen(BACKLOG)?;
        let control = socket.try_clone()?;
        let fd = socket.into_raw_fd();
        // SAFETY: `into_raw_fd` gave up ownership of `fd`, an open listening TCP socket, and
        // nothing else refers to it: the listener owns it from here and closes it on drop.
        let listener = unsafe { TcpListener::from_raw_fd(fd) };
        Ok(ShardListener { listener, control })
    }

    pub async fn accept(&self) -> glommio::Result<TcpStream, ()> {
        self.listener.accept().await
    }

    /// Stops listening now, even while an accept is still queued in io_uring.
    pub fn close(self) {
        if let Err(error) = self.control.shutdown(Shutdown::Both) {
            // ENOTCONN on some kernels for a listening socket; the drop below still closes it.
            tracing::debug!(%error, "shutting down the listener");
        }
        drop(self.listener);
        drop(self.control);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The reason the listener is shut down and not only dropped: its queued accept keeps the
    /// socket listening otherwise. After `close`, nothing accepts on the port any more.
    #[test]
    fn close_stops_listening_after_an_accept_was_queued() {
        let refused = crate::runtime::run_on_executor("listener-test", || async {
            let listener = ShardListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
            let addr = listener.control.local_addr().unwrap().as_socket().unwrap();
            // As the server stops: the accept is in io_uring when the stop signal wins.
            let accepted =
                futures_lite::future::or(async { Some(listener.accept().await) }, async {
                    glommio::timer::sleep(std::time::Duration::from_millis(20)).await;
                    None
                })
                .await;
            assert!(accepted.is_none(), "nobody connected");
            listener.close();
            std::net::TcpStream::connect(addr).is_err()
        })
        .unwrap();
        assert!(refused, "the port still accepts after close");
    }
}
