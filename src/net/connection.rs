//! One client connection, owned by the shard that accepted it. The reader takes frames off the
//! socket and starts a handler for each; the writer sends the answers strictly in request order.
//! At most `connection_inflight_max` requests are in flight per connection; a malformed frame
//! or one over `socket.request.max.bytes` closes the connection with a logged reason.

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::rc::Rc;

use bytes::{Bytes, BytesMut};
use futures_lite::AsyncReadExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use super::send::write_chunks;
use crate::storage::notify::Notify;

/// What a handler tells the writer.
pub enum Outcome {
    /// Send these chunks (a whole response, size prefix included).
    Respond(Vec<Bytes>),
    /// Nothing to send (Produce with acks=0).
    Silent,
    /// The request cannot be answered in its protocol: close the connection.
    Close(String),
}

/// Raised once when the shard shuts down: connections stop reading new requests, answer what
/// is in flight, and close.
#[derive(Default)]
pub struct StopSignal {
    raised: Cell<bool>,
    changed: Notify,
}

impl StopSignal {
    pub fn raise(&self) {
        self.raised.set(true);
        self.changed.notify_all();
    }

    pub fn is_raised(&self) -> bool {
        self.raised.get()
    }

    pub async fn wait(&self) {
        self.changed
            .wait_for(|| self.raised.get().then_some(()))
            .await;
    }
}

/// Limits for one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    pub request_size_max_bytes: usize,
    pub inflight_max: usize,
}

/// Serves one connection until the peer closes it, it misbehaves, or `stop` is raised.
pub async fn serve<H, F>(
    stream: TcpStream,
    limits: ConnectionLimits,
    handler: Rc<H>,
    stop: Rc<StopSignal>,
) where
    H: Fn(Bytes, Rc<str>) -> F + 'static,
    F: Future<Output = Outcome> + 'static,
{
    let peer = stream
        .peer_addr()
        .map_or_else(|_| "unknown peer".to_string(), |a| a.to_string());
    // The client's address as Kafka shows it in group descriptions.
    let client_host: Rc<str> = stream
        .peer_addr()
        .map_or_else(|_| "unknown".into(), |a| a.ip().to_string().into());
    let _ = stream.set_nodelay(true);
    // A second descriptor for the writer, so reading and writing proceed independently.
    // SAFETY: dup of an open socket; the new descriptor is owned by the new stream.
    let writer_fd = unsafe { libc::dup(stream.as_raw_fd()) };
    if writer_fd < 0 {
        tracing::warn!(%peer, error = %io::Error::last_os_error(), "cannot serve connection");
        return;
    }
    // SAFETY: `writer_fd` is a fresh descriptor of a connected TCP socket, owned from here on.
    let writer = unsafe { TcpStream::from_raw_fd(writer_fd) };
    let (queue, answers) = local_channel::new_bounded::<JoinHandle<Outcome>>(limits.inflight_max);
    let writer_task = crate::runtime::spawn_local(write_loop(writer, answers, peer.clone()));
    let mut reader = stream;
    // Checked before every read: a client that keeps sending would keep the read ready and
    // the stop branch below unpolled.
    while !stop.is_raised() {
        let next = futures_lite::future::or(
            async { Some(read_frame(&mut reader, limits.request_size_max_bytes).await) },
            async {
                stop.wait().await;
                None
            },
        )
        .await;
        let Some(next) = next else {
            break;
        };
        let frame = match next {
            Ok(Some(frame)) => frame,
            Ok(None) => break,
            Err(reason) => {
                tracing::info!(%peer, %reason, "closing connection");
                break;
            }
        };
        let handler = Rc::clone(&handler);
        let client_host = Rc::clone(&client_host);
        // Detached: a request runs to its end even if the connection goes away meanwhile, so an
        // append is never cut off halfway by a client hanging up.
        let answer =
            crate::runtime::spawn_local(async move { handler(frame, client_host).await }).detach();
        if queue.send(answer).await.is_err() {
            break; // The writer stopped: the connection is closing.
        }
    }
    drop(queue);
    writer_task.await;
    let _ = reader.shutdown(Shutdown::Both).await;
}

/// Reads one frame; `None` at a clean end of stream.
async fn read_frame(
    reader: &mut TcpStream,
    size_max_bytes: usize,
) -> Result<Option<Bytes>, String> {
    let mut prefix = [0u8; 4];
    match reader.read_exact(&mut prefix).await {
        Ok(()) => {}
        Err(error) if error.kind() == io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(error) => return Err(format!("read failed: {error}")),
    }
    let size = i32::from_be_bytes(prefix);
    if size < 0 || size as usize > size_max_bytes {
        return Err(format!(
            "frame size {size} outside 0..={size_max_bytes} (socket.request.max.bytes)"
        ));
    }
    let mut frame = BytesMut::zeroed(size as usize);
    reader
        .read_exact(&mut frame)
        .await
        .map_err(|e| format!("truncated frame of {size} bytes: {e}"))?;
    Ok(Some(frame.freeze()))
}

async fn write_loop(
    mut writer: TcpStream,
    answers: local_channel::LocalReceiver<JoinHandle<Outcome>>,
    peer: String,
) {
    while let Some(answer) = answers.recv().await {
        match answer
            .await
            .unwrap_or(Outcome::Close("request handler failed".into()))
        {
            Outcome::Respond(chunks) => {
                if let Err(error) = write_chunks(&mut writer, &chunks).await {
                    tracing::debug!(%peer, %error, "write failed, closing connection");
                    break;
                }
            }
            Outcome::Silent => {}
            Outcome::Close(reason) => {
                tracing::info!(%peer, %reason, "closing connection");
                break;
            }
        }
    }
    // Wakes the reader if it is still waiting for a frame.
    let _ = writer.shutdown(Shutdown::Both).await;
}
