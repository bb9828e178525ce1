// Command gortbench runs one of gort's benchmark workloads in Go and prints one
// machine-readable line per metric: `<workload> <unit>=<value>`.
//
//	GOMAXPROCS=2 ./gortbench spawn_join_1m
//
// The worker count comes from GOMAXPROCS (set by benches/compare.sh). Only the standard library
// is used. Every workload here has a twin in benches/workloads/mod.rs (gort; run by
// benches/runners/{runtime,chan,mem}.rs) and in benches/peers (Tokio, may)
// doing the same steps; benches/README.md lists the few places where a runtime lacks the exact
// primitive (Go has no join handle: a WaitGroup or a channel of capacity 1 stands in).
package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"runtime"
	"runtime/pprof"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

func emit(name, unit string, v float64) {
	fmt.Printf("%s %s=%.1f\n", name, unit, v)
}

func nsPer(d time.Duration, n int) float64 { return float64(d.Nanoseconds()) / float64(n) }

// procStatusKiB reads a `Vm...:` field of /proc/self/status in KiB.
func procStatusKiB(field string) float64 {
	f, err := os.Open("/proc/self/status")
	if err != nil {
		panic(err)
	}
	defer f.Close()
	s := bufio.NewScanner(f)
	for s.Scan() {
		line := s.Text()
		if strings.HasPrefix(line, field+":") {
			fs := strings.Fields(line)
			v, err := strconv.ParseFloat(fs[1], 64)
			if err != nil {
				panic(err)
			}
			return v
		}
	}
	panic("no " + field + " in /proc/self/status")
}

// yieldMany starts `tasks` goroutines each yielding `yields` times and waits for them.
func yieldMany(tasks, yields int) time.Duration {
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(tasks)
	for i := 0; i < tasks; i++ {
		go func() {
			for j := 0; j < yields; j++ {
				runtime.Gosched()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	return time.Since(start)
}

// 1. Two goroutines yielding to each other (run with GOMAXPROCS=1); ns per switch.
func switchTwo() {
	const n = 500_000
	emit("switch", "ns_per_op", nsPer(yieldMany(2, n), 2*n))
}

// 2. Spawn 1M goroutines returning a small value, then "join" them all. Go has no join
// handle: each goroutine stores its result in its slot and a WaitGroup is the join.
func spawnJoin1M() {
	const n = 1_000_000
	start := time.Now()
	results := make([]int, n)
	var wg sync.WaitGroup
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func(i int) {
			results[i] = i * 2
			wg.Done()
		}(i)
	}
	wg.Wait()
	sum := 0
	for _, v := range results {
		sum += v
	}
	el := time.Since(start)
	if sum != n*(n-1) {
		panic("bad sum")
	}
	emit("spawn_join_1m", "ns_per_op", nsPer(el, n))
}

// 3. Each goroutine spawns the next and waits for its result, 1000 deep; microseconds per chain
// (mean of 100 chains).
func chain(n int) int {
	if n == 0 {
		return 0
	}
	c := make(chan int, 1)
	go func() { c <- chain(n-1) + 1 }()
	return <-c
}

func chainedSpawn1000() {
	const iters = 100
	chain(1000) // warm-up: grows the goroutine free list
	start := time.Now()
	for i := 0; i < iters; i++ {
		if chain(1000) != 1000 {
			panic("bad chain")
		}
	}
	emit("chained_spawn_1000", "us", float64(time.Since(start).Microseconds())/iters)
}

// 4. 200 goroutines each yielding 10,000 times; ns per yield.
func yield200x10k() {
	const tasks, yields = 200, 10_000
	emit("yield_200x10k", "ns_per_op", nsPer(yieldMany(tasks, yields), tasks*yields))
}

// 5. Skynet: the classic (https://github.com/atemerev/skynet), 1,111,111 goroutines; total ms
// and peak RSS. Go's version uses channels, so skynet_1m and skynet_1m_chan are the same here.
func skynet(c chan int, num, size, div int) {
	if size == 1 {
		c <- num
		return
	}
	rc := make(chan int)
	sum := 0
	for i := 0; i < div; i++ {
		sub := num + i*(size/div)
		go skynet(rc, sub, size/div, div)
	}
	for i := 0; i < div; i++ {
		sum += <-rc
	}
	c <- sum
}

func skynet1M(name string) {
	start := time.Now()
	c := make(chan int)
	go skynet(c, 0, 1_000_000, 10)
	sum := <-c
	el := time.Since(start)
	if sum != 499999500000 {
		panic("bad skynet sum")
	}
	emit(name, "ms", float64(el.Microseconds())/1000)
	emit(name+"_peak_rss", "mib", procStatusKiB("VmHWM")/1024)
}

// 6. Memory per parked goroutine: RSS delta over 100k goroutines blocked on a channel.
func park100k() {
	const n = 100_000
	runtime.GC()
	before := procStatusKiB("VmRSS")
	ch := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			<-ch
			done.Done()
		}()
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond) // let the last ones reach <-ch
	after := procStatusKiB("VmRSS")
	close(ch)
	done.Wait()
	emit("park_100k", "kib_per_g", (after-before)/n)
}

