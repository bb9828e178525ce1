//! Unix domain sockets: [`UnixListener`], [`UnixStream`], [`UnixDatagram`], std's API
//! (`std::os::unix::net`) on the network poller.
//!
//! `connect` on a Unix stream runs through [`blocking`](crate::blocking): a Unix connect either
//! completes at once or, with the listener's backlog full, waits in the kernel (a non-blocking
//! connect would fail with `EAGAIN` rather than complete later, so there is nothing to poll).

use std::io::{self, IoSlice, IoSliceMut, Read, Write};
use std::net::Shutdown;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::{self as unet, SocketAddr};
use std::path::Path;

use gort_netpoll::Mode;

use super::fd::{limit_methods, send_nosignal, sendv_nosignal, PollFd};
use super::tcp::fd_traits;

/// A Unix stream socket server (std's `UnixListener`; Go's `net.UnixListener`).
///
/// `accept` parks the goroutine until a connection arrives; under `EMFILE` it returns the error
/// and the connection stays queued, as for [`TcpListener`](super::TcpListener).
pub struct UnixListener {
    fd: PollFd<unet::UnixListener>,
}

impl UnixListener {
    /// Binds to the filesystem path `path` (which must not exist) and listens.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixListener> {
        UnixListener::from_std(unet::UnixListener::bind(path)?)
    }

    /// Binds to `addr` (e.g. an abstract address) and listens.
    pub fn bind_addr(addr: &SocketAddr) -> io::Result<UnixListener> {
        UnixListener::from_std(unet::UnixListener::bind_addr(addr)?)
    }

    /// Takes over a std listener (it is switched to non-blocking mode).
    pub fn from_std(l: unet::UnixListener) -> io::Result<UnixListener> {
        Ok(UnixListener { fd: PollFd::new(l)? })
    }

    /// Gives back the std listener, in blocking mode.
    pub fn into_std(self) -> io::Result<unet::UnixListener> {
        self.fd.into_inner()
    }

    /// Waits for a connection.
    pub fn accept(&self) -> io::Result<(UnixStream, SocketAddr)> {
        let (s, a) = self.fd.io(Mode::Read, |l| l.accept())?;
        Ok((UnixStream::from_std(s)?, a))
    }

    /// An endless iterator of accepted connections (or accept errors), like std's.
    pub fn incoming(&self) -> Incoming<'_> {
        Incoming { l: self }
    }

    /// Closes the listener for accepting: goroutines blocked in `accept` wake with an error
    /// ("use of closed network connection") and later calls fail the same way. The descriptor
    /// is closed (and nothing unlinks the path) on drop, as in std.
    pub fn close(&self) {
        self.fd.close_waiters();
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().local_addr()
    }

    /// A second handle to the same socket (a `dup`), registered on its own.
    pub fn try_clone(&self) -> io::Result<UnixListener> {
        UnixListener::from_std(self.fd.get().try_clone()?)
    }

    /// The pending socket error (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.get().take_error()
    }
}

/// Iterator returned by [`UnixListener::incoming`].
pub struct Incoming<'a> {
    l: &'a UnixListener,
}

impl Iterator for Incoming<'_> {
    type Item = io::Result<UnixStream>;
    fn next(&mut self) -> Option<io::Result<UnixStream>> {
        Some(self.l.accept().map(|(s, _)| s))
    }
}

/// A Unix stream connection (std's `UnixStream`; Go's `net.UnixConn`).
///
/// Reads and writes park the goroutine until the socket is ready; `Read` and `Write` are
/// implemented for `&UnixStream` too. Writes use `send(MSG_NOSIGNAL)`: a closed peer is
/// `BrokenPipe`, never SIGPIPE (std's `write(2)` would raise it unless SIGPIPE is ignored).
pub struct UnixStream {
    fd: PollFd<unet::UnixStream>,
}

impl UnixStream {
    /// Connects to the socket at `path` (see the module docs on why through `blocking`).
    pub fn connect<P: AsRef<Path>>(path: P) -> io::Result<UnixStream> {
        let path = path.as_ref();
        UnixStream::from_std(crate::blocking::blocking(|| unet::UnixStream::connect(path))?)
    }

    /// Connects to `addr` (e.g. an abstract address).
    pub fn connect_addr(addr: &SocketAddr) -> io::Result<UnixStream> {
        UnixStream::from_std(crate::blocking::blocking(|| unet::UnixStream::connect_addr(addr))?)
    }

    /// An unnamed pair of connected sockets (`socketpair`).
    pub fn pair() -> io::Result<(UnixStream, UnixStream)> {
        let (a, b) = unet::UnixStream::pair()?;
        Ok((UnixStream::from_std(a)?, UnixStream::from_std(b)?))
    }

