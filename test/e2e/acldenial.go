package e2e

import "regexp"

// aclDenialRE matches what a daemon logs when Consul refuses it for its
// token: the Consul API client's "Unexpected response code: 403 (...)",
// with "Permission denied" or "ACL not found" in its body. A bare "403"
// is not enough: session IDs, durations and pids in the daemons' logs
// contain it too.
var aclDenialRE = regexp.MustCompile(`response code: 403\b|Permission denied|ACL not found`)

// aclDenial reports whether a journal line says Consul refused a daemon.
func aclDenial(line string) bool { return aclDenialRE.MatchString(line) }
