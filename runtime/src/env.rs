//! Runtime configuration from the environment, parsed once at start.
//!
//! | variable              | meaning                                              | default                 |
//! |-----------------------|------------------------------------------------------|-------------------------|
//! | `GOMAXPROCS`          | number of Ps (goroutines running Rust code at once)  | available parallelism   |
//! | `GORT_MAXPROCS`       | same, read when `GOMAXPROCS` is unset                |                         |
//! | `GORT_STACK_SIZE`     | goroutine stack size: bytes, or with `k`/`m` suffix  | 256k                    |
//! | `GORT_GUARDED_STACKS` | the first N stacks get a guard region, the rest none (an opt-in to unguarded stacks) | all, or what `vm.max_map_count` allows |
//! | `GORT_UNGUARDED_STACKS` | `1`: past the guard budget, run on unguarded stacks instead of refusing to spawn | off |
//! | `GORT_STACK_GUARDS`   | `auto`, or `mprotect` to force the old-kernel guards | auto                    |
//! | `GORT_MAX_MAP_COUNT`  | the `vm.max_map_count` to plan with (tests, sandboxes without `/proc/sys`) | read from `/proc/sys/vm/max_map_count` |
//! | `GORT_SCHEDTRACE`     | print a scheduler trace line every N milliseconds    | off                     |
//! | `GORT_DEADLOCK`       | `0` turns the deadlock detector off                  | on                      |
//! | `GORT_SCHEDTIMING`    | `1`: record the scheduling-latency and park-duration histograms (`metrics`) | off |
//! | `GORT_HOGTHRESHOLD`   | a run this long without entering the scheduler is a hog event (`10ms`, `500us`, `1s`) | 10ms |
//! | `GORT_HOGTRACE`       | `1` prints each hog event on stderr                  | off                     |
//! | `GORT_LEAKCHECK`      | run the goroutine leak census every interval (`10s`, `500ms`), optionally `,window=K,threshold=N` (see `census.rs`) | off |
//!
//! Every goroutine stack gets a guard region by default. With lightweight guard regions
//! (`MADV_GUARD_INSTALL`, Linux 6.13+) a guard costs no memory mapping, so there is no limit.
//! Without them (`mprotect` guards, two mappings each against `vm.max_map_count`) the runtime
//! measures at start how many guards the map count leaves room for (minus a reserve for malloc,
//! thread stacks and libraries), and a spawn that would need more fails (`Builder::spawn`
//! returns the error, naming the sysctl; `spawn` panics with it) unless `GORT_UNGUARDED_STACKS=1`
//! lets further goroutines run on stacks with an unguarded, after-the-fact-checked gap (see
//! `stack/mod.rs` for what that risks).
//!
//! A value that does not parse is an error naming the variable, the value and what was expected;
//! the runtime refuses to start rather than guess.

use std::fmt;
use std::time::Duration;

pub use crate::stack::{DEFAULT_STACK_SIZE, MAX_STACK_SIZE, MIN_STACK_SIZE};
/// Upper bound on GOMAXPROCS (Go's is 256 on most builds' allp growth; we cap at 1024).
pub const MAX_PROCS: usize = 1024;

/// Runtime configuration. Built from the environment by [`Config::from_env`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Number of Ps.
    pub max_procs: usize,
    /// Default goroutine stack size in bytes.
    pub stack_size: usize,
    /// Stacks (counted from the first) that get a guard region; `None`: the default (every
    /// stack with lightweight guards, else as many as `vm.max_map_count` leaves room for).
    pub guarded_stacks: Option<usize>,
    /// Past the guard budget, run goroutines on unguarded (gap-checked) stacks rather than
    /// refusing to spawn them. An overflow deeper than the gap then corrupts a neighbouring
    /// goroutine's stack before it is reported.
    pub unguarded_stacks: bool,
    /// Use `mprotect` guards even where lightweight ones exist (the old-kernel path).
    pub force_mprotect_guards: bool,
    /// `vm.max_map_count` to plan the guard budget with; `None`: read it from `/proc`.
    pub max_map_count: Option<usize>,
    /// Scheduler trace interval in milliseconds, if any.
    pub schedtrace_ms: Option<u64>,
    /// Whether `run` reports `all goroutines are asleep - deadlock!`.
    pub deadlock_detection: bool,
    /// Record the scheduling-latency and park-duration histograms from the start
    /// (`schedstats::set_sched_timing`).
    pub sched_timing: bool,
    /// The hog detector's threshold (`crate::hog`), if set; `None` keeps the current one.
    pub hog_threshold: Option<Duration>,
    /// Whether to print hog events, if set; `None` keeps the current setting.
    pub hog_trace: Option<bool>,
    /// The goroutine leak census to start with the runtime (`GORT_LEAKCHECK`), if any.
    pub leakcheck: Option<LeakCheck>,
}

