//! TCP semantics on goroutines and plain threads: half-close, timeouts and deadlines, connect
//! timeout, reset by peer, broken pipe, listener close, `IO wait` in goroutine dumps, readers
//! blocked while others compute.
mod common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, SocketAddr};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use common::{go, run, Watchdog};
use gort::net::{TcpListener, TcpStream};

/// A connected pair over loopback: (client, server side).
fn pair() -> (TcpStream, TcpStream) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = TcpStream::connect(l.local_addr().unwrap()).unwrap();
    let (s, _) = l.accept().unwrap();
    (c, s)
}

#[test]
fn half_close() {
    let _w = Watchdog::new("half_close", Duration::from_secs(60));
    run(|| {
        let (mut c, mut s) = pair();
        c.write_all(b"request").unwrap();
        c.shutdown(Shutdown::Write).unwrap();
        // The server reads everything, then EOF.
        let mut got = Vec::new();
        s.read_to_end(&mut got).unwrap();
        assert_eq!(got, b"request");
        // ... and can still answer on its own half.
        s.write_all(b"response").unwrap();
        drop(s);
        let mut back = Vec::new();
        c.read_to_end(&mut back).unwrap();
        assert_eq!(back, b"response");
        // Writing on the shut-down half fails.
        assert_eq!(c.write(b"x").unwrap_err().kind(), ErrorKind::BrokenPipe);
    });
}

#[test]
fn read_timeout_is_would_block_and_recoverable() {
    let _w = Watchdog::new("read_timeout", Duration::from_secs(60));
    run(|| {
        let (mut c, mut s) = pair();
        assert!(c.set_read_timeout(Some(Duration::ZERO)).is_err());
        c.set_read_timeout(Some(Duration::from_millis(30))).unwrap();
        assert_eq!(c.read_timeout().unwrap(), Some(Duration::from_millis(30)));
        let t = Instant::now();
        let e = c.read(&mut [0; 8]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e:?}");
        assert!(t.elapsed() >= Duration::from_millis(25));
        // The socket is still usable: data sent now is read.
        s.write_all(b"late").unwrap();
        let mut buf = [0; 4];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"late");
        c.set_read_timeout(None).unwrap();
        assert_eq!(c.read_timeout().unwrap(), None);
    });
}

#[test]
fn read_deadline_is_timed_out_and_clearable() {
    let _w = Watchdog::new("read_deadline", Duration::from_secs(60));
    run(|| {
        let (mut c, mut s) = pair();
        c.set_read_deadline(Some(Instant::now() + Duration::from_millis(30)));
        let e = c.read(&mut [0; 8]).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e:?}");
        assert_eq!(e.to_string(), "i/o timeout");
        // Sticky: the next read fails at once too, as in Go.
        assert_eq!(c.read(&mut [0; 8]).unwrap_err().kind(), ErrorKind::TimedOut);
        // A deadline in the past fails without waiting.
        c.set_read_deadline(Some(Instant::now() - Duration::from_secs(1)));
        assert_eq!(c.read(&mut [0; 8]).unwrap_err().kind(), ErrorKind::TimedOut);
        // Cleared: reads work again.
        c.set_read_deadline(None);
        s.write_all(b"ok").unwrap();
        let mut buf = [0; 2];
        c.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ok");
    });
}

