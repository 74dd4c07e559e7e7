// Package proctext holds what the parsers of /proc text share (the load
// vector's in daemons/vprocd/load, the process table's in
// daemons/vprocd/proctable): digits, sizes in kB, and outside text
// clipped for an error. Pure; the text is outside input.
package proctext

import (
	"bytes"
	"fmt"
	"strconv"
)

// MaxKB bounds a size in kB: 2^50 kB is 1 EiB, so the bytes of three
// such sizes (MemFree + Buffers + Cached) fit a uint64.
const MaxKB = 1 << 50

// ParseKB reads a size such as " 24684092 kB" (the value of a
// /proc/meminfo or /proc/<pid>/status line) and returns it in kB, below
// MaxKB.
func ParseKB(b []byte) (uint64, error) {
	f := bytes.Fields(b)
	if len(f) != 2 || string(f[1]) != "kB" || !AllDigits(f[0]) {
		return 0, fmt.Errorf("%q is not a size in kB", Clip(bytes.TrimSpace(b)))
	}
	v, err := strconv.ParseUint(string(f[0]), 10, 64)
	if err != nil || v >= MaxKB {
		return 0, fmt.Errorf("%q kB is out of range", Clip(f[0]))
	}
	return v, nil
}

// AllDigits reports whether b holds only the digits 0-9 (true when empty).
func AllDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Clip shortens outside text quoted in an error to 32 bytes.
func Clip(b []byte) string {
	if len(b) > 32 {
		return string(b[:32]) + "..."
	}
	return string(b)
}
