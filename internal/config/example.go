package config

import (
	_ "embed" // the cluster section of the example file
	"strings"
)

// clusterExample is the `cluster:` section of the shipped file.
//
//go:embed cluster.yaml
var clusterExample string

// exampleHeader opens the shipped file; @FLAGS@ becomes the list of flags.
const exampleHeader = `# OpenSSI configuration: /etc/openssi/openssi.yaml
#
# Read by every OpenSSI daemon at start and on SIGHUP (only cluster.log_level
# takes effect on reload; other changes need a restart). Every setting below
# shows its default; delete or comment out what you do not change.
#
# Overrides, highest precedence last:
#   - environment: OPENSSI_<SECTION>_<KEY>, e.g. OPENSSI_CLMSD_NODE_NUMBER=3 or
#     OPENSSI_CLUSTER_CONSUL_ADDRESS=10.0.0.5:8500 (set them in a systemd
#     drop-in with Environment=); an empty variable counts as unset
@FLAGS@
#
# A misspelt key or a bad value stops the daemon with a one-line message
# naming the key, and exit status 2.
`

// Example returns the annotated configuration file shipped as
// /etc/openssi/openssi.yaml: a header, the `cluster:` section and each
// daemon section's [Section.Example], every setting at its default. It is
// valid as shipped and loads to the defaults (tests check both).
func Example(sections []Section) []byte {
	var b strings.Builder
	b.WriteString(strings.Replace(exampleHeader, "@FLAGS@", flagsLine(sections), 1))
	b.WriteString("\n")
	b.WriteString(clusterExample)
	for _, s := range sections {
		b.WriteString("\n")
		b.WriteString(strings.TrimRight(s.Example, "\n") + "\n")
	}
	return []byte(b.String())
}

// flagsLine lists the flags in the header, wrapped as a comment item.
func flagsLine(sections []Section) string {
	text := "command-line flags: --log-level, --consul-address"
	for _, s := range sections {
		if len(s.Flags) == 0 {
			continue
		}
		names := make([]string, len(s.Flags))
		for i, f := range s.Flags {
			names[i] = "--" + f.Name
		}
		list := names[len(names)-1]
		if len(names) > 1 {
			list = strings.Join(names[:len(names)-1], ", ") + " and " + list
		}
		text += ", for " + s.Name + " " + list
	}
	return wrap(text, "#   - ", "#     ", 78)
}

// wrap breaks text into lines of at most width characters (a longer word
// stands alone), the first starting with first and the others with rest.
func wrap(text, first, rest string, width int) string {
	var lines []string
	line := first
	fresh := true
	for _, w := range strings.Fields(text) {
		if !fresh && len(line)+1+len(w) > width {
			lines = append(lines, line)
			line, fresh = rest, true
		}
		if !fresh {
			line += " "
		}
		line += w
		fresh = false
	}
	return strings.Join(append(lines, line), "\n")
}
