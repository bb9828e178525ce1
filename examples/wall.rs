//! The wall-clock profile: an HTTP handler that spends most of its time waiting for a slow
//! dependency. The CPU profile cannot see the wait (no CPU is used while waiting); the
//! wall-clock profile shows it, with the stack that waits and why.
//!
//! ```text
//! cargo run --release --example wall
//! go tool pprof -top -tagfocus 'state=chan receive' wall.pb.gz
//! cargo run --release --example wall -- --addr 127.0.0.1:6060
//! go tool pprof -top 'http://127.0.0.1:6060/debug/pprof/wall?seconds=5'
//! ```
//!
//! Each request runs `handle_page`: `fetch_user` asks a backend goroutine, which takes 20 ms to
//! answer (the slow dependency), then `render_page` formats the answer (about 0.2 ms of CPU).
//! Eight client goroutines keep the server busy. The program profiles itself (CPU and wall
//! clock, over the same seconds), writes both profiles and prints where the handlers' time went
//! according to each.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::ToSocketAddrs;
use std::time::Duration;

use gort::chan::{chan, Sender};
use gort::net::{TcpListener, TcpStream};
use gort::profiler::proto::Profile;
use lexopt::prelude::*;

const USAGE: &str = "\
usage: wall [--seconds N] [--cpu PATH] [--wall PATH] | [--addr ADDR] [--exit-after-secs N]

Serves HTTP on loopback with a handler that waits 20 ms on a slow backend per request, keeps
it busy with eight clients, and profiles it for N seconds (default 3): the CPU profile into
PATH (default cpu.pb.gz) and the wall-clock profile into PATH (default wall.pb.gz). With
--addr, serves /debug/pprof/ instead (the wall-clock profile at /debug/pprof/wall?seconds=N).

  --seconds N            profile for N seconds (default 3)
  --cpu PATH             write the CPU profile here (default cpu.pb.gz)
  --wall PATH            write the wall-clock profile here (default wall.pb.gz)
  --addr ADDR            serve /debug/pprof/ on ADDR instead of writing files
  --exit-after-secs N    with --addr: exit after N seconds (default: run until Ctrl-C)
  -h, --help             print this help
";

struct Args {
    seconds: u64,
    cpu: String,
    wall: String,
    addr: Option<String>,
    exit_after_secs: Option<u64>,
}

fn parse_args() -> Result<Args, lexopt::Error> {
    let mut a =
        Args { seconds: 3, cpu: "cpu.pb.gz".into(), wall: "wall.pb.gz".into(), addr: None, exit_after_secs: None };
    let mut p = lexopt::Parser::from_env();
    while let Some(arg) = p.next()? {
        match arg {
            Long("seconds") => a.seconds = number(&mut p, "--seconds")?.clamp(1, 3600),
            Long("cpu") => a.cpu = p.value()?.string()?,
            Long("wall") => a.wall = p.value()?.string()?,
            Long("addr") => {
                let v = p.value()?.string()?;
                if let Err(e) = v.to_socket_addrs() {
                    return Err(format!("--addr {v}: {e}").into());
                }
                a.addr = Some(v);
            }
            Long("exit-after-secs") => a.exit_after_secs = Some(number(&mut p, "--exit-after-secs")?),
            Short('h') | Long("help") => {
                print!("{USAGE}");
                std::process::exit(0);
            }
            _ => return Err(arg.unexpected()),
        }
    }
    Ok(a)
}

fn number(p: &mut lexopt::Parser, opt: &str) -> Result<u64, lexopt::Error> {
    let v = p.value()?.string()?;
    v.parse().map_err(|e| format!("{opt} {v}: {e}").into())
}

/// A request to the backend: a user id and where to send the answer.
type Query = (u64, Sender<String>);

/// The slow dependency: answers every query after 20 ms (a database, another service).
fn backend(queries: gort::chan::Receiver<Query>) {
    for (id, reply) in queries.iter() {
        // SAFETY: the goroutine owns its query and touches no thread-local.
        unsafe {
            gort::go!(move || {
                gort::time::sleep(Duration::from_millis(20));
                let _ = reply.send(format!("user-{id}"));
            })
        };
    }
}

/// Asks the backend and waits for its answer: where the handler's time goes.
#[inline(never)]
fn fetch_user(backend: &Sender<Query>, id: u64) -> String {
    let (tx, rx) = chan(1);
    backend.send((id, tx)).expect("backend runs");
    rx.recv().expect("backend answers")
}

/// Formats the page: the handler's CPU work.
#[inline(never)]
fn render_page(user: &str) -> String {
    let mut h = 0xcbf29ce484222325u64;
    for i in 0..40_000u64 {
        h = std::hint::black_box((h ^ i).wrapping_mul(0x100000001b3));
    }
    format!("<html><body>hello {user} ({h:x})</body></html>\n")
}

fn handle_page(mut conn: TcpStream, backend: Sender<Query>) {
    gort::profiler::with_labels(&[("handler", "page")], || {
        let mut r = BufReader::new(&conn);
        let mut line = String::new();
        let mut id = 0u64;
        while r.read_line(&mut line).is_ok_and(|n| n > 0) {
            if let Some(q) = line.strip_prefix("GET /user/") {
                id = q.split(' ').next().and_then(|s| s.parse().ok()).unwrap_or(0);
            }
            if line == "\r\n" {
                break;
            }
            line.clear();
        }
        let page = render_page(&fetch_user(&backend, id));
        let _ = write!(conn, "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{page}", page.len());
    })
}

