package rootkey

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
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
	// A new key (a restart): fetched at once, learnt, then accepted; the
	// old key is then refused unless the budget allows a read again.
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
	// The budget: FetchBurst reads at once (two spent above), then one
	// per FetchEvery, for every key together.
	spent := 0
	for c.Check(k, a, t0) == Fetch {
		spent++
		if spent > FetchBurst {
			t.Fatal("budget never runs out")
		}
	}
	if spent != FetchBurst-2 {
		t.Fatalf("%d reads allowed after 2, want %d", spent, FetchBurst-2)
	}
	if v := c.Check("rootkeys/node4/openssi-vprocd", a, t0); v != Refuse {
		t.Fatalf("another key, budget spent: %v, want refuse", v)
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
	if v := c.Check(k, a, t0.Add(FetchEvery)); v != Refuse {
		t.Fatalf("the read spent: %v, want refuse", v)
	}
	// A long pause refills at most FetchBurst reads; time going back
	// refills nothing.
	later := t0.Add(time.Hour)
	n := 0
	for c.Check(k, a, later) == Fetch {
		n++
	}
	if n != FetchBurst {
		t.Fatalf("after an hour: %d reads, want %d", n, FetchBurst)
	}
	if v := c.Check(k, a, t0); v != Refuse {
		t.Fatalf("clock went back: %v, want refuse", v)
	}
	// A pin that is gone is forgotten: its key is no longer accepted.
	c.Learn(k, Pin{}, false)
	if _, ok := c.Pinned(k); ok {
		t.Fatal("a removed pin is still known")
	}
	if v := c.Check(k, b, later.Add(time.Hour)); v != Fetch {
		t.Fatalf("removed pin: %v, want fetch", v)
	}
}