// 7a. Unbuffered channel ping-pong; ns per round trip (run with GOMAXPROCS=1 and 2).
func pingpong() {
	const n = 200_000
	ping, pong := make(chan int), make(chan int)
	go func() {
		for v := range ping {
			pong <- v
		}
		close(pong)
	}()
	start := time.Now()
	for i := 0; i < n; i++ {
		ping <- i
		if <-pong != i {
			panic("bad pong")
		}
	}
	el := time.Since(start)
	close(ping)
	<-pong // the echo goroutine has exited (closed pong)
	emit("pingpong_unbuf", "ns_per_op", nsPer(el, n))
}

// 7b. Buffered MPMC: 4 producers x 4 consumers over one channel of capacity 1024, 1M messages
// in total; ns per message.
func mpmc() {
	const producers, consumers, per = 4, 4, 250_000
	ch := make(chan int, 1024)
	var pw, cw sync.WaitGroup
	sums := make([]int, consumers)
	start := time.Now()
	for c := 0; c < consumers; c++ {
		cw.Add(1)
		go func(c int) {
			s := 0
			for v := range ch {
				s += v
			}
			sums[c] = s
			cw.Done()
		}(c)
	}
	for p := 0; p < producers; p++ {
		pw.Add(1)
		go func() {
			for i := 0; i < per; i++ {
				ch <- i
			}
			pw.Done()
		}()
	}
	pw.Wait()
	close(ch)
	cw.Wait()
	el := time.Since(start)
	total := 0
	for _, s := range sums {
		total += s
	}
	if total != producers*per*(per-1)/2 {
		panic("bad mpmc sum")
	}
	emit("mpmc_4x4_cap1024", "ns_per_op", nsPer(el, producers*per))
}

// 7c. sync.Mutex: 4 goroutines x 1M lock/unlock of a shared counter; ns per lock/unlock.
func mutex4x1M() {
	const g, per = 4, 1_000_000
	var mu sync.Mutex
	counter := 0
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(g)
	for i := 0; i < g; i++ {
		go func() {
			for j := 0; j < per; j++ {
				mu.Lock()
				counter++
				mu.Unlock()
			}
			wg.Done()
		}()
	}
	wg.Wait()
	el := time.Since(start)
	if counter != g*per {
		panic("bad counter")
	}
	emit("mutex_4x1m", "ns_per_op", nsPer(el, g*per))
}

// 7d. WaitGroup fan-out: add(100k), 100k goroutines each call Done, Wait; ns per goroutine.
func waitgroup100k() {
	const n = 100_000
	var wg sync.WaitGroup
	start := time.Now()
	wg.Add(n)
	for i := 0; i < n; i++ {
		go func() { wg.Done() }()
	}
	wg.Wait()
	emit("waitgroup_100k", "ns_per_op", nsPer(time.Since(start), n))
}

// splitmix64, the same generator as gort's and Tokio's twins: every runtime sleeps the same
// durations.
func splitmix64(state *uint64) uint64 {
	*state += 0x9E3779B97F4A7C15
	z := *state
	z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9
	z = (z ^ (z >> 27)) * 0x94D049BB133111EB
	return z ^ (z >> 31)
}

