package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"time"
)

var hexRE = regexp.MustCompile(`^[0-9a-f]{4,40}$`)

var describeRE = regexp.MustCompile(`^v([0-9][0-9A-Za-z.]*)-([0-9]+)-g([0-9a-f]+)$`)

// VersionFromDescribe turns `git describe --tags --long` output into a
// version valid for Debian and RPM alike; describe is "" when there is no
// tag, and then count (commits) and sha name the build:
//
//	v1.2.0-0-gabc1234       -> 1.2.0
//	v1.2.0-3-gabc1234       -> 1.2.0+git3.abc1234
//	no tag, 17 commits      -> 0.0.0~git17.abc1234
//	a dirty work tree       -> ...+dirty, or ....dirty after a +
//
// Both formats order these as intended: ~ sorts before everything, so an
// untagged build is older than any release.
func VersionFromDescribe(describe string, count int, sha string, dirty bool) (string, error) {
	var v string
	if describe == "" {
		if !hexRE.MatchString(sha) || count <= 0 {
			return "", fmt.Errorf("packaging: no tag and no commit to take a version from (%d commits, sha %q)", count, sha)
		}
		v = fmt.Sprintf("0.0.0~git%d.%s", count, sha)
	} else {
		m := describeRE.FindStringSubmatch(strings.TrimSpace(describe))
		if m == nil {
			return "", fmt.Errorf("packaging: cannot turn %q into a package version", describe)
		}
		v = m[1]
		if m[2] != "0" {
			v += fmt.Sprintf("+git%s.%s", m[2], m[3])
		}
	}
	if dirty {
		if strings.Contains(v, "+") {
			v += ".dirty"
		} else {
			v += "+dirty"
		}
	}
	return v, nil
}

// GitVersion is the package version of the work tree at dir.
func GitVersion(dir string) (string, error) {
	git := func(args ...string) (string, error) {
		out, err := exec.Command("git", append([]string{"-C", dir}, args...)...).Output()
		return strings.TrimSpace(string(out)), err
	}
	sha, err := git("rev-parse", "--short=7", "HEAD")
	if err != nil {
		return "", fmt.Errorf("packaging: git rev-parse: %w", err)
	}
	cnt, err := git("rev-list", "--count", "HEAD")
	if err != nil {
		return "", fmt.Errorf("packaging: git rev-list: %w", err)
	}
	n, _ := strconv.Atoi(cnt)
	desc, err := git("describe", "--tags", "--long", "--match", "v[0-9]*")
	if err != nil {
		desc = "" // no tag yet
	}
	status, err := git("status", "--porcelain", "--untracked-files=no")
	if err != nil {
		return "", fmt.Errorf("packaging: git status: %w", err)
	}
	return VersionFromDescribe(desc, n, sha, status != "")
}

// SourceDateEpoch is the commit time of HEAD, for reproducible builds
// (SOURCE_DATE_EPOCH).
func SourceDateEpoch(dir string) (time.Time, error) {
	out, err := exec.Command("git", "-C", dir, "log", "-1", "--format=%ct").Output()
	if err != nil {
		return time.Time{}, fmt.Errorf("packaging: git log: %w", err)
	}
	sec, err := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("packaging: commit time: %w", err)
	}
	return time.Unix(sec, 0).UTC(), nil
}

// SourceDateEpochEnv is $SOURCE_DATE_EPOCH when set (dpkg-buildpackage
// sets it from debian/changelog), else SourceDateEpoch(dir).
func SourceDateEpochEnv(dir string) (time.Time, error) {
	if s := os.Getenv("SOURCE_DATE_EPOCH"); s != "" {
		sec, err := strconv.ParseInt(s, 10, 64)
		if err != nil {
			return time.Time{}, fmt.Errorf("packaging: SOURCE_DATE_EPOCH=%q: %w", s, err)
		}
		return time.Unix(sec, 0).UTC(), nil
	}
	return SourceDateEpoch(dir)
}