    /// Takes over a std stream (it is switched to non-blocking mode).
    pub fn from_std(s: unet::UnixStream) -> io::Result<UnixStream> {
        Ok(UnixStream { fd: PollFd::new(s)? })
    }

    /// Gives back the std stream, in blocking mode.
    pub fn into_std(self) -> io::Result<unet::UnixStream> {
        self.fd.into_inner()
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().local_addr()
    }

    /// The peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().peer_addr()
    }

    /// Shuts down the read half, the write half (the peer reads EOF) or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.fd.get().shutdown(how)
    }

    /// The pending socket error (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.get().take_error()
    }

    /// A second handle to the same connection (a `dup`), registered on its own.
    pub fn try_clone(&self) -> io::Result<UnixStream> {
        UnixStream::from_std(self.fd.get().try_clone()?)
    }

    limit_methods!();
}

impl Read for &UnixStream {
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

impl Write for &UnixStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.fd.io(Mode::Write, |s| send_nosignal(s.as_raw_fd(), buf))
    }
    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        self.fd.io(Mode::Write, |s| sendv_nosignal(s.as_raw_fd(), bufs))
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Read for UnixStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        (&*self).read(buf)
    }
    fn read_vectored(&mut self, bufs: &mut [IoSliceMut<'_>]) -> io::Result<usize> {
        (&*self).read_vectored(bufs)
    }
}

impl Write for UnixStream {
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

/// A Unix datagram socket (std's `UnixDatagram`).
///
/// Receives park the goroutine until a datagram arrives; sends park while the peer's queue is
/// full. Sends use `MSG_NOSIGNAL` (as std's do).
pub struct UnixDatagram {
    fd: PollFd<unet::UnixDatagram>,
}

impl UnixDatagram {
    /// Binds to the filesystem path `path`.
    pub fn bind<P: AsRef<Path>>(path: P) -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(unet::UnixDatagram::bind(path)?)
    }

    /// A socket bound to no address.
    pub fn unbound() -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(unet::UnixDatagram::unbound()?)
    }

    /// An unnamed pair of connected sockets (`socketpair`).
    pub fn pair() -> io::Result<(UnixDatagram, UnixDatagram)> {
        let (a, b) = unet::UnixDatagram::pair()?;
        Ok((UnixDatagram::from_std(a)?, UnixDatagram::from_std(b)?))
    }

    /// Takes over a std socket (it is switched to non-blocking mode).
    pub fn from_std(s: unet::UnixDatagram) -> io::Result<UnixDatagram> {
        Ok(UnixDatagram { fd: PollFd::new(s)? })
    }

    /// Gives back the std socket, in blocking mode.
    pub fn into_std(self) -> io::Result<unet::UnixDatagram> {
        self.fd.into_inner()
    }

    /// Sets the default peer to the socket at `path`.
    pub fn connect<P: AsRef<Path>>(&self, path: P) -> io::Result<()> {
        self.fd.get().connect(path)
    }

    /// Sends `buf` to the socket at `path`.
    pub fn send_to<P: AsRef<Path>>(&self, buf: &[u8], path: P) -> io::Result<usize> {
        let path = path.as_ref();
        self.fd.io(Mode::Write, |s| s.send_to(buf, path))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.io(Mode::Write, |s| s.send(buf))
    }

    /// Receives one datagram and its sender's address.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.io(Mode::Read, |s| s.recv_from(buf))
    }

    /// Receives one datagram.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.io(Mode::Read, |s| s.recv(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().local_addr()
    }

    /// The connected peer's address.
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().peer_addr()
    }

    /// Shuts down the read half, the write half or both.
    pub fn shutdown(&self, how: Shutdown) -> io::Result<()> {
        self.fd.get().shutdown(how)
    }

    /// The pending socket error (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.get().take_error()
    }

    /// A second handle to the same socket (a `dup`), registered on its own.
    pub fn try_clone(&self) -> io::Result<UnixDatagram> {
        UnixDatagram::from_std(self.fd.get().try_clone()?)
    }

    /// Wakes goroutines blocked on this socket with an error ("use of closed network
    /// connection"); later operations fail the same way. The descriptor is closed on drop.
    pub fn close(&self) {
        self.fd.close_waiters();
    }

    limit_methods!();
}

fd_traits!(UnixListener, unet::UnixListener);
fd_traits!(UnixStream, unet::UnixStream);
fd_traits!(UnixDatagram, unet::UnixDatagram);
