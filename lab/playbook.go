package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// HostRecap is one host's line of ansible-playbook's PLAY RECAP.
type HostRecap struct {
	OK, Changed, Unreachable, Failed, Skipped, Rescued, Ignored int
}

// PlaybookRun is what one ansible-playbook run did.
type PlaybookRun struct {
	// Output is its standard output and error.
	Output string
	// Recap is the PLAY RECAP by host.
	Recap map[string]HostRecap
	// Took is how long the run took.
	Took time.Duration
}

// Changed is the number of changed tasks over every host.
func (r PlaybookRun) Changed() int {
	n := 0
	for _, h := range r.Recap {
		n += h.Changed
	}
	return n
}

// Tasks lists the result lines of one status ("changed", "fatal", "ok")
// in the output, each after the header of its task: which tasks of a
// second run changed something, which failed.
func (r PlaybookRun) Tasks(status string) []string {
	var out []string
	task := ""
	for _, line := range strings.Split(r.Output, "\n") {
		if strings.HasPrefix(line, "TASK [") || strings.HasPrefix(line, "RUNNING HANDLER [") {
			task = strings.TrimRight(line, " *")
		}
		if strings.HasPrefix(line, status+": [") {
			out = append(out, task+": "+line)
		}
	}
	return out
}

var recapLine = regexp.MustCompile(`^(\S+)\s+:\s+((?:\w+=\d+\s*)+)$`)

// ParseRecap reads the PLAY RECAP of ansible-playbook's default output:
// lines "node1 : ok=12 changed=0 unreachable=0 failed=0 skipped=3
// rescued=0 ignored=0" after the line starting "PLAY RECAP".
func ParseRecap(out string) (map[string]HostRecap, error) {
	i := strings.LastIndex(out, "\nPLAY RECAP")
	if i < 0 && !strings.HasPrefix(out, "PLAY RECAP") {
		return nil, fmt.Errorf("lab: no PLAY RECAP in ansible-playbook's output")
	}
	recap := map[string]HostRecap{}
	for _, line := range strings.Split(out[i+1:], "\n")[1:] {
		line = strings.TrimSpace(line)
		m := recapLine.FindStringSubmatch(line)
		if m == nil {
			if line == "" || len(recap) == 0 {
				continue
			}
			break
		}
		var h HostRecap
		for _, kv := range strings.Fields(m[2]) {
			k, v, _ := strings.Cut(kv, "=")
			n, err := strconv.Atoi(v)
			if err != nil {
				return nil, fmt.Errorf("lab: recap line %q: %w", line, err)
			}
			switch k {
			case "ok":
				h.OK = n
			case "changed":
				h.Changed = n
			case "unreachable":
				h.Unreachable = n
			case "failed":
				h.Failed = n
			case "skipped":
				h.Skipped = n
			case "rescued":
				h.Rescued = n
			case "ignored":
				h.Ignored = n
			}
		}
		recap[m[1]] = h
	}
	if len(recap) == 0 {
		return nil, fmt.Errorf("lab: an empty PLAY RECAP")
	}
	return recap, nil
}

// RunPlaybook runs ansible-playbook on playbook (a path relative to dir,
// the directory holding ansible.cfg and the roles) with inventory and
// extra arguments. Ansible's own state (temporary files, SSH control
// sockets) goes under scratch. An error says which hosts failed and ends
// with the output's tail; the run is returned with it.
func RunPlaybook(ctx context.Context, dir, scratch, inventory, playbook string, args ...string) (PlaybookRun, error) {
	if err := os.MkdirAll(scratch, 0o700); err != nil {
		return PlaybookRun{}, err
	}
	cmd := exec.CommandContext(ctx, "ansible-playbook", append([]string{"-i", inventory, playbook}, args...)...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"ANSIBLE_HOME="+scratch,
		"ANSIBLE_LOCAL_TEMP="+filepath.Join(scratch, "tmp"),
		"ANSIBLE_SSH_CONTROL_PATH_DIR="+filepath.Join(scratch, "cp"),
		"ANSIBLE_NOCOLOR=1",
		"ANSIBLE_RETRY_FILES_ENABLED=0",
	)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	run := PlaybookRun{Output: out.String(), Took: time.Since(start)}
	recap, perr := ParseRecap(run.Output)
	run.Recap = recap
	if err != nil || perr != nil {
		var bad []string
		for h, r := range recap {
			if r.Failed > 0 || r.Unreachable > 0 {
				bad = append(bad, fmt.Sprintf("%s (failed=%d unreachable=%d)", h, r.Failed, r.Unreachable))
			}
		}
		sort.Strings(bad)
		if err == nil {
			err = perr
		}
		failed := append(run.Tasks("fatal"), run.Tasks("failed")...)
		return run, fmt.Errorf("lab: ansible-playbook %s: %w; hosts failing: %v; failed tasks:\n%s\n--- the output's tail:\n%s",
			playbook, err, bad, strings.Join(failed, "\n"), tail(run.Output, 40))
	}
	return run, nil
}
