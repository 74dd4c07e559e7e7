package straceargs

import (
	"errors"
	"fmt"
	"reflect"
	"runtime/debug"
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
		// -o |cmd and -o !cmd: strace would pipe its output to cmd.
		{[]string{"-o", "|cat"}, false},
		{[]string{"-o|cat"}, false},
		{[]string{"-o!cat"}, false},
		{[]string{"-o", "!cat"}, false},
		{[]string{"-fo|cat"}, false},
		{[]string{"-fo", "|cat"}, false},
		{[]string{"-f", "-o", "!cat", "-e", "trace=openat"}, false},
		{[]string{"--output=|cat"}, false},
		{[]string{"--output=!cat"}, false},
		{[]string{"--output", "|cat"}, false},
		{[]string{"--output", "!cat"}, false},
		{[]string{"--out=|cat"}, false}, // getopt_long takes abbreviations
		{[]string{"--o=!cat"}, false},
		{[]string{"--outp", "|cat"}, false},
		{[]string{"-o", "out|put"}, true}, // a file name with a | inside
		{[]string{"-o", "./|cat"}, true},  // a file named |cat
		{[]string{"--output=/tmp/!x"}, true},
		{[]string{"-e", "|x"}, true}, // -e's argument, not -o's
		{[]string{"--output-separately=|x", "-o", "f"}, true},
		// -u and -E set up a command strace starts.
		{[]string{"-u", "nobody"}, false},
		{[]string{"-unobody"}, false},
		{[]string{"-fu", "nobody"}, false},
		{[]string{"-E", "A=1"}, false},
		{[]string{"-EA=1"}, false},
		{[]string{"-fE", "A=1"}, false},
		{[]string{"--user=nobody"}, false},
		{[]string{"--us=nobody"}, false},
		{[]string{"--u", "nobody"}, false},
		{[]string{"--env=A=1"}, false},
		{[]string{"--en", "A=1"}, false},
		{[]string{"-e", "trace=user"}, true}, // -e's argument
		{[]string{"-eu"}, true},
		{[]string{"-s", "-E"}, true}, // "-E" is -s's argument
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

// TestCheckBounded: Check refuses more than MaxArgs options at once, in
// one line, and its walk over the options takes no stack per option (it
// once recursed once per option: 800,000 of them took 256 MiB of stack).
func TestCheckBounded(t *testing.T) {
	many := make([]string, MaxArgs+1)
	for i := range many {
		many[i] = "--x"
	}
	if err := Check(many[:MaxArgs]); err != nil {
		t.Errorf("%d options: %v, want ok", MaxArgs, err)
	}
	err := Check(many)
	if err == nil || !strings.Contains(err.Error(), "257 strace options, more than 256") || strings.Contains(err.Error(), "\n") {
		t.Errorf("%d options: %v, want one line saying at most %d", len(many), err, MaxArgs)
	}

	// A refusal quotes the start of a long argument only.
	if err := Check([]string{strings.Repeat("x", 1<<20)}); err == nil || len(err.Error()) > 300 {
		t.Errorf("a 1 MiB word: an error of %d bytes, want at most 300", len(fmt.Sprint(err)))
	}

	// The walk itself, under a stack limit a recursion per option
	// exceeds (the runtime then ends the test binary).
	defer debug.SetMaxStack(debug.SetMaxStack(1 << 20))
	huge := make([]string, 1_000_000)
	for i := range huge {
		huge[i] = "--x"
	}
	if err := check(huge); err != nil {
		t.Errorf("a million options: %v", err)
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
// without "=" to have an argument when longArg says so, and a long name
// for any option it is a prefix of. It returns whether strace would run
// a command (a non-option; -o |CMD or !CMD; -u or -E, which only matter
// for one) or attach to another process.
func getopt(args []string, longArg func(name string) bool) (command, attach bool) {
	piped := func(file string) bool { return strings.HasPrefix(file, "|") || strings.HasPrefix(file, "!") }
	isLong := func(name, full string) bool { return name != "" && strings.HasPrefix(full, name) }
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			return i+1 < len(args), false
		case strings.HasPrefix(a, "--"):
			name, file, value := strings.Cut(a[2:], "=")
			switch {
			case isLong(name, "attach"):
				return false, true
			case isLong(name, "user"), isLong(name, "env"):
				return true, false
			}
			if !value && longArg(name) && i+1 < len(args) {
				i++
				file, value = args[i], true
			}
			if value && isLong(name, "output") && piped(file) {
				return true, false
			}
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				switch a[j] {
				case 'p':
					return false, true
				case 'u', 'E':
					return true, false
				}
				if strings.IndexByte(withArg, a[j]) >= 0 {
					file := a[j+1:]
					if j+1 == len(a) {
						i++
						if i < len(args) {
							file = args[i]
						}
					}
					if a[j] == 'o' && piped(file) {
						return true, false
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
	for _, s := range []string{"-f\x00-e\x00trace=open", "--output\x00-e\x00x", "-p1", "--\x00ls", "-s\x00-p", "--a\x00--b\x00x", "-fo\x00|x", "--out\x00!x", "--us=x", "-fE\x00x"} {
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
