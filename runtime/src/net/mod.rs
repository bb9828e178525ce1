//! Blocking-style sockets for goroutines (`gort::net`): std's API, Go's behaviour.
//!
//! An operation that would block parks the goroutine (wait reason `IO wait`) on the epoll
//! netpoller (`gort-netpoll`), so ten thousand connections cost ten thousand goroutines, not
//! ten thousand threads. Outside a goroutine the same types block their thread in `poll(2)`,
//! like std's. Name resolution runs through [`blocking`](crate::blocking) (it may block the
//! thread in `getaddrinfo`). Errors are std's: EOF is `Ok(0)`, a reset is `ConnectionReset`,
//! a closed peer `BrokenPipe` (never SIGPIPE).

mod fd;
mod tcp;
mod udp;
mod unix;

use std::io;
use std::net::{SocketAddr, ToSocketAddrs};

pub use tcp::{Incoming, TcpListener, TcpStream};
pub use udp::UdpSocket;
pub use unix::{Incoming as UnixIncoming, UnixDatagram, UnixListener, UnixStream};

/// Resolves `addr` without stalling other goroutines.
fn resolve<A: ToSocketAddrs>(addr: A) -> io::Result<Vec<SocketAddr>> {
    crate::proc::blocking(|| addr.to_socket_addrs().map(|it| it.collect()))
}
