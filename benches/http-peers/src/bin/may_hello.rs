//! may_minihttp with N workers (`--workers`, default 1): `Hello, World!`.
use std::io;

use may_minihttp::{HttpServer, HttpService, HttpServiceFactory, Request, Response};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter().position(|a| a == name).and_then(|i| args.get(i + 1).cloned()).unwrap_or_else(|| default.to_string())
}

#[derive(Clone)]
struct Hello;

impl HttpService for Hello {
    fn call(&mut self, _req: Request, res: &mut Response) -> io::Result<()> {
        res.header("Content-Type: text/plain");
        res.body("Hello, World!");
        Ok(())
    }
}

struct Factory;

impl HttpServiceFactory for Factory {
    type Service = Hello;
    fn new_service(&self, _id: usize) -> Hello {
        Hello
    }
}

fn main() {
    let addr = arg("--addr", "127.0.0.1:8083");
    let workers: usize = arg("--workers", "1").parse().unwrap();
    may::config().set_workers(workers);
    eprintln!("may_minihttp listening on {addr} ({workers} workers)");
    let _ = Factory;
    HttpServer(Hello).start(&addr).unwrap().join().unwrap();
}
