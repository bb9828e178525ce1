//! gort as a dependency of a user's crate, built the way a user builds it.
//!
//! A build started inside this repository gets this workspace's `[profile.release]` (debug info)
//! and any `.cargo/config.toml` of the directories above it, while Cargo never reads a
//! dependency's config or profiles; so what a user gets can only be seen from a crate outside the
//! repository. These tests copy `tests/downstream/` to a temporary
//! directory, point its `gort` dependency at this checkout, build it with a clean environment
//! (`cargo build --release` with the default release profile and no rustflags; then with frame
//! pointers forced by `RUSTFLAGS`; and plain `cargo build`, the unoptimized dev profile that a
//! user's `cargo run` and `cargo test` get), and check its pprof endpoints with `go tool pprof`
//! and a goroutine dump. The builds go to `<target dir>/downstream/{default,fp,dev}`, so reruns
//! are incremental.

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::prof::{have_go, http_get, parse_value, pprof, top_rows, TopRow};

const REPO: &str = env!("CARGO_MANIFEST_DIR");
const BIN: &str = "gort-downstream";
const MIB: f64 = (1u64 << 20) as f64;
/// The demo leaks one goroutine per interval.
const LEAK_MS: u64 = 100;
/// Leak intervals between the two goroutine profiles that are diffed.
const DIFF_INTERVALS: u64 = 10;

struct Variant {
    name: &'static str,
    rustflags: Option<&'static str>,
    frame_pointers: bool,
    /// `cargo build --release`; else `cargo build` (the dev profile: opt-level 0, debug
    /// assertions on, gort included).
    release: bool,
}

#[test]
fn downstream_default_build() {
    check_variant(&Variant { name: "default", rustflags: None, frame_pointers: false, release: true });
}

#[test]
fn downstream_frame_pointer_build() {
    check_variant(&Variant {
        name: "fp",
        rustflags: Some("-C force-frame-pointers=yes"),
        frame_pointers: true,
        release: true,
    });
}

/// What a user's `cargo run` builds: gort unoptimized, where stack walks and the profiles' own
/// work take several times the stack and time they take optimized.
#[test]
fn downstream_dev_build() {
    check_variant(&Variant { name: "dev", rustflags: None, frame_pointers: false, release: false });
}

fn check_variant(v: &Variant) {
    let krate = TempCrate::copy(v.name);
    let bin = build(v, &krate.0);

    let (rustflags, unwinder) = flags(&bin);
    eprintln!("[{}] rustflags: {rustflags:?}, unwinder: {unwinder}", v.name);
    assert_eq!(
        rustflags.contains("force-frame-pointers"),
        v.frame_pointers,
        "[{}] the build's rustflags {rustflags:?} (a config of ours leaked in, or RUSTFLAGS did not apply)",
        v.name
    );
    let want = if v.frame_pointers { "frame-pointers" } else { "dwarf-cfi" };
    assert_eq!(unwinder, want, "[{}] gort chose the wrong unwinder for rustflags {rustflags:?}", v.name);

    let mut demo = Demo::start(&bin, v.name);
    let addr: SocketAddr = demo.expect_line("addr ", common::PATIENCE).parse().expect("addr IP:PORT");
    demo.expect_line("ready", Duration::from_secs(60));
    demo.wait_leaked(3, common::PATIENCE);

    let mut fails = Vec::new();
    check_dump(&demo, addr, &mut fails);
    check_wall_and_metrics(&demo, addr, &mut fails);
    check_leak_finder(addr, &mut fails);
    if have_go() {
        check_heap(addr, &mut fails);
        check_leak_diff(&demo, addr, &krate.0, &mut fails);
        check_cpu(&bin, &krate.0, &mut fails);
        // `go tool pprof` reads every other profile the server offers.
        for p in ["allocs", "threadcreate", "mutex", "block", "profile?seconds=1"] {
            let out = pprof(&["-top", &format!("http://{addr}/debug/pprof/{p}")]);
            if !out.contains("Type: ") {
                fails.push(format!("go tool pprof on {p}: no profile read\n{out}"));
            }
        }
    }
    if let Some(status) = demo.exited() {
        fails.push(format!("the demo exited during the checks: {}", demo.why(status)));
    }
    drop(demo);
    if !v.frame_pointers && v.release {
        check_stripped(&bin, &krate.0, &mut fails);
    }
    assert!(fails.is_empty(), "[{}] {} check(s) failed:\n- {}", v.name, fails.len(), fails.join("\n- "));
}

