// Go peers for gort's network benchmarks (benches/net.sh): `hello` is a net/http hello server,
// `echo` a TCP echo server, both honouring GOMAXPROCS. Standard library only.
package main

import (
	"flag"
	"io"
	"log"
	"net"
	"net/http"
)

func main() {
	mode := flag.String("mode", "hello", "hello | echo")
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	flag.Parse()
	switch *mode {
	case "hello":
		http.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Type", "text/plain")
			io.WriteString(w, "Hello, World!")
		})
		log.Fatal(http.ListenAndServe(*addr, nil))
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