/// How the goroutine leak census runs (`GORT_LEAKCHECK`, or `census::start_with`): every
/// `interval` it counts the parked goroutines by wait reason and park site, and keeps the last
/// `window` counts of each group; a group is a suspected leak when its count never fell over the
/// window, rose in at least two of its intervals, and grew by at least `threshold`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeakCheck {
    /// Time between two census points.
    pub interval: Duration,
    /// Census points kept per group (K, at least 3: two intervals to rise in).
    pub window: usize,
    /// Least growth over the window that is reported.
    pub threshold: u64,
    /// Most groups one census keeps; the goroutines of further groups are only counted.
    pub max_groups: usize,
}

impl LeakCheck {
    /// Default window: 5 census points.
    pub const DEFAULT_WINDOW: usize = 5;
    /// Default threshold: a group must grow by 10 goroutines over the window.
    pub const DEFAULT_THRESHOLD: u64 = 10;
    /// Default cap on groups per census.
    pub const DEFAULT_MAX_GROUPS: usize = 4096;
    /// Largest window accepted.
    pub const MAX_WINDOW: usize = 1024;

    /// A census every `interval`, with the default window, threshold and group cap.
    pub fn every(interval: Duration) -> LeakCheck {
        LeakCheck {
            interval,
            window: Self::DEFAULT_WINDOW,
            threshold: Self::DEFAULT_THRESHOLD,
            max_groups: Self::DEFAULT_MAX_GROUPS,
        }
    }

    /// Checks the ranges: a non-zero interval, a window from 3 to [`MAX_WINDOW`](Self::MAX_WINDOW),
    /// a threshold and a group cap of at least 1. The error names `GORT_LEAKCHECK`.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let err = |value: String, expected| Err(ConfigError { var: "GORT_LEAKCHECK", value, expected });
        if self.interval.is_zero() {
            return err(format!("{:?}", self.interval), "a non-zero interval");
        }
        if !(3..=Self::MAX_WINDOW).contains(&self.window) {
            return err(format!("window={}", self.window), "a window from 3 to 1024 census points");
        }
        if self.threshold == 0 {
            return err("threshold=0".into(), "a threshold of at least 1");
        }
        if self.max_groups == 0 {
            return err("max_groups=0".into(), "a group cap of at least 1");
        }
        Ok(())
    }

    /// Parses `GORT_LEAKCHECK`'s value: `<interval>[,window=K][,threshold=N]`, the interval a
    /// number with `ms`, `s` or `m` (`500ms`, `10s`, `1m`); `0`/`off` is `None`.
    pub fn parse(v: &str) -> Result<Option<LeakCheck>, ConfigError> {
        const EXPECTED: &str = "off, or an interval such as 10s or 500ms, optionally followed by \
                                ,window=K (3 to 1024) and ,threshold=N (at least 1)";
        let err = || ConfigError { var: "GORT_LEAKCHECK", value: v.to_string(), expected: EXPECTED };
        let mut parts = v.trim().split(',').map(str::trim);
        let first = parts.next().unwrap_or("");
        if matches!(first, "0" | "off") {
            return if parts.next().is_none() { Ok(None) } else { Err(err()) };
        }
        let mut lc = LeakCheck::every(parse_interval(first).ok_or_else(err)?);
        for part in parts {
            let (k, n) = part.split_once('=').ok_or_else(err)?;
            let n: u64 = n.trim().parse().map_err(|_| err())?;
            match k.trim() {
                "window" => lc.window = usize::try_from(n).map_err(|_| err())?,
                "threshold" => lc.threshold = n,
                _ => return Err(err()),
            }
        }
        lc.validate().map_err(|_| err())?;
        Ok(Some(lc))
    }
}

