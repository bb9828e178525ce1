//! The allocator A/B with gort's sampling allocator (benches/alloc_ab/work.rs).
mod work;

#[global_allocator]
static GLOBAL: gort::profiler::Allocator = gort::profiler::Allocator::system();

fn main() {
    work::main()
}
