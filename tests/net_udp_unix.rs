//! UDP and Unix-domain sockets: round trips on goroutines and plain threads, timeouts,
//! deadlines, close, conversions.
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::Shutdown;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{go, run, Watchdog};
use gort::net::{UdpSocket, UnixDatagram, UnixListener, UnixStream};

fn tmp_path(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("gort-net-{}-{name}.sock", std::process::id()));
    let _ = std::fs::remove_file(&p);
    p
}

#[test]
fn udp_round_trips() {
    const CLIENTS: usize = 20;
    const ROUNDS: u32 = 100;
    let _w = Watchdog::new("udp_round_trips", Duration::from_secs(60));
    run(|| {
        let srv = UdpSocket::bind("127.0.0.1:0").unwrap();
        let addr = srv.local_addr().unwrap();
        let srv = Arc::new(srv);
        let echo = {
            let srv = srv.clone();
            go!(move || {
                let mut buf = [0u8; 1500];
                let mut n_msgs = 0;
                loop {
                    match srv.recv_from(&mut buf) {
                        Ok((n, from)) => {
                            srv.send_to(&buf[..n], from).unwrap();
                            n_msgs += 1;
                        }
                        Err(_) => return n_msgs, // closed
                    }
                }
            })
        };
        let cs: Vec<_> = (0..CLIENTS)
            .map(|i| {
                go!(move || {
                    let c = UdpSocket::bind("127.0.0.1:0").unwrap();
                    c.connect(addr).unwrap();
                    assert_eq!(c.peer_addr().unwrap(), addr);
                    // Loopback UDP does not drop at this rate, but a timeout keeps a lost
                    // datagram from hanging the test: resend on timeout.
                    c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
                    for r in 0..ROUNDS {
                        let msg = format!("{i}/{r}");
                        let mut buf = [0u8; 64];
                        let n = loop {
                            c.send(msg.as_bytes()).unwrap();
                            match c.recv(&mut buf) {
                                Ok(n) => break n,
                                Err(e) if e.kind() == ErrorKind::WouldBlock => continue,
                                Err(e) => panic!("{e}"),
                            }
                        };
                        assert_eq!(&buf[..n], msg.as_bytes());
                    }
                })
            })
            .collect();
        for c in cs {
            c.join().unwrap();
        }
        srv.close();
        assert!(echo.join().unwrap() >= CLIENTS * ROUNDS as usize);
    });
}

#[test]
fn udp_timeouts_peek_and_options() {
    run(|| {
        let a = UdpSocket::bind("127.0.0.1:0").unwrap();
        let b = UdpSocket::bind("127.0.0.1:0").unwrap();
        a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(a.recv_from(&mut [0; 8]).unwrap_err().kind(), ErrorKind::WouldBlock);
        a.set_read_timeout(None).unwrap();
        a.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)));
        assert_eq!(a.recv_from(&mut [0; 8]).unwrap_err().kind(), ErrorKind::TimedOut);
        a.set_read_deadline(None);
        b.send_to(b"peek", a.local_addr().unwrap()).unwrap();
        let mut buf = [0; 8];
        let (n, from) = a.peek_from(&mut buf).unwrap();
        assert_eq!((&buf[..n], from), (&b"peek"[..], b.local_addr().unwrap()));
        let (n, _) = a.recv_from(&mut buf).unwrap();
        assert_eq!(&buf[..n], b"peek");
        a.set_broadcast(true).unwrap();
        assert!(a.broadcast().unwrap());
        a.set_ttl(42).unwrap();
        assert_eq!(a.ttl().unwrap(), 42);
        assert_eq!(a.peer_addr().unwrap_err().kind(), ErrorKind::NotConnected);
        let c = a.try_clone().unwrap();
        let std_a = a.into_std().unwrap();
        assert_eq!(std_a.local_addr().unwrap(), c.local_addr().unwrap());
        let _ = UdpSocket::try_from(std_a).unwrap();
    });
    // Plain thread.
    let a = UdpSocket::bind("127.0.0.1:0").unwrap();
    let b = UdpSocket::bind("127.0.0.1:0").unwrap();
    let t = {
        let addr = a.local_addr().unwrap();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(20));
            b.send_to(b"thread", addr).unwrap();
        })
    };
    let mut buf = [0; 16];
    let (n, _) = a.recv_from(&mut buf).unwrap();
    assert_eq!(&buf[..n], b"thread");
    t.join().unwrap();
}

