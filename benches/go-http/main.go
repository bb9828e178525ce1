// Go peers for gort's network benchmarks (benches/net.sh): `hello` is a net/http hello server,
// `echo` a TCP echo server, both honouring GOMAXPROCS. Standard library only. `-pprof ADDR` also
// serves net/http/pprof there (the profiler row, benches/prof_overhead.sh, asks it for a CPU
// profile while wrk runs); the hello server keeps a mux of its own, so its routing is the same
// with or without it.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof/ on http.DefaultServeMux, served only with -pprof
)

func main() {
	mode := flag.String("mode", "hello", "hello | echo")
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	pprofAddr := flag.String("pprof", "", "also serve /debug/pprof/ on this address")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Fatal(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	switch *mode {
	case "hello":
		mux := http.NewServeMux()
		mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "Hello, World!")
		})
		log.Fatal(http.ListenAndServe(*addr, mux))
	case "echo":
		l, err := net.Listen("tcp", *addr)
		if err != nil {
			log.Fatal(err)
		}
		for {
			c, err := l.Accept()
			if err != nil {
				continue
			}
			go func(c net.Conn) {
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if err != nil {
						return
					}
					if _, err := c.Write(buf[:n]); err != nil {
						return
					}
				}
			}(c)
		}
	}
}
