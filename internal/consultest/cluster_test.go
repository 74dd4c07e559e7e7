package consultest

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/consul/api"
)

func TestTunedHCL(t *testing.T) {
	got := TunedSettings().HCL()
	for _, want := range []string{
		`probe_interval  = "100ms"`,
		`probe_timeout   = "50ms"`,
		`gossip_interval = "20ms"`,
		`suspicion_mult  = 2`,
		`retransmit_mult = 4`,
		`raft_multiplier  = 1`,
		`rpc_hold_timeout = "1s"`,
	} {
		if !strings.Contains(got, want) {
			t.Errorf("TunedSettings().HCL() lacks %q:\n%s", want, got)
		}
	}
}

func TestBinaryEnv(t *testing.T) {
	t.Setenv("CONSUL_BIN", "/nonexistent/consul")
	if _, err := Binary(); err != ErrNoBinary {
		t.Fatalf("Binary() with a bad CONSUL_BIN: err = %v, want ErrNoBinary", err)
	}
	if !strings.Contains(ErrNoBinary.Error(), "run `make consul` or set CONSUL_BIN") {
		t.Fatalf("ErrNoBinary text: %q", ErrNoBinary)
	}
}

func TestClusterKillRestart(t *testing.T) {
	c := Start(t, Options{Servers: 3, Clients: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	if len(c.Agents) != 4 || len(c.Servers()) != 3 || len(c.Clients()) != 1 {
		t.Fatalf("agents: %d (%d servers, %d clients)", len(c.Agents), len(c.Servers()), len(c.Clients()))
	}
	for i, a := range c.Agents {
		if want := "node" + string(rune('1'+i)); a.Name != want {
			t.Errorf("agent %d name %q, want %q", i, a.Name, want)
		}
		if !strings.HasPrefix(a.IP, c.Subnet+".") || a.HTTPAddr != a.IP+":8500" {
			t.Errorf("agent %s: IP %s HTTPAddr %s (subnet %s)", a.Name, a.IP, a.HTTPAddr, c.Subnet)
		}
		name, err := a.Client().Agent().NodeName()
		if err != nil || name != a.Name {
			t.Errorf("agent %s answers as %q, %v", a.Name, name, err)
		}
	}
	leader, err := c.WaitLeader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if err := c.WaitMembers(ctx, MemberAlive); err != nil {
		t.Fatal(err)
	}
	// Connect is on by default: the built-in CA has a root.
	roots, _, err := c.Agents[3].Client().Agent().ConnectCARoots(nil)
	if err != nil || len(roots.Roots) == 0 {
		t.Fatalf("connect CA roots: %v, %v", roots, err)
	}

	// Kill a server that is not the leader; the others must see it fail.
	var victim *Agent
	for _, a := range c.Servers() {
		if a != leader {
			victim = a
			break
		}
	}
	start := time.Now()
	if err := victim.Kill(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitSerfHealth(ctx, victim.Name, api.HealthCritical); err != nil {
		t.Fatal(err)
	}
	t.Logf("profile %v: serfHealth of SIGKILLed %s critical after %v", c.Options.Profile, victim.Name, time.Since(start))
	if err := c.WaitMembers(ctx, MemberFailed, victim.Name); err != nil {
		t.Fatal(err)
	}

	// Restart it with the same data dir: it rejoins.
	if err := victim.Start(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitReady(ctx); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitMembers(ctx, MemberAlive); err != nil {
		t.Fatal(err)
	}
}

// TestFailureDetection measures how long after a SIGKILL the node's serfHealth
// goes critical, for a client and for the Raft leader, with each profile. The
// Default profile takes Consul's stock timers (several seconds), so it only
// runs without -short.
func TestFailureDetection(t *testing.T) {
	for _, tc := range []struct {
		profile Profile
		limit   time.Duration // generous bound; the goal for Tuned is ~1.5s
	}{
		{Tuned, 3 * time.Second},
		{Default, 60 * time.Second},
	} {
		t.Run(tc.profile.String(), func(t *testing.T) {
			if tc.profile == Default && testing.Short() {
				t.Skip("Default profile detection takes seconds; run without -short")
			}
			t.Parallel()
			c := Start(t, Options{Servers: 3, Clients: 2, Profile: tc.profile})
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()

			client := c.Clients()[0]
			start := time.Now()
			if err := client.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitSerfHealth(ctx, client.Name, api.HealthCritical); err != nil {
				t.Fatal(err)
			}
			d := time.Since(start)
			t.Logf("profile %v: client %s serfHealth critical %v after SIGKILL", tc.profile, client.Name, d)
			if d > tc.limit {
				t.Errorf("client failure detected after %v, want <= %v", d, tc.limit)
			}

			leader, err := c.WaitLeader(ctx)
			if err != nil {
				t.Fatal(err)
			}
			start = time.Now()
			if err := leader.Kill(); err != nil {
				t.Fatal(err)
			}
			if err := c.WaitSerfHealth(ctx, leader.Name, api.HealthCritical); err != nil {
				t.Fatal(err)
			}
			d = time.Since(start)
			t.Logf("profile %v: leader %s serfHealth critical %v after SIGKILL (includes re-election)", tc.profile, leader.Name, d)
			if d > tc.limit+5*time.Second {
				t.Errorf("leader failure detected after %v, want <= %v", d, tc.limit+5*time.Second)
			}
		})
	}
}

func TestStopAndLeave(t *testing.T) {
	c := Start(t, Options{Servers: 1, Clients: 2, NoConnect: true})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left, stopped := c.Agents[1], c.Agents[2]
	start := time.Now()
	defer func() { t.Logf("done after %v", time.Since(start)) }()
	if err := left.Leave(); err != nil {
		t.Fatal(err)
	}
	if err := c.WaitMembers(ctx, MemberLeft, left.Name); err != nil {
		t.Fatal(err)
	}
	t.Logf("left after %v", time.Since(start))
	if err := stopped.Stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("stopped after %v", time.Since(start))
	if stopped.Running() {
		t.Fatal("agent still running after Stop")
	}
	// leave_on_terminate=false: a SIGTERMed agent fails, it does not leave.
	if err := c.WaitMembers(ctx, MemberFailed, stopped.Name); err != nil {
		t.Fatal(err)
	}
	if err := stopped.Stop(); err == nil {
		t.Fatal("Stop of a stopped agent: no error")
	}
	c.Stop()
	for _, a := range c.Agents {
		if a.Running() {
			t.Errorf("%s running after Cluster.Stop", a.Name)
		}
	}
}

// fatalTB records Fatal instead of failing the real test.
type fatalTB struct {
	testing.TB
	fatal   string
	skipped bool
}

func (f *fatalTB) Helper()           {}
func (f *fatalTB) Fatal(args ...any) { f.fatal = fmt.Sprint(args...); runtime.Goexit() }
func (f *fatalTB) Skip(...any)       { f.skipped = true; runtime.Goexit() }
func (f *fatalTB) SkipNow()          { f.skipped = true; runtime.Goexit() }

func TestStartWithoutBinaryFails(t *testing.T) {
	t.Setenv("CONSUL_BIN", "/nonexistent/consul")
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		Start(f, Options{})
	}()
	<-done
	if f.skipped || !strings.Contains(f.fatal, "consul binary not found: run `make consul` or set CONSUL_BIN") {
		t.Fatalf("Start without a binary: fatal %q skipped %v", f.fatal, f.skipped)
	}
}
