//! One client connection, owned by the shard that accepted it. The reader takes frames off the
//! socket and starts a handler for each; the writer sends the answers strictly in request order.
//! At most `connection_inflight_max` requests are in flight per connection, and every frame
//! holds its size of the shard's `RequestBudget` until handled. The connection closes, with a
//! rate-limited log line (`close_log`), on a malformed frame or one over
//! `socket.request.max.bytes`, on a frame not whole within `request_read_timeout_ms` of its
//! first byte, after `connections_max_idle_ms` with nothing in flight and nothing read, and
//! when an answer cannot be written for `connections_max_idle_ms`.
//!
//! Reader and writer each end when the other does: the writer shuts the socket down, which
//! wakes a reader waiting for bytes, and raises `writer_done`, which wakes a reader waiting for
//! room in the in-flight queue (glommio's bounded channel leaves a sender waiting on a full
//! queue forever once its receiver is gone).

use std::cell::Cell;
use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::os::unix::io::{AsRawFd, FromRawFd};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use futures_lite::future::or;
use futures_lite::AsyncReadExt;
use glommio::channels::local_channel;
use glommio::net::TcpStream;
use glommio::task::JoinHandle;

use super::budget::{RequestBudget, Reservation};
use super::close_log::{self, CloseKind};
use super::send::write_chunks;
use crate::metrics::BrokerClose;
use crate::storage::notify::Notify;

/// Bytes of the size prefix in front of every Kafka frame.
const SIZE_PREFIX_BYTES: usize = 4;

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
    /// `socket.request.max.bytes`.
    pub request_size_max_bytes: usize,
    pub inflight_max: usize,
    /// `connections.max.idle.ms`: nothing in flight and nothing read this long closes the
    /// connection; an answer the client does not take this long does too.
    pub idle_max_ms: u64,
    /// From the first byte of a frame until the whole frame must have arrived.
    pub request_read_timeout_ms: u64,
}

impl ConnectionLimits {
    fn idle_max(&self) -> Duration {
        Duration::from_millis(self.idle_max_ms.max(1))
    }

    fn request_read_timeout(&self) -> Duration {
        Duration::from_millis(self.request_read_timeout_ms.max(1))
    }
}

/// What reader and writer of one connection know of each other.
struct Shared {
    /// Requests read and not yet answered (or given up on).
    inflight: Cell<usize>,
    /// When a frame was last read whole or an answer last written.
    active_at: Cell<Instant>,
    writer_done: Cell<bool>,
    changed: Notify,
}

impl Shared {
    /// When the connection becomes idle if nothing happens meanwhile; while requests are in
    /// flight, not before a whole idle period from now.
    fn idle_deadline(&self, idle_max: Duration) -> Instant {
        if self.inflight.get() > 0 {
            Instant::now() + idle_max
        } else {
            self.active_at.get() + idle_max
        }
    }

    fn finish_writer(&self) {
        self.writer_done.set(true);
        self.changed.notify_all();
    }

    async fn writer_finished(&self) {
        self.changed
            .wait_for(|| self.writer_done.get().then_some(()))
            .await;
    }
}

/// Why the reader stopped.
enum ReadEnd {
    /// The peer closed its side between frames.
    PeerClosed,
    /// The stop signal.
    Stopped,
    /// The writer ended (write failed, or an answer closed the connection).
    WriterDone,
    Idle,
    ReadTimeout(String),
    Malformed(String),
    /// The socket failed, or the peer went away in the middle of a frame.
    Failed(String),
}

/// Serves one connection until the peer closes it, it misbehaves, or `stop` is raised.
pub async fn serve<H, F>(
    stream: TcpStream,
    limits: ConnectionLimits,
    budget: Rc<RequestBudget>,
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
    // A client that stops taking answers would otherwise hold the writer, and with it the
    // connection, forever.
    let _ = writer.set_write_timeout(Some(limits.idle_max()));
    let shared = Rc::new(Shared {
        inflight: Cell::new(0),
        active_at: Cell::new(Instant::now()),
        writer_done: Cell::new(false),
        changed: Notify::default(),
    });
    let (queue, answers) = local_channel::new_bounded::<JoinHandle<Outcome>>(limits.inflight_max);
    let writer_task = crate::runtime::spawn_local(write_loop(
        writer,
        answers,
        peer.clone(),
        Rc::clone(&shared),
    ));
    let dispatch = Dispatch {
        queue,
        handler,
        client_host,
    };
    let mut reader = stream;
    let end = read_loop(&mut reader, limits, &budget, &shared, &dispatch, &stop).await;
    report(end, &peer);
    drop(dispatch);
    writer_task.await;
    let _ = reader.shutdown(Shutdown::Both).await;
}

/// Starts a handler for each frame and queues its answer for the writer.
struct Dispatch<H> {
    queue: local_channel::LocalSender<JoinHandle<Outcome>>,
    handler: Rc<H>,
    client_host: Rc<str>,
}

