// Command cfsprobe runs in a lab node and measures one directory: the
// metadata operations per second of a small-file workload (creates,
// stats, renames, unlinks of -files files) and the re-read of a file
// already in the page cache, printing JSON for bench/cfs.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"
)

type result struct {
	Creates float64 `json:"creates_per_s"`
	Stats   float64 `json:"stats_per_s"`
	Renames float64 `json:"renames_per_s"`
	Unlinks float64 `json:"unlinks_per_s"`
	// Reread is MB/s of a second read of a file within one open.
	Reread float64 `json:"reread_mb_per_s"`
}

func main() {
	dir := flag.String("dir", "", "the directory to measure in")
	files := flag.Int("files", 500, "files of the metadata workload")
	size := flag.Int("reread-mb", 64, "MiB of the re-read file")
	flag.Parse()
	if *dir == "" {
		fmt.Fprintln(os.Stderr, "cfsprobe: -dir is required")
		os.Exit(2)
	}
	r, err := measure(*dir, *files, *size)
	if err != nil {
		fmt.Fprintln(os.Stderr, "cfsprobe:", err)
		os.Exit(1)
	}
	_ = json.NewEncoder(os.Stdout).Encode(r)
}

func rate(n int, d time.Duration) float64 { return float64(n) / d.Seconds() }

func measure(base string, n, mb int) (*result, error) {
	dir, err := os.MkdirTemp(base, "probe-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	name := func(prefix string, i int) string { return filepath.Join(dir, fmt.Sprintf("%s%05d", prefix, i)) }
	r := &result{}
	phase := func(out *float64, op func(i int) error) error {
		start := time.Now()
		for i := 0; i < n; i++ {
			if err := op(i); err != nil {
				return err
			}
		}
		*out = rate(n, time.Since(start))
		return nil
	}
	if err := phase(&r.Creates, func(i int) error {
		f, err := os.OpenFile(name("a", i), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o644)
		if err != nil {
			return err
		}
		return f.Close()
	}); err != nil {
		return nil, err
	}
	if err := phase(&r.Stats, func(i int) error { _, err := os.Stat(name("a", i)); return err }); err != nil {
		return nil, err
	}
	if err := phase(&r.Renames, func(i int) error { return os.Rename(name("a", i), name("b", i)) }); err != nil {
		return nil, err
	}
	if err := phase(&r.Unlinks, func(i int) error { return os.Remove(name("b", i)) }); err != nil {
		return nil, err
	}

	p := filepath.Join(dir, "big")
	buf := make([]byte, 1<<20)
	for i := range buf {
		buf[i] = byte(i)
	}
	f, err := os.Create(p)
	if err != nil {
		return nil, err
	}
	for i := 0; i < mb; i++ {
		if _, err := f.Write(buf); err != nil {
			f.Close()
			return nil, err
		}
	}
	if err := f.Close(); err != nil {
		return nil, err
	}
	f, err = os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	if _, err := io.CopyBuffer(io.Discard, f, buf); err != nil { // into the page cache
		return nil, err
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return nil, err
	}
	start := time.Now()
	got, err := io.CopyBuffer(io.Discard, f, buf)
	if err != nil {
		return nil, err
	}
	r.Reread = float64(got) / 1e6 / time.Since(start).Seconds()
	return r, nil
}