#[test]
fn deadline_from_another_goroutine_interrupts_blocked_read() {
    let _w = Watchdog::new("deadline_interrupt", Duration::from_secs(60));
    run(|| {
        let (c, _s) = pair();
        let c = Arc::new(c);
        // A past deadline: the blocked reader wakes at once.
        let r = {
            let c = c.clone();
            go!(move || (&*c).read(&mut [0; 8]).map_err(|e| e.kind()))
        };
        common::wait_state(r.id(), "IO wait");
        c.set_read_deadline(Some(Instant::now()));
        assert_eq!(r.join().unwrap(), Err(ErrorKind::TimedOut));

        // A future deadline set while the read is blocked (the read began with none) fires.
        c.set_read_deadline(None);
        let r = {
            let c = c.clone();
            go!(move || (&*c).read(&mut [0; 8]).map_err(|e| e.kind()))
        };
        common::wait_state(r.id(), "IO wait");
        c.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)));
        assert_eq!(r.join().unwrap(), Err(ErrorKind::TimedOut));

        // Extending the deadline while blocked: data arriving before the new deadline wins.
        c.set_read_deadline(Some(Instant::now() + Duration::from_millis(10)));
        c.set_read_deadline(Some(Instant::now() + Duration::from_secs(30)));
        let r = {
            let c = c.clone();
            go!(move || {
                let mut b = [0; 2];
                (&*c).read_exact(&mut b).map(|_| b).map_err(|e| e.kind())
            })
        };
        gort::time::sleep(Duration::from_millis(50));
        (&_s).write_all(b"hi").unwrap();
        assert_eq!(r.join().unwrap(), Ok(*b"hi"));
    });
}

#[test]
fn write_deadline_on_full_buffer() {
    let _w = Watchdog::new("write_deadline", Duration::from_secs(60));
    run(|| {
        let (mut c, _s) = pair();
        c.set_write_deadline(Some(Instant::now() + Duration::from_millis(50)));
        // Nobody reads: the buffers fill, then the write times out.
        let chunk = vec![7u8; 64 << 10];
        let mut total = 0usize;
        let e = loop {
            match c.write(&chunk) {
                Ok(n) => total += n,
                Err(e) => break e,
            }
            assert!(total < 1 << 30, "write never blocked");
        };
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e:?}");
        assert!(total > 0);
        // A std write timeout reports WouldBlock.
        c.set_write_deadline(None);
        c.set_write_timeout(Some(Duration::from_millis(20))).unwrap();
        // (the kernel may have grown the buffer meanwhile: write until it is full again)
        let e = loop {
            if let Err(e) = c.write(&chunk) {
                break e;
            }
        };
        assert_eq!(e.kind(), ErrorKind::WouldBlock, "{e:?}");
    });
}

/// A listener whose accept queue is full (backlog 0, never accepted): a further SYN is dropped,
/// so connecting to it hangs until the timeout. Works offline.
fn full_listener() -> (std::net::TcpListener, SocketAddr, Vec<std::net::TcpStream>) {
    // SAFETY: plain socket syscalls on a descriptor we create and then hand to std.
    let l = unsafe {
        let fd = libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0);
        assert!(fd >= 0);
        let mut sa: libc::sockaddr_in = std::mem::zeroed();
        sa.sin_family = libc::AF_INET as _;
        sa.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        let r = libc::bind(fd, &sa as *const _ as *const libc::sockaddr, std::mem::size_of_val(&sa) as _);
        assert_eq!(r, 0);
        assert_eq!(libc::listen(fd, 0), 0);
        std::net::TcpListener::from_raw_fd(fd)
    };
    let addr = l.local_addr().unwrap();
    // Fill the queue; each of these completes (or hangs) on its own, we only need the SYNs sent.
    let mut fill = Vec::new();
    for _ in 0..4 {
        if let Ok(s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
            fill.push(s);
        }
    }
    (l, addr, fill)
}

#[test]
fn connect_timeout_to_full_backlog() {
    let _w = Watchdog::new("connect_timeout", Duration::from_secs(60));
    let (_l, addr, _fill) = full_listener();
    run(move || {
        let t = Instant::now();
        let e = TcpStream::connect_timeout(&addr, Duration::from_millis(100)).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::TimedOut, "{e:?}");
        assert!(t.elapsed() >= Duration::from_millis(90));
        assert!(TcpStream::connect_timeout(&addr, Duration::ZERO).is_err());
    });
    // The same on a plain thread.
    let e = TcpStream::connect_timeout(&addr, Duration::from_millis(50)).unwrap_err();
    assert_eq!(e.kind(), ErrorKind::TimedOut, "{e:?}");
}

#[test]
fn connect_refused() {
    let addr = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    run(move || {
        let e = TcpStream::connect(addr).unwrap_err();
        assert_eq!(e.kind(), ErrorKind::ConnectionRefused, "{e:?}");
    });
}

