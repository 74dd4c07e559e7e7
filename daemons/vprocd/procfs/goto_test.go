package procfs

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"syscall"
	"testing"

	"github.com/hanwen/go-fuse/v2/fuse"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
)

// writeGoto opens goto as ctx's caller and writes text, as echo does.
func writeGoto(v *view, c cpid.CPID, ctx context.Context, text string) syscall.Errno {
	fh, flags, errno := (&file{v: v, c: c, name: gotoFile}).Open(ctx, syscall.O_WRONLY|syscall.O_TRUNC)
	if errno != 0 {
		return errno
	}
	if flags&fuse.FOPEN_DIRECT_IO == 0 {
		return syscall.ENOTSUP
	}
	n, errno := fh.(*gotoHandle).Write(ctx, []byte(text), 0)
	if errno == 0 && int(n) != len(text) {
		return syscall.EIO
	}
	return errno
}

// TestGoto checks who may write goto, what is taken, and the errno of
// each refusal, with a fake provider.
func TestGoto(t *testing.T) {
	alice := cpid.MustMake(1, 100) // uid 1000
	tests := []struct {
		name    string
		c       cpid.CPID
		ctx     context.Context
		text    string
		gotoErr error
		errno   syscall.Errno
		move    string
	}{
		{name: "owner", c: alice, ctx: caller(1000), text: "3\n", move: fmt.Sprintf("%d 1000 3", alice)},
		{name: "root", c: alice, ctx: caller(0), text: "511", move: fmt.Sprintf("%d 0 511", alice)},
		{name: "another user", c: alice, ctx: caller(65534), text: "3\n", errno: syscall.EACCES},
		{name: "no caller", c: alice, ctx: context.Background(), text: "3\n", errno: syscall.EACCES},
		{name: "gone", c: cpid.MustMake(1, 101), ctx: caller(0), text: "3\n", errno: syscall.ENOENT},
		{name: "node unreachable", c: cpid.MustMake(2, 5), ctx: caller(0), text: "3\n", errno: syscall.EIO},
		{name: "empty", c: alice, ctx: caller(1000), text: "", errno: syscall.EINVAL},
		{name: "newline only", c: alice, ctx: caller(1000), text: "\n", errno: syscall.EINVAL},
		{name: "node 0", c: alice, ctx: caller(1000), text: "0\n", errno: syscall.EINVAL},
		{name: "node 512", c: alice, ctx: caller(1000), text: "512\n", errno: syscall.EINVAL},
		{name: "two newlines", c: alice, ctx: caller(1000), text: "3\n\n", errno: syscall.EINVAL},
		{name: "space", c: alice, ctx: caller(1000), text: " 3\n", errno: syscall.EINVAL},
		{name: "sign", c: alice, ctx: caller(1000), text: "+3", errno: syscall.EINVAL},
		{name: "leading zero", c: alice, ctx: caller(1000), text: "03", errno: syscall.EINVAL},
		{name: "word", c: alice, ctx: caller(1000), text: "node3", errno: syscall.EINVAL},
		{name: "refused where it runs", c: alice, ctx: caller(1000), text: "3", gotoErr: fmt.Errorf("x: %w", ErrNotOwner), errno: syscall.EPERM},
		{name: "cannot move", c: alice, ctx: caller(1000), text: "3", gotoErr: fmt.Errorf("x: %w", ErrCannotMove), errno: syscall.EINVAL},
		{name: "busy", c: alice, ctx: caller(1000), text: "3", gotoErr: fmt.Errorf("x: %w", ErrBusy), errno: syscall.EBUSY},
		{name: "gone meanwhile", c: alice, ctx: caller(1000), text: "3", gotoErr: fmt.Errorf("x: %w", ErrNotFound), errno: syscall.ENOENT},
		{name: "interrupted", c: alice, ctx: caller(1000), text: "3", gotoErr: context.Canceled, errno: syscall.EINTR},
		{name: "move failed", c: alice, ctx: caller(1000), text: "3", gotoErr: errors.New("stays on node 2"), errno: syscall.EIO},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := sampleProvider()
			p.gotoErr = tt.gotoErr
			v := &view{p: p}
			if errno := writeGoto(v, tt.c, tt.ctx, tt.text); errno != tt.errno {
				t.Fatalf("write %q: %v, want %v", tt.text, errno, tt.errno)
			}
			var want []string
			if tt.move != "" {
				want = []string{tt.move}
			}
			if !slices.Equal(p.moves, want) {
				t.Fatalf("moves %q, want %q", p.moves, want)
			}
		})
	}
}

