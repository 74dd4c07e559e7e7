// Package httpload is bench/lvs's HTTP load generator: a fixed number of
// keep-alive connections, each sending one small GET after another for a
// fixed time, with every request's latency recorded. It speaks just enough
// HTTP/1.1 (a request line, a Content-Length response) to stay out of the
// way of what it measures: on a 2-core machine a heavier client would eat
// the CPU of the proxy under test.
package httpload

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/openssi/openssi/bench/stats"
)

// Options describe a run.
type Options struct {
	Addr     string        // host:port
	Conns    int           // concurrent connections, e.g. 64
	Duration time.Duration // measured time
	Warmup   time.Duration // run before the measured time, not counted
	Path     string        // request path; "/" when empty
	// Timeout bounds a dial and a request; 2 s when zero.
	Timeout time.Duration
	// MaxSamples bounds the latencies kept per connection (1<<20 when
	// zero); requests past it still count.
	MaxSamples int
}

// Result is what a run measured.
type Result struct {
	Requests  int64         // completed in the measured time
	Errors    int64         // failed requests and dials in the measured time
	Elapsed   time.Duration // the measured time, as it was
	Latencies []time.Duration
}

// RPS is the completed requests per second.
func (r Result) RPS() float64 {
	if r.Elapsed <= 0 {
		return 0
	}
	return float64(r.Requests) / r.Elapsed.Seconds()
}

// Percentile is the nearest-rank percentile of the latencies.
func (r Result) Percentile(p float64) time.Duration { return stats.Percentile(r.Latencies, p) }

// Run drives the load and returns the measured part. It stops early when
// ctx ends, with what it had.
func Run(ctx context.Context, o Options) (Result, error) {
	if o.Conns < 1 || o.Duration <= 0 || o.Addr == "" {
		return Result{}, fmt.Errorf("httpload: need an address, connections and a duration")
	}
	if o.Path == "" {
		o.Path = "/"
	}
	if o.Timeout <= 0 {
		o.Timeout = 2 * time.Second
	}
	if o.MaxSamples <= 0 {
		o.MaxSamples = 1 << 20
	}
	req := []byte("GET " + o.Path + " HTTP/1.1\r\nHost: " + o.Addr + "\r\nUser-Agent: openssi-bench-lvs\r\n\r\n")
	start := time.Now()
	from := start.Add(o.Warmup)
	until := from.Add(o.Duration)
	ctx, cancel := context.WithDeadline(ctx, until)
	defer cancel()
	workers := make([]worker, o.Conns)
	var wg sync.WaitGroup
	for i := range workers {
		w := &workers[i]
		w.lat = make([]time.Duration, 0, min(o.MaxSamples, 4096))
		wg.Add(1)
		go func() {
			defer wg.Done()
			w.loop(ctx, o, req, from, until)
		}()
	}
	wg.Wait()
	end := time.Now()
	if end.After(until) {
		end = until
	}
	var r Result
	for _, w := range workers {
		r.Requests += w.done
		r.Errors += w.errs
		r.Latencies = append(r.Latencies, w.lat...)
	}
	r.Elapsed = end.Sub(from)
	if r.Requests == 0 && r.Errors > 0 {
		return r, fmt.Errorf("httpload: no request to %s succeeded (%d errors; first: %v)", o.Addr, r.Errors, firstErr(workers))
	}
	return r, nil
}

func firstErr(ws []worker) error {
	for _, w := range ws {
		if w.first != nil {
			return w.first
		}
	}
	return nil
}

type worker struct {
	done, errs int64
	lat        []time.Duration
	first      error
}

func (w *worker) loop(ctx context.Context, o Options, req []byte, from, until time.Time) {
	var c net.Conn
	var br *bufio.Reader
	defer func() {
		if c != nil {
			c.Close()
		}
	}()
	d := net.Dialer{Timeout: o.Timeout}
	for ctx.Err() == nil {
		if c == nil {
			var err error
			c, err = d.DialContext(ctx, "tcp", o.Addr)
			if err != nil {
				w.fail(err, time.Now(), from, until)
				c = nil
				// Do not spin on a refused dial.
				select {
				case <-ctx.Done():
				case <-time.After(10 * time.Millisecond):
				}
				continue
			}
			br = bufio.NewReaderSize(c, 4096)
		}
		t0 := time.Now()
		_ = c.SetDeadline(t0.Add(o.Timeout))
		keep, err := roundTrip(c, br, req)
		t1 := time.Now()
		if err != nil {
			if ctx.Err() == nil {
				w.fail(err, t1, from, until)
			}
			c.Close()
			c = nil
			continue
		}
		if !t0.Before(from) && !t1.After(until) {
			w.done++
			if len(w.lat) < o.MaxSamples {
				w.lat = append(w.lat, t1.Sub(t0))
			}
		}
		if !keep {
			c.Close()
			c = nil
		}
	}
}

func (w *worker) fail(err error, at, from, until time.Time) {
	if at.Before(from) || at.After(until) {
		return
	}
	w.errs++
	if w.first == nil {
		w.first = err
	}
}

// roundTrip sends req and reads one response: status 200, a
// Content-Length body. It reports whether the connection stays open.
func roundTrip(c net.Conn, br *bufio.Reader, req []byte) (keep bool, err error) {
	if _, err := c.Write(req); err != nil {
		return false, err
	}
	return readResponse(br)
}

var (
	errStatus = errors.New("httpload: response is not 200")
	errLength = errors.New("httpload: response without a Content-Length")
)

// readResponse reads a response's head and discards its body.
func readResponse(br *bufio.Reader) (keep bool, err error) {
	line, err := br.ReadSlice('\n')
	if err != nil {
		return false, err
	}
	if !bytes.HasPrefix(line, []byte("HTTP/1.1 200")) && !bytes.HasPrefix(line, []byte("HTTP/1.0 200")) {
		return false, fmt.Errorf("%w: %q", errStatus, bytes.TrimSpace(line))
	}
	keep = bytes.HasPrefix(line, []byte("HTTP/1.1"))
	length := int64(-1)
	for {
		h, err := br.ReadSlice('\n')
		if err != nil {
			return false, err
		}
		h = bytes.TrimRight(h, "\r\n")
		if len(h) == 0 {
			break
		}
		k, v, ok := bytes.Cut(h, []byte(":"))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(v)
		switch {
		case bytes.EqualFold(k, []byte("Content-Length")):
			n, err := strconv.ParseInt(string(v), 10, 64)
			if err != nil || n < 0 {
				return false, fmt.Errorf("httpload: Content-Length %q", v)
			}
			length = n
		case bytes.EqualFold(k, []byte("Connection")):
			if bytes.EqualFold(v, []byte("close")) {
				keep = false
			}
		}
	}
	if length < 0 {
		return false, errLength
	}
	if _, err := br.Discard(int(length)); err != nil {
		return false, err
	}
	return keep, nil
}

// Get makes one request on a new connection, for probes (failover): it
// succeeds when a 200 response came back within timeout.
func Get(ctx context.Context, addr, path string, timeout time.Duration) error {
	if path == "" {
		path = "/"
	}
	d := net.Dialer{Timeout: timeout}
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\nConnection: close\r\n\r\n"); err != nil {
		return err
	}
	_, err = readResponse(bufio.NewReader(c))
	return err
}
