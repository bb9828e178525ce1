//! Blocking-style sockets for goroutines (`gort::net`): std's API, Go's behaviour.
//!
//! An operation that would block parks the goroutine (wait reason `IO wait`) on the epoll
//! netpoller (`gort-netpoll`), so ten thousand connections cost ten thousand goroutines, not
//! ten thousand threads. Outside a goroutine the same types block their thread in `poll(2)`,
//! like std's. Name resolution runs through [`blocking`](crate::blocking) (it may block the
//! thread in `getaddrinfo`). Errors are std's: EOF is `Ok(0)`, a reset is `ConnectionReset`,
//! a closed peer `BrokenPipe` (never SIGPIPE).
//!
//! The types: [`TcpListener`], [`TcpStream`], [`UdpSocket`], [`UnixListener`], [`UnixStream`],
//! [`UnixDatagram`]. Each is a `PollFd` (`fd.rs`: a non-blocking std socket plus its poller
//! registration, Go's `internal/poll.FD`) with std's methods on top; every one converts from and
//! to its std type (`from_std`/`into_std`, `TryFrom`), and has std's per-operation timeouts
//! (`WouldBlock` when they expire) and Go's absolute deadlines (`TimedOut`, "i/o timeout", also
//! interrupting an operation already blocked; [`PollError::of`] tells them apart). Listeners and datagram sockets have `close()`,
//! Go's `Close` for waking goroutines blocked on them; the descriptor itself closes on drop.

mod fd;
mod tcp;
mod udp;
mod unix;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

/// The poller's own errors inside an `io::Error`: [`PollError::of`] tells a closed socket
/// (`Closed`, Go's `net.ErrClosed`) or an expired deadline (`TimedOut`) from the OS's errors.
pub use gort_netpoll::PollError;
pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{Incoming as UnixIncoming, UnixDatagram, UnixListener, UnixStream};

/// Resolves `addr` without stalling other goroutines.
fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    crate::blocking::blocking(|| addr.to_socket_addrs().map(|it| it.collect()))
}