impl<H, F> Dispatch<H>
where
    H: Fn(Bytes, Rc<str>) -> F + 'static,
    F: Future<Output = Outcome> + 'static,
{
    /// Starts the handler of `frame` and queues its answer; false once the writer has ended.
    async fn start(&self, frame: Bytes, reservation: Reservation, shared: &Shared) -> bool {
        let handler = Rc::clone(&self.handler);
        let client_host = Rc::clone(&self.client_host);
        // Detached: a request runs to its end even if the connection goes away meanwhile, so an
        // append is never cut off halfway by a client hanging up. Its bytes stay reserved until
        // then, since the handler holds them.
        let answer = crate::runtime::spawn_local(async move {
            let outcome = handler(frame, client_host).await;
            drop(reservation);
            outcome
        })
        .detach();
        shared.inflight.set(shared.inflight.get() + 1);
        let queued = or(async { self.queue.send(answer).await.is_ok() }, async {
            shared.writer_finished().await;
            false
        })
        .await;
        if !queued {
            shared.inflight.set(shared.inflight.get() - 1);
        }
        queued
    }
}

async fn read_loop<H, F>(
    reader: &mut TcpStream,
    limits: ConnectionLimits,
    budget: &Rc<RequestBudget>,
    shared: &Shared,
    dispatch: &Dispatch<H>,
    stop: &StopSignal,
) -> ReadEnd
where
    H: Fn(Bytes, Rc<str>) -> F + 'static,
    F: Future<Output = Outcome> + 'static,
{
    // Checked before every read: a client that keeps sending would keep the read ready and
    // the stop branch below unpolled.
    while !stop.is_raised() {
        let next = or(
            async { Some(read_frame(reader, limits, budget, shared).await) },
            async {
                stop.wait().await;
                None
            },
        )
        .await;
        let (frame, reservation) = match next {
            None => return ReadEnd::Stopped,
            Some(Ok(read)) => read,
            Some(Err(end)) => return end,
        };
        if !dispatch.start(frame, reservation, shared).await {
            return ReadEnd::WriterDone;
        }
    }
    ReadEnd::Stopped
}

/// Reads one frame and reserves its bytes: waits for its first byte as long as the connection
/// may stay idle, then for the rest (room in the budget included) until the read deadline.
async fn read_frame(
    reader: &mut TcpStream,
    limits: ConnectionLimits,
    budget: &Rc<RequestBudget>,
    shared: &Shared,
) -> Result<(Bytes, Reservation), ReadEnd> {
    let mut prefix = [0u8; SIZE_PREFIX_BYTES];
    let first_read = read_first_bytes(reader, &mut prefix, limits.idle_max(), shared).await?;
    let progress = FrameProgress::default();
    let timeout = limits.request_read_timeout();
    let read = or(
        read_rest(reader, prefix, first_read, limits, budget, &progress),
        async {
            glommio::timer::sleep(timeout).await;
            Err(ReadEnd::ReadTimeout(progress.describe(limits)))
        },
    )
    .await?;
    shared.active_at.set(Instant::now());
    Ok(read)
}

/// Reads the first bytes of the next frame into `prefix`; ends the connection once it has been
/// idle for `idle_max`.
async fn read_first_bytes(
    reader: &mut TcpStream,
    prefix: &mut [u8; SIZE_PREFIX_BYTES],
    idle_max: Duration,
    shared: &Shared,
) -> Result<usize, ReadEnd> {
    loop {
        let deadline = shared.idle_deadline(idle_max);
        // Cancelling a glommio read loses no bytes: it receives only when polled.
        let read = or(async { Some(reader.read(&mut prefix[..]).await) }, async {
            glommio::timer::sleep(deadline.saturating_duration_since(Instant::now())).await;
            None
        })
        .await;
        match read {
            Some(Ok(0)) => return Err(ReadEnd::PeerClosed),
            Some(Ok(read_bytes)) => return Ok(read_bytes),
            Some(Err(error)) if error.kind() == io::ErrorKind::Interrupted => {}
            Some(Err(error)) => return Err(ReadEnd::Failed(format!("read failed: {error}"))),
            None => {
                if shared.inflight.get() == 0 && Instant::now() >= shared.idle_deadline(idle_max) {
                    return Err(ReadEnd::Idle);
                }
            }
        }
    }
}

/// How far a frame got, for the line that says why it timed out.
#[derive(Default)]
struct FrameProgress {
    size_bytes: Cell<Option<usize>>,
    waiting_for_budget: Cell<bool>,
    received_bytes: Cell<usize>,
}

