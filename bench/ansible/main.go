// Command ansible measures the Ansible rollout in the lab: how long
// ansible/site.yml takes from three bare booted nodes (sshd and Python, no
// Consul, no openssi; `lab up --bare`) to 3 nodes UP at every node, and how
// long a second run, which must change nothing, takes. Each trial brings a
// fresh bare lab up and tears it down.
//
//	go run ./bench/ansible -dist dist -out bench/ansible/RESULTS.md
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/openssi/openssi/client/cluster"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

func main() {
	dist := flag.String("dist", "dist", "dist/ with repo/ from `make repo`")
	playbooks := flag.String("ansible", "ansible", "the directory of site.yml and the roles")
	trials := flag.Int("trials", 3, "fresh bare labs to roll out to")
	out := flag.String("out", "", "write the results as Markdown here")
	flag.Parse()
	if err := run(*dist, *playbooks, *trials, *out); err != nil {
		fmt.Fprintln(os.Stderr, "bench/ansible:", err)
		os.Exit(1)
	}
}

// trial is one rollout onto a fresh bare lab.
type trial struct {
	first, toUp, second time.Duration
	changed             int // tasks the second run changed
}

func run(dist, playbooks string, trials int, out string) error {
	if _, err := exec.LookPath("ansible-playbook"); err != nil {
		return fmt.Errorf("ansible-playbook not found: apt-get install ansible-core")
	}
	consul, err := consulagent.Binary()
	if err != nil {
		return err
	}
	dist, _ = filepath.Abs(dist)
	playbooks, _ = filepath.Abs(playbooks)
	var res []trial
	for i := 0; i < trials; i++ {
		t, err := one(dist, playbooks, consul)
		if err != nil {
			return fmt.Errorf("trial %d: %w", i+1, err)
		}
		fmt.Fprintf(os.Stderr, "bench/ansible: trial %d: site.yml %s (3 UP after %s), second run %s, changed=%d\n",
			i+1, t.first.Round(100*time.Millisecond), t.toUp.Round(100*time.Millisecond), t.second.Round(100*time.Millisecond), t.changed)
		res = append(res, t)
	}
	report := render(res, time.Now())
	fmt.Print(report)
	if out != "" {
		return os.WriteFile(out, []byte(report), 0o644)
	}
	return nil
}

// one brings a bare lab of 3 up, rolls site.yml out twice and tears the
// lab down.
func one(dist, playbooks, consul string) (trial, error) {
	dir, err := os.MkdirTemp("", "openssi-bench-ansible-")
	if err != nil {
		return trial{}, err
	}
	defer os.RemoveAll(dir)
	l, err := lab.Open(lab.Options{Dir: filepath.Join(dir, "lab"), Prefix: "bans", Subnet: "10.77.16", Dist: dist, Consul: consul, Log: os.Stderr})
	if err != nil {
		return trial{}, err
	}
	ctx := context.Background()
	if err := l.Down(ctx); err != nil { // a crashed earlier run's
		return trial{}, err
	}
	defer l.Down(ctx) //nolint:errcheck
	if err := l.UpBare(ctx, 3); err != nil {
		return trial{}, err
	}
	srv, err := l.Serve()
	if err != nil {
		return trial{}, err
	}
	defer srv.Close()
	inv, err := l.Inventory(nil)
	if err != nil {
		return trial{}, err
	}
	invFile := filepath.Join(dir, "inventory.yml")
	if err := os.WriteFile(invFile, inv, 0o600); err != nil {
		return trial{}, err
	}
	scratch := filepath.Join(dir, "ansible")
	start := time.Now()
	first, err := lab.RunPlaybook(ctx, playbooks, scratch, invFile, "site.yml")
	if err != nil {
		return trial{}, err
	}
	for _, n := range l.State().Nodes {
		if err := l.WaitFor(ctx, n.Name, 2*time.Minute, "3 nodes UP", func(v cluster.View) bool {
			up := 0
			for _, m := range v.Nodes {
				if m.State == cluster.Up {
					up++
				}
			}
			return up == 3
		}); err != nil {
			return trial{}, err
		}
	}
	toUp := time.Since(start)
	second, err := lab.RunPlaybook(ctx, playbooks, scratch, invFile, "site.yml")
	if err != nil {
		return trial{}, err
	}
	return trial{first: first.Took, toUp: toUp, second: second.Took, changed: second.Changed()}, nil
}

func median(ds []time.Duration) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func secs(d time.Duration) string { return fmt.Sprintf("%.1f s", d.Seconds()) }

// render writes the results as Markdown, with the targets.
func render(res []trial, at time.Time) string {
	var b strings.Builder
	fmt.Fprintf(&b, "# The Ansible rollout\n\nMeasured %s on the project's 2-core build machine (other jobs may have been running), `make bench-ansible`.\n\n", at.Format("2006-01-02"))
	b.WriteString("`ansible-playbook -i <lab inventory> ansible/site.yml` onto 3 bare lab nodes (`lab up --bare`: booted with sshd and Python, neither Consul nor openssi; the repository, Consul and a Debian mirror served from this machine), then the same again on the running cluster. Each trial is a fresh lab.\n\n")
	b.WriteString("| trial | first run | to 3 UP at every node | second run | changed in the second run |\n|---|---|---|---|---|\n")
	var toUp, second []time.Duration
	for i, t := range res {
		fmt.Fprintf(&b, "| %d | %s | %s | %s | %d |\n", i+1, secs(t.first), secs(t.toUp), secs(t.second), t.changed)
		toUp = append(toUp, t.toUp)
		second = append(second, t.second)
	}
	if len(res) == 0 {
		return b.String()
	}
	verdict := func(ok bool) string {
		if ok {
			return "met"
		}
		return "missed"
	}
	mu, ms := median(toUp), median(second)
	fmt.Fprintf(&b, "\nMedian: bare nodes to 3 UP **%s** (target < 2 min: %s); the no-change run **%s** (target < 30 s: %s).\n",
		secs(mu), verdict(mu < 2*time.Minute), secs(ms), verdict(ms < 30*time.Second))
	return b.String()
}
