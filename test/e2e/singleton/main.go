// Command singleton is the lab e2e's small HTTP service (initfailover_test.go):
//
//	singleton serve ADDR NAME   answers every request with NAME
//	singleton probe URL EVERY   GETs URL every EVERY and prints one line per
//	                            sample: "UNIXNANOS ok BODY" or "UNIXNANOS down"
//
// The test copies it, static, into the nodes: serve runs as the singleton
// unit, probe watches the node's own port from inside (a partitioned node
// cannot be polled from the host).
package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"strings"
	"time"
)

func main() {
	if len(os.Args) != 4 {
		fmt.Fprintln(os.Stderr, "usage: singleton serve ADDR NAME | singleton probe URL EVERY")
		os.Exit(2)
	}
	switch os.Args[1] {
	case "serve":
		name := os.Args[3]
		err := http.ListenAndServe(os.Args[2], http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
			w.Header().Set("Connection", "close")
			fmt.Fprintln(w, name)
		}))
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	case "probe":
		every, err := time.ParseDuration(os.Args[3])
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		probe(os.Args[2], every)
	default:
		fmt.Fprintf(os.Stderr, "singleton: unknown command %q\n", os.Args[1])
		os.Exit(2)
	}
}

func probe(url string, every time.Duration) {
	c := &http.Client{Timeout: 200 * time.Millisecond, Transport: &http.Transport{DisableKeepAlives: true}}
	out := bufio.NewWriter(os.Stdout)
	for t := time.NewTicker(every); ; <-t.C {
		at := time.Now().UnixNano()
		body, ok := get(c, url)
		if ok {
			fmt.Fprintf(out, "%d ok %s\n", at, body)
		} else {
			fmt.Fprintf(out, "%d down\n", at)
		}
		if out.Flush() != nil {
			os.Exit(0) // the test stopped reading
		}
	}
}

func get(c *http.Client, url string) (string, bool) {
	r, err := c.Get(url)
	if err != nil {
		return "", false
	}
	defer r.Body.Close()
	b, err := io.ReadAll(io.LimitReader(r.Body, 256))
	if err != nil || r.StatusCode != http.StatusOK {
		return "", false
	}
	return strings.TrimSpace(string(b)), true
}