/// Closes `s` with SO_LINGER 0: the kernel sends RST instead of FIN.
fn abortive_close(s: TcpStream) {
    let lg = libc::linger { l_onoff: 1, l_linger: 0 };
    // SAFETY: setsockopt on a live descriptor with a correctly sized linger struct.
    let r = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            &lg as *const _ as *const libc::c_void,
            std::mem::size_of_val(&lg) as _,
        )
    };
    assert_eq!(r, 0);
    drop(s);
}

#[test]
fn reset_by_peer() {
    let _w = Watchdog::new("reset_by_peer", Duration::from_secs(60));
    run(|| {
        // A reader blocked when the RST arrives wakes with ConnectionReset.
        let (c, s) = pair();
        let r = go!(move || {
            let mut c = c;
            c.read(&mut [0; 8]).map_err(|e| e.kind())
        });
        gort::time::sleep(Duration::from_millis(20));
        abortive_close(s);
        assert_eq!(r.join().unwrap(), Err(ErrorKind::ConnectionReset));
    });
}

#[test]
fn broken_pipe_not_sigpipe() {
    let _w = Watchdog::new("broken_pipe", Duration::from_secs(60));
    run(|| {
        let (mut c, s) = pair();
        drop(s);
        // The first write may succeed (the RST comes back after it); keep writing.
        let mut e = None;
        for _ in 0..1000 {
            match c.write_all(b"data") {
                Ok(_) => gort::time::sleep(Duration::from_millis(1)),
                Err(err) => {
                    e = Some(err);
                    break;
                }
            }
        }
        let e = e.expect("writes to a closed peer kept succeeding");
        assert!(matches!(e.kind(), ErrorKind::BrokenPipe | ErrorKind::ConnectionReset), "{e:?}");
    });
}

#[test]
fn listener_close_wakes_accept() {
    let _w = Watchdog::new("listener_close", Duration::from_secs(60));
    run(|| {
        let l = Arc::new(TcpListener::bind("127.0.0.1:0").unwrap());
        let a = {
            let l = l.clone();
            go!(move || l.accept().map(|_| ()).map_err(|e| e.to_string()))
        };
        common::wait_state(a.id(), "IO wait");
        l.close();
        assert_eq!(a.join().unwrap(), Err("use of closed network connection".to_string()));
        assert!(l.accept().is_err());
    });
}

#[test]
fn goroutine_dump_shows_io_wait() {
    let _w = Watchdog::new("dump", Duration::from_secs(60));
    run(|| {
        let (c, s) = pair();
        let ids: Vec<_> = {
            let c = Arc::new(c);
            let readers: Vec<_> = (0..2)
                .map(|_| {
                    let c = c.clone();
                    go!(move || {
                        let mut b = [0u8; 1];
                        (&*c).read_exact(&mut b).unwrap();
                    })
                })
                .collect();
            let want: Vec<u64> = readers.iter().map(|r| r.id()).collect();
            // Both park: one in the poller, one behind it on the read lock (a Go fdMutex wait
            // shows as a semaphore wait; ours as its own reason), so check the first.
            let deadline = Instant::now() + Duration::from_secs(20);
            loop {
                let gs = gort::runtime::goroutines();
                let io: Vec<_> = gs.iter().filter(|g| want.contains(&g.id) && g.state == "IO wait").collect();
                if !io.is_empty() {
                    assert!(io[0].wait_reason == Some(gort::runtime::WaitReason::IoWait));
                    break;
                }
                assert!(Instant::now() < deadline, "no reader in IO wait: {gs:?}");
                gort::time::sleep(Duration::from_millis(1));
            }
            (&s).write_all(b"ab").unwrap();
            for r in readers {
                r.join().unwrap();
            }
            want
        };
        // A joined goroutine has handed over its result but may still be on its way out (its M
        // recycling it) while the joiner runs on another M: gone soon after, not at once.
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let gs = gort::runtime::goroutines();
            if !gs.iter().any(|g| ids.contains(&g.id)) {
                break;
            }
            assert!(Instant::now() < deadline, "joined readers still listed: {gs:?}");
            gort::time::sleep(Duration::from_millis(1));
        }
    });
}

