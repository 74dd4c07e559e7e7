package packaging

import (
	"bytes"
	"fmt"
	"os"
	"strings"

	"github.com/openssi/openssi/internal/daemons"
)

// specUnitsPrefix starts the line of rpm/openssi.spec that names the units
// its scriptlets (%systemd_post, ...) act on. rpm expands those macros when
// it parses the spec, before anything of the tree runs, so the line is
// written into the spec from the registry (UpdateSpecUnits, `make
// generate`) and checked (TestHandKeptFiles), the way proto/ is.
const specUnitsPrefix = "%global units "

// SpecUnitsLine is rpm/openssi.spec's units line for the registered
// daemons: openssi.target and every daemon's unit, in registry order.
func SpecUnitsLine() string {
	units := []string{Target}
	for _, d := range daemons.All {
		units = append(units, d.Unit)
	}
	return specUnitsPrefix + strings.Join(units, " ")
}

// UpdateSpecUnits rewrites the units line of the spec file at path; it
// reports whether the file changed.
func UpdateSpecUnits(path string) (bool, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return false, fmt.Errorf("packaging: %w", err)
	}
	lines := bytes.Split(data, []byte("\n"))
	found := false
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte(specUnitsPrefix)) {
			lines[i] = []byte(SpecUnitsLine())
			found = true
		}
	}
	if !found {
		return false, fmt.Errorf("packaging: %s has no %q line", path, strings.TrimSpace(specUnitsPrefix))
	}
	out := bytes.Join(lines, []byte("\n"))
	if bytes.Equal(out, data) {
		return false, nil
	}
	return true, os.WriteFile(path, out, 0o644)
}