/// A census interval: `500ms`, `10s`, `1m`, `1.5s` (at most a day; minutes allowed, unlike the
/// hog threshold's [`parse_duration`]); `None` if it does not parse.
fn parse_interval(s: &str) -> Option<Duration> {
    let ns = scaled_ns(s, &[("ms", 1e6), ("s", 1e9), ("m", 60e9)])?;
    (0.0..=86_400e9).contains(&ns).then(|| Duration::from_nanos(ns as u64))
}

/// A number (decimals allowed, no sign or exponent) followed by one of `units` (name, ns per
/// unit), in nanoseconds; `None` if it is not that.
fn scaled_ns(v: &str, units: &[(&str, f64)]) -> Option<f64> {
    let s = v.trim();
    let (num, unit) = s.split_at(s.find(|c: char| !(c.is_ascii_digit() || c == '.'))?);
    let &(_, scale) = units.iter().find(|u| u.0 == unit.trim())?;
    if num.is_empty() || num.starts_with('.') || num.ends_with('.') {
        return None;
    }
    Some(num.parse::<f64>().ok()? * scale)
}

/// A configuration variable that does not parse.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConfigError {
    /// The variable's name.
    pub var: &'static str,
    /// The value found.
    pub value: String,
    /// What would have been accepted.
    pub expected: &'static str,
}

impl fmt::Display for ConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid {}={:?}: expected {}", self.var, self.value, self.expected)
    }
}

impl std::error::Error for ConfigError {}

impl Config {
    /// Checks the ranges `from_env` enforces, for a configuration built in code: 1 to
    /// [`MAX_PROCS`] Ps, a stack size from [`MIN_STACK_SIZE`] to [`MAX_STACK_SIZE`]. The error
    /// names the environment variable that would have set the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if !(1..=MAX_PROCS).contains(&self.max_procs) {
            return Err(ConfigError {
                var: "GOMAXPROCS",
                value: self.max_procs.to_string(),
                expected: "an integer from 1 to 1024",
            });
        }
        if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&self.stack_size) {
            return Err(ConfigError {
                var: "GORT_STACK_SIZE",
                value: self.stack_size.to_string(),
                expected: "a size from 16k to 1g, in bytes or with a k/m/g suffix",
            });
        }
        if let Some(lc) = &self.leakcheck {
            lc.validate()?;
        }
        Ok(())
    }

    /// Reads the configuration from the process environment.
    pub fn from_env() -> Result<Config, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads the configuration through `get` (testable without touching the environment).
    pub fn from_lookup(get: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        let default_procs = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
        let procs = match get("GOMAXPROCS") {
            Some(v) => parse_procs("GOMAXPROCS", &v)?,
            None => match get("GORT_MAXPROCS") {
                Some(v) => parse_procs("GORT_MAXPROCS", &v)?,
                None => default_procs,
            },
        };
        let stack_size = match get("GORT_STACK_SIZE") {
            Some(v) => parse_size("GORT_STACK_SIZE", &v)?,
            None => DEFAULT_STACK_SIZE,
        };
        let guarded_stacks = match get("GORT_GUARDED_STACKS") {
            Some(v) => Some(v.trim().parse::<usize>().map_err(|_| ConfigError {
                var: "GORT_GUARDED_STACKS",
                value: v.clone(),
                expected: "a non-negative integer",
            })?),
            None => None,
        };
        let unguarded_stacks = parse_switch(get("GORT_UNGUARDED_STACKS"), "GORT_UNGUARDED_STACKS", false)?;
        let force_mprotect_guards = match get("GORT_STACK_GUARDS").as_deref().map(str::trim) {
            None | Some("auto") => false,
            Some("mprotect") => true,
            Some(other) => {
                return Err(ConfigError {
                    var: "GORT_STACK_GUARDS",
                    value: other.to_string(),
                    expected: "auto or mprotect",
                })
            }
        };
        let max_map_count = match get("GORT_MAX_MAP_COUNT") {
            Some(v) => Some(v.trim().parse::<usize>().map_err(|_| ConfigError {
                var: "GORT_MAX_MAP_COUNT",
                value: v.clone(),
                expected: "a positive integer",
            })?),
            None => None,
        };
        let schedtrace_ms = match get("GORT_SCHEDTRACE") {
            Some(v) => match v.trim().parse::<u64>() {
                Ok(0) => None,
                Ok(n) => Some(n),
                Err(_) => {
                    return Err(ConfigError {
                        var: "GORT_SCHEDTRACE",
                        value: v,
                        expected: "an interval in milliseconds (0 = off)",
                    })
                }
            },
            None => None,
        };
        let deadlock_detection = parse_switch(get("GORT_DEADLOCK"), "GORT_DEADLOCK", true)?;
        let sched_timing = parse_switch(get("GORT_SCHEDTIMING"), "GORT_SCHEDTIMING", false)?;
        let hog_threshold = match get("GORT_HOGTHRESHOLD") {
            Some(v) => Some(parse_duration("GORT_HOGTHRESHOLD", &v)?),
            None => None,
        };
        let hog_trace = match get("GORT_HOGTRACE") {
            Some(v) => Some(parse_switch(Some(v), "GORT_HOGTRACE", false)?),
            None => None,
        };
        let leakcheck = match get("GORT_LEAKCHECK") {
            Some(v) => LeakCheck::parse(&v)?,
            None => None,
        };
        Ok(Config {
            max_procs: procs,
            stack_size,
            guarded_stacks,
            unguarded_stacks,
            force_mprotect_guards,
            max_map_count,
            schedtrace_ms,
            deadlock_detection,
            sched_timing,
            hog_threshold,
            hog_trace,
            leakcheck,
        })
    }
}

