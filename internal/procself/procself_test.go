package procself

import (
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"testing"
)

func TestSplitArgs(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want []string
	}{
		{"", nil},
		{"a\x00", []string{"a"}},
		{"openssi-vproc-gate\x00/bin/true\x00true\x00", []string{"openssi-vproc-gate", "/bin/true", "true"}},
		{"a\x00\x00b\x00", []string{"a", "", "b"}},
		{"a\x00b", []string{"a", "b"}},
		{"a b\x00\xff\x00", []string{"a b", "\xff"}},
	} {
		if got := SplitArgs([]byte(tc.in)); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("SplitArgs(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestCmdline(t *testing.T) {
	if got := Cmdline(); !reflect.DeepEqual(got, os.Args) {
		t.Errorf("Cmdline() = %q, want os.Args %q", got, os.Args)
	}
}

// TestImportsSyscallOnly: see the package doc.
func TestImportsSyscallOnly(t *testing.T) {
	f, err := parser.ParseFile(token.NewFileSet(), "procself.go", nil, parser.ImportsOnly)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, im := range f.Imports {
		got = append(got, im.Path.Value)
	}
	if !reflect.DeepEqual(got, []string{`"syscall"`}) {
		t.Fatalf("procself.go imports %s, want syscall alone", got)
	}
}