// 8. Timers under load: 100k goroutines wait on one channel; just before closing it main reads
// the clock (t0); goroutine i then sleeps until t0 + 1 s + d[i], d uniform in [0, 100 ms)
// (splitmix64, seed 1), and records how late it woke. p50 and p99 of the lateness, us.
func sleep100k() {
	const n = 100_000
	const margin = time.Second
	state := uint64(1)
	ds := make([]time.Duration, n)
	for i := range ds {
		ds[i] = time.Duration(splitmix64(&state) % 100_000_000)
	}
	late := make([]int64, n)
	ch := make(chan struct{})
	var t0 time.Time
	var armed int64 // ns after t0 the last goroutine armed its timer
	var done sync.WaitGroup
	done.Add(n)
	for i := 0; i < n; i++ {
		go func(i int) {
			<-ch
			a := int64(time.Since(t0))
			for {
				old := atomic.LoadInt64(&armed)
				if a <= old || atomic.CompareAndSwapInt64(&armed, old, a) {
					break
				}
			}
			deadline := t0.Add(margin + ds[i])
			time.Sleep(time.Until(deadline))
			late[i] = int64(time.Since(deadline))
			done.Done()
		}(i)
	}
	t0 = time.Now()
	close(ch)
	done.Wait()
	sort.Slice(late, func(a, b int) bool { return late[a] < late[b] })
	q := func(p float64) float64 { return float64(late[int(float64(n-1)*p+0.5)]) / 1e3 }
	emit("sleep_100k_p50", "us", q(0.5))
	emit("sleep_100k_p99", "us", q(0.99))
	fmt.Printf("# sleep_100k: min %.1f us, max %.1f us, last timer armed %.1f ms after the start\n", q(0), q(1), float64(armed)/1e6)
}

// 9. Netpoll round trip: 50k round trips of a 64-byte message over a Unix socket pair
// (socketpair, then net.FileConn: the sockets are on Go's network poller) to an echo
// goroutine, after 1000 warm-up round trips; ns per round trip.
func unixRTT() {
	const n, msgLen = 50_000, 64
	fds, err := syscall.Socketpair(syscall.AF_UNIX, syscall.SOCK_STREAM, 0)
	if err != nil {
		panic(err)
	}
	conn := func(fd int) net.Conn {
		f := os.NewFile(uintptr(fd), "socketpair")
		c, err := net.FileConn(f) // dups fd and sets it non-blocking
		if err != nil {
			panic(err)
		}
		f.Close()
		return c
	}
	a, b := conn(fds[0]), conn(fds[1])
	echoed := make(chan struct{})
	go func() {
		buf := make([]byte, msgLen)
		for {
			if _, err := io.ReadFull(b, buf); err != nil {
				if err != io.EOF {
					panic(err)
				}
				close(echoed)
				return
			}
			if _, err := b.Write(buf); err != nil {
				panic(err)
			}
		}
	}()
	msg, back := make([]byte, msgLen), make([]byte, msgLen)
	round := func(i int) {
		msg[0] = byte(i)
		if _, err := a.Write(msg); err != nil {
			panic(err)
		}
		if _, err := io.ReadFull(a, back); err != nil {
			panic(err)
		}
		if back[0] != byte(i) {
			panic("bad echo")
		}
	}
	for i := 0; i < 1000; i++ {
		round(i)
	}
	start := time.Now()
	for i := 0; i < n; i++ {
		round(i)
	}
	el := time.Since(start)
	a.Close()
	<-echoed
	emit("unix_rtt", "ns_per_op", nsPer(el, n))
}

//go:noinline
func blocked(ch chan struct{}) { <-ch }

