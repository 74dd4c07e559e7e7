package gate

import (
	"errors"
	"go/parser"
	"go/token"
	"reflect"
	"syscall"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a\x00", []string{"a"}},
		{Name + "\x00/bin/true\x00true\x00", []string{Name, "/bin/true", "true"}},
		{"a\x00\x00b\x00", []string{"a", "", "b"}},
		{"a\x00b", []string{"a", "b"}},
		{"a b\x00\xff\x00", []string{"a b", "\xff"}},
	} {
		if got := SplitArgs([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

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
// package's only while this package imports syscall alone.
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
		if !reflect.DeepEqual(got, []string{`"syscall"`}) {
			t.Fatalf("%s imports %s, want syscall alone", name, got)
		}
	}
}
