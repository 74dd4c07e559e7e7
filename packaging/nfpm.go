package packaging

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	_ "github.com/goreleaser/nfpm/v2/deb" // registers the deb packager
	"github.com/goreleaser/nfpm/v2/files"
	_ "github.com/goreleaser/nfpm/v2/rpm" // registers the rpm packager
)

// Package metadata shared by nfpm, debian/control and rpm/openssi.spec.
const (
	Name        = "openssi"
	Maintainer  = "OpenSSI developers <openssi@lists.openssi.invalid>"
	Homepage    = "https://github.com/openssi/openssi"
	License     = "Apache-2.0"
	Summary     = "single-system-image clustering daemons for stock Linux"
	Description = `single-system-image clustering daemons for stock Linux
 OpenSSI makes several Linux machines behave as one: one membership
 service, clusterwide process management, IPC, locks, filesystem and
 cluster IP, built as small daemons coordinated through HashiCorp Consul.
 .
 This package holds the daemons, their systemd units (grouped by
 openssi.target), the ssi command line tool and the configuration file
 /etc/openssi/openssi.yaml. A Consul agent must run on every node; it is
 not part of Debian, so it is only suggested.`
)

// Suggests lists what works with the package without being required:
// consul — every daemon talks to the local Consul agent, but it comes from
// HashiCorp's repository or elsewhere and the daemons wait for it, so its
// absence must not block installing; criu (>= 4.2) — vprocd moves
// unmodified programs with it (older CRIU fails on current kernels;
// bookworm has 3.17), and without it only cooperative programs move.
// Written as Debian writes relations; RPMRelations gives rpm's form.
var Suggests = []string{"consul", "criu (>= 4.2)"}

// RPMRelations writes relations of Debian's form, "name (op version)",
// in rpm's, "name op version".
func RPMRelations(rels []string) []string {
	out := make([]string, len(rels))
	for i, r := range rels {
		name, rest, ok := strings.Cut(r, " (")
		if ok && strings.HasSuffix(rest, ")") {
			r = name + " " + strings.TrimSuffix(rest, ")")
		}
		out[i] = r
	}
	return out
}

// Recommends lists what a usual install has along with the package:
// strace, which `ssi strace` runs on the node of the process it traces
// (without it that one command fails with a line saying to install it).
var Recommends = []string{"strace"}

// BuildOptions say what Build makes.
type BuildOptions struct {
	// RepoDir is the repository's top directory.
	RepoDir string
	// OutDir receives the packages.
	OutDir string
	// Version; "" = GitVersion(RepoDir).
	Version string
	// MTime; zero = SourceDateEpoch(RepoDir).
	MTime time.Time
	// ConfigAppend: see Options.
	ConfigAppend string
}

// Built names the packages Build made.
type Built struct {
	// Version is their version.
	Version string
	// Deb and RPM are their paths.
	Deb, RPM string
}

// DebFile and RPMFile are the file names of the packages of a version.
func DebFile(version string) string { return fmt.Sprintf("%s_%s_amd64.deb", Name, version) }

// RPMFile is the file name of the rpm of version.
func RPMFile(version string) string { return fmt.Sprintf("%s-%s-1.x86_64.rpm", Name, version) }

// Build makes the .deb and the .rpm with nfpm.
func Build(o BuildOptions) (Built, error) {
	var err error
	if o.Version == "" {
		if o.Version, err = GitVersion(o.RepoDir); err != nil {
			return Built{}, err
		}
	}
	if o.MTime.IsZero() {
		if o.MTime, err = SourceDateEpoch(o.RepoDir); err != nil {
			return Built{}, err
		}
	}
	work, err := os.MkdirTemp("", "openssi-pkg-")
	if err != nil {
		return Built{}, fmt.Errorf("packaging: %w", err)
	}
	defer os.RemoveAll(work)
	bin := filepath.Join(work, "bin")
	if err := BuildBinaries(o.RepoDir, bin, o.Version); err != nil {
		return Built{}, err
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return Built{}, fmt.Errorf("packaging: %w", err)
	}
	b := Built{Version: o.Version, Deb: filepath.Join(o.OutDir, DebFile(o.Version)), RPM: filepath.Join(o.OutDir, RPMFile(o.Version))}
	for _, format := range []string{"deb", "rpm"} {
		root := filepath.Join(work, format)
		fs, err := Stage(root, Options{RepoDir: o.RepoDir, Format: format, Version: o.Version, MTime: o.MTime, BinDir: bin, ConfigAppend: o.ConfigAppend})
		if err != nil {
			return Built{}, err
		}
		out := b.Deb
		if format == "rpm" {
			out = b.RPM
		}
		if err := pack(format, root, fs, o, filepath.Join(work, "scripts"), out); err != nil {
			return Built{}, err
		}
	}
	return b, nil
}

