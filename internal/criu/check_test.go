package criu

import (
	"strings"
	"testing"
)

func TestParseCheck(t *testing.T) {
	for _, tc := range []struct {
		name    string
		out     string
		status  int
		wantErr string // "" for a pass
	}{
		{"pass", "Looks good.\n", 0, ""},
		{"pass with warnings", "Warn  (criu/kerndat.c:1642): CRIU was built without libnftables support\nLooks good.\n", 0, ""},
		{"3.17 on a new kernel", "Error (criu/cr-check.c:1233): PTRACE_GET_RSEQ_CONFIGURATION is not supported\nError (criu/cr-check.c:1250): x\n", 1,
			"status 1): Error (criu/cr-check.c:1233): PTRACE_GET_RSEQ_CONFIGURATION"},
		{"not root", "Can't check: you need to be root\n", 1, "status 1): Can't check"},
		{"status 0 but no verdict", "Warn: something\n", 0, "status 0): Warn: something"},
		{"verdict but status 1", "Looks good.\n", 1, "status 1): Looks good."},
		{"nothing", "", 1, "printed nothing"},
		{"long error clipped", "Error " + strings.Repeat("x", 500) + "\n", 1, "..."},
	} {
		err := ParseCheck([]byte(tc.out), tc.status)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: %v, want a pass", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: %v, want an error with %q", tc.name, err, tc.wantErr)
		case err != nil && !strings.HasPrefix(err.Error(), "criu: ") || err != nil && len(err.Error()) > 200:
			t.Errorf("%s: error %q: want one criu: prefix and a bounded length", tc.name, err)
		}
	}
}
