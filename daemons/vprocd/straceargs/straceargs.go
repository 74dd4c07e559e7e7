// Package straceargs checks the strace options a caller of `ssi strace`
// gives and builds strace's command line from them: the vprocd of the node
// a process runs on attaches strace to its own pid of that process, and
// the caller adds only options. Refused: -p/--attach (another process),
// a command (strace would run it) and every option that makes strace run
// one: -o/--output |CMD or !CMD (strace pipes its output to CMD), and
// -u/--user and -E/--env, which only set up a command strace starts.
// `ssi exec` is the way to run a command, and strace runs as the caller
// all the same. Pure: no files, no processes.
package straceargs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrRefused is wrapped by every refusal of Check but one: more than
// MaxArgs options.
var ErrRefused = errors.New("not an strace option ssi strace passes on")

// MaxArgs bounds the options of one `ssi strace`: far more than any
// strace command line needs, few enough that checking them costs nothing.
const MaxArgs = 256

// withArg are strace's short options that take an argument (its getopt
// string, strace 6.1: "+a:Ab:cCdDe:E:fFhiI:kno:O:p:P:qrs:S:tTu:U:vVwxX:yYzZ").
// An option missing here that takes one in another strace version makes
// its argument a bare word, which Check refuses: never the other way.
const withArg = "abeEIoOpPsSuUX"

// Check returns why args may not follow strace's own -p PID, or nil. Each
// argument must be an option: "-x" short options (clustered, "-fe
// trace=open"), their arguments in the same or the next word, "--name" or
// "--name=value" long options. Refused: more than MaxArgs arguments; -p
// and any long option getopt could take for --attach (a prefix of it);
// -u, -E and the prefixes of --user and --env; an argument of -o or of a
// prefix of --output that starts with | or ! (strace runs the rest as a
// command); "--" and "-" and any other word that is not an option (strace
// would run it as a command); and a last short option left without its
// argument.
//
// Which long options take an argument differs between strace versions, so
// a "--name" without "=" is read both ways (taking the next word as its
// argument, and not): args must be options either way.
func Check(args []string) error {
	if len(args) > MaxArgs {
		return fmt.Errorf("straceargs: %d strace options, more than %d", len(args), MaxArgs)
	}
	return check(args)
}

// check is Check without the bound: it walks args once, in order, marking
// where getopt may read next (reach), so its cost is linear in len(args)
// and its stack constant.
func check(args []string) error {
	reach := make([]bool, len(args)+2)
	reach[0] = true
	for i := range args {
		if !reach[i] {
			continue
		}
		next, err := step(args, i)
		if err != nil {
			return err
		}
		for _, n := range next {
			reach[n] = true
		}
	}
	return nil
}

// step checks args[i], which getopt reads as the start of an option, and
// returns where it may read next (one place, or two for a long option
// that may or may not take the next word).
func step(args []string, i int) ([]int, error) {
	a := args[i]
	switch {
	case a == "--":
		return nil, fmt.Errorf("straceargs: %s: %w (ssi strace runs no command)", shown(a), ErrRefused)
	case strings.HasPrefix(a, "--"):
		name, value, hasValue := strings.Cut(a[2:], "=")
		if err := long(a, name); err != nil {
			return nil, err
		}
		if hasValue {
			if abbreviates(name, "output") {
				if err := output(a, value); err != nil {
					return nil, err
				}
			}
			return []int{i + 1}, nil
		}
		if i+1 == len(args) {
			return []int{i + 1}, nil
		}
		// It may take the next word as its argument.
		if abbreviates(name, "output") {
			if err := output(a+" "+args[i+1], args[i+1]); err != nil {
				return nil, err
			}
		}
		return []int{i + 1, i + 2}, nil
	case len(a) > 1 && a[0] == '-':
		for j := 1; j < len(a); j++ {
			o := a[j]
			if err := short(a, o); err != nil {
				return nil, err
			}
			if strings.IndexByte(withArg, o) < 0 {
				continue
			}
			if j+1 < len(a) { // its argument is the rest of the word
				if o == 'o' {
					if err := output(a, a[j+1:]); err != nil {
						return nil, err
					}
				}
				return []int{i + 1}, nil
			}
			if i+1 == len(args) {
				return nil, fmt.Errorf("straceargs: %s: %w: -%c wants an argument", shown(a), ErrRefused, o)
			}
			if o == 'o' {
				if err := output(a+" "+args[i+1], args[i+1]); err != nil {
					return nil, err
				}
			}
			return []int{i + 2}, nil // its argument is the next word
		}
		return []int{i + 1}, nil
	}
	return nil, fmt.Errorf("straceargs: %s: %w: only options may follow CPID (ssi strace runs no command; write a long option's value as --name=value)", shown(a), ErrRefused)
}

// abbreviates says whether getopt_long could read name as the long option
// full: name is full or, as getopt_long takes unambiguous abbreviations,
// a prefix of it.
func abbreviates(name, full string) bool {
	return name != "" && strings.HasPrefix(full, name)
}

// long returns why the long option named name (in the word a) is refused.
func long(a, name string) error {
	switch {
	case abbreviates(name, "attach"):
		return fmt.Errorf("straceargs: %s: %w: ssi strace attaches to CPID only", shown(a), ErrRefused)
	case abbreviates(name, "user"), abbreviates(name, "env"):
		return fmt.Errorf("straceargs: %s: %w: --user and --env set up a command strace runs, and ssi strace runs none", shown(a), ErrRefused)
	}
	return nil
}

// short returns why the short option o (in the word a) is refused.
func short(a string, o byte) error {
	switch o {
	case 'p':
		return fmt.Errorf("straceargs: %s: %w: ssi strace attaches to CPID only", shown(a), ErrRefused)
	case 'u', 'E':
		return fmt.Errorf("straceargs: %s: %w: -%c sets up a command strace runs, and ssi strace runs none", shown(a), ErrRefused, o)
	}
	return nil
}

// output returns why file, the argument of -o/--output (given as the
// words a), is refused: strace runs what follows a leading | or ! as a
// command and pipes its output to it.
func output(a, file string) error {
	if strings.HasPrefix(file, "|") || strings.HasPrefix(file, "!") {
		return fmt.Errorf("straceargs: %s: %w: strace would pipe its output to a command, and ssi strace runs none (to write to a file of that name, start it with ./)", shown(a), ErrRefused)
	}
	return nil
}

// shown is a quoted for an error: at most its first 64 bytes.
func shown(a string) string {
	if len(a) > 64 {
		return strconv.Quote(a[:64]) + "..."
	}
	return strconv.Quote(a)
}

// Argv is strace's command line for the process pid: the strace program
// at path, attached to pid first, then args (which Check accepted).
func Argv(path string, pid int32, args []string) []string {
	return append([]string{path, "-p", strconv.Itoa(int(pid))}, args...)
}
