//! The allocator A/B's baseline: `System` (benches/alloc_ab/work.rs).
mod work;

#[global_allocator]
static GLOBAL: std::alloc::System = std::alloc::System;

fn main() {
    work::main()
}
