//! 5,000 simultaneous loopback connections, each exchanging data through its own goroutine pair.
//! `GORT_STRESS` multiplies the rounds each connection talks (the connections are bounded by
//! the open-files limit).
mod common;

use std::io::{Read, Write};
use std::os::fd::FromRawFd;
use std::sync::Arc;
use std::time::Duration;

use common::{go, run, Watchdog};
use gort::net::{TcpListener, TcpStream};

const CONNS: usize = 5_000;
fn rounds() -> u32 {
    10 * common::stress() as u32
}

/// Raises the soft open-files limit to the hard one (10,000+ descriptors are needed).
fn raise_nofile() -> u64 {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        r.rlim_cur = r.rlim_max;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
    }
    r.rlim_cur
}

/// A loopback listener with a deep accept queue (std's is 128), so 5,000 concurrent connects do
/// not overflow it into SYN retransmissions.
fn listener(backlog: i32) -> TcpListener {
    // SAFETY: plain socket syscalls on a descriptor we create and then hand to std.
    let l = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let one: libc::c_int = 1;
        libc::setsockopt(fd, libc::SOL_SOCKET, libc::SO_REUSEADDR, &one as *const _ as *const _, 4);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as _;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let r = libc::bind(fd, &sa as *const _ as *const libc::sockaddr, std::mem::size_of_val(&sa) as _);
        assert_eq!(r, 0);
        assert_eq!(libc::listen(fd, backlog), 0);
        std::net::TcpListener::from_raw_fd(fd)
    };
    TcpListener::from_std(l).unwrap()
}

#[test]
fn five_thousand_connections() {
    let limit = raise_nofile();
    assert!(limit as usize > 2 * CONNS + 100, "RLIMIT_NOFILE hard limit {limit} too low");
    let _w = Watchdog::new("five_thousand_connections", Duration::from_secs(240) * common::stress() as u32);
    run(|| {
        let l = listener(4096);
        let addr = l.local_addr().unwrap();
        // Every client holds its connection until all are connected, then talks.
        let all_connected = Arc::new(gort::sync::WaitGroup::new());
        all_connected.add(CONNS as i64);
        let srv = go!(move || {
            let mut hs = Vec::with_capacity(CONNS);
            for _ in 0..CONNS {
                let (s, _) = l.accept().unwrap();
                hs.push(go!(move || common::echo_until_eof(s)));
            }
            hs.into_iter().map(|h| h.join().unwrap()).sum::<usize>()
        });
        let clients: Vec<_> = (0..CONNS)
            .map(|i| {
                let wg = all_connected.clone();
                go!(move || {
                    let mut c = TcpStream::connect(addr).unwrap();
                    wg.done();
                    wg.wait();
                    let mut sent = 0;
                    for r in 0..rounds() {
                        let msg = format!("{i}:{r};");
                        c.write_all(msg.as_bytes()).unwrap();
                        let mut got = vec![0u8; msg.len()];
                        c.read_exact(&mut got).unwrap();
                        assert_eq!(got, msg.as_bytes());
                        sent += msg.len();
                    }
                    sent
                })
            })
            .collect();
        let sent: usize = clients.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(srv.join().unwrap(), sent);
    });
}
