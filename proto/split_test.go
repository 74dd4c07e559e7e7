package proto

import (
	"os/exec"
	"strings"
	"testing"
)

// TestClientsUseOnlyThePublicAPIs keeps the peer protocols internal: the
// client libraries and ssi import the public APIs (clms/v1, dlm/v1), never
// a daemon's peer protocol (clmspeer/v1, dlmpeer/v1), which may change
// between versions in ways only the daemons follow.
func TestClientsUseOnlyThePublicAPIs(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/openssi/openssi/client/...", "github.com/openssi/openssi/cmd/...").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if strings.HasPrefix(pkg, "github.com/openssi/openssi/proto/") && strings.Contains(pkg, "peer/") {
			t.Errorf("a client library or ssi imports the peer protocol %s", pkg)
		}
	}
}
