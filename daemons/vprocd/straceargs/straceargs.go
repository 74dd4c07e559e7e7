// Package straceargs checks the strace options a caller of `ssi strace`
// gives and builds strace's command line from them: the vprocd of the node
// a process runs on attaches strace to its own pid of that process, and
// the caller adds only options. A -p/--attach (another process) or a
// command (strace would run it) is refused: `ssi exec` is the way to run a
// command, and strace runs as the caller all the same. Pure: no files, no
// processes.
package straceargs

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// ErrRefused is wrapped by every refusal of Check.
var ErrRefused = errors.New("not an strace option ssi strace passes on")

// withArg are strace's short options that take an argument (its getopt
// string, strace 6.1: "+a:Ab:cCdDe:E:fFhiI:kno:O:p:P:qrs:S:tTu:U:vVwxX:yYzZ").
// An option missing here that takes one in another strace version makes
// its argument a bare word, which Check refuses: never the other way.
const withArg = "abeEIoOpPsSuUX"

// Check returns why args may not follow strace's own -p PID, or nil. Each
// argument must be an option: "-x" short options (clustered, "-fe
// trace=open"), their arguments in the same or the next word, "--name" or
// "--name=value" long options. Refused: -p and any long option getopt
// could take for --attach (a prefix of it), "--" and "-" and any other
// word that is not an option (strace would run it as a command), and a
// last short option left without its argument.
//
// Which long options take an argument differs between strace versions, so
// a "--name" without "=" is read both ways (taking the next word as its
// argument, and not): args must be options either way.
func Check(args []string) error {
	c := checker{args: args, memo: map[int]error{}}
	return c.from(0)
}

type checker struct {
	args []string
	memo map[int]error // from(i), once computed
}

// from checks args[i:] as what getopt reads next.
func (c *checker) from(i int) error {
	if i >= len(c.args) {
		return nil
	}
	if err, ok := c.memo[i]; ok {
		return err
	}
	err := c.step(i)
	c.memo[i] = err
	return err
}

func (c *checker) step(i int) error {
	a := c.args[i]
	switch {
	case a == "--":
		return fmt.Errorf("straceargs: %q: %w (ssi strace runs no command)", a, ErrRefused)
	case strings.HasPrefix(a, "--"):
		name, _, value := strings.Cut(a[2:], "=")
		if name != "" && strings.HasPrefix("attach", name) {
			return fmt.Errorf("straceargs: %q: %w: ssi strace attaches to CPID only", a, ErrRefused)
		}
		if err := c.from(i + 1); err != nil || value {
			return err
		}
		if i+1 < len(c.args) {
			// It may take the next word as its argument.
			return c.from(i + 2)
		}
		return nil
	case len(a) > 1 && a[0] == '-':
		for j := 1; j < len(a); j++ {
			o := a[j]
			if o == 'p' {
				return fmt.Errorf("straceargs: %q: %w: ssi strace attaches to CPID only", a, ErrRefused)
			}
			if strings.IndexByte(withArg, o) < 0 {
				continue
			}
			if j+1 < len(a) { // its argument is the rest of the word
				return c.from(i + 1)
			}
			if i+1 == len(c.args) {
				return fmt.Errorf("straceargs: %q: %w: -%c wants an argument", a, ErrRefused, o)
			}
			return c.from(i + 2) // its argument is the next word
		}
		return c.from(i + 1)
	}
	return fmt.Errorf("straceargs: %q: %w: only options may follow CPID (ssi strace runs no command; write a long option's value as --name=value)", a, ErrRefused)
}

// Argv is strace's command line for the process pid: the strace program
// at path, attached to pid first, then args (which Check accepted).
func Argv(path string, pid int32, args []string) []string {
	return append([]string{path, "-p", strconv.Itoa(int(pid))}, args...)
}
