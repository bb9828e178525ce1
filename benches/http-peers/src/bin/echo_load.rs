//! Echo load generator: `--conns` connections (default 100), each sending a `--size`-byte
//! message (default 100) and waiting for the echo, for `--secs` seconds (default 10), on a
//! single-threaded Tokio runtime. Prints one line: round trips/s and latency percentiles.
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

fn main() {
    let addr = arg("--addr", "127.0.0.1:7000");
    let conns: usize = arg("--conns", "100").parse().unwrap();
    let size: usize = arg("--size", "100").parse().unwrap();
    let secs: u64 = arg("--secs", "10").parse().unwrap();
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let (n, mut lat) = rt.block_on(async move {
        let end = Instant::now() + Duration::from_secs(secs);
        let mut hs = Vec::new();
        for _ in 0..conns {
            let addr = addr.clone();
            hs.push(tokio::spawn(async move {
                let mut s = tokio::net::TcpStream::connect(&addr).await.expect("connect");
                s.set_nodelay(true).unwrap();
                let msg = vec![b'x'; size];
                let mut buf = vec![0u8; size];
                let mut lat = Vec::with_capacity(1 << 16);
                while Instant::now() < end {
                    let t = Instant::now();
                    s.write_all(&msg).await.expect("write");
                    s.read_exact(&mut buf).await.expect("read");
                    lat.push(t.elapsed().as_micros() as u32);
                }
                lat
            }));
        }
        let mut all = Vec::new();
        for h in hs {
            all.extend(h.await.unwrap());
        }
        (all.len(), all)
    });
    lat.sort_unstable();
    let p = |q: f64| lat.get(((lat.len() as f64 * q) as usize).min(lat.len().saturating_sub(1))).copied().unwrap_or(0);
    println!(
        "round_trips/s={:.0} p50_us={} p99_us={} max_us={}",
        n as f64 / secs as f64,
        p(0.50),
        p(0.99),
        lat.last().copied().unwrap_or(0)
    );
}
