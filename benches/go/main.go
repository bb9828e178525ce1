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
	"fmt"
	"os"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
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

var workloads = map[string]func(name string){
	"switch":             func(string) { switchTwo() },
	"spawn_join_1m":      func(string) { spawnJoin1M() },
	"chained_spawn_1000": func(string) { chainedSpawn1000() },
	"yield_200x10k":      func(string) { yield200x10k() },
	"skynet_1m":          skynet1M,
	"skynet_1m_chan":     skynet1M,
	"park_100k":          func(string) { park100k() },
	"pingpong_unbuf":     func(string) { pingpong() },
	"mpmc_4x4_cap1024":   func(string) { mpmc() },
	"mutex_4x1m":         func(string) { mutex4x1M() },
	"waitgroup_100k":     func(string) { waitgroup100k() },
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
	workloads[os.Args[1]](os.Args[1])
}