#[test]
fn blocked_readers_do_not_stall_computation() {
    const READERS: usize = 200;
    const WORKERS: usize = 8;
    let _w = Watchdog::new("readers_and_compute", Duration::from_secs(120));
    run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let mut servers = Vec::new();
        let mut readers = Vec::new();
        for i in 0..READERS {
            let c = TcpStream::connect(addr).unwrap();
            servers.push(l.accept().unwrap().0);
            readers.push(go!(move || {
                let mut c = c;
                let mut b = [0u8; 4];
                c.read_exact(&mut b).unwrap();
                assert_eq!(u32::from_le_bytes(b), i as u32);
            }));
        }
        // Computation finishes while every reader is parked.
        let done = Arc::new(AtomicUsize::new(0));
        let workers: Vec<_> = (0..WORKERS)
            .map(|w| {
                let done = done.clone();
                go!(move || {
                    let mut x = w as u64 + 1;
                    for i in 0..2_000_000u64 {
                        x = x.wrapping_mul(6364136223846793005).wrapping_add(i);
                        if i % 100_000 == 0 {
                            gort::runtime::yield_now();
                        }
                    }
                    done.fetch_add(1, Ordering::SeqCst);
                    x
                })
            })
            .collect();
        for w in workers {
            w.join().unwrap();
        }
        assert_eq!(done.load(Ordering::SeqCst), WORKERS);
        assert!(readers.iter().all(|r| !r.is_finished()), "a reader finished without data");
        // Now the data: every reader gets its own.
        for (i, s) in servers.iter().enumerate() {
            (&*s).write_all(&(i as u32).to_le_bytes()).unwrap();
        }
        for r in readers {
            r.join().unwrap();
        }
    });
}

#[test]
fn plain_threads_use_the_same_types() {
    let _w = Watchdog::new("plain_threads", Duration::from_secs(60));
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let srv = std::thread::spawn(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut buf = [0u8; 5];
        s.read_exact(&mut buf).unwrap();
        s.write_all(&buf).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
        assert_eq!(s.read(&mut buf).unwrap_err().kind(), ErrorKind::WouldBlock);
        s.set_read_timeout(None).unwrap();
        s.set_read_deadline(Some(Instant::now() + Duration::from_millis(20)));
        assert_eq!(s.read(&mut buf).unwrap_err().kind(), ErrorKind::TimedOut);
        s.set_read_deadline(None);
        assert_eq!(s.read(&mut buf).unwrap(), 0);
    });
    let mut c = TcpStream::connect(addr).unwrap();
    c.write_all(b"hello").unwrap();
    let mut buf = [0u8; 5];
    c.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"hello");
    std::thread::sleep(Duration::from_millis(100));
    drop(c);
    srv.join().unwrap();

    // A goroutine and a plain thread on the two ends of one connection.
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    let t = std::thread::spawn(move || {
        let mut c = TcpStream::connect(addr).unwrap();
        for i in 0..100u32 {
            c.write_all(&i.to_le_bytes()).unwrap();
            let mut b = [0; 4];
            c.read_exact(&mut b).unwrap();
            assert_eq!(u32::from_le_bytes(b), i + 1);
        }
    });
    run(move || {
        let (mut s, _) = l.accept().unwrap();
        let mut b = [0; 4];
        for _ in 0..100 {
            s.read_exact(&mut b).unwrap();
            s.write_all(&(u32::from_le_bytes(b) + 1).to_le_bytes()).unwrap();
        }
    });
    t.join().unwrap();
}

