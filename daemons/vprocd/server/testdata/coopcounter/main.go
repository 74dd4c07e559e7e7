// Command coopcounter is the cooperative test program of the migration
// tests: it prints a counter, one number a line, every few milliseconds,
// moves with its count (client/vproc/coop), echoes each line of its stdin
// as "echo: LINE", and ends with status N on the line "exit N". It takes
// its stdin under the lock its checkpoint holds, and keeps a partial line
// in its state, so that no byte of its input is lost or read twice when
// it moves. With the argument "nocheckpoint" it refuses to checkpoint,
// with "norestore" to restore: its moves fail. With "bigstate" its state
// has 5000 bytes of padding; with "slowrestore" its restore takes 2s.
package main

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openssi/openssi/client/vproc/coop"
)

func main() {
	var (
		mu      sync.Mutex
		n       int
		partial []byte
	)
	mode := ""
	if len(os.Args) > 1 {
		mode = os.Args[1]
	}
	_, err := coop.RegisterProgram(coop.Program{
		Checkpoint: func() ([]byte, error) {
			if mode == "nocheckpoint" {
				return nil, errors.New("not now")
			}
			mu.Lock()
			state := strconv.Itoa(n) + "\n" + string(partial)
			if mode == "bigstate" {
				state += "\n" + strings.Repeat("x", 5000)
			}
			return []byte(state), nil
		},
		Restore: func(b []byte) (err error) {
			if mode == "norestore" {
				return errors.New("cannot take that state")
			}
			if mode == "slowrestore" {
				time.Sleep(2 * time.Second)
			}
			parts := strings.SplitN(string(b), "\n", 3)
			if len(parts) < 2 {
				return errors.New("a state without its input")
			}
			partial = []byte(parts[1])
			n, err = strconv.Atoi(parts[0])
			return err
		},
		Resume: func() { mu.Unlock() },
	})
	if err != nil && !errors.Is(err, coop.ErrNotManaged) {
		fmt.Fprintln(os.Stderr, "coopcounter:", err)
		os.Exit(2)
	}
	go func() {
		buf := make([]byte, 4096)
		for {
			// Wait for input without taking it; take it under the lock.
			fds := []unix.PollFd{{Fd: 0, Events: unix.POLLIN}}
			if _, err := unix.Poll(fds, -1); err != nil {
				continue
			}
			mu.Lock()
			k, err := unix.Read(0, buf)
			if k <= 0 {
				mu.Unlock()
				if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
					continue
				}
				return
			}
			partial = append(partial, buf[:k]...)
			for {
				i := strings.IndexByte(string(partial), '\n')
				if i < 0 {
					break
				}
				line := string(partial[:i])
				partial = partial[i+1:]
				if code, ok := strings.CutPrefix(line, "exit "); ok {
					c, _ := strconv.Atoi(code)
					os.Exit(c)
				}
				fmt.Println("echo:", line)
			}
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
