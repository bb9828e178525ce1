//! `accept` when the process is out of descriptors: it returns EMFILE (std's error), the
//! runtime does not spin on the still-pending connection, the caller backs off with
//! `gort::time::sleep`, and accepting recovers once descriptors are freed. Runs in a child
//! process with a lowered RLIMIT_NOFILE.
mod common;

use std::io::{ErrorKind, Read, Write};
use std::time::{Duration, Instant};

use common::{go, run};
use gort::net::{TcpListener, TcpStream};

fn cpu_time() -> Duration {
    let mut ru: libc::rusage = unsafe_zeroed();
    // SAFETY: getrusage fills a valid rusage struct.
    assert_eq!(unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) }, 0);
    let tv = |t: libc::timeval| Duration::from_secs(t.tv_sec as u64) + Duration::from_micros(t.tv_usec as u64);
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn unsafe_zeroed() -> libc::rusage {
    // SAFETY: rusage is plain old data; all zeros is a valid value.
    unsafe { std::mem::zeroed() }
}

fn set_nofile(n: u64) {
    let mut r = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit/setrlimit with a valid rlimit struct.
    unsafe {
        assert_eq!(libc::getrlimit(libc::RLIMIT_NOFILE, &mut r), 0);
        r.rlim_cur = n;
        assert_eq!(libc::setrlimit(libc::RLIMIT_NOFILE, &r), 0);
    }
}

fn child() {
    run(|| {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        // The acceptor, written the way Go's http.Server is: on an error, back off and retry.
        let acceptor = go!(move || {
            let mut emfile = 0u32;
            let mut backoff = Duration::from_millis(5);
            loop {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let mut b = [0u8; 4];
                        s.read_exact(&mut b).unwrap();
                        s.write_all(&b).unwrap();
                        return emfile;
                    }
                    Err(e) if e.raw_os_error() == Some(libc::EMFILE) => {
                        emfile += 1;
                        gort::time::sleep(backoff);
                        backoff = (backoff * 2).min(Duration::from_millis(20));
                    }
                    Err(e) => panic!("accept: {e}"),
                }
            }
        });
        // Let the runtime create whatever it needs (threads, the poller) before the limit bites.
        gort::time::sleep(Duration::from_millis(20));
        set_nofile(256);
        // Exhaust the descriptors, leaving exactly one for the client socket.
        let mut hog = Vec::new();
        loop {
            match std::fs::File::open("/dev/null") {
                Ok(f) => hog.push(f),
                Err(e) => {
                    assert_eq!(e.raw_os_error(), Some(libc::EMFILE), "{e}");
                    break;
                }
            }
        }
        hog.pop();
        let mut c = TcpStream::connect(addr).unwrap();
        c.write_all(b"ping").unwrap();
        // The connection is queued; accept keeps failing with EMFILE. Watch the CPU meanwhile.
        let (t0, cpu0) = (Instant::now(), cpu_time());
        gort::time::sleep(Duration::from_millis(300));
        let (wall, cpu) = (t0.elapsed(), cpu_time() - cpu0);
        assert!(!acceptor.is_finished(), "accept succeeded with no descriptors free");
        // Free the descriptors: the acceptor's next retry succeeds and serves the client.
        drop(hog);
        let mut b = [0u8; 4];
        c.read_exact(&mut b).unwrap();
        assert_eq!(&b, b"ping");
        let emfile = acceptor.join().unwrap();
        println!("EMFILE_OK errors={emfile}");
        assert!(emfile >= 2, "accept never reported EMFILE");
        // Not spinning: well under one core for the 300 ms (the backoff sleeps, the poller does
        // not report the pending connection again until a retry).
        assert!(cpu < wall / 2, "busy while out of descriptors: {cpu:?} CPU in {wall:?}");
        // Other errors of accept (a closed listener) are distinct from EMFILE.
        let l2 = TcpListener::bind("127.0.0.1:0").unwrap();
        l2.close();
        assert_ne!(l2.accept().unwrap_err().kind(), ErrorKind::WouldBlock);
    });
}

#[test]
fn accept_recovers_from_emfile() {
    if common::in_child() {
        return child();
    }
    let out = common::run_child_ok("accept_recovers_from_emfile", &[("GOMAXPROCS", "2")]);
    let so = common::stdout(&out);
    assert!(so.contains("EMFILE_OK"), "{so}\n{}", common::stderr(&out));
}