/// The downstream crate, copied outside the repository; removed on drop.
struct TempCrate(PathBuf);

impl TempCrate {
    fn copy(variant: &str) -> TempCrate {
        let src = Path::new(REPO).join("tests/downstream");
        let dst = std::env::temp_dir().join(format!("gort-downstream-{variant}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dst);
        copy_dir(&src.join("src"), &dst.join("src"));
        std::fs::copy(src.join("build.rs"), dst.join("build.rs")).unwrap();
        let manifest = std::fs::read_to_string(src.join("Cargo.toml")).unwrap();
        let placeholder = r#"path = "PLACEHOLDER""#;
        assert!(manifest.contains(placeholder), "tests/downstream/Cargo.toml lost its {placeholder}");
        // A TOML basic string takes the same escapes as Rust's Debug for the characters a path has.
        let manifest = manifest.replace(placeholder, &format!("path = {REPO:?}"));
        std::fs::write(dst.join("Cargo.toml"), manifest).unwrap();
        // Our lock file pins the versions this checkout is tested with; cargo prunes it to fit.
        std::fs::copy(Path::new(REPO).join("Cargo.lock"), dst.join("Cargo.lock")).unwrap();
        TempCrate(dst)
    }
}

impl Drop for TempCrate {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &to.join(e.file_name()));
        } else {
            std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
        }
    }
}

/// Environment variables that would change the build from what a user's plain `cargo build`
/// (with or without `--release`) does.
fn changes_build(name: &str) -> bool {
    const EXACT: &[&str] = &[
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_RUSTFLAGS",
        "RUSTDOCFLAGS",
        "CARGO_ENCODED_RUSTDOCFLAGS",
        "CARGO_BUILD_RUSTDOCFLAGS",
        "CARGO_TARGET_DIR",
        "CARGO_BUILD_TARGET_DIR",
        "CARGO_BUILD_TARGET",
    ];
    EXACT.contains(&name)
        || name.starts_with("CARGO_PROFILE_")
        || (name.starts_with("CARGO_TARGET_") && name.ends_with("_RUSTFLAGS"))
}

