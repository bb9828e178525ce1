//! Async Rust from goroutines: a hyper server on loopback (on a Tokio runtime), and N
//! goroutines that fetch from it through hyper-util's Tokio-based client, each request a
//! `gort::block_on`. Prints the throughput and exits once a fixed number of requests is done.
//!
//! ```text
//! cargo run --release --features tokio --example async_client -- [--goroutines N] [--requests N]
//!     [--server-threads N] [--plain-tokio]
//! ```
//!
//! `--plain-tokio` runs the same client loop as N Tokio tasks instead of N goroutines (the
//! baseline benches/README.md compares the bridge with). In both modes the client's connection
//! tasks run on the client's Tokio runtime (Tokio's default worker count), handed to the bridge with
//! `gort::tokio_bridge::set_handle`. The server runs on a Tokio runtime of its own with
//! `--server-threads` workers (2 by default), as a server elsewhere would; `--server-threads 0`
//! puts it on the client's runtime instead, where a plain Tokio client task, its connection
//! task and the server's task for that connection can all run on one thread.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Empty, Full};
use hyper::body::Bytes;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, Uri};
use hyper_util::client::legacy::{connect::HttpConnector, Client};
use hyper_util::rt::{TokioExecutor, TokioIo};

const BODY: &[u8] = b"hello from hyper\n";

type HttpClient = Client<HttpConnector, Empty<Bytes>>;

struct Args {
    workers: usize,
    requests: u64,
    server_threads: usize,
    plain_tokio: bool,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    use lexopt::prelude::*;
    let mut a = Args { workers: 64, requests: 20_000, server_threads: 2, plain_tokio: false };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("goroutines") | Short('n') => a.workers = p.value()?.parse()?,
            Long("requests") => a.requests = p.value()?.parse()?,
            Long("server-threads") => a.server_threads = p.value()?.parse()?,
            Long("plain-tokio") => a.plain_tokio = true,
            Long("help") => {
                println!("usage: async_client [--goroutines N] [--requests N] [--server-threads N] [--plain-tokio]");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    if a.workers == 0 {
        return Err("--goroutines must be at least 1".into());
    }
    Ok(a)
}

/// The server: every connection served by hyper's HTTP/1 on its own task.
async fn serve(listener: tokio::net::TcpListener) {
    loop {
        let Ok((stream, _)) = listener.accept().await else { continue };
        tokio::spawn(async move {
            let svc = service_fn(|_req: Request<hyper::body::Incoming>| async {
                Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(BODY))))
            });
            let _ = http1::Builder::new().serve_connection(TokioIo::new(stream), svc).await;
        });
    }
}

/// One GET, its body read to the end and checked.
async fn fetch(client: &HttpClient, uri: &Uri) -> usize {
    let resp = client.get(uri.clone()).await.expect("GET");
    assert!(resp.status().is_success(), "status {}", resp.status());
    let body = resp.into_body().collect().await.expect("body").to_bytes();
    assert_eq!(&body[..], BODY);
    body.len()
}

/// Takes request tickets until `total` are taken; true while one was taken.
fn take_ticket(next: &AtomicU64, total: u64) -> bool {
    next.fetch_add(1, Ordering::Relaxed) < total
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("async_client: {e}");
        std::process::exit(2);
    });
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("a Tokio runtime");
    let server_rt = (args.server_threads > 0).then(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.server_threads)
            .enable_all()
            .build()
            .expect("the server's Tokio runtime")
    });
    let srt = server_rt.as_ref().unwrap_or(&rt);
    let listener = srt.block_on(tokio::net::TcpListener::bind("127.0.0.1:0")).expect("bind loopback");
    let addr: SocketAddr = listener.local_addr().unwrap();
    srt.spawn(serve(listener));
    gort::tokio_bridge::set_handle(rt.handle().clone()).expect("the bridge's runtime is chosen here first");

    let client: HttpClient = Client::builder(TokioExecutor::new()).build_http();
    let uri: Uri = format!("http://{addr}/").parse().unwrap();
    let next = Arc::new(AtomicU64::new(0));
    let (workers, total) = (args.workers, args.requests);

    let t0 = Instant::now();
    let bytes: usize = if args.plain_tokio {
        rt.block_on(async {
            let tasks: Vec<_> = (0..workers)
                .map(|_| {
                    let (client, uri, next) = (client.clone(), uri.clone(), next.clone());
                    tokio::spawn(async move {
                        let mut n = 0;
                        while take_ticket(&next, total) {
                            n += fetch(&client, &uri).await;
                        }
                        n
                    })
                })
                .collect();
            let mut sum = 0;
            for t in tasks {
                sum += t.await.expect("a client task");
            }
            sum
        })
    } else {
        let main = move || {
            let hs: Vec<_> = (0..workers)
                .map(|_| {
                    let (client, uri, next) = (client.clone(), uri.clone(), next.clone());
                    let worker = move || {
                        let mut n = 0;
                        while take_ticket(&next, total) {
                            n += gort::block_on(fetch(&client, &uri));
                        }
                        n
                    };
                    // SAFETY: the goroutine holds only `Send` values (a client, a URI, an `Arc`)
                    // and touches no thread-local itself; Tokio's context is on every thread
                    // that runs goroutines once the bridge's runtime is chosen.
                    unsafe { gort::go!(worker) }
                })
                .collect();
            hs.into_iter().map(|h| h.join().expect("a client goroutine")).sum()
        };
        // SAFETY: the main goroutine holds only join handles and the values above (all `Send`)
        // across its joins, and touches no thread-local.
        unsafe { gort::run(main) }
    };
    let elapsed = t0.elapsed();
    assert_eq!(bytes as u64, total * BODY.len() as u64);
    let mode = if args.plain_tokio { "tokio tasks" } else { "goroutines (gort::block_on)" };
    let server = match args.server_threads {
        0 => "on the client's runtime".to_string(),
        n => format!("on {n} threads of its own"),
    };
    println!(
        "{total} requests from {workers} {mode}, server {server}, in {:.3}s: {:.0} requests/s",
        elapsed.as_secs_f64(),
        total as f64 / elapsed.as_secs_f64().max(f64::MIN_POSITIVE)
    );
    // The runtimes' threads are not waited for: the server never stops by itself.
    rt.shutdown_timeout(Duration::from_millis(100));
    if let Some(srt) = server_rt {
        srt.shutdown_timeout(Duration::from_millis(100));
    }
}