impl FrameProgress {
    fn describe(&self, limits: ConnectionLimits) -> String {
        let timeout_ms = limits.request_read_timeout_ms;
        match self.size_bytes.get() {
            None => format!("no whole size prefix within request_read_timeout_ms ({timeout_ms})"),
            Some(size) if self.waiting_for_budget.get() => format!(
                "no room for a frame of {size} bytes in queued_max_request_bytes within request_read_timeout_ms ({timeout_ms})"
            ),
            Some(size) => format!(
                "{} of a frame of {size} bytes received within request_read_timeout_ms ({timeout_ms})",
                self.received_bytes.get()
            ),
        }
    }
}

async fn read_rest(
    reader: &mut TcpStream,
    mut prefix: [u8; SIZE_PREFIX_BYTES],
    first_read: usize,
    limits: ConnectionLimits,
    budget: &Rc<RequestBudget>,
    progress: &FrameProgress,
) -> Result<(Bytes, Reservation), ReadEnd> {
    read_exact(reader, &mut prefix[first_read..], &progress.received_bytes).await?;
    let size = i32::from_be_bytes(prefix);
    let size_max = limits.request_size_max_bytes;
    let size = match usize::try_from(size) {
        Ok(size) if size <= size_max && size <= budget.limit_bytes() => size,
        Ok(size) if size <= size_max => {
            return Err(ReadEnd::Malformed(format!(
                "frame size {size} over queued_max_request_bytes ({})",
                budget.limit_bytes()
            )))
        }
        _ => {
            return Err(ReadEnd::Malformed(format!(
                "frame size {size} outside 0..={size_max} (socket.request.max.bytes)"
            )))
        }
    };
    progress.size_bytes.set(Some(size));
    progress.waiting_for_budget.set(true);
    let reservation = budget.reserve(size).await;
    progress.waiting_for_budget.set(false);
    progress.received_bytes.set(0);
    let mut frame = BytesMut::zeroed(size);
    read_exact(reader, &mut frame, &progress.received_bytes).await?;
    Ok((frame.freeze(), reservation))
}

/// Fills `buf`, counting what arrived in `received_bytes`; the caller bounds the time.
async fn read_exact(
    reader: &mut TcpStream,
    buf: &mut [u8],
    received_bytes: &Cell<usize>,
) -> Result<(), ReadEnd> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]).await {
            Ok(0) => {
                return Err(ReadEnd::Failed(format!(
                    "peer closed after {filled} of {} bytes",
                    buf.len()
                )))
            }
            Ok(read_bytes) => {
                filled += read_bytes;
                received_bytes.set(received_bytes.get() + read_bytes);
            }
            Err(error) if error.kind() == io::ErrorKind::Interrupted => {}
            Err(error) => return Err(ReadEnd::Failed(format!("read failed: {error}"))),
        }
    }
    Ok(())
}

fn report(end: ReadEnd, peer: &str) {
    match end {
        ReadEnd::PeerClosed | ReadEnd::Stopped | ReadEnd::WriterDone => {}
        ReadEnd::Idle => {
            crate::metrics::connection_closed_by_broker(BrokerClose::Idle);
            tracing::debug!(%peer, "closing idle connection (connections_max_idle_ms)");
        }
        ReadEnd::ReadTimeout(reason) => {
            crate::metrics::connection_closed_by_broker(BrokerClose::RequestReadTimeout);
            close_log::record(CloseKind::ReadTimeout, peer, &reason);
        }
        ReadEnd::Malformed(reason) => {
            crate::metrics::connection_closed_by_broker(BrokerClose::Malformed);
            close_log::record(CloseKind::Malformed, peer, &reason);
        }
        ReadEnd::Failed(reason) => {
            tracing::debug!(%peer, reason = %close_log::one_line(&reason), "closing connection");
        }
    }
}

async fn write_loop(
    mut writer: TcpStream,
    answers: local_channel::LocalReceiver<JoinHandle<Outcome>>,
    peer: String,
    shared: Rc<Shared>,
) {
    while let Some(answer) = answers.recv().await {
        let outcome = answer
            .await
            .unwrap_or(Outcome::Close("request handler failed".into()));
        let written = match outcome {
            Outcome::Respond(chunks) => write_chunks(&mut writer, &chunks).await,
            Outcome::Silent => Ok(()),
            Outcome::Close(reason) => {
                crate::metrics::connection_closed_by_broker(BrokerClose::Malformed);
                close_log::record(CloseKind::Malformed, &peer, &reason);
                break;
            }
        };
        shared.inflight.set(shared.inflight.get() - 1);
        shared.active_at.set(Instant::now());
        if let Err(error) = written {
            if error.kind() == io::ErrorKind::TimedOut {
                crate::metrics::connection_closed_by_broker(BrokerClose::WriteTimeout);
            }
            tracing::debug!(%peer, %error, "write failed, closing connection");
            break;
        }
    }
    shared.finish_writer();
    // Wakes the reader if it is still waiting for a frame.
    let _ = writer.shutdown(Shutdown::Both).await;
}
