package rootkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"testing"
	"time"
)

func TestKey(t *testing.T) {
	for _, tc := range []struct {
		node, service, want string
	}{
		{"node3", "openssi-vprocd", "rootkeys/node3/openssi-vprocd"},
		{"Node-3", "openssi-initfailover", "rootkeys/node-3/openssi-initfailover"},
		{"a.b_c", "openssi-vprocd", "rootkeys/a.b_c/openssi-vprocd"},
		{"", "openssi-vprocd", ""},
		{".", "openssi-vprocd", ""},
		{"..", "openssi-vprocd", ""},
		{"a/b", "openssi-vprocd", ""},
		{"node3", "openssi-vprocd.node3", ""},
		{"node3", "", ""},
		{"node 3", "openssi-vprocd", ""},
		{strings.Repeat("n", 129), "openssi-vprocd", ""},
	} {
		got, err := Key(tc.node, tc.service)
		if tc.want == "" {
			if !errors.Is(err, ErrNode) {
				t.Errorf("Key(%q, %q) = %q, %v; want ErrNode", tc.node, tc.service, got, err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("Key(%q, %q) = %q, %v; want %q", tc.node, tc.service, got, err, tc.want)
		}
		if !strings.HasPrefix(got, NodePrefix(tc.node)) {
			t.Errorf("Key(%q) = %q is not under NodePrefix %q", tc.node, got, NodePrefix(tc.node))
		}
	}
}

func testCert(t *testing.T) (*x509.Certificate, *ecdsa.PrivateKey) {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "x"}, NotAfter: time.Now().Add(time.Hour)}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &k.PublicKey, k)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c, k
}

func TestPinOfCertAndKey(t *testing.T) {
	c, k := testCert(t)
	fromKey, err := OfKey(&k.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	if Of(c) != fromKey {
		t.Fatalf("pin of the certificate %s != pin of its key %s", Of(c), fromKey)
	}
	other, _ := testCert(t)
	if Of(other) == fromKey {
		t.Fatal("two keys, one pin")
	}
	if !strings.HasPrefix(fromKey.String(), "sha256:") || len(fromKey.String()) != 7+64 {
		t.Errorf("String() = %q", fromKey.String())
	}
	if _, err := OfKey("not a key"); err == nil {
		t.Error("OfKey of a string: no error")
	}
}

func TestEncodeDecode(t *testing.T) {
	p := Pin(sha256.Sum256([]byte("key")))
	got, err := Decode(Encode(p))
	if err != nil || got != p {
		t.Fatalf("Decode(Encode(p)) = %v, %v", got, err)
	}
	hexp := p.String()[len("sha256:"):]
	for _, tc := range []struct {
		name, value string
		ok          bool
	}{
		{"encoded", string(Encode(p)), true},
		{"blanks and other fields", " {\"other\":1, \"spki_sha256\":\"" + hexp + "\"}\n", true},
		{"empty", "", false},
		{"null", "null", false},
		{"no field", "{}", false},
		{"upper case hex", `{"spki_sha256":"` + strings.ToUpper(hexp) + `"}`, false},
		{"short", `{"spki_sha256":"` + hexp[2:] + `"}`, false},
		{"long", `{"spki_sha256":"` + hexp + `00"}`, false},
		{"not hex", `{"spki_sha256":"` + "zz" + hexp[2:] + `"}`, false},
		{"number", `{"spki_sha256":5}`, false},
		{"trailing data", string(Encode(p)) + "x", false},
		{"two objects", string(Encode(p)) + string(Encode(p)), false},
		{"array", `["` + hexp + `"]`, false},
		{"huge", `{"spki_sha256":"` + hexp + `","pad":"` + strings.Repeat("a", 2000) + `"}`, false},
	} {
		got, err := Decode([]byte(tc.value))
		switch {
		case tc.ok && (err != nil || got != p):
			t.Errorf("%s: Decode = %v, %v; want the pin", tc.name, got, err)
		case !tc.ok && !errors.Is(err, ErrDecode):
			t.Errorf("%s: Decode = %v, %v; want ErrDecode", tc.name, got, err)
		}
	}
}

func FuzzDecode(f *testing.F) {
	p := Pin(sha256.Sum256([]byte("key")))
	f.Add(Encode(p))
	f.Add([]byte(`{"spki_sha256":""}`))
	f.Add([]byte(`{"spki_sha256":"` + strings.Repeat("0", 64) + `","x":[1,{}]}`))
	f.Add([]byte("null"))
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := Decode(data)
		if err != nil {
			if !errors.Is(err, ErrDecode) {
				t.Fatalf("error does not wrap ErrDecode: %v", err)
			}
			return
		}
		// What decodes re-encodes to a value that decodes the same.
		again, err := Decode(Encode(got))
		if err != nil || again != got {
			t.Fatalf("round trip of %s: %v, %v", got, again, err)
		}
		if len(data) > maxValue {
			t.Fatalf("decoded %d bytes, more than %d", len(data), maxValue)
		}
	})
}

