//! TCP: [`TcpListener`] and [`TcpStream`], std's API on the network poller.

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::{Shutdown, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::time::Duration;

use gort_netpoll::Mode;
use socket2::{Domain, Protocol, Socket, Type};

use super::fd::{limit_methods, PollFd};
use super::resolve;
use crate::time::nanotime;

/// A TCP socket server, listening for connections (std's `TcpListener`; Go's `net.Listener`).
///
/// `accept` parks the goroutine until a connection arrives. When the process is out of file
/// descriptors `accept` returns the error (`EMFILE`, as std does) and the pending connection
/// stays queued: back off (e.g. `gort::time::sleep`) and call `accept` again, as Go's
/// `http.Server` does; it succeeds once descriptors are free.
pub struct TcpListener {
    fd: PollFd<std::net::TcpListener>,
}

impl TcpListener {
    /// Binds to `addr` (resolved through [`blocking`](crate::blocking)) and listens, with
    /// `SO_REUSEADDR` as std sets it.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<TcpListener> {
        let addrs = resolve(addr)?;
        let mut last = None;
        for a in addrs {
            match std::net::TcpListener::bind(a) {
                Ok(l) => return TcpListener::from_std(l),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to bind to")))
    }

    /// Takes over a std listener (it is switched to non-blocking mode).
    pub fn from_std(l: std::net::TcpListener) -> io::Result<TcpListener> {
        Ok(TcpListener { fd: PollFd::new(l)? })
    }

    /// Gives back the std listener, in blocking mode.
    pub fn into_std(self) -> io::Result<std::net::TcpListener> {
        self.fd.into_inner()
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(TcpStream, SocketAddr)> {
        let (s, a) = self.fd.io(Mode::Read, |l| l.accept())?;
        Ok((TcpStream::from_std(s)?, a))
    }

    /// Closes the listener for accepting (Go's `Listener.Close`): goroutines blocked in
    /// `accept` wake with an error ("use of closed network connection") and later calls fail
    /// the same way. The descriptor itself is closed on drop.
    pub fn close(&self) {
        self.fd.close_waiters();
    }

    /// An endless iterator of accepted connections (or accept errors), like std's.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { l: self }
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().local_addr()
    }

    /// A second handle to the same socket (a `dup`), registered on its own.
    pub fn try_clone(&self) -> io::Result<TcpListener> {
        TcpListener::from_std(self.fd.get().try_clone()?)
    }

    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.fd.get().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.fd.get().ttl()
    }

    /// The pending socket error (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.get().take_error()
    }
}

/// Iterator returned by [`TcpListener::incoming`].
pub struct Incoming<'a> {
    l: &'a TcpListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<TcpStream>;
    fn next(&mut self) -> Option<io::Result<TcpStream>> {
        Some(self.l.accept().map(|(s, _)| s))
    }
}

/// A TCP connection (std's `TcpStream`; Go's `net.Conn`).
///
/// Reads and writes park the goroutine until the socket is ready. `Read` and `Write` are
/// implemented for `&TcpStream` too, so one goroutine can read while another writes. Timeouts
/// come two ways: std's per-operation `set_read_timeout` (an expired one is `WouldBlock`, as std
/// reports on Linux) and Go's absolute `set_read_deadline` (`TimedOut`, "i/o timeout"), which
/// also interrupts an operation already blocked. Writes use `MSG_NOSIGNAL`: a closed peer is
/// `BrokenPipe`, never a SIGPIPE.
pub struct TcpStream {
    fd: PollFd<std::net::TcpStream>,
}

impl TcpStream {
    /// Connects to `addr` (resolved through [`blocking`](crate::blocking)), trying each
    /// address in turn.
    pub fn connect<A: ToSocketAddrs>(addr: A) -> io::Result<TcpStream> {
        let mut last = None;
        for a in resolve(addr)? {
            match TcpStream::connect_inner(&a, None) {
                Ok(s) => return Ok(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "could not resolve to any addresses")))
    }

    /// Connects to `addr`, failing with `TimedOut` after `timeout` (std's `connect_timeout`).
    pub fn connect_timeout(addr: &SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
        if timeout.is_zero() {
            return Err(io::Error::new(io::ErrorKind::InvalidInput, "cannot set a 0 duration timeout"));
        }
        TcpStream::connect_inner(addr, Some(timeout))
    }

