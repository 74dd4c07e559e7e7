package membership

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// MaxNodeNumber is the largest node number: a cluster pid holds the
// number of the node a process started on in 9 bits (node<<22 | pid, a
// positive int32; see daemons/vprocd/cpid), so 511.
const MaxNodeNumber = 511

// Claim records which node holds a node number. Claims are permanent: a
// node keeps its number across restarts and failures.
type Claim struct {
	// Name is the Consul node name of the holder.
	Name string `json:"name"`
	// Address is the holder's address when it claimed the number.
	Address string `json:"address"`
}

// NumberRequest is everything ChooseNumber needs.
type NumberRequest struct {
	// Self is this node's Consul node name.
	Self string
	// Configured is clmsd.node_number (0: claim automatically).
	Configured int
	// Stored is the number kept in the state file (0: none).
	Stored int
	// Claims holds the current claims by number.
	Claims map[int]Claim
	// Live holds the numbers whose alive key is held by a session now.
	Live map[int]bool
}

// ErrNumberInUse is returned when the wanted number is held by another live
// node.
var ErrNumberInUse = errors.New("node number in use")

// ErrNoFreeNumber is returned when every number is claimed.
var ErrNoFreeNumber = errors.New("no free node number")

// ChooseNumber decides which node number this node takes. A configured
// number wins over the stored one; with neither, a number already claimed
// under this node's name is reused, else the lowest unclaimed number is
// taken. A number claimed by another node can be taken only when that node
// is not live (it was replaced): a live holder is ErrNumberInUse.
func ChooseNumber(r NumberRequest) (int, error) {
	want := r.Configured
	source := "clmsd.node_number"
	if want == 0 {
		want, source = r.Stored, "the state file"
	}
	if want < 0 || want > MaxNodeNumber {
		return 0, fmt.Errorf("membership: node number %d from %s is out of range 1..%d", want, source, MaxNodeNumber)
	}
	if want > 0 {
		if c, ok := r.Claims[want]; ok && c.Name != r.Self && r.Live[want] {
			return 0, fmt.Errorf("%w: node number %d (from %s) is held by live node %q at %s; set another clmsd.node_number, or 0 to claim one automatically",
				ErrNumberInUse, want, source, c.Name, c.Address)
		}
		return want, nil
	}
	for n := 1; n <= MaxNodeNumber; n++ {
		if c, ok := r.Claims[n]; ok && c.Name == r.Self {
			return n, nil
		}
	}
	for n := 1; n <= MaxNodeNumber; n++ {
		if _, ok := r.Claims[n]; !ok {
			return n, nil
		}
	}
	return 0, fmt.Errorf("%w: all %d node numbers are claimed", ErrNoFreeNumber, MaxNodeNumber)
}

// ParseStoredNumber decodes the state file that keeps this node's number
// (one decimal number, optional surrounding white space). Empty content
// means no number yet.
func ParseStoredNumber(b []byte) (int, error) {
	s := strings.TrimSpace(string(b))
	if s == "" {
		return 0, nil
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxNodeNumber {
		if len(s) > 32 {
			s = s[:32] + "..."
		}
		return 0, fmt.Errorf("membership: state file holds %q, want a node number 1..%d", s, MaxNodeNumber)
	}
	return n, nil
}

// ParseNumberKey decodes the last element of a KV key such as
// "openssi/clms/alive/3" into a node number.
func ParseNumberKey(key string) (int, error) {
	s := key
	if i := strings.LastIndexByte(key, '/'); i >= 0 {
		s = key[i+1:]
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 1 || n > MaxNodeNumber || strconv.Itoa(n) != s {
		return 0, fmt.Errorf("membership: key %q does not end in a node number 1..%d", key, MaxNodeNumber)
	}
	return n, nil
}
