package lockspace

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestCompatibilityMatrix(t *testing.T) {
	// The standard VMS matrix, row = held, column = requested: NL CR CW PR PW EX.
	want := map[Mode]string{
		NL: "111111",
		CR: "111110",
		CW: "111000",
		PR: "110100",
		PW: "110000",
		EX: "100000",
	}
	n := 0
	for _, a := range modes {
		for j, b := range modes {
			t.Run(a.String()+"/"+b.String(), func(t *testing.T) {
				if got, w := Compatible(a, b), want[a][j] == '1'; got != w {
					t.Fatalf("Compatible(%v, %v) = %v, want %v", a, b, got, w)
				}
				if Compatible(a, b) != Compatible(b, a) {
					t.Fatalf("not symmetric")
				}
			})
			n++
		}
	}
	if n != 36 {
		t.Fatalf("%d pairs", n)
	}
	if Compatible(0, NL) || Compatible(EX+1, NL) {
		t.Fatal("invalid modes must be compatible with nothing")
	}
}

func TestCovers(t *testing.T) {
	// a.Covers(b): a conversion a -> b is a down-conversion (or no change).
	tests := []struct {
		a, b Mode
		want bool
	}{
		{EX, NL, true}, {EX, PW, true}, {EX, EX, true}, {PW, PR, true}, {PW, CW, true},
		{PR, CR, true}, {CW, CR, true}, {CR, NL, true}, {NL, NL, true},
		{PR, CW, false}, {CW, PR, false}, {NL, CR, false}, {PR, PW, false}, {PW, EX, false},
		{0, NL, false}, {NL, 0, false},
	}
	for _, tt := range tests {
		if got := tt.a.Covers(tt.b); got != tt.want {
			t.Errorf("%v.Covers(%v) = %v, want %v", tt.a, tt.b, got, tt.want)
		}
	}
}

func TestNames(t *testing.T) {
	for _, m := range modes {
		p, err := ParseMode(m.String())
		if err != nil || p != m {
			t.Errorf("ParseMode(%v) = %v, %v", m, p, err)
		}
	}
	if _, err := ParseMode("XX"); err == nil {
		t.Error("ParseMode(XX) succeeded")
	}
	for _, tt := range []struct{ got, want string }{
		{Mode(9).String(), "Mode(9)"},
		{(NoQueue | ValBlk | QueCvt | Persistent | Expedite | InvalidateLVB).String(), "NOQUEUE|VALBLK|QUECVT|PERSISTENT|EXPEDITE|INVVALBLK"},
		{Flags(0x8000).String(), "0x8000"},
		{EffectKind(0).String(), "EffectKind(0)"},
		{Blocking.String(), "bast"},
		{LockState(0).String(), "LockState(0)"},
		{StateConverting.String(), "converting"},
		{Owner{2, 7}.String(), "2.7"},
		{Key{Owner{2, 7}, 3}.String(), "2.7#3"},
		{Effect{Kind: Granted, Key: Key{Owner{1, 1}, 1}, Resource: "r", Mode: PR, HasLVB: true, LVB: LVB{'x'}}.String(), `grant 1.1#1 r PR lvb="x" invalid`},
		{Effect{Kind: Refused, Key: Key{Owner{1, 1}, 1}, Resource: "r", Mode: PR, Held: true}.String(), `refuse 1.1#1 r PR held`},
	} {
		if tt.got != tt.want {
			t.Errorf("got %q, want %q", tt.got, tt.want)
		}
	}
}

