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

func TestMountedAt(t *testing.T) {
	info := `22 1 0:21 / /proc rw,nosuid - proc proc rw
918 146 0:92 / /cluster/home rw,nosuid,nodev,relatime shared:361 - fuse.cfs cfs:home rw,user_id=0
919 146 0:93 / /cluster/with\040space rw - fuse.cfs cfs:x rw
1449 146 0:103 / /cluster/proc rw,nosuid - fuse.vprocfs openssi rw
`
	for dir, want := range map[string]bool{
		"/cluster/home":       true,
		"/cluster/with space": true,
		"/cluster/proc":       false, // another file system
		"/cluster":            false,
		"/proc":               false,
	} {
		if got := MountedAt(info, dir); got != want {
			t.Errorf("MountedAt(%s) = %v, want %v", dir, got, want)
		}
	}
}
