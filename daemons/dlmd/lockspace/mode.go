package lockspace

import "fmt"

// Mode is a lock mode. The zero value is not a mode.
type Mode uint8

// The six VMS lock modes, weakest first.
const (
	// NL (null) grants no access; it only keeps the resource and its value
	// block alive.
	NL Mode = iota + 1
	// CR (concurrent read): read, others may write.
	CR
	// CW (concurrent write): write, others may read and write.
	CW
	// PR (protected read): read, no one may write.
	PR
	// PW (protected write): write, others may only read concurrently (CR).
	PW
	// EX (exclusive): no one else has access.
	EX
)

var modeNames = [...]string{NL: "NL", CR: "CR", CW: "CW", PR: "PR", PW: "PW", EX: "EX"}

// Valid reports whether m is one of the six modes.
func (m Mode) Valid() bool { return m >= NL && m <= EX }

// String returns NL, CR, CW, PR, PW or EX.
func (m Mode) String() string {
	if m.Valid() {
		return modeNames[m]
	}
	return fmt.Sprintf("Mode(%d)", int(m))
}

// ParseMode decodes a mode name (as String writes it).
func ParseMode(s string) (Mode, error) {
	for m := NL; m <= EX; m++ {
		if modeNames[m] == s {
			return m, nil
		}
	}
	return 0, fmt.Errorf("dlm: unknown lock mode %q", s)
}

// compat[a] is the set (bit per mode) of modes compatible with a.
var compat = [...]uint8{
	NL: bit(NL) | bit(CR) | bit(CW) | bit(PR) | bit(PW) | bit(EX),
	CR: bit(NL) | bit(CR) | bit(CW) | bit(PR) | bit(PW),
	CW: bit(NL) | bit(CR) | bit(CW),
	PR: bit(NL) | bit(CR) | bit(PR),
	PW: bit(NL) | bit(CR),
	EX: bit(NL),
}

func bit(m Mode) uint8 { return 1 << m }

// Compatible reports whether a lock granted in mode a and one granted in
// mode b may coexist on a resource (the standard VMS matrix; it is
// symmetric). Invalid modes are compatible with nothing.
func Compatible(a, b Mode) bool {
	return a.Valid() && b.Valid() && compat[a]&bit(b) != 0
}

// Covers reports whether mode a is at least as strong as b: every mode
// compatible with a is compatible with b. The modes form a lattice
// NL < CR < {CW, PR} < PW < EX in which CW and PR are incomparable, so a
// conversion from a to b is a down-conversion exactly when a.Covers(b) and
// a != b; a conversion between PR and CW counts as an up-conversion.
func (m Mode) Covers(b Mode) bool {
	return m.Valid() && b.Valid() && compat[m]&^compat[b] == 0
}