func TestReadPermission(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		cred Cred
		want bool
	}{
		{"default: group reads", Config{UID: 1000, GID: 100}, Cred{UID: 2000, GID: 100}, true},
		{"0640: group reads", Config{UID: 1000, GID: 100, Mode: 0o640}, Cred{UID: 2000, GID: 100}, true},
		{"0620: group may lock, not read", Config{UID: 1000, GID: 100, Mode: 0o620}, Cred{UID: 2000, GID: 100}, false},
		{"0600: other does not read", Config{UID: 1000, GID: 100, Mode: 0o600}, Cred{UID: 2000, GID: 5}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Can(tt.cred, PermRead); got != tt.want {
				t.Fatalf("Can(read) = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestAccess(t *testing.T) {
	tests := []struct {
		name string
		cfg  Config
		cred Cred
		want bool
	}{
		{"owner uid", Config{UID: 1000, GID: 100}, Cred{UID: 1000, GID: 5}, true},
		{"owner gid", Config{UID: 1000, GID: 100}, Cred{UID: 2000, GID: 100}, true},
		{"supplementary group", Config{UID: 1000, GID: 100}, Cred{UID: 2000, GID: 5, Groups: []uint32{3, 100}}, true},
		{"other user denied", Config{UID: 1000, GID: 100}, Cred{UID: 2000, GID: 5, Groups: []uint32{3}}, false},
		{"root allowed", Config{UID: 1000, GID: 100}, Cred{UID: 0, GID: 5}, true},
		{"system: owner denied", Config{UID: 1000, GID: 100, System: true}, Cred{UID: 1000, GID: 100}, false},
		{"system: root allowed", Config{UID: 1000, GID: 100, System: true}, Cred{UID: 0, GID: 0}, true},
		{"0600: owner", Config{UID: 1000, GID: 100, Mode: 0o600}, Cred{UID: 1000, GID: 5}, true},
		{"0600: group denied", Config{UID: 1000, GID: 100, Mode: 0o600}, Cred{UID: 2000, GID: 100}, false},
		{"0666: other", Config{UID: 1000, GID: 100, Mode: 0o666}, Cred{UID: 2000, GID: 5}, true},
		{"0460: owner's class wins, as for a file", Config{UID: 1000, GID: 100, Mode: 0o460}, Cred{UID: 1000, GID: 100}, false},
		{"0460: group", Config{UID: 1000, GID: 100, Mode: 0o460}, Cred{UID: 2000, GID: 100}, true},
		{"0640: group may read, not lock", Config{UID: 1000, GID: 100, Mode: 0o640}, Cred{UID: 2000, GID: 100}, false},
		{"0111: x means nothing", Config{UID: 1000, GID: 100, Mode: 0o111}, Cred{UID: 1000, GID: 100}, false},
		{"0000 on a system lockspace: root", Config{UID: 1000, GID: 100, Mode: 0o400, System: true}, Cred{UID: 0, GID: 0}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := tt.cfg.Allows(tt.cred); got != tt.want {
				t.Fatalf("Allows = %v, want %v", got, tt.want)
			}
			ls, err := New("ls", tt.cfg, root)
			if err != nil {
				t.Fatal(err)
			}
			_, err = ls.Lock(t0, tt.cred, Request{Owner: Owner{1, 1}, ID: 1, Resource: "r", Mode: EX})
			if (err == nil) != tt.want || err != nil && !errors.Is(err, ErrAccess) {
				t.Fatalf("Lock: %v", err)
			}
			if (ls.Open(tt.cred) == nil) != tt.want {
				t.Fatalf("Open disagrees")
			}
		})
	}
}

func TestNew(t *testing.T) {
	user := Cred{UID: 1000, GID: 1000, Groups: []uint32{50}}
	tests := []struct {
		name    string
		lsName  string
		cfg     Config
		creator Cred
		err     error
	}{
		{"root creates system", "sys", Config{System: true}, root, nil},
		{"user creates own", "a", Config{UID: 1000, GID: 1000}, user, nil},
		{"user creates own, group", "a", Config{UID: 1000, GID: 50}, user, nil},
		{"user creates system", "a", Config{UID: 1000, GID: 1000, System: true}, user, ErrAccess},
		{"user gives away", "a", Config{UID: 2000, GID: 1000}, user, ErrAccess},
		{"user foreign group", "a", Config{UID: 1000, GID: 2000}, user, ErrAccess},
		{"empty name", "", Config{}, root, ErrInvalid},
		{"64 bytes", strings.Repeat("n", 64), Config{}, root, nil},
		{"a user's own, 76 bytes", "~4294967295." + strings.Repeat("n", 64), Config{}, root, nil},
		{"77 bytes", strings.Repeat("n", 77), Config{}, root, ErrNameTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, err := New(tt.lsName, tt.cfg, tt.creator)
			if !errors.Is(err, tt.err) {
				t.Fatalf("New: %v, want %v", err, tt.err)
			}
			if err == nil && (ls.Name() != tt.lsName || ls.Config() != tt.cfg) {
				t.Fatalf("got %q %+v", ls.Name(), ls.Config())
			}
		})
	}
}

func TestRequestValidation(t *testing.T) {
	o := Owner{1, 1}
	tests := []struct {
		name string
		r    Request
		err  error
	}{
		{"resource 64 bytes", Request{Owner: o, ID: 2, Resource: strings.Repeat("r", 64), Mode: NL}, nil},
		{"resource 65 bytes", Request{Owner: o, ID: 2, Resource: strings.Repeat("r", 65), Mode: NL}, ErrNameTooLong},
		{"empty resource", Request{Owner: o, ID: 2, Mode: NL}, ErrInvalid},
		{"no mode", Request{Owner: o, ID: 2, Resource: "r"}, ErrInvalid},
		{"bad mode", Request{Owner: o, ID: 2, Resource: "r", Mode: 7}, ErrInvalid},
		{"QUECVT on lock", Request{Owner: o, ID: 2, Resource: "r", Mode: NL, Flags: QueCvt}, ErrInvalid},
		{"INVVALBLK on lock", Request{Owner: o, ID: 2, Resource: "r", Mode: NL, Flags: InvalidateLVB}, ErrInvalid},
		{"unknown flag", Request{Owner: o, ID: 2, Resource: "r", Mode: NL, Flags: 1 << 12}, ErrInvalid},
		{"EXPEDITE not NL", Request{Owner: o, ID: 2, Resource: "r", Mode: CR, Flags: Expedite}, ErrInvalid},
		{"negative timeout", Request{Owner: o, ID: 2, Resource: "r", Mode: NL, Timeout: -time.Second}, ErrInvalid},
		{"id in use", Request{Owner: o, ID: 1, Resource: "other", Mode: NL}, ErrExists},
		{"same id, other owner", Request{Owner: Owner{1, 2}, ID: 1, Resource: "r", Mode: NL}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, _ := New("ls", Config{}, root)
			if _, err := ls.Lock(t0, root, Request{Owner: o, ID: 1, Resource: "r", Mode: EX}); err != nil {
				t.Fatal(err)
			}
			_, err := ls.Lock(t0, root, tt.r)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Lock: %v, want %v", err, tt.err)
			}
			if err != nil && ls.Len() != 1 {
				t.Fatalf("a refused request left %d locks", ls.Len())
			}
			if err := ls.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func w(res string, o Owner, id LockID, seq uint64) Waiter {
	return Waiter{Resource: res, Key: Key{o, id}, Seq: seq, Mode: EX}
}

func TestFindVictims(t *testing.T) {
	a, b, c, d := Owner{1, 1}, Owner{2, 1}, Owner{3, 1}, Owner{1, 2}
	tests := []struct {
		name  string
		edges []Edge
		want  []Waiter
	}{
		{"none", nil, nil},
		{"chain, no cycle", []Edge{{w("x", a, 1, 1), b}, {w("y", b, 1, 2), c}}, nil},
		{"2-cycle: youngest loses", []Edge{{w("x", a, 1, 5), b}, {w("y", b, 1, 3), a}},
			[]Waiter{w("x", a, 1, 5)}},
		{"3-cycle", []Edge{{w("x", a, 1, 1), b}, {w("y", b, 1, 9), c}, {w("z", c, 1, 4), a}},
			[]Waiter{w("y", b, 1, 9)}},
		{"self-wait", []Edge{{w("x", a, 2, 3), a}}, []Waiter{w("x", a, 2, 3)}},
		{"tie on seq: larger owner loses (merged from two masters)",
			[]Edge{{w("x", a, 1, 7), b}, {w("y", b, 1, 7), a}}, []Waiter{w("y", b, 1, 7)}},
		{"two disjoint cycles", []Edge{
			{w("x", a, 1, 1), b}, {w("y", b, 1, 2), a},
			{w("z", c, 1, 8), d}, {w("v", d, 1, 6), c}},
			[]Waiter{w("z", c, 1, 8), w("y", b, 1, 2)}},
		{"two cycles sharing an owner need two victims", []Edge{
			{w("x", a, 1, 1), b}, {w("y", b, 1, 2), a},
			{w("z", a, 2, 3), c}, {w("v", c, 1, 4), a}},
			[]Waiter{w("v", c, 1, 4), w("y", b, 1, 2)}},
		{"one victim breaks both cycles through it", []Edge{
			{w("x", a, 1, 9), b}, {w("x", a, 1, 9), c},
			{w("y", b, 1, 2), a}, {w("z", c, 1, 3), a}},
			[]Waiter{w("x", a, 1, 9)}},
		{"cycle off a tail", []Edge{
			{w("t", d, 1, 99), a}, {w("x", a, 1, 1), b}, {w("y", b, 1, 2), a}},
			[]Waiter{w("y", b, 1, 2)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FindVictims(tt.edges)
			if !slices.Equal(got, tt.want) {
				t.Fatalf("got %v, want %v", got, tt.want)
			}
			// The same set of edges in any order (as merged from several
			// masters, with duplicates) gives the same victims.
			rev := slices.Clone(tt.edges)
			slices.Reverse(rev)
			rev = append(rev, tt.edges...)
			if got := FindVictims(rev); !slices.Equal(got, tt.want) {
				t.Fatalf("reordered: got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestCrossMasterDeadlock: resources x and y live on different masters;
// only the merged edges show the cycle, and both masters agree on the
// victim.
func TestCrossMasterDeadlock(t *testing.T) {
	m1, _ := New("ls", Config{}, root)
	m2, _ := New("ls", Config{}, root)
	a, b := Owner{1, 1}, Owner{2, 1}
	lock := func(ls *Lockspace, o Owner, id LockID, res string, m Mode) {
		t.Helper()
		if _, err := ls.Lock(t0, root, Request{Owner: o, ID: id, Resource: res, Mode: m}); err != nil {
			t.Fatal(err)
		}
	}
	lock(m1, a, 1, "x", EX)
	lock(m2, b, 1, "y", EX)
	lock(m1, b, 2, "x", PR) // b waits for a on m1
	lock(m2, a, 2, "y", PR) // a waits for b on m2
	if len(m1.DetectDeadlocks())+len(m2.DetectDeadlocks()) != 0 {
		t.Fatal("a single master saw a cross-master cycle")
	}
	edges := append(m1.WaitEdges(), m2.WaitEdges()...)
	victims := FindVictims(edges)
	if len(victims) != 1 {
		t.Fatalf("victims %v", victims)
	}
	e1, e2 := m1.ApplyVictims(victims), m2.ApplyVictims(victims)
	if len(e1)+len(e2) != 1 {
		t.Fatalf("effects %v %v", e1, e2)
	}
	e := append(e1, e2...)[0]
	if e.Kind != Refused || !errors.Is(e.Err, ErrDeadlock) || e.Key != victims[0].Key {
		t.Fatalf("effect %v", e)
	}
	// Applying the same (now stale) victims again does nothing.
	if len(m1.ApplyVictims(victims))+len(m2.ApplyVictims(victims)) != 0 {
		t.Fatal("stale victim applied")
	}
}

func TestRebuildErrors(t *testing.T) {
	a, b := Key{Owner{1, 1}, 1}, Key{Owner{2, 1}, 1}
	g := func(k Key, m Mode) LockInfo { return LockInfo{Resource: "r", Key: k, State: StateGranted, Granted: m} }
	tests := []struct {
		name   string
		res    string
		copies []LockInfo
		err    error
	}{
		{"ok", "r", []LockInfo{g(a, PR), g(b, PR)}, nil},
		{"incompatible granted", "r", []LockInfo{g(a, PR), g(b, PW)}, ErrIncompatibleCopies},
		{"incompatible converting", "r", []LockInfo{g(a, CR), {Resource: "r", Key: b, State: StateConverting, Granted: EX, Requested: EX}}, ErrIncompatibleCopies},
		{"waiting does not count", "r", []LockInfo{g(a, EX), {Resource: "r", Key: b, State: StateWaiting, Requested: EX}}, nil},
		{"duplicate key", "r", []LockInfo{g(a, NL), g(a, NL)}, ErrExists},
		{"lock already here", "r", []LockInfo{{Resource: "r", Key: Key{Owner{9, 9}, 9}, State: StateGranted, Granted: NL}}, ErrExists},
		{"resource here", "here", []LockInfo{{Resource: "here", Key: a, State: StateGranted, Granted: NL}}, ErrExists},
		{"other resource", "r", []LockInfo{{Resource: "s", Key: a, State: StateGranted, Granted: NL}}, ErrInvalid},
		{"bad state", "r", []LockInfo{{Resource: "r", Key: a, State: 9, Granted: NL, Requested: NL}}, ErrInvalid},
		{"no granted mode", "r", []LockInfo{{Resource: "r", Key: a, State: StateGranted}}, ErrInvalid},
		{"no requested mode", "r", []LockInfo{{Resource: "r", Key: a, State: StateWaiting}}, ErrInvalid},
		{"converting without modes", "r", []LockInfo{{Resource: "r", Key: a, State: StateConverting, Granted: NL}}, ErrInvalid},
		{"orphan waiting", "r", []LockInfo{{Resource: "r", Key: a, State: StateWaiting, Requested: NL, Orphan: true, Persistent: true}}, ErrInvalid},
		{"orphan not persistent", "r", []LockInfo{{Resource: "r", Key: a, State: StateGranted, Granted: NL, Orphan: true}}, ErrInvalid},
		{"long name", strings.Repeat("r", 65), nil, ErrNameTooLong},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, _ := New("ls", Config{}, root)
			if _, err := ls.Lock(t0, root, Request{Owner: Owner{9, 9}, ID: 9, Resource: "here", Mode: NL}); err != nil {
				t.Fatal(err)
			}
			_, err := ls.Rebuild(tt.res, tt.copies)
			if !errors.Is(err, tt.err) {
				t.Fatalf("Rebuild: %v, want %v", err, tt.err)
			}
			if err != nil && (ls.Len() != 1 || len(ls.Resources()) != 1) {
				t.Fatal("a failed rebuild changed the lockspace")
			}
			if err := ls.Check(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// TestRebuildRoundTrip: rebuilding every resource from a full dump gives
// the same state, and new requests order after the rebuilt ones.
func TestRebuildRoundTrip(t *testing.T) {
	h := newHarness(func(f string, a ...any) { t.Fatalf(f, a...) }, 3, 2, 3)
	c := prng{newRand(99)}
	for range 300 {
		h.step(c)
	}
	fresh, _ := New("model", Config{}, root)
	for _, name := range h.ls.Resources() {
		effs, err := fresh.Rebuild(name, h.ls.Dump(name))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range effs {
			if e.Kind != Blocking {
				t.Fatalf("rebuild of a quiescent resource: %v", e)
			}
		}
		if !slices.EqualFunc(fresh.Dump(name), h.ls.Dump(name), func(a, b LockInfo) bool { return a == b }) {
			t.Fatalf("%s: rebuilt\n%+v\nwant\n%+v", name, fresh.Dump(name), h.ls.Dump(name))
		}
		v1, ok1, _ := fresh.LVB(name)
		v2, ok2, _ := h.ls.LVB(name)
		if v1 != v2 || ok1 != ok2 && ok2 {
			t.Fatalf("%s: value block %q %v, was %q %v", name, v1, ok1, v2, ok2)
		}
	}
	for _, name := range fresh.Resources() {
		for _, li := range fresh.Dump(name) {
			if li.Seq > fresh.Seq() {
				t.Fatalf("rebuilt %v has seq %d > %d: new requests would order before it", li.Key, li.Seq, fresh.Seq())
			}
		}
	}
	if err := fresh.Check(); err != nil {
		t.Fatal(err)
	}
	if got := len(fresh.NodeLocks(1)) + len(fresh.NodeLocks(2)) + len(fresh.NodeLocks(3)); got != h.ls.Len() {
		t.Fatalf("NodeLocks: %d, want %d", got, h.ls.Len())
	}
	if _, _, ok := fresh.LVB("nope"); ok || fresh.Dump("nope") != nil {
		t.Fatal("unknown resource")
	}
}

// TestCheckDetects: Check reports corrupted states (it is what the model
// and fuzz tests rely on).
func TestCheckDetects(t *testing.T) {
	setup := func() (*Lockspace, *resource) {
		ls, _ := New("ls", Config{}, root)
		for i, m := range []Mode{PR, EX, CR} {
			if _, err := ls.Lock(t0, root, Request{Owner: Owner{1, uint64(i)}, ID: 1, Resource: "r", Mode: m, Timeout: time.Second}); err != nil {
				t.Fatal(err)
			}
		}
		if err := ls.Check(); err != nil {
			t.Fatal(err)
		}
		return ls, ls.res["r"]
	}
	tests := []struct {
		name    string
		corrupt func(ls *Lockspace, r *resource)
		want    string
	}{
		{"incompatible grants", func(ls *Lockspace, r *resource) {
			l := r.waiting[1]
			ls.clearDeadline(l)
			r.move(l, granted)
			l.gr, l.rq = EX, 0
		}, "holds EX"},
		{"grantable head", func(ls *Lockspace, r *resource) { r.granted[0].gr = NL; r.granted[0].basts = 0 }, "could be granted"},
		{"bast missing", func(ls *Lockspace, r *resource) { r.granted[0].basts = 0 }, "was told"},
		{"misfiled", func(ls *Lockspace, r *resource) { r.waiting[0].state = granted }, "misfiled"},
		{"out of order", func(ls *Lockspace, r *resource) { r.waiting[1].seq = 1 }, "out of order"},
		{"deadline index", func(ls *Lockspace, r *resource) { delete(ls.timed, r.waiting[0].key) }, "deadline"},
		{"empty resource", func(ls *Lockspace, r *resource) { ls.res["e"] = &resource{name: "e"} }, "empty"},
		{"renamed", func(ls *Lockspace, r *resource) { r.name = "x" }, "filed as"},
		{"lost index", func(ls *Lockspace, r *resource) { delete(ls.locks, r.granted[0].key) }, "misfiled"},
		{"orphan not persistent", func(ls *Lockspace, r *resource) { r.granted[0].orphan = true }, "orphan"},
		{"granted with request", func(ls *Lockspace, r *resource) { r.granted[0].rq = EX }, "still has a request"},
		{"pending without mode", func(ls *Lockspace, r *resource) { r.waiting[0].rq = 0 }, "pending"},
		{"queued down-conversion", func(ls *Lockspace, r *resource) {
			l := r.waiting[0]
			r.move(l, converting)
			l.gr = EX
		}, "down-conversion"},
		{"stray timer", func(ls *Lockspace, r *resource) { ls.timed[r.granted[0].key] = r.granted[0] }, "request"},
		{"extra lock", func(ls *Lockspace, r *resource) { ls.locks[Key{}] = r.granted[0] }, "indexed"},
		{"empty owner index", func(ls *Lockspace, r *resource) { ls.owners[Owner{7, 7}] = map[LockID]*lock{} }, "empty index"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ls, r := setup()
			tt.corrupt(ls, r)
			err := ls.Check()
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Check = %v, want %q", err, tt.want)
			}
		})
	}
	defer func() {
		if recover() == nil {
			t.Fatal("unlinking a lock that is not queued did not panic")
		}
	}()
	_, r := setup()
	r.unlink(&lock{state: granted})
}
