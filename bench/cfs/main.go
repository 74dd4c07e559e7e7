// Command cfs measures cfsd's mount in the lab against sshfs side by side
// in the same run: node 1 serves a directory (a tmpfs) both through cfsd
// (the export "bench", mounted at /cluster/bench on every node) and
// through its sshd, and node 2 measures each mount and a tmpfs of its own
// as the local reference: fio's sequential write and read (1 MiB blocks,
// end fsync, the page cache dropped before the read), and cfsprobe's
// metadata rates (creates, stats, renames, unlinks of small files) and
// the re-read of a file within one open (the page cache). Each round
// measures every target in turn; the median of the rounds is reported.
//
// The kernel NFS server does not run in the lab's containers (nfsd is
// not namespaced), so NFSv4 is not measured.
//
//	go run ./bench/cfs -dist dist -out bench/cfs/RESULTS.md
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/openssi/openssi/bench/hostinfo"
	"github.com/openssi/openssi/bench/labssh"
	"github.com/openssi/openssi/internal/consulagent"
	"github.com/openssi/openssi/lab"
)

type params struct {
	dist   string
	rounds int
	files  int
	mib    int
	out    string
}

func main() {
	var p params
	flag.StringVar(&p.dist, "dist", "dist", "dist/ with repo/ from `make repo`")
	flag.IntVar(&p.rounds, "rounds", 3, "rounds of every measurement")
	flag.IntVar(&p.files, "files", 500, "files of the metadata workload")
	flag.IntVar(&p.mib, "mib", 256, "MiB of fio's sequential file")
	flag.StringVar(&p.out, "out", "", "write the results as Markdown here")
	flag.Parse()
	if err := run(p); err != nil {
		fmt.Fprintln(os.Stderr, "bench/cfs:", err)
		os.Exit(1)
	}
}

func logf(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "bench/cfs: "+format+"\n", args...)
}

// targets are the directories node 2 measures, in the order of the table.
var targets = []struct{ name, dir string }{
	{"cfsd", "/cluster/bench"},
	{"sshfs", "/mnt/sshfs"},
	{"local tmpfs", "/srv/local"},
}

// figures are one target's numbers of one round.
type figures struct {
	WriteMBs float64 `json:"write_mb_per_s"`
	ReadMBs  float64 `json:"read_mb_per_s"`
	Creates  float64 `json:"creates_per_s"`
	Stats    float64 `json:"stats_per_s"`
	Renames  float64 `json:"renames_per_s"`
	Unlinks  float64 `json:"unlinks_per_s"`
	Reread   float64 `json:"reread_mb_per_s"`
}

const exportSection = `cfsd:
  exports:
    - name: bench
      path: /srv/cfs/bench
      mount: /cluster/bench
      server: 1
`

func run(p params) error {
	consul, err := consulagent.Binary()
	if err != nil {
		return err
	}
	dist, _ := filepath.Abs(p.dist)
	dir, err := os.MkdirTemp("", "openssi-bench-cfs-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	probe := filepath.Join(dir, "cfsprobe")
	build := exec.Command("go", "build", "-o", probe, "./bench/cfs/cfsprobe")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("build cfsprobe: %v: %s", err, out)
	}
	l, err := lab.Open(lab.Options{Dir: filepath.Join(dir, "lab"), Prefix: "bcf", Subnet: "10.77.29", Dist: dist, Consul: consul, Log: os.Stderr})
	if err != nil {
		return err
	}
	ctx := context.Background()
	defer l.Down(ctx)
	start := time.Now()
	if err := l.Up(ctx, 2); err != nil {
		return err
	}
	if err := setup(ctx, l, probe); err != nil {
		return err
	}
	load := hostinfo.LoadAvg()
	all := map[string][]figures{}
	for r := 1; r <= p.rounds; r++ {
		for _, t := range targets {
			logf("round %d of %d: %s", r, p.rounds, t.name)
			f, err := measure(ctx, l, t.dir, p)
			if err != nil {
				return fmt.Errorf("%s: %w", t.name, err)
			}
			all[t.name] = append(all[t.name], f)
		}
	}
	md := render(p, all, load, time.Since(start))
	fmt.Print(md)
	if p.out != "" {
		return os.WriteFile(p.out, []byte(md), 0o644)
	}
	return nil
}