func TestCache(t *testing.T) {
	t0 := time.Unix(1000, 0)
	a := Pin(sha256.Sum256([]byte("a")))
	b := Pin(sha256.Sum256([]byte("b")))
	k := "rootkeys/node3/openssi-vprocd"

	var c Cache
	// Unknown: fetch; what was read is learnt; the same key is accepted
	// without another read.
	if v := c.Check(k, a, t0); v != Fetch {
		t.Fatalf("first check: %v, want fetch", v)
	}
	c.Learn(k, a, true)
	for i := 0; i < 3*FetchBurst; i++ {
		if v := c.Check(k, a, t0); v != Accept {
			t.Fatalf("pinned key, check %d: %v, want accept", i, v)
		}
	}
	// A new key (a restart): fetched, learnt, then accepted.
	if v := c.Check(k, b, t0); v != Fetch {
		t.Fatalf("new key: %v, want fetch", v)
	}
	c.Learn(k, b, true)
	if v := c.Check(k, b, t0); v != Accept {
		t.Fatalf("new key learnt: %v, want accept", v)
	}
	if p, ok := c.Pinned(k); !ok || p != b {
		t.Fatalf("Pinned = %v %v", p, ok)
	}
	// The key's budget (FetchBurst, both spent) is out: refused, and the
	// pinned key still accepted.
	if v := c.Check(k, a, t0); v != Refuse {
		t.Fatalf("budget spent: %v, want refuse", v)
	}
	if v := c.Check(k, b, t0); v != Accept {
		t.Fatalf("the pinned key with the budget spent: %v, want accept", v)
	}
	if v := c.Check(k, a, t0.Add(FetchEvery-time.Nanosecond)); v != Refuse {
		t.Fatalf("before a read is due: %v, want refuse", v)
	}
	if v := c.Check(k, a, t0.Add(FetchEvery)); v != Fetch {
		t.Fatalf("a read due: %v, want fetch", v)
	}
	c.Abort(k)
	if v := c.Check(k, a, t0.Add(FetchEvery)); v != Refuse {
		t.Fatalf("the read spent: %v, want refuse", v)
	}
	// A long pause refills at most FetchBurst reads; time going back
	// refills nothing.
	later := t0.Add(time.Hour)
	n := 0
	for c.Check(k, a, later) == Fetch {
		c.Abort(k)
		n++
	}
	if n != FetchBurst {
		t.Fatalf("after an hour: %d reads, want %d", n, FetchBurst)
	}
	if v := c.Check(k, a, t0); v != Refuse {
		t.Fatalf("clock went back: %v, want refuse", v)
	}
	// A pin that is gone is forgotten: its key is no longer accepted.
	if v := c.Check(k, a, later.Add(time.Hour)); v != Fetch {
		t.Fatalf("check: %v, want fetch", v)
	}
	c.Learn(k, Pin{}, false)
	if _, ok := c.Pinned(k); ok {
		t.Fatal("a removed pin is still known")
	}
}

