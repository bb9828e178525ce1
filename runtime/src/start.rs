//! Starting the runtime: the configuration, the scheduler's state, the overflow handler, the
//! panic hook, sysmon. Everything that needs the runtime running and may be the first to use it
//! (a spawn, a timer armed from a plain thread, `gomaxprocs`) goes through [`sched`], which
//! starts it on first use.

use std::sync::atomic::{AtomicBool, AtomicIsize, AtomicU64, AtomicUsize};

use parking_lot::Mutex;

use crate::env::{Config, ConfigError};
use crate::m::current_m;
use crate::p::{P, STACK_CACHE_MAX};
use crate::sched::state::{publish, sched_if_started, Idle, Sched};
use crate::stack::{self, overflow, GuardKind, StackPool};

/// The scheduler, started on first use. Panics with a clear message if the environment holds a
/// bad configuration (see `env.rs`); use [`start`] to get the error as a value.
#[inline]
pub(crate) fn sched() -> &'static Sched {
    match sched_if_started() {
        Some(s) => s,
        None => match start_from_env() {
            Ok(s) => s,
            Err(e) => panic!("gort: cannot start the runtime: {e}"),
        },
    }
}

/// Starts the runtime now, configured from the environment, reporting a bad environment as an
/// error instead of a panic. Does nothing if it is running.
pub fn start() -> Result<(), ConfigError> {
    start_from_env().map(|_| ())
}

/// Starts the runtime now with `cfg` instead of the environment. Fails with
/// [`StartError::AlreadyStarted`] if it is running already (with whatever configuration it
/// started with), and with [`StartError::Config`] if `cfg` is out of range.
pub fn start_with(cfg: Config) -> Result<(), StartError> {
    let _l = START_LOCK.lock();
    if sched_if_started().is_some() {
        return Err(StartError::AlreadyStarted);
    }
    cfg.validate().map_err(StartError::Config)?;
    start_locked(cfg);
    Ok(())
}

/// Why [`start_with`] did not start the runtime.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum StartError {
    /// The runtime was already running (started by an earlier call or by first use).
    AlreadyStarted,
    /// A configuration value is out of range.
    Config(ConfigError),
}

impl std::fmt::Display for StartError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            StartError::AlreadyStarted => f.write_str("gort: the runtime is already running"),
            StartError::Config(e) => write!(f, "gort: {e}"),
        }
    }
}

impl std::error::Error for StartError {}

/// The number of Ps (`GOMAXPROCS`), starting the runtime if needed.
pub fn gomaxprocs() -> usize {
    sched().allp.len()
}

static START_LOCK: Mutex<()> = Mutex::new(());

/// Starts the runtime from the environment's configuration (idempotent).
fn start_from_env() -> Result<&'static Sched, ConfigError> {
    let _l = START_LOCK.lock();
    if let Some(s) = sched_if_started() {
        return Ok(s);
    }
    Ok(start_locked(Config::from_env()?))
}

/// Builds the scheduler from `cfg` and starts its threads. Caller holds `START_LOCK` and has
/// seen the runtime not started.
fn start_locked(cfg: Config) -> &'static Sched {
    // The unwinder exists before any goroutine can park or any M can be profiled.
    crate::unwind::init();
    let n = cfg.max_procs;
    let light = !cfg.force_mprotect_guards && stack::light_guards_supported();
    let guard_kind = if cfg.force_mprotect_guards { GuardKind::Mprotect } else { GuardKind::Auto };
    let guards = stack::guard_plan(
        light,
        cfg.guarded_stacks,
        cfg.unguarded_stacks,
        cfg.max_map_count.unwrap_or_else(stack::max_map_count),
        stack::maps_in_use(),
        n * (STACK_CACHE_MAX + 1),
    );
    let allp: &'static [P] = Box::leak((0..n).map(P::new).collect::<Vec<_>>().into_boxed_slice());
    let s: &'static Sched = Box::leak(Box::new(Sched {
        stacks: StackPool::with_guard_kind(cfg.stack_size, guards.budget, guard_kind),
        guards,
        stack_claims: AtomicUsize::new(0),
        cfg,
        mstart: crate::sched::mstart,
        allp,
        idle: Mutex::new(Idle { pidle: allp.iter().rev().collect(), midle: Vec::new(), timer_m: None }),
        npidle: AtomicUsize::new(n),
        nmspinning: AtomicUsize::new(0),
        nmidle: AtomicUsize::new(0),
        mcount: AtomicUsize::new(0),
        gfree: Mutex::new(Vec::new()),
        nlive_other: AtomicIsize::new(0),
        next_goid: AtomicU64::new(2),
        main_goid_taken: AtomicBool::new(false),
        timer_sleep_until: AtomicU64::new(u64::MAX),
        nsyscall: AtomicUsize::new(0),
    }));
    crate::clock::init_epoch();
    crate::fence::register_heavy_fence();
    if s.cfg.sched_timing {
        crate::schedstats::set_sched_timing(true);
    }
    overflow::install_overflow_handler();
    install_panic_hook();
    // Publish before starting threads that read it.
    publish(s);
    crate::sysmon::start(s);
    s
}

/// Installs a panic hook that names the goroutine before the default message (std names the
/// thread, which for a goroutine is just whichever M ran it).
fn install_panic_hook() {
    let prev = std::panic::take_hook();
    std::panic::set_hook(Box::new(move |info| {
        if let Some(g) = current_m().and_then(|m| m.curg()) {
            let name = g.0.name_now();
            match name {
                Some(n) => eprintln!("goroutine {} [{n:?}] panicked:", g.id()),
                None => eprintln!("goroutine {} panicked:", g.id()),
            }
        }
        prev(info);
    }));
}
