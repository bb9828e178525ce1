//! UDP: [`UdpSocket`], std's API on the network poller.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};

use gort_netpoll::Mode;

use super::fd::{limit_methods, PollFd};
use super::resolve;
use super::tcp::fd_traits;

/// A UDP socket (std's `UdpSocket`; Go's `net.UDPConn`).
///
/// `recv_from`/`recv` park the goroutine until a datagram arrives; `send_to`/`send` park only
/// while the send buffer is full. Timeouts and deadlines work as on
/// [`TcpStream`](super::TcpStream). Outside a goroutine it blocks its thread like std's.
pub struct UdpSocket {
    fd: PollFd<std::net::UdpSocket>,
}

impl UdpSocket {
    /// Binds to `addr` (resolved through [`blocking`](crate::blocking)), trying each address.
    pub fn bind<A: ToSocketAddrs>(addr: A) -> io::Result<UdpSocket> {
        let mut last = None;
        for a in resolve(addr)? {
            match std::net::UdpSocket::bind(a) {
                Ok(s) => return UdpSocket::from_std(s),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to bind to")))
    }

    /// Takes over a std socket (it is switched to non-blocking mode).
    pub fn from_std(s: std::net::UdpSocket) -> io::Result<UdpSocket> {
        Ok(UdpSocket { fd: PollFd::new(s)? })
    }

    /// Gives back the std socket, in blocking mode.
    pub fn into_std(self) -> io::Result<std::net::UdpSocket> {
        self.fd.into_inner()
    }

    /// Receives one datagram, returning its length and sender. Excess bytes of a datagram
    /// longer than `buf` are discarded, as in std.
    pub fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.io(Mode::Read, |s| s.recv_from(buf))
    }

    /// [`recv_from`](Self::recv_from) without consuming the datagram (`MSG_PEEK`).
    pub fn peek_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        self.fd.io(Mode::Read, |s| s.peek_from(buf))
    }

    /// Sends `buf` to `addr` (the first address it resolves to, as std does).
    pub fn send_to<A: ToSocketAddrs>(&self, buf: &[u8], addr: A) -> io::Result<usize> {
        let a = resolve(addr)?
            .into_iter()
            .next()
            .ok_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to send data to"))?;
        self.fd.io(Mode::Write, |s| s.send_to(buf, a))
    }

    /// Sets the default peer for `send`/`recv` and filters received datagrams to it; tries each
    /// address `addr` resolves to.
    pub fn connect<A: ToSocketAddrs>(&self, addr: A) -> io::Result<()> {
        let mut last = None;
        for a in resolve(addr)? {
            match self.fd.get().connect(a) {
                Ok(()) => return Ok(()),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| io::Error::new(io::ErrorKind::InvalidInput, "no addresses to connect to")))
    }

    /// Sends to the connected peer.
    pub fn send(&self, buf: &[u8]) -> io::Result<usize> {
        self.fd.io(Mode::Write, |s| s.send(buf))
    }

    /// Receives from the connected peer.
    pub fn recv(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.io(Mode::Read, |s| s.recv(buf))
    }

    /// [`recv`](Self::recv) without consuming the datagram.
    pub fn peek(&self, buf: &mut [u8]) -> io::Result<usize> {
        self.fd.io(Mode::Read, |s| s.peek(buf))
    }

    /// The local address.
    pub fn local_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().local_addr()
    }

    /// The connected peer's address (`NotConnected` if none).
    pub fn peer_addr(&self) -> io::Result<SocketAddr> {
        self.fd.get().peer_addr()
    }

    /// A second handle to the same socket (a `dup`), registered on its own.
    pub fn try_clone(&self) -> io::Result<UdpSocket> {
        UdpSocket::from_std(self.fd.get().try_clone()?)
    }

    /// `SO_BROADCAST`.
    pub fn set_broadcast(&self, on: bool) -> io::Result<()> {
        self.fd.get().set_broadcast(on)
    }

    /// `SO_BROADCAST`.
    pub fn broadcast(&self) -> io::Result<bool> {
        self.fd.get().broadcast()
    }

    /// `IP_TTL`.
    pub fn set_ttl(&self, ttl: u32) -> io::Result<()> {
        self.fd.get().set_ttl(ttl)
    }

    /// `IP_TTL`.
    pub fn ttl(&self) -> io::Result<u32> {
        self.fd.get().ttl()
    }

    /// `IP_MULTICAST_LOOP`.
    pub fn set_multicast_loop_v4(&self, on: bool) -> io::Result<()> {
        self.fd.get().set_multicast_loop_v4(on)
    }

    /// `IP_MULTICAST_TTL`.
    pub fn set_multicast_ttl_v4(&self, ttl: u32) -> io::Result<()> {
        self.fd.get().set_multicast_ttl_v4(ttl)
    }

    /// `IP_ADD_MEMBERSHIP`.
    pub fn join_multicast_v4(&self, group: &Ipv4Addr, iface: &Ipv4Addr) -> io::Result<()> {
        self.fd.get().join_multicast_v4(group, iface)
    }

    /// `IP_DROP_MEMBERSHIP`.
    pub fn leave_multicast_v4(&self, group: &Ipv4Addr, iface: &Ipv4Addr) -> io::Result<()> {
        self.fd.get().leave_multicast_v4(group, iface)
    }

    /// `IPV6_ADD_MEMBERSHIP`.
    pub fn join_multicast_v6(&self, group: &Ipv6Addr, iface: u32) -> io::Result<()> {
        self.fd.get().join_multicast_v6(group, iface)
    }

    /// `IPV6_DROP_MEMBERSHIP`.
    pub fn leave_multicast_v6(&self, group: &Ipv6Addr, iface: u32) -> io::Result<()> {
        self.fd.get().leave_multicast_v6(group, iface)
    }

    /// The pending socket error (`SO_ERROR`), clearing it.
    pub fn take_error(&self) -> io::Result<Option<io::Error>> {
        self.fd.get().take_error()
    }

    /// Wakes goroutines blocked on this socket with an error ("use of closed network
    /// connection"); later operations fail the same way. The descriptor is closed on drop.
    pub fn close(&self) {
        self.fd.close_waiters();
    }

    limit_methods!();
}

fd_traits!(UdpSocket, std::net::UdpSocket);
