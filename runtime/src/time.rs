//! stub while the core lands.
use std::time::Duration;
pub fn nanotime() -> u64 { todo!() }
pub struct RawTimer;
impl RawTimer {
    pub fn new(_when: u64, _f: Box<dyn Fn() + Send + Sync>) -> RawTimer { todo!() }
    pub fn stop(&self) -> bool { todo!() }
    pub fn reset(&self, _when: u64) -> bool { todo!() }
}
pub fn sleep(_d: Duration) { todo!() }
