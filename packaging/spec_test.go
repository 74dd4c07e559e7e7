package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestUpdateSpecUnits(t *testing.T) {
	for _, tc := range []struct {
		name, in    string
		changed     bool
		errContains string
	}{
		{"stale line is rewritten", "Name: x\n%global units openssi.target\n%post\n", true, ""},
		{"current line is kept", "Name: x\n" + SpecUnitsLine() + "\n%post\n", false, ""},
		{"no line", "Name: x\n", false, "no \"%global units\" line"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "openssi.spec")
			if err := os.WriteFile(path, []byte(tc.in), 0o644); err != nil {
				t.Fatal(err)
			}
			changed, err := UpdateSpecUnits(path)
			if tc.errContains != "" {
				if err == nil || !strings.Contains(err.Error(), tc.errContains) {
					t.Fatalf("err = %v, want one containing %q", err, tc.errContains)
				}
				return
			}
			if err != nil || changed != tc.changed {
				t.Fatalf("changed, err = %v, %v; want %v, nil", changed, err, tc.changed)
			}
			got, _ := os.ReadFile(path)
			if want := "Name: x\n" + SpecUnitsLine() + "\n%post\n"; string(got) != want {
				t.Errorf("file = %q, want %q", got, want)
			}
		})
	}
}
