package criu

import (
	"context"
	"errors"
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// fakeRunner answers LookPath from path and Run from the table by the
// first argument.
type fakeRunner struct {
	path string // "" for not on PATH
	runs map[string]fakeRun
	ran  []string
}

type fakeRun struct {
	out    string
	status int
	err    error
}

func (f *fakeRunner) LookPath(file string) (string, error) {
	if f.path == "" {
		return "", exec.ErrNotFound
	}
	return f.path, nil
}

func (f *fakeRunner) Run(_ context.Context, bin string, args ...string) ([]byte, int, error) {
	f.ran = append(f.ran, bin+" "+strings.Join(args, " "))
	r, ok := f.runs[args[0]]
	if !ok {
		return nil, -1, errors.New("unexpected run")
	}
	return []byte(r.out), r.status, r.err
}

func TestDetect(t *testing.T) {
	good := fakeRun{out: "Version: 4.2.1\n"}
	pass := fakeRun{out: "Looks good.\n"}
	for _, tc := range []struct {
		name    string
		bin     string
		r       fakeRunner
		want    State
		wantRan []string
		reason  string
	}{
		{name: "on PATH and ready", r: fakeRunner{path: "/usr/sbin/criu", runs: map[string]fakeRun{"--version": good, "check": pass}},
			want:    State{Status: Ready, Bin: "/usr/sbin/criu", Version: Version{4, 2, 1}},
			wantRan: []string{"/usr/sbin/criu --version", "/usr/sbin/criu check"}},
		{name: "given bin wins over PATH", bin: "/cache/criu", r: fakeRunner{path: "/usr/sbin/criu", runs: map[string]fakeRun{"--version": good, "check": pass}},
			want:    State{Status: Ready, Bin: "/cache/criu", Version: Version{4, 2, 1}},
			wantRan: []string{"/cache/criu --version", "/cache/criu check"}},
		{name: "a given name alone is looked up on PATH", bin: "criu", r: fakeRunner{path: "/usr/local/sbin/criu", runs: map[string]fakeRun{"--version": good, "check": pass}},
			want:    State{Status: Ready, Bin: "/usr/local/sbin/criu", Version: Version{4, 2, 1}},
			wantRan: []string{"/usr/local/sbin/criu --version", "/usr/local/sbin/criu check"}},
		{name: "a given name not on PATH", bin: "criu", r: fakeRunner{},
			want: State{Status: Missing, Bin: "criu"}, reason: "no criu on PATH"},
		{name: "missing", r: fakeRunner{},
			want: State{Status: Missing}, reason: "make criu"},
		{name: "does not run", bin: "/x/criu", r: fakeRunner{runs: map[string]fakeRun{"--version": {err: errors.New("criu: exec: no such file")}}},
			want: State{Status: Broken, Bin: "/x/criu"}, reason: "no such file",
			wantRan: []string{"/x/criu --version"}},
		{name: "version fails", bin: "/x/criu", r: fakeRunner{runs: map[string]fakeRun{"--version": {out: "error while loading shared libraries: libnet.so.1", status: 127}}},
			want: State{Status: Broken, Bin: "/x/criu"}, reason: "status 127: error while loading",
			wantRan: []string{"/x/criu --version"}},
		{name: "unreadable version", bin: "/x/criu", r: fakeRunner{runs: map[string]fakeRun{"--version": {out: "hello\n"}}},
			want: State{Status: Broken, Bin: "/x/criu"}, reason: `"hello"`,
			wantRan: []string{"/x/criu --version"}},
		{name: "bookworm's 3.17: too old, not checked", r: fakeRunner{path: "/usr/sbin/criu", runs: map[string]fakeRun{"--version": {out: "Version: 3.17.1\n"}}},
			want: State{Status: TooOld, Bin: "/usr/sbin/criu", Version: Version{3, 17, 1}}, reason: "3.17.1 is older than 4.2.0",
			wantRan: []string{"/usr/sbin/criu --version"}},
		{name: "check fails", r: fakeRunner{path: "/usr/sbin/criu", runs: map[string]fakeRun{"--version": good, "check": {out: "Error (cr-check.c:1): no\n", status: 1}}},
			want: State{Status: CheckFailed, Bin: "/usr/sbin/criu", Version: Version{4, 2, 1}}, reason: "Error (cr-check.c:1): no",
			wantRan: []string{"/usr/sbin/criu --version", "/usr/sbin/criu check"}},
		{name: "check cannot run", r: fakeRunner{path: "/usr/sbin/criu", runs: map[string]fakeRun{"--version": good, "check": {err: context.DeadlineExceeded}}},
			want: State{Status: CheckFailed, Bin: "/usr/sbin/criu", Version: Version{4, 2, 1}}, reason: "deadline",
			wantRan: []string{"/usr/sbin/criu --version", "/usr/sbin/criu check"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := Detect(context.Background(), &tc.r, tc.bin)
			reason := got.Reason
			got.Reason = ""
			if got != tc.want {
				t.Errorf("Detect = %+v, want %+v", got, tc.want)
			}
			if (tc.reason == "") != (reason == "") || !strings.Contains(reason, tc.reason) {
				t.Errorf("reason %q, want one with %q", reason, tc.reason)
			}
			if !slices.Equal(tc.r.ran, tc.wantRan) {
				t.Errorf("ran %q, want %q", tc.r.ran, tc.wantRan)
			}
		})
	}
}

func TestStateString(t *testing.T) {
	for _, tc := range []struct {
		s    State
		want string
	}{
		{State{Status: Ready, Bin: "/c/criu", Version: Version{4, 2, 1}}, "ready: criu 4.2.1 at /c/criu"},
		{State{Status: Missing, Reason: "no criu on PATH"}, "missing: no criu on PATH"},
		{State{Status: Broken, Bin: "/c/criu", Reason: "r"}, "broken: /c/criu: r"},
		{State{Status: TooOld, Bin: "/c/criu", Version: Version{3, 17, 1}, Reason: "r"}, "too-old: criu 3.17.1 at /c/criu: r"},
		{State{Status: CheckFailed, Bin: "/c/criu", Version: Version{4, 2, 1}, Reason: "r"}, "check-failed: criu 4.2.1 at /c/criu: r"},
	} {
		if got := tc.s.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.s, got, tc.want)
		}
	}
	if got := Status(9).String(); got != "Status(9)" {
		t.Errorf("Status(9) = %q", got)
	}
}

func TestArgs(t *testing.T) {
	if got, want := DumpArgs(42, "/img", false), []string{"dump", "--tree", "42", "--images-dir", "/img", "--log-file", "dump.log"}; !slices.Equal(got, want) {
		t.Errorf("DumpArgs = %q, want %q", got, want)
	}
	if got := DumpArgs(42, "/img", true); got[len(got)-1] != "--shell-job" {
		t.Errorf("DumpArgs shell job = %q", got)
	}
	r := RestoreArgs("/img", "/img/pid", false)
	if want := []string{"restore", "--restore-detached", "--images-dir", "/img", "--log-file", "restore.log", "--pidfile", "/img/pid"}; !slices.Equal(r, want) {
		t.Errorf("RestoreArgs = %q, want %q", r, want)
	}
	name, args := InFreshPIDNamespace("/c/criu", r, "/img/status")
	if name != "unshare" || !slices.Equal(args[:4], []string{"--pid", "--fork", "--mount-proc", "--"}) ||
		!slices.Equal(args[len(args)-len(r)-2:], append([]string{"/c/criu", "/img/status"}, r...)) {
		t.Errorf("InFreshPIDNamespace = %s %q", name, args)
	}
}
