// Package hostinfo describes the host a benchmark ran on, for its results
// file: the CPU and the load from other work.
package hostinfo

import (
	"os"
	"strings"
)

// LoadAvg is the host's 1, 5 and 15 minute load averages ("unknown" when
// /proc/loadavg cannot be read).
func LoadAvg() string {
	b, err := os.ReadFile("/proc/loadavg")
	if f := strings.Fields(string(b)); err == nil && len(f) >= 3 {
		return strings.Join(f[:3], " ")
	}
	return "unknown"
}

// CPUModel is the model name of the host's CPU.
func CPUModel() string {
	b, err := os.ReadFile("/proc/cpuinfo")
	if err != nil {
		return "unknown CPU"
	}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, ":"); ok && strings.TrimSpace(k) == "model name" {
			return strings.TrimSpace(v)
		}
	}
	return "unknown CPU"
}
