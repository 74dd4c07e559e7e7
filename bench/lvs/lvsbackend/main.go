// Command lvsbackend is bench/lvs's backend: a small HTTP server that
// answers every request with a short body naming its node, on each
// address given with -listen. The bench copies it into every lab node and
// runs it as a systemd unit there.
package main

import (
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

type listens []string

func (l *listens) String() string     { return strings.Join(*l, ",") }
func (l *listens) Set(s string) error { *l = append(*l, s); return nil }

func main() {
	var addrs listens
	flag.Var(&addrs, "listen", "address:port to serve on (repeatable)")
	flag.Parse()
	if len(addrs) == 0 {
		fmt.Fprintln(os.Stderr, "lvsbackend: no -listen address")
		os.Exit(2)
	}
	host, _ := os.Hostname()
	body := []byte("ok " + host + "\n")
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body) //nolint:errcheck
	})
	errs := make(chan error, len(addrs))
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			fmt.Fprintln(os.Stderr, "lvsbackend:", err)
			os.Exit(1)
		}
		srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
		go func() { errs <- srv.Serve(ln) }()
	}
	fmt.Fprintln(os.Stderr, "lvsbackend: serving on", addrs.String())
	fmt.Fprintln(os.Stderr, "lvsbackend:", <-errs)
	os.Exit(1)
}