#[test]
fn std_conversions_and_clone() {
    run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let l2 = l.try_clone().unwrap();
        let std_l = l.into_std().unwrap();
        let addr = std_l.local_addr().unwrap();
        let c = TcpStream::connect(addr).unwrap();
        c.set_nodelay(true).unwrap();
        assert!(c.nodelay().unwrap());
        let (s, peer) = l2.accept().unwrap();
        assert_eq!(peer, c.local_addr().unwrap());
        assert_eq!(s.peer_addr().unwrap(), peer);
        let s2 = s.try_clone().unwrap();
        (&c).write_all(b"xy").unwrap();
        let mut b = [0; 2];
        assert_eq!(s.peek(&mut b).unwrap(), 2);
        (&s2).read_exact(&mut b).unwrap();
        assert_eq!(&b, b"xy");
        // Back to std: blocking again.
        let mut std_c = c.into_std().unwrap();
        std_c.write_all(b"z").unwrap();
        let mut b1 = [0; 1];
        (&s).read_exact(&mut b1).unwrap();
        let back = TcpStream::try_from(std_c).unwrap();
        assert!(format!("{back:?}").contains("TcpStream"));
    });
}

#[test]
fn concurrent_reader_and_writer_on_shared_stream() {
    let _w = Watchdog::new("duplex", Duration::from_secs(60));
    const N: usize = 2000;
    run(|| {
        let (c, s) = pair();
        let c = Arc::new(c);
        let stop = Arc::new(AtomicBool::new(false));
        // Echo on the server.
        let echo = go!(move || {
            let mut s = s;
            let mut buf = [0u8; 4096];
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    return;
                }
                s.write_all(&buf[..n]).unwrap();
            }
        });
        let w = {
            let c = c.clone();
            go!(move || {
                for i in 0..N as u32 {
                    (&*c).write_all(&i.to_le_bytes()).unwrap();
                }
                c.shutdown(Shutdown::Write).unwrap();
            })
        };
        let mut got = Vec::new();
        (&*c).read_to_end(&mut got).unwrap();
        stop.store(true, Ordering::Relaxed);
        w.join().unwrap();
        echo.join().unwrap();
        assert_eq!(got.len(), N * 4);
        for (i, ch) in got.chunks(4).enumerate() {
            assert_eq!(u32::from_le_bytes(ch.try_into().unwrap()), i as u32);
        }
    });
}

/// Go's "cancel the readers": a deadline set in the past while several goroutines read one
/// socket makes every one of them return `TimedOut`, including those still queued for the read
/// lock when it was set; the same for writers on a full buffer. (A queued reader used to compute
/// its limit before waiting for the lock, then reset the descriptor's past deadline when it got
/// the lock, and park with no deadline at all, forever.)
#[test]
fn past_deadline_cancels_every_queued_reader_and_writer() {
    const N: usize = 4;
    let _w = Watchdog::new("past_deadline_cancels_every_queued_reader_and_writer", Duration::from_secs(60));
    run(|| {
        let (c, s) = pair();
        let c = Arc::new(c);
        let in_io_wait = |ids: &[u64]| {
            gort::runtime::goroutines().iter().filter(|g| ids.contains(&g.id) && g.state == "IO wait").count()
        };
        let readers: Vec<_> = (0..N)
            .map(|_| {
                let c = c.clone();
                go!(move || (&*c).read(&mut [0; 8]).map_err(|e| e.kind()))
            })
            .collect();
        let ids: Vec<u64> = readers.iter().map(|h| h.id()).collect();
        // One reader waits in the poller, the others for the read lock.
        while in_io_wait(&ids) == 0 {
            gort::time::sleep(Duration::from_millis(1));
        }
        gort::time::sleep(Duration::from_millis(20));
        c.set_read_deadline(Some(Instant::now() - Duration::from_secs(1)));
        for r in readers {
            assert_eq!(r.join().unwrap(), Err(ErrorKind::TimedOut));
        }

        // Writers: nobody reads `s`, so once the buffers are full every write blocks.
        let chunk = vec![7u8; 64 << 10];
        c.set_write_timeout(Some(Duration::from_millis(50))).unwrap();
        while (&*c).write(&chunk).is_ok() {}
        c.set_write_timeout(None).unwrap();
        let writers: Vec<_> = (0..N)
            .map(|_| {
                let (c, chunk) = (c.clone(), chunk.clone());
                go!(move || loop {
                    if let Err(e) = (&*c).write(&chunk) {
                        return e.kind();
                    }
                })
            })
            .collect();
        let ids: Vec<u64> = writers.iter().map(|h| h.id()).collect();
        while in_io_wait(&ids) == 0 {
            gort::time::sleep(Duration::from_millis(1));
        }
        gort::time::sleep(Duration::from_millis(20));
        c.set_write_deadline(Some(Instant::now() - Duration::from_secs(1)));
        for w in writers {
            assert_eq!(w.join().unwrap(), ErrorKind::TimedOut);
        }
        drop(s);
    });
}

