package straceargs

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	for _, tc := range []struct {
		args []string
		ok   bool
	}{
		{nil, true},
		{[]string{"-f"}, true},
		{[]string{"-f", "-e", "trace=openat"}, true},
		{[]string{"-fe", "trace=openat"}, true},
		{[]string{"-etrace=openat", "-s", "128", "-tt"}, true},
		{[]string{"-o", "/tmp/out", "-ff"}, true},
		{[]string{"-o", "--"}, true},             // "--" is -o's argument
		{[]string{"--trace=%file", "-y"}, true},  // a long option's value with =
		{[]string{"--follow-forks", "-c"}, true}, // no value
		{[]string{"--output", "-c"}, true},       // "-c" is an option or a file name: either way no command
		{[]string{"-p", "1"}, false},
		{[]string{"-fp1"}, false},
		{[]string{"-p1"}, false},
		{[]string{"--attach=1"}, false},
		{[]string{"--att=1"}, false},
		{[]string{"--a", "1"}, false},
		{[]string{"--", "ls"}, false},
		{[]string{"--"}, false},
		{[]string{"ls"}, false},
		{[]string{"-f", "ls", "-l"}, false},
		{[]string{"-"}, false},
		{[]string{""}, false},
		{[]string{"-e"}, false},                  // -e without its argument would take none of ours
		{[]string{"-fe"}, false},                 // likewise
		{[]string{"--output", "x"}, false},       // x is a command if --output takes no argument
		{[]string{"--output", "-e", "x"}, false}, // x is a command if --output takes -e
		{[]string{"-e", "trace=open", "id"}, false},
		{[]string{"-s", "-p"}, true}, // "-p" is -s's argument, not an option
	} {
		err := Check(tc.args)
		if (err == nil) != tc.ok {
			t.Errorf("Check(%q) = %v, want ok %v", tc.args, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrRefused) || strings.Contains(err.Error(), "\n")) {
			t.Errorf("Check(%q) = %v: want one line wrapping ErrRefused", tc.args, err)
		}
	}
}

func TestArgv(t *testing.T) {
	got := Argv("/usr/bin/strace", 42, []string{"-f"})
	if want := []string{"/usr/bin/strace", "-p", "42", "-f"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("Argv = %q, want %q", got, want)
	}
}

// getopt reads argv (after strace's own "-p PID") as strace's getopt_long
// with "+" (stop at the first non-option) would, taking a long option
// without "=" to have an argument when longArg says so. It returns
// whether it met a non-option (a command) or an attach.
func getopt(args []string, longArg func(name string) bool) (command, attach bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return i+1 < len(args), false
		case strings.HasPrefix(a, "--"):
			name, _, value := strings.Cut(a[2:], "=")
			if name != "" && strings.HasPrefix("attach", name) {
				return false, true
			}
			if !value && longArg(name) {
				i++
			}
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				if a[j] == 'p' {
					return false, true
				}
				if strings.IndexByte(withArg, a[j]) >= 0 {
					if j+1 == len(a) {
						i++
					}
					break
				}
			}
		default:
			return true, false
		}
	}
	return false, false
}

// FuzzCheck: what Check accepts, getopt reads as options only (no command,
// no second attach) whichever long options take an argument.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{"-f\x00-e\x00trace=open", "--output\x00-e\x00x", "-p1", "--\x00ls", "-s\x00-p", "--a\x00--b\x00x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, joined string) {
		args := strings.Split(joined, "\x00")
		if Check(args) != nil {
			return
		}
		for _, longArg := range []func(string) bool{
			func(string) bool { return true },
			func(string) bool { return false },
			func(n string) bool { return len(n)%2 == 0 },
			func(n string) bool { return len(n)%2 == 1 },
		} {
			if command, attach := getopt(args, longArg); command || attach {
				t.Fatalf("Check accepted %q, which getopt reads as command %v attach %v", args, command, attach)
			}
		}
	})
}
