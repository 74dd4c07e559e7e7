package httpload

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

func TestReadResponse(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   string
		keep bool
		err  string
		rest string // what follows the response in the stream
	}{
		{"keep-alive", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\nNEXT", true, "", "NEXT"},
		{"header case", "HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\nNEXT", true, "", "NEXT"},
		{"close", "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok", false, "", ""},
		{"HTTP/1.0", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok", false, "", ""},
		{"not 200", "HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n", false, "not 200", ""},
		{"no length", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", false, "without a Content-Length", ""},
		{"bad length", "HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", false, "Content-Length", ""},
		{"cut short", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nok", false, "EOF", ""},
		{"cut in the head", "HTTP/1.1 200 OK\r\nContent-", false, "EOF", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			br := bufio.NewReader(strings.NewReader(tc.in))
			keep, err := readResponse(br)
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("readResponse: %v, want %q", err, tc.err)
				}
				return
			}
			if err != nil || keep != tc.keep {
				t.Fatalf("readResponse = %v, %v; want %v", keep, err, tc.keep)
			}
			rest := make([]byte, 16)
			n, _ := br.Read(rest)
			if string(rest[:n]) != tc.rest {
				t.Fatalf("left %q, want %q", rest[:n], tc.rest)
			}
		})
	}
}

func TestRunAgainstLoopback(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	}))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	r, err := Run(context.Background(), Options{Addr: addr, Conns: 4, Duration: 200 * time.Millisecond, Warmup: 50 * time.Millisecond})
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	if r.Requests == 0 || r.Errors != 0 || int64(len(r.Latencies)) != r.Requests || r.RPS() <= 0 || r.Percentile(99) <= 0 {
		t.Fatalf("Run = %d requests, %d errors, %d latencies, %.0f/s", r.Requests, r.Errors, len(r.Latencies), r.RPS())
	}
	if err := Get(context.Background(), addr, "/", time.Second); err != nil {
		t.Fatalf("Get: %v", err)
	}
}

func TestRunNobodyListens(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	r, err := Run(context.Background(), Options{Addr: addr, Conns: 2, Duration: 50 * time.Millisecond})
	if err == nil || r.Errors == 0 || !strings.Contains(err.Error(), "no request") {
		t.Fatalf("Run = %+v, %v; want errors and no request", r, err)
	}
	if err := Get(context.Background(), addr, "/", time.Second); err == nil {
		t.Fatal("Get: no error")
	}
}

func TestRunRefusesNoWork(t *testing.T) {
	if _, err := Run(context.Background(), Options{Addr: "127.0.0.1:1"}); err == nil {
		t.Fatal("Run without connections or duration: no error")
	}
}