/// `0`/`off` or `1`/`on`; `default` when unset.
fn parse_switch(v: Option<String>, var: &'static str, default: bool) -> Result<bool, ConfigError> {
    match v.as_deref().map(str::trim) {
        None => Ok(default),
        Some("1") | Some("on") => Ok(true),
        Some("0") | Some("off") => Ok(false),
        Some(other) => Err(ConfigError { var, value: other.to_string(), expected: "0, 1, off or on" }),
    }
}

/// Parses a positive duration of at most an hour: a number (decimals allowed) and a unit,
/// `ns`, `us` (or `µs`), `ms` or `s`: `10ms`, `500us`, `1.5s`.
pub(crate) fn parse_duration(var: &'static str, v: &str) -> Result<Duration, ConfigError> {
    let err = || ConfigError {
        var,
        value: v.to_string(),
        expected: "a positive duration of at most 1h with a unit: ns, us, ms or s (10ms, 500us, 1s)",
    };
    let units = [("ns", 1e0), ("us", 1e3), ("µs", 1e3), ("ms", 1e6), ("s", 1e9)];
    let ns = scaled_ns(v, &units).ok_or_else(err)?.round();
    if !(1.0..=3.6e12).contains(&ns) {
        return Err(err());
    }
    Ok(Duration::from_nanos(ns as u64))
}

fn parse_procs(var: &'static str, v: &str) -> Result<usize, ConfigError> {
    match v.trim().parse::<usize>() {
        Ok(n) if (1..=MAX_PROCS).contains(&n) => Ok(n),
        _ => Err(ConfigError { var, value: v.to_string(), expected: "an integer from 1 to 1024" }),
    }
}

