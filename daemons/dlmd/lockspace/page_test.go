package lockspace

import (
	"slices"
	"testing"
)

// TestResourcesAfter: a page is the first limit names after a name, in
// order, as cutting the sorted list would give.
func TestResourcesAfter(t *testing.T) {
	ls, _ := New("ls", Config{}, root)
	for i, r := range []string{"d", "b", "f", "a", "e", "c"} {
		if _, err := ls.Lock(t0, root, Request{Owner: Owner{1, 1}, ID: LockID(i + 1), Resource: r, Mode: NL}); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		after string
		limit int
		want  []string
	}{
		{"", 0, []string{"a", "b", "c", "d", "e", "f"}},
		{"", 2, []string{"a", "b"}},
		{"b", 2, []string{"c", "d"}},
		{"bb", 3, []string{"c", "d", "e"}},
		{"e", 5, []string{"f"}},
		{"f", 5, []string{}},
		{"c", 0, []string{"d", "e", "f"}},
	}
	for _, tt := range tests {
		if got := ls.ResourcesAfter(tt.after, tt.limit); !slices.Equal(got, tt.want) {
			t.Errorf("ResourcesAfter(%q, %d) = %v, want %v", tt.after, tt.limit, got, tt.want)
		}
	}
}
