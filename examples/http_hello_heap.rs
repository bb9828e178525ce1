//! `http_hello` with heap profiling on: the same server, built with gort's sampling allocator
//! as the global allocator, so that `--pprof ADDR` serves a heap profile with samples in it.
//!
//! ```text
//! cargo run --release --example http_hello_heap -- --addr 127.0.0.1:8080 --pprof 127.0.0.1:6060
//! go tool pprof -top -sample_index=alloc_space http://127.0.0.1:6060/debug/pprof/heap
//! GORT_MEMPROFILERATE=0 cargo run --release --example http_hello_heap   # sampling off
//! ```
//!
//! Only the allocator differs from `http_hello`, which makes the pair the benchmark of what
//! heap sampling costs a server (benches/prof_overhead.sh): a switch inside one binary would
//! charge the allocator wrapper to both sides.

#[path = "http_hello.rs"]
mod hello;

#[global_allocator]
static A: gort::profiler::Allocator = gort::profiler::Allocator::system();

fn main() {
    hello::main()
}
