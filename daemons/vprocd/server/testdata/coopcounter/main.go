// Command coopcounter is the cooperative test program of the migration
// tests: it prints a counter, one number a line, every few milliseconds,
// moves with its count (client/vproc/coop), and ends with status N when
// it reads "exit N" on its stdin (echoing every other line as "echo:").
// With the argument "nocheckpoint" it refuses to checkpoint, with
// "norestore" to restore: its moves fail. With "bigstate" its state has
// 5000 bytes of padding.
package main

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openssi/openssi/client/vproc/coop"
)

func main() {
	var (
		mu sync.Mutex
		n  int
	)
	refuse := ""
	if len(os.Args) > 1 {
		refuse = os.Args[1]
	}
	_, err := coop.RegisterProgram(coop.Program{
		Checkpoint: func() ([]byte, error) {
			if refuse == "nocheckpoint" {
				return nil, errors.New("not now")
			}
			mu.Lock()
			if refuse == "bigstate" {
				return []byte(strconv.Itoa(n) + " " + strings.Repeat("x", 5000)), nil
			}
			return []byte(strconv.Itoa(n)), nil
		},
		Restore: func(b []byte) (err error) {
			if refuse == "norestore" {
				return errors.New("cannot take that state")
			}
			count, _, _ := strings.Cut(string(b), " ")
			n, err = strconv.Atoi(count)
			return err
		},
		Resume: func() { mu.Unlock() },
	})
	if err != nil && !errors.Is(err, coop.ErrNotManaged) {
		fmt.Fprintln(os.Stderr, "coopcounter:", err)
		os.Exit(2)
	}
	go func() {
		in := bufio.NewScanner(os.Stdin)
		for in.Scan() {
			line := in.Text()
			mu.Lock()
			if code, ok := strings.CutPrefix(line, "exit "); ok {
				c, _ := strconv.Atoi(code)
				os.Exit(c)
			}
			fmt.Println("echo:", line)
			mu.Unlock()
		}
	}()
	for {
		mu.Lock()
		n++
		fmt.Println(n)
		mu.Unlock()
		time.Sleep(3 * time.Millisecond)
	}
}
