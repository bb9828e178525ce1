//! First smoke test of gort::net (the full suite is in net_*.rs).
use std::io::{Read, Write};

#[test]
fn echo_roundtrip_many() {
    gort::run(|| {
        let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = gort::spawn(move || {
            for _ in 0..200 {
                let (mut s, _) = l.accept().unwrap();
                gort::spawn(move || {
                    let mut buf = [0u8; 1024];
                    loop {
                        let n = s.read(&mut buf).unwrap();
                        if n == 0 {
                            break;
                        }
                        s.write_all(&buf[..n]).unwrap();
                    }
                });
            }
        });
        let cs: Vec<_> = (0..200u32)
            .map(|i| {
                gort::spawn(move || {
                    let mut c = gort::net::TcpStream::connect(addr).unwrap();
                    for j in 0..50u32 {
                        let msg = format!("{i}-{j};");
                        c.write_all(msg.as_bytes()).unwrap();
                        let mut got = vec![0u8; msg.len()];
                        c.read_exact(&mut got).unwrap();
                        assert_eq!(got, msg.as_bytes());
                    }
                })
            })
            .collect();
        for c in cs {
            c.join().unwrap();
        }
        srv.join().unwrap();
    });
}