// TestCacheBudgetPerKey: spending one key's reads (anyone can name any
// node with new keys) leaves every other key's reads.
func TestCacheBudgetPerKey(t *testing.T) {
	t0 := time.Unix(1000, 0)
	x, y := "rootkeys/nodex/openssi-vprocd", "rootkeys/nodey/openssi-vprocd"
	var c Cache
	for i := 0; i < 100; i++ {
		p := Pin(sha256.Sum256([]byte{byte(i)}))
		if v := c.Check(x, p, t0); v == Fetch {
			c.Learn(x, Pin{}, false)
		}
	}
	if v := c.Check(x, Pin{1}, t0); v != Refuse {
		t.Fatalf("node x after the flood: %v, want refuse", v)
	}
	if v := c.Check(y, Pin{1}, t0); v != Fetch {
		t.Fatalf("node y after a flood naming node x: %v, want fetch", v)
	}
}

// TestCacheJoin: handshakes presenting a key while its pin is read wait
// for that read instead of reading again.
func TestCacheJoin(t *testing.T) {
	t0 := time.Unix(1000, 0)
	k := "rootkeys/node1/openssi-vprocd"
	a := Pin{1}
	var c Cache
	if v := c.Check(k, a, t0); v != Fetch {
		t.Fatalf("first: %v, want fetch", v)
	}
	for i := 0; i < 10; i++ {
		if v := c.Check(k, a, t0); v != Join {
			t.Fatalf("concurrent %d: %v, want join", i, v)
		}
	}
	c.Learn(k, a, true)
	if v := c.Check(k, a, t0); v != Accept {
		t.Fatalf("after the read: %v, want accept", v)
	}
	// Only one read was spent: one more is left.
	if v := c.Check(k, Pin{2}, t0); v != Fetch {
		t.Fatalf("second read: %v, want fetch", v)
	}
}

// TestCacheReplace: the watch's listing is the whole truth: a deleted pin
// is dropped, and a read that started before the listing does not
// overwrite it.
func TestCacheReplace(t *testing.T) {
	t0 := time.Unix(1000, 0)
	k1, k2 := "rootkeys/node1/openssi-vprocd", "rootkeys/node2/openssi-vprocd"
	old, cur := Pin{1}, Pin{2}
	var c Cache
	c.Replace(map[string]Pin{k1: old, k2: old})
	if v := c.Check(k1, old, t0); v != Accept {
		t.Fatalf("listed pin: %v, want accept", v)
	}
	// Node 2's pin is deleted.
	c.Replace(map[string]Pin{k1: old})
	if _, ok := c.Pinned(k2); ok {
		t.Fatal("a deleted pin is still cached")
	}
	if v := c.Check(k2, old, t0); v != Fetch {
		t.Fatalf("deleted pin: %v, want fetch", v)
	}
	c.Learn(k2, Pin{}, false)
	// A read of node 1's pin starts, the watch delivers its new pin, the
	// read ends with the old one: the watch's stays.
	if v := c.Check(k1, cur, t0); v != Fetch {
		t.Fatalf("new key: %v, want fetch", v)
	}
	c.Replace(map[string]Pin{k1: cur})
	c.Learn(k1, old, true)
	if p, _ := c.Pinned(k1); p != cur {
		t.Fatalf("pin %v after a stale read, want the watch's %v", p, cur)
	}
}

// TestCacheBudgetsBounded: naming ever new nodes does not grow the cache
// without end, and evicting a spent budget only gives reads back.
func TestCacheBudgetsBounded(t *testing.T) {
	t0 := time.Unix(1000, 0)
	var c Cache
	for i := 0; i < MaxBudgets+10; i++ {
		k := fmt.Sprintf("rootkeys/node%d/openssi-vprocd", i)
		for c.Check(k, Pin{1}, t0) == Fetch {
			c.Abort(k)
		}
		if len(c.budgets) > MaxBudgets {
			t.Fatalf("%d budgets after %d keys", len(c.budgets), i+1)
		}
	}
	// Refilled budgets are dropped first.
	if v := c.Check("rootkeys/fresh/openssi-vprocd", Pin{1}, t0.Add(time.Hour)); v != Fetch {
		t.Fatalf("fresh key: %v", v)
	}
	if len(c.budgets) != 1 {
		t.Fatalf("%d budgets after all refilled, want 1", len(c.budgets))
	}
}
