package consul

import (
	"errors"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidateKey(t *testing.T) {
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"clms/view", true},
		{"clms/nodes/3", true},
		{"dlm/locks/my lock:1@x=y", true},
		{"a", true},
		{"a..b/c", true}, // ".." inside a segment is harmless
		{"", false},
		{"/clms", false},
		{"clms/", false},
		{"clms//view", false},
		{"..", false},
		{"clms/../etc", false},
		{"clms/./view", false},
		{".", false},
		{"clms/\x00", false},
		{"clms/\n", false},
		{"clms/\xff", false},
		{strings.Repeat("a", MaxKeyLen), true},
		{strings.Repeat("a", MaxKeyLen+1), false},
	} {
		err := ValidateKey(tc.key)
		if (err == nil) != tc.ok {
			t.Errorf("ValidateKey(%q) = %v, want ok=%v", tc.key, err, tc.ok)
		}
		if err != nil && !errors.Is(err, ErrInvalidKey) {
			t.Errorf("ValidateKey(%q) = %v, not ErrInvalidKey", tc.key, err)
		}
	}
}

func TestValidatePrefix(t *testing.T) {
	for _, tc := range []struct {
		prefix string
		ok     bool
	}{
		{"", true},
		{"clms/", true},
		{"clms/nodes/", true},
		{"clms/no", true},
		{"/", false},
		{"/clms/", false},
		{"clms//", false},
		{"../", false},
	} {
		if err := ValidatePrefix(tc.prefix); (err == nil) != tc.ok {
			t.Errorf("ValidatePrefix(%q) = %v, want ok=%v", tc.prefix, err, tc.ok)
		}
	}
}

func TestKVKey(t *testing.T) {
	kv := NewKV(nil)
	got, err := kv.Key("clms/view")
	if err != nil || got != "openssi/clms/view" {
		t.Fatalf(`Key("clms/view") = %q, %v`, got, err)
	}
	if _, err := kv.Key("../x"); !errors.Is(err, ErrInvalidKey) {
		t.Fatalf(`Key("../x") error %v, want ErrInvalidKey`, err)
	}
}

type testView struct {
	Epoch uint64         `json:"epoch"`
	Nodes map[string]int `json:"nodes"`
	Name  string         `json:"name"`
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		in string
		ok bool
	}{
		{`{"epoch":3,"nodes":{"node1":1}}`, true},
		{`{"epoch":3,"future_field":true}`, true}, // newer writer: lenient
		{``, false},
		{`{"epoch":-1}`, false},
		{`{"epoch":"3"}`, false},
		{`[1,2]`, false},
		{`{"epoch":3`, false},
	} {
		var v testView
		err := Entry{Key: "clms/view", Value: []byte(tc.in)}.Decode(&v)
		if (err == nil) != tc.ok {
			t.Errorf("Decode(%q) = %v, want ok=%v", tc.in, err, tc.ok)
		}
		if err != nil && (!errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), `"clms/view"`)) {
			t.Errorf("Decode(%q) error %q: want ErrDecode naming the key", tc.in, err)
		}
	}
}

func FuzzValidateKey(f *testing.F) {
	for _, s := range []string{"clms/view", "", "/", "a/../b", "a//b", "a/", ".", "x\x00", "\xff", "dlm/locks/é"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		err := ValidateKey(key)
		perr := ValidatePrefix(key)
		if err != nil {
			if !errors.Is(err, ErrInvalidKey) {
				t.Fatalf("error %v is not ErrInvalidKey", err)
			}
			return
		}
		if perr != nil {
			t.Fatalf("valid key %q is not a valid prefix: %v", key, perr)
		}
		full, err := NewKV(nil).Key(key)
		if err != nil || full != Prefix+key {
			t.Fatalf("Key(%q) = %q, %v", key, full, err)
		}
		if key == "" || strings.HasPrefix(key, "/") || strings.HasSuffix(key, "/") || !utf8.ValidString(key) || len(key) > MaxKeyLen {
			t.Fatalf("accepted bad key %q", key)
		}
		for _, seg := range strings.Split(key, "/") {
			if seg == "" || seg == "." || seg == ".." {
				t.Fatalf("accepted key %q with segment %q", key, seg)
			}
		}
	})
}

func FuzzDecode(f *testing.F) {
	for _, s := range []string{`{"epoch":3,"nodes":{"node1":1},"name":"x"}`, ``, `null`, `{"epoch":1e400}`, `{"nodes":{"a":"b"}}`, "\xff", `[`} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		var v testView
		err := Entry{Key: "clms/view", Value: data}.Decode(&v)
		if err != nil && (!errors.Is(err, ErrDecode) || !strings.Contains(err.Error(), `"clms/view"`)) {
			t.Fatalf("error %q: want ErrDecode naming the key", err)
		}
		var m map[string]any
		_ = Entry{Key: "k", Value: data}.Decode(&m)
	})
}
