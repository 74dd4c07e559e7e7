package procfs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"syscall"
	"testing"
	"testing/fstest"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/proctable"
)

// fakeProvider serves a map; a nil entry is an error for that cpid.
// It is called from the FUSE server's goroutines: edit it with change.
type fakeProvider struct {
	mu    sync.Mutex
	procs map[cpid.CPID]*Proc
	// moves are the Gotos done, "cpid uid node"; gotoErr, when set, is
	// what Goto answers instead (after checking the owner, as vprocd).
	moves   []string
	gotoErr error
}

// Goto checks the owner as vprocd does and records the move.
func (p *fakeProvider) Goto(_ context.Context, c cpid.CPID, caller, node uint32) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	proc, ok := p.procs[c]
	switch {
	case !ok:
		return fmt.Errorf("fake: %d: %w", c, ErrNotFound)
	case proc == nil:
		return errors.New("fake: node unreachable")
	case caller != 0 && caller != proc.Row.UID:
		return fmt.Errorf("fake: %w", ErrNotOwner)
	case p.gotoErr != nil:
		return p.gotoErr
	}
	p.moves = append(p.moves, fmt.Sprintf("%d %d %d", c, caller, node))
	proc.Row.Node = node
	return nil
}

func (p *fakeProvider) change(f func(map[cpid.CPID]*Proc)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p.procs)
}

func (p *fakeProvider) List(context.Context) ([]proctable.Row, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	var rows []proctable.Row
	for _, proc := range p.procs {
		if proc != nil {
			rows = append(rows, proc.Row)
		}
	}
	return rows, nil
}

func (p *fakeProvider) Get(_ context.Context, c cpid.CPID) (Proc, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	proc, ok := p.procs[c]
	switch {
	case !ok:
		return Proc{}, fmt.Errorf("fake: %d: %w", c, ErrNotFound)
	case proc == nil:
		return Proc{}, errors.New("fake: node unreachable")
	}
	return *proc, nil
}

func sampleProvider() *fakeProvider {
	mk := func(node uint32, pid int32, uid uint32, env string) *Proc {
		c := cpid.MustMake(node, pid)
		return &Proc{
			Row: proctable.Row{CPID: c, Node: node + 1, PID: pid, UID: uid, GID: uid, Comm: "sleep"},
			Files: proctable.Files{
				Stat:    fmt.Appendf(nil, "%d (sleep) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7\n", pid),
				Status:  fmt.Appendf(nil, "Name:\tsleep\nUid:\t%d\t%[1]d\t%[1]d\t%[1]d\n", uid),
				Cmdline: []byte("sleep\x001000\x00"),
				Environ: []byte(env),
			},
		}
	}
	return &fakeProvider{procs: map[cpid.CPID]*Proc{
		cpid.MustMake(1, 100): mk(1, 100, 1000, "HOME=/home/alice\x00SECRET=hunter2\x00"),
		cpid.MustMake(3, 7):   mk(3, 7, 65534, "HOME=/nonexistent\x00"),
		cpid.MustMake(2, 5):   nil, // its node does not answer
	}}
}

func caller(uid uint32) context.Context {
	return fuse.NewContext(context.Background(), &fuse.Caller{Owner: fuse.Owner{Uid: uid, Gid: uid}})
}

func read(t *testing.T, f *file, ctx context.Context) (string, syscall.Errno) {
	t.Helper()
	fh, flags, errno := f.Open(ctx, syscall.O_RDONLY)
	if errno != 0 {
		return "", errno
	}
	if flags&fuse.FOPEN_DIRECT_IO == 0 {
		t.Fatalf("open flags %#x lack direct I/O", flags)
	}
	res, errno := fh.(*handle).Read(ctx, make([]byte, 4096), 0)
	if errno != 0 {
		return "", errno
	}
	b, _ := res.Bytes(nil)
	return string(b), 0
}