// 10. The goroutine profile of 100k parked goroutines (pprof.Lookup("goroutine").WriteTo,
// debug=0), with `spinners` goroutines spinning (yielding after every 50 us) and a probe
// goroutine sleeping 1 ms in a loop, recording its longest lateness. One warm-up profile, a
// window as long as 5 profiles without profiling, then 5 profiles back to back: the median
// profile time in ms, the probe's longest lateness during the profiles and during the window, us.
func goroutineProfile(name string) {
	const n, profiles = 100_000, 5
	spinners := 0
	if strings.HasSuffix(name, "_spin") {
		spinners = 2
	}
	ch := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(n)
	done.Add(n)
	for i := 0; i < n; i++ {
		go func() {
			started.Done()
			blocked(ch)
			done.Done()
		}()
	}
	started.Wait()
	time.Sleep(20 * time.Millisecond)

	var stop int32
	var others sync.WaitGroup
	others.Add(spinners + 1)
	for i := 0; i < spinners; i++ {
		go func() {
			x := 0
			for atomic.LoadInt32(&stop) == 0 {
				t := time.Now()
				for time.Since(t) < 50*time.Microsecond {
					x++
				}
				runtime.Gosched()
			}
			_ = x
			others.Done()
		}()
	}
	var longest int64 // ns; the probe's longest lateness since main last took it
	// window moves on when the idle window opens: a sleep that began before (one the warm-up
	// profile delayed) is not the idle window's.
	var window int64
	go func() {
		for atomic.LoadInt32(&stop) == 0 {
			w := atomic.LoadInt64(&window)
			t := time.Now()
			time.Sleep(time.Millisecond)
			late := int64(time.Since(t) - time.Millisecond)
			for atomic.LoadInt64(&window) == w {
				old := atomic.LoadInt64(&longest)
				if late <= old || atomic.CompareAndSwapInt64(&longest, old, late) {
					break
				}
			}
		}
		others.Done()
	}()

	p := pprof.Lookup("goroutine")
	profile := func() time.Duration {
		var out bytes.Buffer
		t := time.Now()
		if err := p.WriteTo(&out, 0); err != nil {
			panic(err)
		}
		if out.Len() == 0 {
			panic("empty profile")
		}
		return time.Since(t)
	}
	warm := profile()
	atomic.StoreInt64(&longest, 0)
	atomic.AddInt64(&window, 1)
	time.Sleep(warm * profiles)
	pauseIdle := atomic.SwapInt64(&longest, 0)
	times := make([]time.Duration, profiles)
	for i := range times {
		times[i] = profile()
	}
	pause := atomic.LoadInt64(&longest)
	sort.Slice(times, func(a, b int) bool { return times[a] < times[b] })

	atomic.StoreInt32(&stop, 1)
	others.Wait()
	close(ch)
	done.Wait()
	emit(name, "ms", float64(times[profiles/2].Microseconds())/1000)
	emit(name+"_pause", "us", float64(pause)/1e3)
	emit(name+"_pause_idle", "us", float64(pauseIdle)/1e3)
}

var workloads = map[string]func(name string){
	"switch":                      func(string) { switchTwo() },
	"spawn_join_1m":               func(string) { spawnJoin1M() },
	"chained_spawn_1000":          func(string) { chainedSpawn1000() },
	"yield_200x10k":               func(string) { yield200x10k() },
	"skynet_1m":                   skynet1M,
	"skynet_1m_chan":              skynet1M,
	"park_100k":                   func(string) { park100k() },
	"pingpong_unbuf":              func(string) { pingpong() },
	"mpmc_4x4_cap1024":            func(string) { mpmc() },
	"mutex_4x1m":                  func(string) { mutex4x1M() },
	"waitgroup_100k":              func(string) { waitgroup100k() },
	"sleep_100k":                  func(string) { sleep100k() },
	"unix_rtt":                    func(string) { unixRTT() },
	"goroutine_profile_100k":      goroutineProfile,
	"goroutine_profile_100k_spin": goroutineProfile,
}

func main() {
	if len(os.Args) != 2 || workloads[os.Args[1]] == nil {
		names := make([]string, 0, len(workloads))
		for k := range workloads {
			names = append(names, k)
		}
		sort.Strings(names)
		fmt.Fprintf(os.Stderr, "usage: gortbench WORKLOAD\nworkloads: %s\n", strings.Join(names, " "))
		os.Exit(2)
	}
	// BENCH_CPU_PROFILE_HZ=100: the workload runs under a CPU profile (into io.Discard), as gort's
	// runners do with the same variable (benches/workloads/mod.rs). Go's StartCPUProfile samples
	// at 100 Hz; other rates are refused rather than set behind its back.
	if v, ok := os.LookupEnv("BENCH_CPU_PROFILE_HZ"); ok {
		if v != "100" {
			fmt.Fprintf(os.Stderr, "BENCH_CPU_PROFILE_HZ=%q: Go's StartCPUProfile samples at 100 Hz only\n", v)
			os.Exit(2)
		}
		if err := pprof.StartCPUProfile(io.Discard); err != nil {
			fmt.Fprintf(os.Stderr, "start the CPU profile: %v\n", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	workloads[os.Args[1]](os.Args[1])
}
