//! Out of descriptors: the poller reports `EMFILE` as an `io::Error` and keeps working.
//!
//! Alone in its own test binary because it lowers `RLIMIT_NOFILE` for the whole process.

mod common;

use std::io::Write;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::time::Duration;

use common::*;
use gort_netpoll::{Mode, Poller};

fn pipe() -> std::io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_NONBLOCK | libc::O_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: both descriptors are fresh and owned by nobody else.
    Ok(unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) })
}

#[test]
fn emfile_is_an_io_error_and_the_poller_survives() {
    let poller = Poller::new().unwrap();
    let (a, mut b) = pair();

    let mut old = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: `old` is a valid rlimit to fill.
    assert_eq!(unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut old) }, 0);
    let low = libc::rlimit { rlim_cur: 128, rlim_max: old.rlim_max };
    // SAFETY: plain syscall with a valid rlimit.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &low) }, 0);

    let mut hoard = Vec::new();
    let err = loop {
        match pipe() {
            Ok(p) => hoard.push(p),
            Err(e) => break e,
        }
        assert!(hoard.len() < 1000, "RLIMIT_NOFILE not enforced?");
    };
    assert_eq!(err.raw_os_error(), Some(libc::EMFILE));

    let e = Poller::new().expect_err("no descriptor left for epoll");
    assert_eq!(e.raw_os_error(), Some(libc::EMFILE));

    // The existing poller needs no new descriptor: registering, waking and polling all work.
    let reg = poller.register(a.as_raw_fd()).unwrap();
    let regs: Vec<_> = hoard.iter().map(|(r, _)| poller.register(r.as_raw_fd()).unwrap()).collect();
    poller.wake().unwrap();
    let mut toks = Vec::new();
    poller.poll(None, &mut toks).unwrap();
    b.write_all(b"!").unwrap();
    poller.poll(Some(Duration::from_secs(5)), &mut toks).unwrap();
    reg.wait(Mode::Read, |_| panic!("parked although readable")).unwrap();
    assert!(toks.is_empty());

    // Descriptors freed: a new poller can be made again.
    drop(regs);
    hoard.truncate(hoard.len().saturating_sub(4));
    let p2 = Poller::new().unwrap();
    drop(p2);
    // SAFETY: restores the limit read above.
    assert_eq!(unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &old) }, 0);
}
