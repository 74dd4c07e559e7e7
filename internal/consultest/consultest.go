package consultest

import (
	"errors"
	"flag"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/openssi/openssi/internal/consulagent"
)

// CIEnv names the environment variable that marks a CI run: when it holds a
// true value (CI=true, as CI systems set it), a missing consul binary fails
// the tests that need one instead of skipping them.
const CIEnv = "CI"

// Need returns the consul binary for a test that needs Consul. Without one it
// skips the test, saying how to get one, or, under CI, fails it.
func Need(t testing.TB) string {
	t.Helper()
	bin, err := consulagent.Binary()
	if err == nil {
		return bin
	}
	msg, fail := missing(err)
	if fail {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// MainNeed is [Need] for a TestMain that starts a cluster for the tests
// matching pattern, a go test -skip regexp ("^Example" for runnable
// examples, "." for every test): it returns the consul binary. Without one
// it prints why and returns "" after adding pattern to -skip, so that m.Run
// runs only the other tests; under CI it exits with status 1 instead.
func MainNeed(pattern string) string {
	bin, err := consulagent.Binary()
	if err == nil {
		return bin
	}
	msg, fail := missing(err)
	fmt.Println(msg)
	if fail {
		os.Exit(1)
	}
	if !flag.Parsed() {
		flag.Parse() // m.Run would parse later and overwrite the -skip set here
	}
	skip := pattern
	if f := flag.Lookup("test.skip"); f != nil && f.Value.String() != "" {
		skip = f.Value.String() + "|" + skip
	}
	if err := flag.Set("test.skip", skip); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	return ""
}

// missing words the skip (or, under CI, failure) of a test for want of err,
// an error of consulagent.Binary.
func missing(err error) (msg string, fail bool) {
	if os.Getenv(consulagent.DisableEnv) != "" {
		return fmt.Sprintf("needs Consul, hidden by %s (make unit)", consulagent.DisableEnv), false
	}
	ci, _ := strconv.ParseBool(os.Getenv(CIEnv))
	if ci && errors.Is(err, consulagent.ErrNoBinary) {
		return fmt.Sprintf("needs Consul: %v; %s=%s makes this a failure, not a skip", err, CIEnv, os.Getenv(CIEnv)), true
	}
	return fmt.Sprintf("needs Consul, skipped: %v (under %s=true this fails)", err, CIEnv), false
}

// Start starts a cluster for a test in a fresh t.TempDir(), waits until it is
// ready (leader elected, all members alive, every node's serfHealth passing)
// and registers its teardown with t.Cleanup; when the test failed, the tail
// of every agent's log is logged first. Without a consul binary the test is
// skipped, or under CI failed (see [Need]).
func Start(t testing.TB, opts consulagent.Options) *consulagent.Cluster {
	t.Helper()
	Need(t)
	dir := t.TempDir()
	begin := time.Now()
	c, err := consulagent.StartCluster(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("consultest: %d servers + %d clients (%v) up on %s.0/24 in %v",
		c.Options.Servers, c.Options.Clients, c.Options.Profile, c.Subnet, time.Since(begin).Round(time.Millisecond))
	t.Cleanup(func() {
		if t.Failed() {
			for _, a := range c.Agents {
				t.Logf("---- consul agent %s (%s) log tail ----\n%s", a.Name, a.IP, a.LogTail(40))
			}
		}
		c.Stop()
	})
	return c
}
