// Command consulprobe is run inside a lab node by the e2e tests, as an
// unprivileged user or as root without a token: it sends the Consul HTTP
// requests an attacker would (a leaf certificate, the KV store, a lockspace
// record, the catalog) to every address given, over TCP and the Unix socket,
// and prints one JSON line per request saying what came back.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"strings"
	"time"
)

// Result is one request's outcome.
type Result struct {
	Addr   string `json:"addr"`
	Method string `json:"method"`
	Path   string `json:"path"`
	// Status is the HTTP status, 0 when no response came (Error says why).
	Status int    `json:"status"`
	Error  string `json:"error,omitempty"`
	// Body is the start of the response body.
	Body string `json:"body,omitempty"`
}

func main() {
	addrs := flag.String("addrs", "tcp:127.0.0.1:8500,unix:/run/consul/http.sock", "comma-separated tcp:HOST:PORT or unix:PATH")
	tokenEnv := flag.Bool("token-from-env", false, "send CONSUL_HTTP_TOKEN as X-Consul-Token (none by default)")
	flag.Parse()
	enc := json.NewEncoder(os.Stdout)
	for _, a := range strings.Split(*addrs, ",") {
		network, address, ok := strings.Cut(a, ":")
		if !ok {
			fmt.Fprintf(os.Stderr, "consulprobe: bad address %q\n", a)
			os.Exit(2)
		}
		client := &http.Client{
			Timeout: 5 * time.Second,
			Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, network, address)
			}},
		}
		for _, req := range flag.Args() {
			method, path, _ := strings.Cut(req, " ")
			r := Result{Addr: a, Method: method, Path: path}
			var body io.Reader
			if method == "PUT" {
				body = strings.NewReader(`{"owner":0,"group":0,"mode":511}`)
			}
			hr, err := http.NewRequest(method, "http://consul"+path, body)
			if err != nil {
				r.Error = err.Error()
			} else {
				if tok := os.Getenv("CONSUL_HTTP_TOKEN"); *tokenEnv && tok != "" {
					hr.Header.Set("X-Consul-Token", tok)
				}
				resp, err := client.Do(hr)
				if err != nil {
					r.Error = err.Error()
				} else {
					b, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
					resp.Body.Close()
					r.Status, r.Body = resp.StatusCode, string(b)
				}
			}
			if err := enc.Encode(r); err != nil {
				os.Exit(1)
			}
		}
	}
}