// TestOpen checks what each file holds and who may open it, without a
// mount.
func TestOpen(t *testing.T) {
	var reported []error
	v := &view{p: sampleProvider(), onError: func(err error) { reported = append(reported, err) }}
	alice := cpid.MustMake(1, 100)
	tests := []struct {
		name   string
		c      cpid.CPID
		file   string
		ctx    context.Context
		want   string
		errno  syscall.Errno
		report bool
	}{
		{name: "status for anyone", c: alice, file: "status", ctx: caller(65534), want: "Name:\tsleep\nUid:\t1000\t1000\t1000\t1000\n"},
		{name: "cmdline", c: alice, file: "cmdline", ctx: caller(65534), want: "sleep\x001000\x00"},
		{name: "stat", c: alice, file: "stat", ctx: caller(65534), want: "100 (sleep) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 7\n"},
		{name: "node it runs on", c: alice, file: "node", ctx: caller(65534), want: "2\n"},
		{name: "environ for the owner", c: alice, file: "environ", ctx: caller(1000), want: "HOME=/home/alice\x00SECRET=hunter2\x00"},
		{name: "environ for root", c: alice, file: "environ", ctx: caller(0), want: "HOME=/home/alice\x00SECRET=hunter2\x00"},
		{name: "environ refused to another user", c: alice, file: "environ", ctx: caller(65534), errno: syscall.EACCES},
		{name: "environ refused without a caller", c: alice, file: "environ", ctx: context.Background(), errno: syscall.EACCES},
		{name: "gone", c: cpid.MustMake(1, 101), file: "status", ctx: caller(0), errno: syscall.ENOENT},
		{name: "node unreachable", c: cpid.MustMake(2, 5), file: "status", ctx: caller(0), errno: syscall.EIO, report: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			reported = nil
			got, errno := read(t, &file{v: v, c: tt.c, name: tt.file}, tt.ctx)
			if got != tt.want || errno != tt.errno {
				t.Fatalf("read = %q, %v; want %q, %v", got, errno, tt.want, tt.errno)
			}
			if (len(reported) > 0) != tt.report {
				t.Fatalf("reported %v", reported)
			}
		})
	}
	// Writing is refused before anything is fetched.
	for _, flags := range []uint32{syscall.O_WRONLY, syscall.O_RDWR, syscall.O_RDONLY | syscall.O_TRUNC} {
		if _, _, errno := (&file{v: v, c: alice, name: "status"}).Open(caller(0), flags); errno != syscall.EROFS {
			t.Errorf("open %#x: %v, want EROFS", flags, errno)
		}
	}
}

func TestHandleRead(t *testing.T) {
	h := &handle{data: []byte("0123456789")}
	for _, tt := range []struct {
		off  int64
		n    int
		want string
	}{{0, 4, "0123"}, {8, 4, "89"}, {10, 4, ""}, {99, 4, ""}, {0, 0, ""}} {
		res, errno := h.Read(context.Background(), make([]byte, tt.n), tt.off)
		if errno != 0 {
			t.Fatal(errno)
		}
		if b, _ := res.Bytes(nil); string(b) != tt.want {
			t.Errorf("Read(%d, %d) = %q, want %q", tt.off, tt.n, b, tt.want)
		}
	}
	if _, errno := h.Read(context.Background(), make([]byte, 1), -1); errno != syscall.EINVAL {
		t.Errorf("negative offset: %v", errno)
	}
}

func TestMayReadEnviron(t *testing.T) {
	for _, tt := range []struct {
		caller, owner uint32
		want          bool
	}{{0, 1000, true}, {1000, 1000, true}, {1001, 1000, false}, {65534, 0, false}, {0, 0, true}} {
		if got := MayReadEnviron(tt.caller, tt.owner); got != tt.want {
			t.Errorf("MayReadEnviron(%d, %d) = %v", tt.caller, tt.owner, got)
		}
	}
}

func TestErrno(t *testing.T) {
	v := &view{}
	for _, tt := range []struct {
		err  error
		want syscall.Errno
	}{
		{fmt.Errorf("x: %w", ErrNotFound), syscall.ENOENT},
		{fmt.Errorf("proctable: %w", syscall.ESRCH), syscall.ENOENT},
		{context.Canceled, syscall.EINTR},
		{errors.New("boom"), syscall.EIO},
	} {
		if got := v.errno(tt.err); got != tt.want {
			t.Errorf("errno(%v) = %v, want %v", tt.err, got, tt.want)
		}
	}
}

func TestLocal(t *testing.T) {
	fsys := fstest.MapFS{
		"stat":        {Data: []byte("cpu 1 2\nbtime 1795968787\n")},
		"uptime":      {Data: []byte("100.00 50.00\n")},
		"42/stat":     {Data: []byte("42 (sh) S 1 42 42 0 -1 4194304 0 0 0 0 10 5 0 0 20 0 1 0 500\n")},
		"42/status":   {Data: []byte("Uid:\t1000\t1000\t1000\t1000\nGid:\t100\t100\t100\t100\nVmRSS:\t  12 kB\n")},
		"42/cmdline":  {Data: []byte("sh\x00")},
		"42/environ":  {Data: []byte("A=1\x00")},
		"43/cmdline":  {Data: []byte("gone\x00")}, // exited before its stat was read
		"self/status": {Data: []byte("")},
	}
	l := Local{R: proctable.Reader{FS: fsys, Node: 2}}
	rows, err := l.List(context.Background())
	if err != nil || len(rows) != 1 || rows[0].CPID != cpid.MustMake(2, 42) {
		t.Fatalf("List = %+v, %v", rows, err)
	}
	p, err := l.Get(context.Background(), cpid.MustMake(2, 42))
	if err != nil || p.Row.UID != 1000 || p.Row.Node != 2 || string(p.Files.Environ) != "A=1\x00" || string(p.Files.Cmdline) != "sh\x00" {
		t.Fatalf("Get = %+v, %v", p, err)
	}
	v := &view{p: l}
	for _, c := range []cpid.CPID{cpid.MustMake(1, 42), cpid.MustMake(2, 43), cpid.MustMake(2, 44), 0} {
		if _, errno := v.get(context.Background(), c); errno != syscall.ENOENT {
			t.Errorf("get %d: %v, want ENOENT", c, errno)
		}
	}
}
