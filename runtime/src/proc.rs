//! stub while the core lands.
use std::io;
#[derive(Default)]
pub(crate) struct GExec;
pub(crate) struct GYielder;
pub struct JoinHandle<T>(std::marker::PhantomData<T>);
impl<T> JoinHandle<T> { pub fn join(self) -> std::thread::Result<T> { todo!() } }
pub struct Builder;
impl Builder {
    pub fn new() -> Builder { Builder }
    pub fn name(self, _n: String) -> Builder { self }
    pub fn stack_size(self, _s: usize) -> Builder { self }
    pub fn spawn<F, T>(self, _f: F) -> io::Result<JoinHandle<T>> where F: FnOnce() -> T + Send + 'static, T: Send + 'static { todo!() }
}
pub fn spawn<F, T>(_f: F) -> JoinHandle<T> where F: FnOnce() -> T + Send + 'static, T: Send + 'static { todo!() }
pub fn yield_now() { todo!() }
pub fn run<F, T>(_f: F) -> T where F: FnOnce() -> T + Send + 'static, T: Send + 'static { todo!() }
pub fn blocking<F: FnOnce() -> R, R>(f: F) -> R { f() }
pub fn num_goroutine() -> usize { todo!() }
pub fn current_stack_bounds() -> (usize, usize) { todo!() }
/// Called from the SIGSEGV handler: the current goroutine's stack description (lead implements).
pub(crate) fn signal_stack_info() -> Option<crate::signal::SignalStackInfo> { None }
