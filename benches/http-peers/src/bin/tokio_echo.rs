//! TCP echo server on Tokio with N workers (`--workers`, default 1).
use tokio::io::{AsyncReadExt, AsyncWriteExt};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

fn main() {
    let addr = arg("--addr", "127.0.0.1:7002");
    let workers: usize = arg("--workers", "1").parse().unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(workers).enable_all().build().unwrap();
    rt.block_on(async move {
        let l = tokio::net::TcpListener::bind(&addr).await.unwrap();
        eprintln!("tokio echo listening on {addr} ({workers} workers)");
        loop {
            let (mut s, _) = match l.accept().await {
                Ok(c) => c,
                Err(_) => {
                    tokio::time::sleep(std::time::Duration::from_millis(5)).await;
                    continue;
                }
            };
            let _ = s.set_nodelay(true);
            tokio::spawn(async move {
                let mut buf = vec![0u8; 4096];
                loop {
                    let n = match s.read(&mut buf).await {
                        Ok(0) | Err(_) => return,
                        Ok(n) => n,
                    };
                    if s.write_all(&buf[..n]).await.is_err() {
                        return;
                    }
                }
            });
        }
    });
}
