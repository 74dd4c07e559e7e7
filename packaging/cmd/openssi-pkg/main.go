// Command openssi-pkg builds OpenSSI's packages and repositories; the
// Makefile (packages, repo) and debian/rules drive it.
//
//	openssi-pkg build   [--out dist] [--version V]        .deb and .rpm with nfpm
//	openssi-pkg repo    [--dist dist] [--out dist/repo]   signed apt + yum repositories
//	openssi-pkg stage   --format deb|rpm --version V --out DIR   the file tree (debian/rules)
//	openssi-pkg scripts --debian DIR                      debian/openssi.{postinst,prerm,postrm}
//	openssi-pkg units   --out DIR [--all]                 the units (--all: every planned daemon)
//	openssi-pkg version                                   the package version of the work tree
package main

import (
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/packaging"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "openssi-pkg:", err)
		os.Exit(1)
	}
}

func run(args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("usage: openssi-pkg build|repo|stage|scripts|spec|units|version [flags]")
	}
	fs := flag.NewFlagSet(args[0], flag.ContinueOnError)
	repoDir := fs.String("C", ".", "repository directory")
	out := fs.String("out", "", "output directory")
	version := fs.String("version", "", "package version (default: from git describe)")
	format := fs.String("format", "deb", "deb or rpm")
	dist := fs.String("dist", "dist", "directory of the built packages")
	keyDir := fs.String("key-dir", "", "GnuPG home of the repository key (default ~/.cache/openssi/repo-key)")
	url := fs.String("url", "", "URL the repository snippets name (default file://<out>)")
	debian := fs.String("debian", "debian", "debian directory")
	all := fs.Bool("all", false, "units: every daemon that has a hardening profile")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	switch args[0] {
	case "version":
		v, err := packaging.GitVersion(*repoDir)
		if err != nil {
			return err
		}
		fmt.Println(v)
	case "build":
		if *out == "" {
			*out = "dist"
		}
		b, err := packaging.Build(packaging.BuildOptions{RepoDir: *repoDir, OutDir: *out, Version: *version})
		if err != nil {
			return err
		}
		fmt.Println(b.Deb)
		fmt.Println(b.RPM)
	case "repo":
		if *out == "" {
			*out = filepath.Join(*dist, "repo")
		}
		debs, _ := filepath.Glob(filepath.Join(*dist, "*.deb"))
		rpms, _ := filepath.Glob(filepath.Join(*dist, "*.rpm"))
		if len(debs) == 0 || len(rpms) == 0 {
			return fmt.Errorf("no packages in %s: run make packages first", *dist)
		}
		if err := packaging.Repo(packaging.RepoOptions{Dir: *out, Debs: debs, RPMs: rpms, KeyDir: *keyDir, URL: *url}); err != nil {
			return err
		}
		fmt.Println(*out)
	case "stage":
		if *out == "" || *version == "" {
			return fmt.Errorf("stage needs --out and --version")
		}
		mtime, err := packaging.SourceDateEpochEnv(*repoDir)
		if err != nil {
			return err
		}
		_, err = packaging.Stage(*out, packaging.Options{RepoDir: *repoDir, Format: *format, Version: *version, MTime: mtime})
		return err
	case "scripts":
		return packaging.WriteDebianScripts(*debian)
	case "spec":
		changed, err := packaging.UpdateSpecUnits(filepath.Join(*repoDir, "rpm", "openssi.spec"))
		if changed {
			fmt.Println("rpm/openssi.spec: units line updated")
		}
		return err
	case "units":
		if *out == "" {
			return fmt.Errorf("units needs --out")
		}
		list := daemons.All
		if *all {
			list = nil
			names := make([]string, 0, len(packaging.Profiles))
			for n := range packaging.Profiles {
				names = append(names, n)
			}
			sort.Strings(names)
			for _, n := range names {
				d, ok := daemons.Find(n)
				if !ok {
					d = daemons.Daemon{Name: n, Binary: n, Unit: packaging.UnitOf(n), Summary: "planned daemon " + n, Hardening: packaging.Planned[n]}
				}
				list = append(list, d)
			}
		}
		if err := os.MkdirAll(*out, 0o755); err != nil {
			return err
		}
		for _, d := range list {
			if err := os.WriteFile(filepath.Join(*out, d.Unit), []byte(packaging.ServiceUnit(d)), 0o644); err != nil {
				return err
			}
			for _, u := range d.Units {
				if err := os.WriteFile(filepath.Join(*out, u.Name), []byte(u.Text), 0o644); err != nil {
					return err
				}
			}
		}
		return os.WriteFile(filepath.Join(*out, packaging.Target), []byte(packaging.TargetUnit()), 0o644)
	default:
		return fmt.Errorf("unknown command %q", strings.Join(args, " "))
	}
	return nil
}