/// A short read lets the next read wait for readiness before its syscall; that wait must not
/// miss what a short read does not consume. Here the data and the hang-up (or the urgent data)
/// are all in, and their events taken by the poller, before the reader's first read: `sent` is
/// written, then the reader sleeps while another goroutine's parked read keeps an M blocked in
/// the poller, which consumes the events into the reader's (empty) slot. The first read takes
/// `first`, short; the second must see `second` at once, not park for an edge that already came.
fn short_read_then(send: impl FnOnce(&std::net::TcpStream), first: &[u8], second: &[u8]) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let c = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
    c.set_nodelay(true).unwrap();
    let (mut s, _) = l.accept().unwrap();
    // Someone parked on the network, so the idle M polls while we sleep.
    let (idle_c, idle_s) = pair();
    let idle = go!(move || {
        let mut idle_s = idle_s;
        idle_s.read(&mut [0; 1]).unwrap()
    });
    send(&c);
    gort::time::sleep(Duration::from_millis(100));
    let mut buf = [0; 64];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], first);
    // Without the fix this read parks until the deadline.
    s.set_read_deadline(Some(Instant::now() + Duration::from_secs(10)));
    let n = s.read(&mut buf).unwrap();
    assert_eq!(&buf[..n], second);
    (&idle_c).write_all(b"x").unwrap();
    assert_eq!(idle.join().unwrap(), 1);
    drop(c);
}

#[test]
fn eof_after_a_short_read_is_seen() {
    let _w = Watchdog::new("eof_after_short_read", Duration::from_secs(60));
    run(|| {
        short_read_then(
            |c| {
                (&*c).write_all(b"hello").unwrap();
                c.shutdown(Shutdown::Write).unwrap();
            },
            b"hello",
            b"",
        )
    });
}

#[test]
fn data_after_the_urgent_mark_is_seen() {
    let _w = Watchdog::new("data_after_urgent_mark", Duration::from_secs(60));
    run(|| {
        short_read_then(
            |c| {
                (&*c).write_all(b"ab").unwrap();
                // SAFETY: one readable byte for the call; `c` is an open socket.
                let r = unsafe { libc::send(c.as_raw_fd(), b"!".as_ptr().cast(), 1, libc::MSG_OOB) };
                assert_eq!(r, 1);
                (&*c).write_all(b"de").unwrap();
            },
            // A read stops at the urgent mark; the urgent byte itself is out of band.
            b"ab",
            b"de",
        )
    });
}

#[test]
fn short_reads_then_parked_reads_see_every_message() {
    let _w = Watchdog::new("short_reads_then_parked", Duration::from_secs(60));
    run(|| {
        // Every read here is short (a 64-byte buffer, 10-byte messages), so every read after
        // the first waits before its syscall; each message must still wake it.
        let (c, s) = pair();
        let echo = go!(move || common::echo_until_eof(s));
        let mut c = c;
        for i in 0..200u32 {
            let msg = [i as u8; 10];
            c.write_all(&msg).unwrap();
            let mut back = [0; 10];
            c.read_exact(&mut back).unwrap();
            assert_eq!(back, msg);
            if i % 50 == 0 {
                // A gap, so the echo goroutine parks rather than finds data queued.
                gort::time::sleep(Duration::from_millis(5));
            }
        }
        c.shutdown(Shutdown::Write).unwrap();
        assert_eq!(echo.join().unwrap(), 2000);
    });
}