fn serve(l: TcpListener, backend: Sender<Query>) {
    while let Ok((conn, _)) = l.accept() {
        let b = backend.clone();
        // SAFETY: the goroutine owns its connection and touches no thread-local.
        unsafe { gort::go!(move || handle_page(conn, b)) };
    }
}

/// A client: requests pages one after another, forever.
fn client(addr: std::net::SocketAddr, n: u64) {
    for i in 0.. {
        let Ok(mut c) = TcpStream::connect(addr) else { continue };
        if write!(c, "GET /user/{} HTTP/1.1\r\nHost: x\r\n\r\n", n * 1_000_000 + i).is_err() {
            continue;
        }
        let mut body = Vec::new();
        let _ = c.read_to_end(&mut body);
    }
}

/// Nanoseconds of `p`'s samples labelled `handler`, by the sample's `state` label (`state`
/// itself for a CPU profile, which has none) and by whether a frame names `needle`.
fn handler_time(p: &Profile, idx: usize) -> HashMap<String, i64> {
    let mut m = HashMap::new();
    for s in &p.sample {
        let lab: HashMap<&str, &str> = s.label.iter().map(|l| (p.str(l.key), p.str(l.str))).collect();
        if lab.get("handler") != Some(&"page") {
            continue;
        }
        let state = lab.get("state").copied().unwrap_or("cpu").to_string();
        *m.entry(state).or_default() += s.value[idx];
    }
    m
}

fn report(name: &str, m: &HashMap<String, i64>) {
    let total: i64 = m.values().sum();
    let mut v: Vec<_> = m.iter().collect();
    v.sort_by_key(|e| -e.1);
    let parts: Vec<String> =
        v.iter().map(|(k, &n)| format!("{k} {:.1}%", 100.0 * n as f64 / total.max(1) as f64)).collect();
    println!("  {name}: {:.2} s of handler time: {}", total as f64 / 1e9, parts.join(", "));
}

fn main() {
    let args = parse_args().unwrap_or_else(|e| {
        eprintln!("wall: {e}");
        std::process::exit(2);
    });
    let l = TcpListener::bind("127.0.0.1:0").unwrap_or_else(|e| {
        eprintln!("wall: bind: {e}");
        std::process::exit(1);
    });
    let addr = l.local_addr().expect("bound");
    let (btx, brx) = chan::<Query>(64);
    // SAFETY: the backend owns its channel end and touches no thread-local.
    unsafe { gort::go!(move || backend(brx)) };
    // SAFETY: the server owns its listener and channel end and touches no thread-local.
    unsafe { gort::go!(move || serve(l, btx)) };
    for n in 0..8 {
        // SAFETY: a client holds only an address and a number, and touches no thread-local.
        unsafe { gort::go!(move || client(addr, n)) };
    }
    println!("serving on http://{addr}/user/ID (8 clients, 20 ms backend per request)");
    if let Some(a) = args.addr {
        let srv = gort::profiler::serve(&a).unwrap_or_else(|e| {
            eprintln!("wall: serve {a}: {e}");
            std::process::exit(1);
        });
        let a = srv.local_addr();
        println!("pprof on http://{a}/debug/pprof/");
        println!("  go tool pprof -top 'http://{a}/debug/pprof/wall?seconds=5'");
        println!("  go tool pprof -top 'http://{a}/debug/pprof/profile?seconds=5'");
        match args.exit_after_secs {
            Some(s) => std::thread::sleep(Duration::from_secs(s)),
            None => loop {
                std::thread::sleep(Duration::from_secs(3600));
            },
        }
        return;
    }
    std::thread::sleep(Duration::from_millis(300));
    let cpu_file = std::fs::File::create(&args.cpu).unwrap_or_else(|e| {
        eprintln!("wall: {}: {e}", args.cpu);
        std::process::exit(1);
    });
    // The CPU profile joins the wall-clock profile's sampler: both see the same seconds.
    let secs = args.seconds;
    let wall =
        std::thread::spawn(move || gort::profiler::wall::profile_for(Duration::from_secs(secs), std::thread::sleep));
    std::thread::sleep(Duration::from_millis(20));
    gort::profiler::start_cpu_profile(cpu_file).unwrap_or_else(|e| {
        eprintln!("wall: cpu profile: {e}");
        std::process::exit(1);
    });
    let wall = wall.join().expect("profiler thread").unwrap_or_else(|e| {
        eprintln!("wall: wall profile: {e}");
        std::process::exit(1);
    });
    gort::profiler::stop_cpu_profile().unwrap_or_else(|e| {
        eprintln!("wall: writing {}: {e}", args.cpu);
        std::process::exit(1);
    });
    std::fs::write(&args.wall, &wall).unwrap_or_else(|e| {
        eprintln!("wall: {}: {e}", args.wall);
        std::process::exit(1);
    });
    let cpu = Profile::decode_any(&std::fs::read(&args.cpu).expect("just written")).expect("our own profile");
    let wall = Profile::decode_any(&wall).expect("our own profile");
    println!("where the handlers' time went over {} s:", args.seconds);
    report("CPU profile ", &handler_time(&cpu, 1));
    report("wall profile", &handler_time(&wall, 0));
    println!("wrote {} and {}; now:", args.cpu, args.wall);
    println!("  go tool pprof -top {}                               # render_page: all the CPU", args.cpu);
    println!("  go tool pprof -top -tagfocus 'state=chan receive' {}  # fetch_user: the wait", args.wall);
    println!("  go tool pprof -tags {}                              # time by state", args.wall);
}