/// `cargo build [--release]` of the copy; returns the binary.
fn build(v: &Variant, dir: &Path) -> PathBuf {
    // `CARGO_TARGET_TMPDIR` is `<target dir>/tmp` of this build, however the target dir was chosen.
    let target = Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join("downstream").join(v.name);
    let cargo = std::env::var_os("CARGO").map_or_else(|| PathBuf::from(env!("CARGO")), PathBuf::from);
    let mut cmd = Command::new(&cargo);
    cmd.arg("build").current_dir(dir).stdin(Stdio::null());
    if v.release {
        cmd.arg("--release");
    }
    for (k, _) in std::env::vars_os() {
        if k.to_str().is_some_and(changes_build) {
            cmd.env_remove(&k);
        }
    }
    cmd.env("CARGO_TARGET_DIR", &target);
    if let Some(f) = v.rustflags {
        cmd.env("RUSTFLAGS", f);
    }
    let out = cmd.output().unwrap_or_else(|e| panic!("cannot run {}: {e}", cargo.display()));
    assert!(
        out.status.success(),
        "[{}] cargo build failed ({}):\n{}{}",
        v.name,
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let bin = target.join(if v.release { "release" } else { "debug" }).join(BIN);
    assert!(bin.is_file(), "no binary at {}", bin.display());
    bin
}

/// `BIN --flags`: the rustflags it was built with and gort's unwinder.
fn flags(bin: &Path) -> (String, String) {
    let out = Command::new(bin).arg("--flags").stdin(Stdio::null()).output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(
        out.status.success(),
        "{} --flags: {}\n{text}{}",
        bin.display(),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    let field = |key: &str| {
        let line = text.lines().find_map(|l| l.strip_prefix(key)).unwrap_or_else(|| panic!("no {key:?} in:\n{text}"));
        line.trim().to_string()
    };
    (field("rustflags:"), field("unwinder:"))
}

/// The running demo. Dropping it closes its stdin (it exits at end of file) and kills it, so a
/// failed test never leaves it behind.
struct Demo {
    name: &'static str,
    child: Child,
    stdin: Option<ChildStdin>,
    lines: mpsc::Receiver<String>,
    leaked: Arc<AtomicU64>,
    stderr: Option<JoinHandle<String>>,
}

impl Demo {
    fn start(bin: &Path, name: &'static str) -> Demo {
        let mut cmd = Command::new(bin);
        cmd.args(["--interval-ms", &LEAK_MS.to_string(), "--exit-after-secs", "300"]);
        cmd.stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
        // The runtime's defaults, whatever this test process was started with.
        for (k, _) in std::env::vars() {
            if k == "GOMAXPROCS" || k.starts_with("GORT_") {
                cmd.env_remove(k);
            }
        }
        // The leak census, fast enough to find the demo's leak during the checks.
        cmd.env("GORT_LEAKCHECK", "200ms,window=5,threshold=3");
        let mut child = cmd.spawn().unwrap_or_else(|e| panic!("cannot start {}: {e}", bin.display()));
        let stdin = child.stdin.take();
        let stdout = child.stdout.take().unwrap();
        let stderr = child.stderr.take().unwrap();
        let leaked = Arc::new(AtomicU64::new(0));
        let (tx, lines) = mpsc::channel();
        let l = leaked.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                match line.strip_prefix("leak ") {
                    Some(n) => l.store(n.trim().parse().expect("leak N"), Ordering::SeqCst),
                    None => {
                        let _ = tx.send(line);
                    }
                }
            }
        });
        let stderr = std::thread::spawn(move || {
            let mut s = String::new();
            for line in BufReader::new(stderr).lines() {
                let Ok(line) = line else { break };
                eprintln!("[{name} demo] {line}");
                s.push_str(&line);
                s.push('\n');
            }
            s
        });
        Demo { name, child, stdin, lines, leaked, stderr: Some(stderr) }
    }

    /// Waits for the stdout line starting with `prefix`; returns the rest of it.
    fn expect_line(&mut self, prefix: &str, limit: Duration) -> String {
        let deadline = Instant::now() + limit;
        loop {
            match self.lines.recv_timeout(deadline.saturating_duration_since(Instant::now())) {
                Ok(line) => match line.strip_prefix(prefix) {
                    Some(rest) => return rest.trim().to_string(),
                    None => eprintln!("[{} demo] {line}", self.name),
                },
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    panic!("[{}] the demo printed no {prefix:?} line within {limit:?}", self.name)
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let (name, status) = (self.name, self.child.wait().unwrap());
                    panic!("[{name}] the demo exited before printing {prefix:?}: {}", self.why(status));
                }
            }
        }
    }

    /// How many goroutines the demo reports having leaked so far.
    fn leaked(&self) -> u64 {
        self.leaked.load(Ordering::SeqCst)
    }

    fn wait_leaked(&mut self, n: u64, limit: Duration) {
        let deadline = Instant::now() + limit;
        while self.leaked() < n {
            if let Some(status) = self.exited() {
                let name = self.name;
                panic!("[{name}] the demo exited: {}", self.why(status));
            }
            assert!(Instant::now() < deadline, "[{}] fewer than {n} leaks within {limit:?}", self.name);
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    fn exited(&mut self) -> Option<ExitStatus> {
        self.child.try_wait().unwrap()
    }

    /// The exit status (naming a signal) and everything the demo wrote to stderr.
    fn why(&mut self, status: ExitStatus) -> String {
        use std::os::unix::process::ExitStatusExt;
        let how = match status.signal() {
            Some(sig) => format!("killed by signal {sig}{}", if sig == libc::SIGSEGV { " (SIGSEGV)" } else { "" }),
            None => status.to_string(),
        };
        let stderr = self.stderr.take().map(|h| h.join().unwrap()).unwrap_or_default();
        format!("{how}; its stderr:\n{stderr}")
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        drop(self.stdin.take());
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One goroutine of a `debug=2` dump.
#[derive(Debug)]
struct GBlock {
    header: String,
    frames: Vec<String>,
}

impl GBlock {
    fn frame(&self, needle: &str) -> Option<usize> {
        self.frames.iter().position(|f| f.contains(needle))
    }
    fn in_chan_receive(&self) -> bool {
        self.header.contains("[chan receive")
    }
}

/// Parses Go's traceback form: a `goroutine N [state]:` header, then `function(...)` lines each
/// followed by a tab-indented `file:line +0xoff`, then `created by ...`.
fn parse_dump(text: &str) -> Vec<GBlock> {
    let mut blocks = Vec::new();
    for chunk in text.split("\n\n").filter(|c| !c.trim().is_empty()) {
        // gort's notes about the binary (`# ...`), ahead of the first goroutine.
        if chunk.lines().all(|l| l.starts_with('#')) {
            continue;
        }
        let mut lines = chunk.lines();
        let header = lines.next().unwrap().to_string();
        assert!(header.starts_with("goroutine ") && header.ends_with("]:"), "not a goroutine header: {header:?}");
        let mut frames = Vec::new();
        for l in lines {
            if l.starts_with('\t') || l.starts_with("created by ") || l == "...additional frames elided..." {
                continue;
            }
            frames.push(l.strip_suffix("(...)").unwrap_or_else(|| panic!("not a frame line: {l:?}")).to_string());
        }
        blocks.push(GBlock { header, frames });
    }
    blocks
}

fn check_dump(demo: &Demo, addr: SocketAddr, fails: &mut Vec<String>) {
    let before = demo.leaked();
    let text = String::from_utf8(http_get(addr, "/debug/pprof/goroutine?debug=2").ok_body()).expect("UTF-8 dump");
    let after = demo.leaked();
    let blocks = parse_dump(&text);
    let mut why = Vec::new();

    let empty: Vec<&str> =
        blocks.iter().filter(|b| b.frames.iter().any(|f| f.trim().is_empty())).map(|b| b.header.as_str()).collect();
    if !empty.is_empty() {
        why.push(format!("frames with an empty function name in {empty:?}"));
    }
    let slices = blocks.iter().any(|b| {
        b.in_chan_receive()
            && matches!((b.frame("new_slice_in_heap2"), b.frame("new_slice_in_heap1")), (Some(i2), Some(i1)) if i2 < i1)
    });
    if !slices {
        why.push("no [chan receive] goroutine with new_slice_in_heap2 above new_slice_in_heap1".into());
    }
    if !blocks.iter().any(|b| b.in_chan_receive() && b.frame("new_map_in_heap").is_some()) {
        why.push("no [chan receive] goroutine with new_map_in_heap".into());
    }
    let future = blocks.iter().any(|b| {
        b.header.contains("[future")
            && matches!((b.frame("block_on"), b.frame("wait_on_a_future")), (Some(i), Some(j)) if i < j)
    });
    if !future {
        why.push("no [future] goroutine with block_on above wait_on_a_future".into());
    }
    let leaked =
        blocks.iter().filter(|b| b.in_chan_receive() && b.frame("http_pprof_goroutine").is_some()).count() as u64;
    if !(before.saturating_sub(1)..=after + 1).contains(&leaked) {
        why.push(format!(
            "{leaked} [chan receive] goroutines with http_pprof_goroutine in their frames; the demo had leaked \
             {before}..={after}"
        ));
    }
    eprintln!("[{}] goroutine?debug=2: {} goroutines, {leaked} leaked ones found", demo.name, blocks.len());
    if !why.is_empty() {
        fails.push(format!("goroutine?debug=2: {}\n{}", why.join("; "), excerpt(&text)));
    }
}

/// The wall-clock profile (walked and cached park sites, in this build's unwinder) charges the
/// heap demo's goroutines, parked all along, the whole window in `chan receive` at their own
/// stacks; `/debug/metrics` counts the parked goroutines.
fn check_wall_and_metrics(demo: &Demo, addr: SocketAddr, fails: &mut Vec<String>) {
    let p = gort::profiler::proto::Profile::decode_any(&http_get(addr, "/debug/pprof/wall?seconds=1").ok_body())
        .expect("a wall-clock profile");
    let window = p.duration_nanos as f64;
    let mut heap_demo = 0i64;
    for s in &p.sample {
        let state = s.label.iter().find(|l| p.str(l.key) == "state").map(|l| p.str(l.str));
        let names: Vec<&str> = s
            .location_id
            .iter()
            .flat_map(|&id| p.location.iter().find(|l| l.id == id).into_iter().flat_map(|l| &l.line))
            .map(|ln| p.str(p.function.iter().find(|f| f.id == ln.function_id).map_or(0, |f| f.name)))
            .collect();
        if state == Some("chan receive")
            && names.iter().any(|n| n.contains("new_slice_in_heap") || n.contains("new_map_in_heap"))
        {
            heap_demo += s.value[0];
        }
    }
    eprintln!(
        "[{}] wall: {:.2} s in the heap demo's receives over {:.2} s",
        demo.name,
        heap_demo as f64 / 1e9,
        window / 1e9
    );
    // Two goroutines (the map's, the slices') parked through the whole window.
    if (heap_demo as f64) < 2.0 * 0.95 * window {
        fails.push(format!("wall: {heap_demo} ns in the heap demo's chan receives, want 2 x {window} ns"));
    }
    let m = String::from_utf8(http_get(addr, "/debug/metrics").ok_body()).expect("UTF-8 metrics");
    let parked = m
        .lines()
        .find_map(|l| l.strip_prefix("gort_goroutines{state=\"chan receive\"} "))
        .and_then(|v| v.parse::<u64>().ok());
    if parked.is_none_or(|n| n < 2 + demo.leaked().saturating_sub(1)) {
        fails.push(format!("/debug/metrics: {parked:?} goroutines in chan receive\n{}", excerpt(&m)));
    }
}

/// The leak census (`GORT_LEAKCHECK` in the demo's environment) finds the demo's leak: the
/// goroutines parked in `http_pprof_goroutine`'s closure, one more every interval.
fn check_leak_finder(addr: SocketAddr, fails: &mut Vec<String>) {
    let deadline = std::time::Instant::now() + common::PATIENCE;
    loop {
        let text =
            String::from_utf8_lossy(&http_get(addr, "/debug/pprof/goroutineleak?debug=1").ok_body()).into_owned();
        if text.contains("http_pprof_goroutine") && text.contains("chan receive") {
            return;
        }
        if std::time::Instant::now() > deadline {
            fails.push(format!("goroutineleak: the demo's leak was not found\n{}", excerpt(&text)));
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
}

/// The start of a long text, for a failure message.
fn excerpt(text: &str) -> String {
    const MAX: usize = 6000;
    match text.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}\n... ({} more bytes)", &text[..i], text.len() - i),
        None => text.to_string(),
    }
}

/// The row containing `needle` with the largest cum (inlined closures get rows of their own).
fn find<'a>(rows: &'a [TopRow], needle: &str) -> Option<&'a TopRow> {
    rows.iter().filter(|r| r.name.contains(needle)).max_by(|a, b| a.cum.total_cmp(&b.cum))
}

fn check_heap(addr: SocketAddr, fails: &mut Vec<String>) {
    let url = format!("http://{addr}/debug/pprof/heap");
    let mut why = Vec::new();
    // The slices' goroutine was spawned under the label `demo=slices`, the map's was not.
    let out = pprof(&["-top", "-sample_index=inuse_space", "-tagfocus", "demo=slices", &url]);
    let rows = top_rows(&out);
    match find(&rows, "new_slice_in_heap1") {
        Some(r) if (r.cum - 36.0 * MIB).abs() <= MIB => {}
        r => why.push(format!("-tagfocus demo=slices: new_slice_in_heap1 {r:?}, want cum 36 MiB")),
    }
    if find(&rows, "new_map_in_heap").is_some() {
        why.push("-tagfocus demo=slices shows new_map_in_heap".into());
    }
    if !why.is_empty() {
        fails.push(format!("heap labels: {}\n{out}", why.join("; ")));
        why.clear();
    }
    let out = pprof(&["-top", "-sample_index=inuse_space", &url]);
    let rows = top_rows(&out);
    let mut near = |what: &str, got: Option<f64>, mib: f64| match got {
        Some(v) if (v - mib * MIB).abs() <= MIB => {}
        Some(v) => why.push(format!("{what} = {:.2} MiB, want {mib} ± 1", v / MIB)),
        None => why.push(format!("no row for {what}")),
    };
    near("new_slice_in_heap2 flat", find(&rows, "new_slice_in_heap2").map(|r| r.flat), 24.0);
    near("new_slice_in_heap1 flat", find(&rows, "new_slice_in_heap1").map(|r| r.flat), 12.0);
    near("new_slice_in_heap1 cum", find(&rows, "new_slice_in_heap1").map(|r| r.cum), 36.0);
    match find(&rows, "new_map_in_heap") {
        Some(r) if r.cum > 20.0 * MIB => {}
        Some(r) => why.push(format!("new_map_in_heap cum = {:.2} MiB, want > 20", r.cum / MIB)),
        None => why.push("no row for new_map_in_heap".into()),
    }
    if !why.is_empty() {
        fails.push(format!("heap (inuse_space): {}\n{out}", why.join("; ")));
    }
}

/// Go's CPU demo in the user's build: `go tool pprof -top` puts at least 95% of the samples in
/// `busy_loop`.
fn check_cpu(bin: &Path, dir: &Path, fails: &mut Vec<String>) {
    let path = dir.join("cpu.pb.gz");
    let out = Command::new(bin)
        .args(["--cpu-profile", path.to_str().unwrap(), "--seconds", "2"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    if !out.status.success() {
        fails.push(format!("cpu demo failed: {}", String::from_utf8_lossy(&out.stderr)));
        return;
    }
    let dump = std::fs::read_to_string(format!("{}.goroutines.txt", path.display())).unwrap_or_default();
    let busy = dump.split("\n\n").find(|b| b.contains("busy_loop"));
    if busy.is_none_or(|b| b.contains("stack unavailable")) {
        fails.push(format!("goroutine dump: the running busy_loop goroutine has no stack\n{dump}"));
    }
    let hog = std::fs::read_to_string(format!("{}.hog.txt", path.display())).unwrap_or_default();
    if !hog.contains("busy_loop") {
        fails.push(format!("hog profile: busy_loop, which never yields, is not in it\n{hog}"));
    }
    let text = pprof(&["-top", "-nodefraction=0", path.to_str().unwrap()]);
    let rows = top_rows(&text);
    let total: f64 = rows.iter().map(|r| r.flat).sum();
    match find(&rows, "busy_loop") {
        Some(r) if total > 0.0 && r.cum >= 0.95 * total => {}
        Some(r) => {
            fails.push(format!("cpu: busy_loop has {:.0}% of the samples, want >= 95%\n{text}", 100.0 * r.cum / total))
        }
        None => fails.push(format!("cpu: no row for busy_loop\n{text}")),
    }
}

/// A stripped copy of the binary (no symbol table, no debug info) still serves profiles that
/// `go tool pprof` reads: frames are bare addresses, but the heap's total is all there.
fn check_stripped(bin: &Path, dir: &Path, fails: &mut Vec<String>) {
    let stripped = dir.join(format!("{BIN}-stripped"));
    let out = Command::new("strip").arg("-o").arg(&stripped).arg(bin).output().expect("strip (binutils) runs");
    assert!(out.status.success(), "strip failed: {}", String::from_utf8_lossy(&out.stderr));
    let mut demo = Demo::start(&stripped, "stripped");
    let addr: SocketAddr = demo.expect_line("addr ", common::PATIENCE).parse().expect("addr IP:PORT");
    demo.expect_line("ready", Duration::from_secs(60));
    let dump = String::from_utf8_lossy(&http_get(addr, "/debug/pprof/goroutine?debug=1").ok_body()).into_owned();
    if !dump.contains("goroutine profile: total") {
        fails.push(format!("stripped: goroutine?debug=1 is not a goroutine profile:\n{dump}"));
    }
    if have_go() {
        let out = pprof(&["-top", "-sample_index=inuse_space", &format!("http://{addr}/debug/pprof/heap")]);
        match shown_total(&out) {
            Some(t) if t >= 36.0 * MIB => {}
            t => fails.push(format!("stripped: heap total {t:?}, want at least the 36 MiB of slices\n{out}")),
        }
    }
}

/// The `total` of `Showing nodes accounting for X, P% of TOTAL total`.
fn shown_total(out: &str) -> Option<f64> {
    let line = out.lines().find(|l| l.starts_with("Showing nodes accounting for"))?;
    let (_, rest) = line.rsplit_once(" of ")?;
    Some(parse_value(rest.strip_suffix(" total")?))
}

fn check_leak_diff(demo: &Demo, addr: SocketAddr, dir: &Path, fails: &mut Vec<String>) {
    let b1 = demo.leaked();
    let g1 = http_get(addr, "/debug/pprof/goroutine").ok_body();
    let a1 = demo.leaked();
    std::thread::sleep(Duration::from_millis(LEAK_MS * DIFF_INTERVALS));
    let b2 = demo.leaked();
    let g2 = http_get(addr, "/debug/pprof/goroutine").ok_body();
    let a2 = demo.leaked();
    let (f1, f2) = (dir.join("g1.pb.gz"), dir.join("g2.pb.gz"));
    std::fs::write(&f1, g1).unwrap();
    std::fs::write(&f2, g2).unwrap();
    let out = pprof(&["-top", "-base", f1.to_str().unwrap(), f2.to_str().unwrap()]);
    let rows = top_rows(&out);
    // The leaks between the two fetches, widened by one for a leak racing a fetch or its report.
    let (lo, hi) = (b2.saturating_sub(a1).saturating_sub(1), a2 - b1 + 1);
    let mut why = Vec::new();
    match find(&rows, "http_pprof_goroutine") {
        Some(r) if (lo as f64..=hi as f64).contains(&r.cum) => {}
        Some(r) => why.push(format!("{} goroutines under {}, want {lo}..={hi}", r.cum, r.name)),
        None => why.push("no row for http_pprof_goroutine".into()),
    }
    // The total also counts the profiler's own accept goroutine if it sat at different places
    // in the two fetches: parked in one, and in the other caught running, accepting the fetch's
    // connection (a running stack walked by frame pointers may stop in libc's `accept4`). It
    // then shows as +1 and -1, and `pprof` totals absolute values: up to 2 more.
    let hi_total = hi + 2;
    match shown_total(&out) {
        Some(t) if (lo as f64..=hi_total as f64).contains(&t) => {}
        t => why.push(format!("the diff's total is {t:?}, want {lo}..={hi_total}")),
    }
    eprintln!("[{}] goroutine diff: leaks {b1}..{a1} -> {b2}..{a2}", demo.name);
    if !why.is_empty() {
        fails.push(format!("goroutine diff (-base): {}\n{out}", why.join("; ")));
    }
}