// TestGotoOpen checks goto opens for writing only, and the other files
// for reading only.
func TestGotoOpen(t *testing.T) {
	v := &view{p: sampleProvider()}
	alice := cpid.MustMake(1, 100)
	for _, tt := range []struct {
		file  string
		flags uint32
		errno syscall.Errno
	}{
		{gotoFile, syscall.O_WRONLY, 0},
		{gotoFile, syscall.O_WRONLY | syscall.O_TRUNC | syscall.O_APPEND, 0},
		{gotoFile, syscall.O_RDONLY, syscall.EACCES},
		{gotoFile, syscall.O_RDWR, syscall.EACCES},
		{"status", syscall.O_WRONLY, syscall.EROFS},
		{"node", syscall.O_RDWR, syscall.EROFS},
		{"stat", syscall.O_RDONLY | syscall.O_TRUNC, syscall.EROFS},
	} {
		if _, _, errno := (&file{v: v, c: alice, name: tt.file}).Open(caller(0), tt.flags); errno != tt.errno {
			t.Errorf("open %s %#x: %v, want %v", tt.file, tt.flags, errno, tt.errno)
		}
	}
}

// TestGotoSetattr checks the truncation of `echo >` is taken on goto,
// from whoever may write it, and nothing else is.
func TestGotoSetattr(t *testing.T) {
	v := &view{p: sampleProvider()}
	alice := cpid.MustMake(1, 100)
	set := func(valid, size uint32) *fuse.SetAttrIn {
		in := &fuse.SetAttrIn{}
		in.Valid, in.Size = valid, uint64(size)
		return in
	}
	for _, tt := range []struct {
		name  string
		file  string
		ctx   context.Context
		in    *fuse.SetAttrIn
		errno syscall.Errno
	}{
		{"truncate goto", gotoFile, caller(1000), set(fuse.FATTR_SIZE, 0), 0},
		{"O_TRUNC's", gotoFile, caller(0), set(fuse.FATTR_SIZE|fuse.FATTR_FH|fuse.FATTR_MTIME|fuse.FATTR_CTIME, 0), 0},
		{"another user", gotoFile, caller(65534), set(fuse.FATTR_SIZE, 0), syscall.EACCES},
		{"size 1", gotoFile, caller(0), set(fuse.FATTR_SIZE, 1), syscall.EROFS},
		{"chmod goto", gotoFile, caller(0), set(fuse.FATTR_MODE, 0), syscall.EROFS},
		{"chown goto", gotoFile, caller(0), set(fuse.FATTR_SIZE|fuse.FATTR_UID, 0), syscall.EROFS},
		{"touch goto", gotoFile, caller(0), set(fuse.FATTR_MTIME, 0), syscall.EROFS},
		{"truncate status", "status", caller(0), set(fuse.FATTR_SIZE, 0), syscall.EROFS},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var out fuse.AttrOut
			errno := (&file{v: v, c: alice, name: tt.file}).Setattr(tt.ctx, nil, tt.in, &out)
			if errno != tt.errno {
				t.Fatalf("Setattr: %v, want %v", errno, tt.errno)
			}
			if errno == 0 && (out.Mode != syscall.S_IFREG|0o200 || out.Uid != 1000) {
				t.Fatalf("attr after truncate: mode %o uid %d", out.Mode, out.Uid)
			}
		})
	}
}

func TestParseNode(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want uint32
		ok   bool
	}{
		{"1", 1, true}, {"3\n", 3, true}, {"42", 42, true}, {"511\n", 511, true},
		{"", 0, false}, {"\n", 0, false}, {"0", 0, false}, {"00", 0, false}, {"012", 0, false},
		{"512", 0, false}, {"999", 0, false}, {"1000", 0, false}, {"3\n\n", 0, false},
		{"3\r\n", 0, false}, {" 3", 0, false}, {"3 ", 0, false}, {"-3", 0, false}, {"+3", 0, false},
		{"3\x00", 0, false}, {"0x3", 0, false}, {"٣", 0, false}, {"3\n3", 0, false},
	} {
		got, err := ParseNode([]byte(tt.in))
		if (err == nil) != tt.ok || got != tt.want {
			t.Errorf("ParseNode(%q) = %d, %v; want %d, ok %v", tt.in, got, err, tt.want, tt.ok)
		}
	}
}

// FuzzParseNode checks ParseNode takes exactly the canonical decimal
// node numbers, with or without one newline.
func FuzzParseNode(f *testing.F) {
	for _, s := range []string{"1", "3\n", "511", "512", "0", "", "\n", " 3", "03", "3\n\n", "-1"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		n, err := ParseNode(b)
		if err != nil {
			if n != 0 {
				t.Fatalf("ParseNode(%q) = %d with error %v", b, n, err)
			}
			return
		}
		if n < 1 || n > cpid.MaxNode {
			t.Fatalf("ParseNode(%q) = %d, out of 1..%d", b, n, cpid.MaxNode)
		}
		canon := fmt.Sprint(n)
		if s := string(b); s != canon && s != canon+"\n" {
			t.Fatalf("ParseNode(%q) = %d, but the text is not %q", b, n, canon)
		}
	})
}