// setup serves node 1's tmpfs through cfsd and sshd, mounts both on node
// 2 and gives node 2 a tmpfs of its own and cfsprobe.
func setup(ctx context.Context, l *lab.Lab, probe string) error {
	steps := []struct {
		node   string
		script string
	}{
		{"node1", "mkdir -p /srv/cfs && mount -t tmpfs -o size=2g tmpfs /srv/cfs && mkdir /srv/cfs/bench /srv/cfs/sshfs"},
		{"node2", "mkdir -p /srv/local /mnt/sshfs && mount -t tmpfs -o size=2g tmpfs /srv/local"},
	}
	for _, n := range []string{"node1", "node2"} {
		steps = append(steps, struct{ node, script string }{n, `printf '%s' '` + exportSection + `' >> /etc/openssi/openssi.yaml && systemctl restart openssi-cfsd`})
	}
	for _, s := range steps {
		if out, err := l.Exec(ctx, s.node, "sh", "-ec", s.script); err != nil {
			return fmt.Errorf("%s: %s: %v: %s", s.node, s.script, err, out)
		}
	}
	if err := labssh.Setup(ctx, l, "node2", "node1", "# bench/cfs\n"); err != nil {
		return err
	}
	if out, err := l.Exec(ctx, "node2", "sshfs", "-o", "BatchMode=yes", "node1:/srv/cfs/sshfs", "/mnt/sshfs"); err != nil {
		return fmt.Errorf("sshfs on node2: %v: %s", err, out)
	}
	n2, err := l.State().Node("node2")
	if err != nil {
		return err
	}
	b, err := os.ReadFile(probe)
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(n2.Root(), "usr/local/bin/cfsprobe"), b, 0o755); err != nil {
		return err
	}
	deadline := time.Now().Add(time.Minute)
	for {
		out, _ := l.Exec(ctx, "node2", "findmnt", "-n", "-o", "FSTYPE", "/cluster/bench")
		if strings.TrimSpace(out) == "fuse.cfs" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("node2: /cluster/bench not mounted after a minute (%q)", out)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// measure runs fio and cfsprobe on node 2 in dir.
func measure(ctx context.Context, l *lab.Lab, dir string, p params) (figures, error) {
	var f figures
	for _, rw := range []string{"write", "read"} {
		out, err := l.Exec(ctx, "node2", "fio", "--name=seq", "--directory="+dir, "--filename=fio.dat", "--rw="+rw,
			"--bs=1M", fmt.Sprintf("--size=%dM", p.mib), "--end_fsync=1", "--invalidate=1", "--output-format=json")
		if err != nil {
			return f, fmt.Errorf("fio %s: %v: %s", rw, err, out)
		}
		var res struct {
			Jobs []struct {
				Read struct {
					BwBytes float64 `json:"bw_bytes"`
				} `json:"read"`
				Write struct {
					BwBytes float64 `json:"bw_bytes"`
				} `json:"write"`
			} `json:"jobs"`
		}
		// fio may print a notice before its JSON.
		if i := strings.Index(out, "{"); i > 0 {
			out = out[i:]
		}
		if err := json.Unmarshal([]byte(out), &res); err != nil || len(res.Jobs) != 1 {
			return f, fmt.Errorf("fio %s: %v: %.300s", rw, err, out)
		}
		if rw == "write" {
			f.WriteMBs = res.Jobs[0].Write.BwBytes / 1e6
		} else {
			f.ReadMBs = res.Jobs[0].Read.BwBytes / 1e6
		}
	}
	if out, err := l.Exec(ctx, "node2", "rm", "-f", filepath.Join(dir, "fio.dat")); err != nil {
		return f, fmt.Errorf("rm: %v: %s", err, out)
	}
	out, err := l.Exec(ctx, "node2", "cfsprobe", "-dir", dir, "-files", fmt.Sprint(p.files))
	if err != nil {
		return f, fmt.Errorf("cfsprobe: %v: %s", err, out)
	}
	if err := json.Unmarshal([]byte(out), &f); err != nil {
		return f, fmt.Errorf("cfsprobe: %v: %s", err, out)
	}
	return f, nil
}

func median(xs []float64) float64 {
	s := append([]float64(nil), xs...)
	sort.Float64s(s)
	if len(s) == 0 {
		return 0
	}
	return s[len(s)/2]
}

func render(p params, all map[string][]figures, load string, took time.Duration) string {
	med := func(t string, pick func(figures) float64) float64 {
		var xs []float64
		for _, f := range all[t] {
			xs = append(xs, pick(f))
		}
		return median(xs)
	}
	rows := []struct {
		name   string
		unit   string
		pick   func(figures) float64
		target string
	}{
		{"sequential write (fio, 1 MiB, end fsync)", "MB/s", func(f figures) float64 { return f.WriteMBs }, "at least sshfs"},
		{"sequential read (fio, 1 MiB, cache dropped)", "MB/s", func(f figures) float64 { return f.ReadMBs }, "at least sshfs"},
		{"creates", "/s", func(f figures) float64 { return f.Creates }, "at least sshfs"},
		{"stats", "/s", func(f figures) float64 { return f.Stats }, "at least sshfs"},
		{"renames", "/s", func(f figures) float64 { return f.Renames }, "at least sshfs"},
		{"unlinks", "/s", func(f figures) float64 { return f.Unlinks }, "at least sshfs"},
		{"re-read within one open (page cache)", "MB/s", func(f figures) float64 { return f.Reread }, "local page-cache speed"},
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# bench/cfs\n\nNode 2 of a 2-node lab measures a directory of node 1 (a tmpfs) through cfsd's mount and through sshfs, and a tmpfs of its own, in %d interleaved rounds (medians); %d files in the metadata workload, a %d MiB file for fio. Host load at the start: %s. %s in all.\n\n", p.rounds, p.files, p.mib, load, took.Round(time.Second))
	fmt.Fprintf(&b, "| measurement | cfsd | sshfs | cfsd / sshfs | local tmpfs | cfsd / local | target |\n|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		c, s, lo := med("cfsd", r.pick), med("sshfs", r.pick), med("local tmpfs", r.pick)
		verdict := "met"
		if r.target == "at least sshfs" && c < s {
			verdict = "missed"
		}
		if r.target == "local page-cache speed" && c < 0.5*lo {
			verdict = "missed"
		}
		fmt.Fprintf(&b, "| %s | %.0f %s | %.0f %s | %.2fx | %.0f %s | %.2fx | %s: %s |\n", r.name, c, r.unit, s, r.unit, c/s, lo, r.unit, c/lo, r.target, verdict)
	}
	b.WriteString("\nNFSv4 is not measured: the kernel NFS server does not run in the lab's containers. HA failover is not built yet.\n")
	return b.String()
}