func pack(format, root string, fs []File, o BuildOptions, scriptDir, out string) error {
	sc := MaintainerScripts(Daemons())
	if err := WriteScripts(scriptDir, sc); err != nil {
		return err
	}
	var contents files.Contents
	for _, f := range fs {
		c := &files.Content{
			Source:      filepath.Join(root, f.Path),
			Destination: f.Path,
			FileInfo:    &files.ContentFileInfo{Mode: f.Mode, MTime: o.MTime, Owner: "root", Group: "root"},
		}
		switch {
		case f.Conffile:
			c.Type = files.TypeConfigNoReplace
		case format == "rpm" && (strings.HasPrefix(f.Path, DocDir+"/") || strings.HasPrefix(f.Path, "/usr/share/man/")):
			c.Type = files.TypeRPMDoc
		}
		contents = append(contents, c)
	}
	suggests, recommends := Suggests, Recommends
	if format == "rpm" {
		suggests, recommends = RPMRelations(Suggests), RPMRelations(Recommends)
	}
	info := &nfpm.Info{
		Name:          Name,
		Arch:          "amd64",
		Platform:      "linux",
		Version:       o.Version,
		VersionSchema: "none",
		Section:       "admin",
		Priority:      "optional",
		Maintainer:    Maintainer,
		Description:   Description,
		Homepage:      Homepage,
		License:       License,
		MTime:         o.MTime,
		Overridables: nfpm.Overridables{
			Suggests:   suggests,
			Recommends: recommends,
			Contents:   contents,
			Umask:      0o022,
			Scripts: nfpm.Scripts{
				PostInstall: filepath.Join(scriptDir, "postinst"),
				PreRemove:   filepath.Join(scriptDir, "prerm"),
				PostRemove:  filepath.Join(scriptDir, "postrm"),
			},
			RPM: nfpm.RPM{Group: "System Environment/Daemons", Summary: strings.ToUpper(Summary[:1]) + Summary[1:], BuildHost: "openssi", Packager: Maintainer},
		},
	}
	if format == "rpm" {
		info.Release = "1"
		// rpm's %changelog, from debian/changelog (the one changelog).
		cl, err := rpmChangelog(filepath.Join(o.RepoDir, "debian/changelog"), filepath.Join(scriptDir, "changelog.yml"))
		if err != nil {
			return err
		}
		info.Changelog = cl
	}
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return fmt.Errorf("packaging: nfpm %s: %w", format, err)
	}
	p, err := nfpm.Get(format)
	if err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	f, err := os.Create(out + ".tmp")
	if err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	defer os.Remove(out + ".tmp")
	if err := p.Package(info, f); err != nil {
		f.Close()
		return fmt.Errorf("packaging: nfpm %s: %w", format, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	return os.Rename(out+".tmp", out)
}

// WriteScripts writes the maintainer scripts into dir as postinst, prerm
// and postrm (debian/rules writes them as debian/openssi.<name>).
func WriteScripts(dir string, sc Scripts) error {
	return writeScripts(dir, "", sc)
}

func writeScripts(dir, prefix string, sc Scripts) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	for name, text := range map[string]string{"postinst": sc.PostInst, "prerm": sc.PreRm, "postrm": sc.PostRm} {
		if err := os.WriteFile(filepath.Join(dir, prefix+name), []byte(text), 0o755); err != nil {
			return fmt.Errorf("packaging: %w", err)
		}
	}
	return nil
}

// WriteDebianScripts writes debian/openssi.{postinst,prerm,postrm}.
func WriteDebianScripts(debianDir string) error {
	return writeScripts(debianDir, Name+".", MaintainerScripts(Daemons()))
}

// rpmChangelog converts debian/changelog into the chglog YAML nfpm reads
// for rpm's %changelog, written to out.
func rpmChangelog(debianChangelog, out string) (string, error) {
	data, err := os.ReadFile(debianChangelog)
	if err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	var b strings.Builder
	var notes []string
	for _, line := range strings.Split(string(data), "\n") {
		switch {
		case strings.HasPrefix(line, Name+" ("):
			v := line[len(Name)+2:]
			v = v[:strings.Index(v, ")")]
			fmt.Fprintf(&b, "- semver: %q\n", v)
			notes = nil
		case strings.HasPrefix(line, "  * "):
			notes = append(notes, strings.TrimPrefix(line, "  * "))
		case strings.HasPrefix(line, "    ") && len(notes) > 0:
			notes[len(notes)-1] += " " + strings.TrimSpace(line)
		case strings.HasPrefix(line, " -- "):
			who, when, _ := strings.Cut(strings.TrimPrefix(line, " -- "), "  ")
			t, err := time.Parse(time.RFC1123Z, strings.TrimSpace(when))
			if err != nil {
				return "", fmt.Errorf("packaging: debian/changelog date %q: %w", when, err)
			}
			fmt.Fprintf(&b, "  date: %s\n  packager: %q\n  changes:\n", t.UTC().Format(time.RFC3339), who)
			for _, n := range notes {
				fmt.Fprintf(&b, "    - commit: \"\"\n      note: %q\n", n)
			}
		}
	}
	if err := os.WriteFile(out, []byte(b.String()), 0o644); err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	return out, nil
}
