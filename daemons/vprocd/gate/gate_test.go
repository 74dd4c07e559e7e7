package gate

import (
	"errors"
	"go/parser"
	"go/token"
	"syscall"
	"testing"
)

func TestReason(t *testing.T) {
	for _, tc := range []struct {
		err  error
		want string
	}{
		{syscall.ENOENT, "No such file or directory"},
		{syscall.EACCES, "Permission denied"},
		{syscall.ENOEXEC, "Exec format error"},
		{errors.New("Already capital"), "Already capital"},
	} {
		if got := Reason(tc.err); got != tc.want {
			t.Errorf("Reason(%v) = %q, want %q", tc.err, got, tc.want)
		}
	}
}

// TestImportsSyscallOnly: the gate's init runs before nearly every other
// package's only while this package imports syscall alone (and procself,
// which imports syscall alone).
func TestImportsSyscallOnly(t *testing.T) {
	for _, name := range []string{"gate.go", "warm.go"} {
		f, err := parser.ParseFile(token.NewFileSet(), name, nil, parser.ImportsOnly)
		if err != nil {
			t.Fatal(err)
		}
		var got []string
		for _, im := range f.Imports {
			got = append(got, im.Path.Value)
		}
		for _, im := range got {
			if im != `"syscall"` && im != `"github.com/openssi/openssi/internal/procself"` {
				t.Fatalf("%s imports %s, want syscall and procself alone", name, got)
			}
		}
	}
}