    fn connect_inner(addr: &SocketAddr, timeout: Option<Duration>) -> io::Result<TcpStream> {
        let sock = Socket::new(Domain::for_address(*addr), Type::STREAM.cloexec(), Some(Protocol::TCP))?;
        sock.set_nonblocking(true)?;
        let pending = match sock.connect(&(*addr).into()) {
            Ok(()) => false,
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => true,
            Err(e) => return Err(e),
        };
        let s = TcpStream::from_std(sock.into())?;
        if pending {
            let limit = timeout.map(|t| {
                (nanotime().saturating_add(t.as_nanos().min(u64::MAX as u128) as u64), io::ErrorKind::TimedOut)
            });
            s.fd.io_until(Mode::Write, limit, |st| match st.take_error()? {
                Some(e) => Err(e),
                None => match st.peer_addr() {
                    Ok(_) => Ok(()),
                    Err(e) if e.kind() == io::ErrorKind::NotConnected => Err(io::ErrorKind::WouldBlock.into()),
                    Err(e) => Err(e),
                },
            })?;
        }
        Ok(s)
    }

    /// Takes over a std stream (it is switched to non-blocking mode).
    pub fn from_std(s: std::net::TcpStream) -> io::Result<TcpStream> {
        Ok(TcpStream { fd: PollFd::new(s)? })
    }

    /// Gives back the std stream, in blocking mode.
    pub fn into_std(self) -> io::Result<std::net::TcpStream> {
        self.fd.into_inner()
    }

    /// The remote address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().peer_addr()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().local_addr()
    }

    /// Shuts down the read half, the write half (the peer reads EOF) or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.fd.get().shutdown(how)
    }

    /// `TCP_NODELAY`.
    pub fn set_nodelay(&self, nodelay: bool) -> io::Result<()> {
        self.fd.get().set_nodelay(nodelay)
    }

    /// `TCP_NODELAY`.
    pub fn nodelay(&self) -> io::Result<bool> {
        self.fd.get().nodelay()
    }

    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.fd.get().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.fd.get().ttl()
    }

    /// The pending socket error (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.get().take_error()
    }

    limit_methods!();

    /// Reads without consuming (`MSG_PEEK`), waiting for data like `read`.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.io(Mode::Read, |s| s.peek(buf))
    }

    /// A second handle to the same connection (a `dup`), registered on its own.
    pub fn try_clone(&self) -> io::Result<TcpStream> {
        TcpStream::from_std(self.fd.get().try_clone()?)
    }
}

impl Read for &TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.read_stream(buf.len(), |mut s| s.read(buf))
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        // Past the kernel's iovec limit a read stops short of the buffers with data left: 0 never
        // counts as drained.
        let len = if bufs.len() > libc::UIO_MAXIOV as usize { 0 } else { bufs.iter().map(|b| b.len()).sum() };
        self.fd.read_stream(len, |mut s| s.read_vectored(bufs))
    }
}

impl Write for &TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.fd.io(Mode::Write, |mut s| s.write(buf))
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.fd.io(Mode::Write, |mut s| s.write_vectored(bufs))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for TcpStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for TcpStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        (&*self).write(buf)
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        (&*self).write_vectored(bufs)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

macro_rules! fd_traits {
    ($t:ty, $std:ty) => {
        impl AsRawFd for $t {
            fn as_raw_fd(&self) -> RawFd {
                self.fd.as_raw_fd()
            }
        }
        impl AsFd for $t {
            fn as_fd(&self) -> BorrowedFd<'_> {
                self.fd.get().as_fd()
            }
        }
        impl TryFrom<$std> for $t {
            type Error = io::Error;
            fn try_from(s: $std) -> io::Result<$t> {
                <$t>::from_std(s)
            }
        }
        impl std::fmt::Debug for $t {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.fd.get().fmt(f)
            }
        }
    };
}
pub(crate) use fd_traits;

fd_traits!(TcpListener, std::net::TcpListener);
fd_traits!(TcpStream, std::net::TcpStream);