#[test]
fn unix_stream_round_trips() {
    const CLIENTS: usize = 50;
    let _w = Watchdog::new("unix_stream", Duration::from_secs(60));
    let path = tmp_path("stream");
    let p2 = path.clone();
    run(move || {
        let l = UnixListener::bind(&p2).unwrap();
        assert_eq!(l.local_addr().unwrap().as_pathname(), Some(p2.as_path()));
        let srv = go!(move || {
            for s in l.incoming().take(CLIENTS) {
                let mut s = s.unwrap();
                go!(move || {
                    let mut buf = [0u8; 256];
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        if n == 0 {
                            return;
                        }
                        s.write_all(&buf[..n]).unwrap();
                    }
                });
            }
        });
        let cs: Vec<_> = (0..CLIENTS)
            .map(|i| {
                let p = p2.clone();
                go!(move || {
                    let mut c = UnixStream::connect(&p).unwrap();
                    assert_eq!(c.peer_addr().unwrap().as_pathname(), Some(p.as_path()));
                    for r in 0..50 {
                        let msg = format!("{i}-{r};");
                        c.write_all(msg.as_bytes()).unwrap();
                        let mut got = vec![0; msg.len()];
                        c.read_exact(&mut got).unwrap();
                        assert_eq!(got, msg.as_bytes());
                    }
                    c.shutdown(Shutdown::Write).unwrap();
                    assert_eq!(c.read(&mut [0; 1]).unwrap(), 0);
                })
            })
            .collect();
        for c in cs {
            c.join().unwrap();
        }
        srv.join().unwrap();
    });
    let _ = std::fs::remove_file(&path);
}

#[test]
fn unix_pair_deadlines_broken_pipe_close() {
    let _w = Watchdog::new("unix_pair", Duration::from_secs(60));
    run(|| {
        let (a, b) = UnixStream::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!((&a).read(&mut [0; 4]).unwrap_err().kind(), ErrorKind::WouldBlock);
        a.set_read_timeout(None).unwrap();
        // A deadline from another goroutine interrupts a blocked read.
        let a = Arc::new(a);
        let r = {
            let a = a.clone();
            go!(move || (&*a).read(&mut [0; 4]).map_err(|e| e.kind()))
        };
        gort::time::sleep(Duration::from_millis(20));
        a.set_read_deadline(Some(Instant::now() + Duration::from_millis(10)));
        assert_eq!(r.join().unwrap(), Err(ErrorKind::TimedOut));
        a.set_read_deadline(None);
        (&b).write_all(b"abcd").unwrap();
        let mut buf = [0; 4];
        (&*a).read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"abcd");
        // Writing to a closed peer: BrokenPipe (send with MSG_NOSIGNAL), not SIGPIPE.
        drop(b);
        assert_eq!((&*a).write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
        let a = Arc::try_unwrap(a).unwrap();
        let std_a = a.into_std().unwrap();
        let _ = UnixStream::try_from(std_a).unwrap();
    });
    // Listener close wakes a blocked accept.
    let path = tmp_path("close");
    let p2 = path.clone();
    run(move || {
        let l = Arc::new(UnixListener::bind(&p2).unwrap());
        let acc = {
            let l = l.clone();
            go!(move || l.accept().map(|_| ()).map_err(|e| e.to_string()))
        };
        gort::time::sleep(Duration::from_millis(20));
        l.close();
        assert_eq!(acc.join().unwrap(), Err("use of closed network connection".into()));
    });
    let _ = std::fs::remove_file(&path);
}

#[test]
fn unix_datagram_round_trips() {
    let _w = Watchdog::new("unix_datagram", Duration::from_secs(60));
    let sp = tmp_path("dgram-srv");
    let cp = tmp_path("dgram-cli");
    let (sp2, cp2) = (sp.clone(), cp.clone());
    run(move || {
        let srv = UnixDatagram::bind(&sp2).unwrap();
        let echo = go!(move || {
            let mut buf = [0u8; 256];
            for _ in 0..100 {
                let (n, from) = srv.recv_from(&mut buf).unwrap();
                srv.send_to(&buf[..n], from.as_pathname().unwrap()).unwrap();
            }
        });
        let c = UnixDatagram::bind(&cp2).unwrap();
        c.connect(&sp2).unwrap();
        for i in 0..100 {
            let msg = format!("dgram {i}");
            c.send(msg.as_bytes()).unwrap();
            let mut buf = [0u8; 256];
            let n = c.recv(&mut buf).unwrap();
            assert_eq!(&buf[..n], msg.as_bytes());
        }
        echo.join().unwrap();
        // pair(), and a receive timeout.
        let (a, b) = UnixDatagram::pair().unwrap();
        a.set_read_timeout(Some(Duration::from_millis(10))).unwrap();
        assert_eq!(a.recv(&mut [0; 4]).unwrap_err().kind(), ErrorKind::WouldBlock);
        b.send(b"one").unwrap();
        let mut buf = [0; 8];
        assert_eq!(a.recv(&mut buf).unwrap(), 3);
    });
    let _ = std::fs::remove_file(&sp);
    let _ = std::fs::remove_file(&cp);
}
