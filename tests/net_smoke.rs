//! First smoke test of gort::net (the full suite is in net_*.rs).

mod common;
use std::io::{Read, Write};

use common::{go, run};

#[test]
fn echo_roundtrip_many() {
    run(|| {
        let l = gort::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let srv = go!(move || {
            for _ in 0..200 {
                let (mut s, _) = l.accept().unwrap();
                go!(move || {
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
                go!(move || {
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
