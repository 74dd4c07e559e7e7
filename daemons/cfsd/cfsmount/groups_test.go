package cfsmount

import (
	"slices"
	"testing"
)

func TestParseGroups(t *testing.T) {
	for _, c := range []struct {
		status string
		want   []uint32
	}{
		{"Name:\tsh\nGroups:\t4 24 27 1000 \nNSpid:\t1\n", []uint32{4, 24, 27, 1000}},
		{"Groups:\t\n", nil},
		{"Uid:\t0\n", nil},
		{"Groups:\t4 x\n", nil}, // unreadable: no groups rather than wrong ones
	} {
		if got := ParseGroups(c.status); !slices.Equal(got, c.want) {
			t.Errorf("ParseGroups(%q) = %v, want %v", c.status, got, c.want)
		}
	}
}