/// Parses `262144`, `256k`, `256K`, `256KiB`, `1m`, `1MiB`.
pub(crate) fn parse_size(var: &'static str, v: &str) -> Result<usize, ConfigError> {
    let err = || ConfigError {
        var,
        value: v.to_string(),
        expected: "a size from 16k to 1g, in bytes or with a k/m/g suffix",
    };
    let s = v.trim().to_ascii_lowercase();
    let s = s.strip_suffix("ib").or_else(|| s.strip_suffix('b')).unwrap_or(&s).to_string();
    let (num, mult) = match s.chars().last() {
        Some('k') => (&s[..s.len() - 1], 1usize << 10),
        Some('m') => (&s[..s.len() - 1], 1 << 20),
        Some('g') => (&s[..s.len() - 1], 1 << 30),
        _ => (&s[..], 1),
    };
    let n: usize = num.trim().parse().map_err(|_| err())?;
    let bytes = n.checked_mul(mult).ok_or_else(err)?;
    if !(MIN_STACK_SIZE..=MAX_STACK_SIZE).contains(&bytes) {
        return Err(err());
    }
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(pairs: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let pairs: Vec<(String, String)> = pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        Config::from_lookup(|k| pairs.iter().find(|(kk, _)| kk == k).map(|(_, v)| v.clone()))
    }

    #[test]
    fn defaults() {
        let c = cfg(&[]).unwrap();
        assert!(c.max_procs >= 1);
        assert_eq!(c.stack_size, DEFAULT_STACK_SIZE);
        assert_eq!(c.schedtrace_ms, None);
        assert!(c.deadlock_detection);
    }

    #[test]
    fn gomaxprocs_wins_over_gort_maxprocs() {
        assert_eq!(cfg(&[("GOMAXPROCS", "3"), ("GORT_MAXPROCS", "5")]).unwrap().max_procs, 3);
        assert_eq!(cfg(&[("GORT_MAXPROCS", "5")]).unwrap().max_procs, 5);
    }

    #[test]
    fn garbage_is_a_clear_error() {
        let e = cfg(&[("GOMAXPROCS", "lots")]).unwrap_err();
        assert_eq!(e.var, "GOMAXPROCS");
        assert_eq!(e.to_string(), "invalid GOMAXPROCS=\"lots\": expected an integer from 1 to 1024");
        assert!(cfg(&[("GOMAXPROCS", "0")]).is_err());
        assert!(cfg(&[("GORT_STACK_SIZE", "12x")]).is_err());
        assert!(cfg(&[("GORT_STACK_SIZE", "1k")]).is_err(), "below the minimum");
        assert!(cfg(&[("GORT_SCHEDTRACE", "-1")]).is_err());
        assert!(cfg(&[("GORT_DEADLOCK", "maybe")]).is_err());
        assert!(cfg(&[("GORT_GUARDED_STACKS", "x")]).is_err());
        for bad in ["10", "ms", "10 parsecs", "-1ms", "0ms", "1.ms", "2h", "1e3ms"] {
            let e = cfg(&[("GORT_HOGTHRESHOLD", bad)]).unwrap_err();
            assert_eq!(e.var, "GORT_HOGTHRESHOLD", "{bad}");
        }
        assert!(cfg(&[("GORT_HOGTRACE", "yes")]).is_err());
    }

    #[test]
    fn durations() {
        let d = |v| parse_duration("X", v).unwrap();
        assert_eq!(d("10ms"), Duration::from_millis(10));
        assert_eq!(d("500us"), Duration::from_micros(500));
        assert_eq!(d("500µs"), Duration::from_micros(500));
        assert_eq!(d(" 1s "), Duration::from_secs(1));
        assert_eq!(d("1.5ms"), Duration::from_micros(1500));
        assert_eq!(d("250ns"), Duration::from_nanos(250));
        let c = cfg(&[("GORT_HOGTHRESHOLD", "20ms"), ("GORT_HOGTRACE", "1")]).unwrap();
        assert_eq!((c.hog_threshold, c.hog_trace), (Some(Duration::from_millis(20)), Some(true)));
        let c = cfg(&[]).unwrap();
        assert_eq!((c.hog_threshold, c.hog_trace), (None, None));
    }

    #[test]
    fn leakcheck() {
        assert_eq!(cfg(&[]).unwrap().leakcheck, None);
        assert_eq!(cfg(&[("GORT_LEAKCHECK", "off")]).unwrap().leakcheck, None);
        let lc = cfg(&[("GORT_LEAKCHECK", "10s")]).unwrap().leakcheck.unwrap();
        assert_eq!(lc, LeakCheck::every(Duration::from_secs(10)));
        let lc = cfg(&[("GORT_LEAKCHECK", "500ms, window=12,threshold=3")]).unwrap().leakcheck.unwrap();
        assert_eq!((lc.interval, lc.window, lc.threshold), (Duration::from_millis(500), 12, 3));
        assert_eq!(cfg(&[("GORT_LEAKCHECK", "1m")]).unwrap().leakcheck.unwrap().interval, Duration::from_secs(60));
        for bad in ["10", "fast", "0s", "-1s", "10s,window=2", "10s,threshold=0", "10s,k=3", "10s,window", "off,x"] {
            let e = cfg(&[("GORT_LEAKCHECK", bad)]).unwrap_err();
            assert_eq!(e.var, "GORT_LEAKCHECK", "{bad}");
            assert!(e.to_string().contains("an interval such as 10s"), "{e}");
        }
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("X", "65536").unwrap(), 65536);
        assert_eq!(parse_size("X", "64k").unwrap(), 65536);
        assert_eq!(parse_size("X", "64KiB").unwrap(), 65536);
        assert_eq!(parse_size("X", "1m").unwrap(), 1 << 20);
        assert_eq!(parse_size("X", " 2M ").unwrap(), 2 << 20);
    }
}
