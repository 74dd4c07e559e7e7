package initnode

import (
	"context"
	"errors"
	"fmt"

	"github.com/openssi/openssi/client/dlm"
	"github.com/openssi/openssi/daemons/initfailover/initfailoverspec"
)

// RunLock keeps runs of Isolate apart: a run takes it, without waiting,
// before its checks and holds it to its end, so that two runs (from two
// nodes) never move nodes at once and take a majority out together.
// DLMRunLock is the cluster's.
type RunLock interface {
	// TryLock takes the lock or fails at once, with a *BusyError when
	// another run holds it.
	TryLock(ctx context.Context) (Held, error)
}

// Held is a RunLock taken.
type Held interface {
	// Err is not nil once the lock is lost (its session ended or was
	// cut off): another run may hold it now.
	Err() error
	// Release releases it.
	Release()
}

// BusyError refuses a run of Isolate while another run holds the
// RunLock.
type BusyError struct {
	// Node is the node the other run is driven from (0: unknown).
	Node int
}

func (e *BusyError) Error() string {
	if e.Node == 0 {
		return "another ssi isolate is running; wait for it or stop it"
	}
	return fmt.Sprintf("another ssi isolate is running (from node %d); wait for it or stop it", e.Node)
}

// DLMRunLock returns the cluster's RunLock on a session with this node's
// dlmd (root only): an EX lock of initfailoverspec.IsolateResource in
// initfailover's root-only lockspace, asked for without queueing. The
// session's end (ssi killed) releases it.
func DLMRunLock(s *dlm.Client) RunLock { return dlmRunLock{s} }

type dlmRunLock struct{ s *dlm.Client }

func (d dlmRunLock) TryLock(ctx context.Context) (Held, error) {
	l, err := d.s.Lock(ctx, initfailoverspec.Lockspace, initfailoverspec.IsolateResource, dlm.EX, dlm.NoQueue())
	if errors.Is(err, dlm.ErrWouldBlock) {
		return nil, &BusyError{Node: d.holder(ctx)}
	}
	if err != nil {
		return nil, err
	}
	return dlmHeld{d.s, l}, nil
}

// holder returns the node whose session holds the lock (0: unknown).
func (d dlmRunLock) holder(ctx context.Context) int {
	l, err := d.s.Locks(ctx, dlm.InLockspace(initfailoverspec.Lockspace))
	if err != nil {
		return 0
	}
	for _, r := range l.Resources {
		if r.Name != initfailoverspec.IsolateResource {
			continue
		}
		for _, li := range r.Locks {
			if li.State != dlm.Waiting && li.Granted == dlm.EX {
				return li.Node
			}
		}
	}
	return 0
}

type dlmHeld struct {
	s *dlm.Client
	l *dlm.Lock
}

func (h dlmHeld) Err() error { return h.s.Err() }

// Release unlocks; an unlock that fails (the session ended) leaves
// nothing held either.
func (h dlmHeld) Release() { _ = h.l.Unlock(context.Background()) }
