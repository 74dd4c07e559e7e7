package packaging

import (
	"bytes"
	"compress/gzip"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/spf13/cobra/doc"

	"github.com/openssi/openssi/cmd/ssi/cli"
	"github.com/openssi/openssi/internal/config"
	"github.com/openssi/openssi/internal/daemons"
	"github.com/openssi/openssi/internal/describe"
)

// Paths of the installed files.
const (
	ConfigPath = "/etc/openssi/openssi.yaml"
	SsiPath    = "/usr/bin/ssi"
	DocDir     = "/usr/share/doc/openssi"
	// ConsulExample is the commented, locked-down Consul configuration.
	ConsulExample = DocDir + "/examples/consul.hcl"
	sysusers      = "/usr/lib/sysusers.d/openssi.conf"
	tmpfiles      = "/usr/lib/tmpfiles.d/openssi.conf"
	completion    = "/usr/share/bash-completion/completions/ssi"
	lintianOver   = "/usr/share/lintian/overrides/openssi"
)

// ShippedConfig is the configuration file shipped as ConfigPath: the
// shared section and every registered daemon's, each setting at its default
// under a comment (config.Example; internal/config's tests load it).
func ShippedConfig() []byte { return config.Example(daemons.Sections()) }

// userDescription is the GECOS of the system user.
const userDescription = "OpenSSI cluster daemons"

// SysusersConf is /usr/lib/sysusers.d/openssi.conf, applied by the
// maintainer scripts with systemd-sysusers (on deb and rpm alike, and at
// boot by systemd-sysusers.service): the group openssi, which owns the
// local sockets, and the system user openssi of the daemons that need no
// privilege, whose primary group it is.
func SysusersConf() string {
	return "# The group owning OpenSSI's local sockets: its members may use ssi.\n" +
		"g " + describe.SystemUser + " -\n" +
		"# The user clmsd and dlmd run as: no login shell, no home.\n" +
		"u " + describe.SystemUser + " - \"" + userDescription + "\" - -\n"
}

// TmpfilesConf is /usr/lib/tmpfiles.d/openssi.conf: the directories of
// the sockets and of the state, owned and moded as the units'
// RuntimeDirectory= and StateDirectory= make them (systemd skips its
// recursive chown when the top directory is already right, so the Z line
// chowns what a root-run version left in the state directory).
func TmpfilesConf() string {
	u := describe.SystemUser
	return "# OpenSSI's sockets (cluster.run_dir) and state (cluster.state_dir).\n" +
		"d /run/openssi 0755 " + u + " " + u + " -\n" +
		"d /var/lib/openssi 0700 " + u + " " + u + " -\n" +
		"Z /var/lib/openssi - " + u + " " + u + " -\n"
}

// UnitDir is where a format's systemd units go: bookworm's debhelper and
// lintian still want /lib/systemd/system, Fedora /usr/lib/systemd/system.
func UnitDir(format string) string {
	if format == "deb" {
		return "/lib/systemd/system"
	}
	return "/usr/lib/systemd/system"
}

// File is one file of the package.
type File struct {
	// Path is where it is installed.
	Path string
	// Mode is its permission bits.
	Mode os.FileMode
	// Conffile marks the configuration (deb conffile, rpm
	// %config(noreplace)).
	Conffile bool
}

// Options say what to stage.
type Options struct {
	// RepoDir is the repository's top directory.
	RepoDir string
	// Format is "deb" or "rpm".
	Format string
	// Version is stamped into the binaries and man pages.
	Version string
	// MTime is the time of every file (SOURCE_DATE_EPOCH).
	MTime time.Time
	// BinDir holds prebuilt binaries (see BuildBinaries); "" builds them.
	BinDir string
	// ConfigAppend is appended to the shipped configuration (tests use it
	// to make a newer build whose conffile changed).
	ConfigAppend string
}

// Daemons is the list packaged: internal/daemons.All.
func Daemons() []daemons.Daemon { return daemons.All }

// BuildBinaries builds every daemon and ssi, static and stripped, into dir
// (named by their installed names).
func BuildBinaries(repoDir, dir, version string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	type prog struct{ pkg, out string }
	progs := []prog{{"./cmd/ssi", "ssi"}}
	if err := daemons.Check(Daemons()); err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	for _, d := range Daemons() {
		progs = append(progs, prog{"./daemons/" + d.Name, d.Binary})
	}
	ldflags := "-s -w -buildid= -X github.com/openssi/openssi/internal/version.Version=" + version
	for _, p := range progs {
		cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", filepath.Join(dir, p.out), p.pkg)
		cmd.Dir = repoDir
		cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH=amd64")
		if !strings.Contains(os.Getenv("GOFLAGS"), "-mod=") {
			cmd.Env = append(cmd.Env, "GOFLAGS=-mod=mod")
		}
		if out, err := cmd.CombinedOutput(); err != nil {
			return fmt.Errorf("packaging: go build %s: %v\n%s", p.pkg, err, out)
		}
	}
	return nil
}

// Stage writes the package's files under root and returns them.
func Stage(root string, o Options) ([]File, error) {
	if o.Format != "deb" && o.Format != "rpm" {
		return nil, fmt.Errorf("packaging: unknown format %q", o.Format)
	}
	if o.BinDir == "" {
		o.BinDir = filepath.Join(root, ".bin")
		if err := BuildBinaries(o.RepoDir, o.BinDir, o.Version); err != nil {
			return nil, err
		}
		defer os.RemoveAll(o.BinDir)
	}
	s := &stager{root: root, o: o}
	// Programs.
	s.copy(SsiPath, filepath.Join(o.BinDir, "ssi"), 0o755)
	for _, d := range Daemons() {
		s.copy(SbinDir+"/"+d.Binary, filepath.Join(o.BinDir, d.Binary), 0o755)
		s.write(UnitDir(o.Format)+"/"+d.Unit, []byte(ServiceUnit(d)), 0o644)
		for _, u := range d.Units {
			s.write(UnitDir(o.Format)+"/"+u.Name, []byte(u.Text), 0o644)
		}
	}
	s.write(UnitDir(o.Format)+"/"+Target, []byte(TargetUnit()), 0o644)
	// Configuration.
	cfg := append(ShippedConfig(), o.ConfigAppend...)
	s.write(ConfigPath, cfg, 0o644)
	s.files[len(s.files)-1].Conffile = true
	s.write(sysusers, []byte(SysusersConf()), 0o644)
	s.write(tmpfiles, []byte(TmpfilesConf()), 0o644)
	// Documentation.
	s.manPages(cfg)
	var comp bytes.Buffer
	if err := cli.Command().GenBashCompletionV2(&comp, true); err != nil {
		return nil, fmt.Errorf("packaging: bash completion: %w", err)
	}
	s.write(completion, comp.Bytes(), 0o644)
	s.copy(DocDir+"/copyright", filepath.Join(o.RepoDir, "debian/copyright"), 0o644)
	s.copy(ConsulExample, filepath.Join(o.RepoDir, "packaging/examples/consul.hcl"), 0o644)
	if cl, err := os.ReadFile(filepath.Join(o.RepoDir, "debian/changelog")); err != nil {
		s.err = err
	} else {
		s.write(DocDir+"/changelog.gz", gz(cl), 0o644)
	}
	if o.Format == "deb" {
		s.copy(lintianOver, filepath.Join(o.RepoDir, "debian/openssi.lintian-overrides"), 0o644)
	}
	if s.err != nil {
		return nil, fmt.Errorf("packaging: stage: %w", s.err)
	}
	sort.Slice(s.files, func(i, j int) bool { return s.files[i].Path < s.files[j].Path })
	return s.files, nil
}

type stager struct {
	root  string
	o     Options
	files []File
	err   error
}

func (s *stager) write(path string, data []byte, mode os.FileMode) {
	if s.err != nil {
		return
	}
	full := filepath.Join(s.root, path)
	if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
		s.err = err
		return
	}
	if err := os.WriteFile(full, data, mode); err != nil {
		s.err = err
		return
	}
	if err := os.Chmod(full, mode); err != nil {
		s.err = err
		return
	}
	if !s.o.MTime.IsZero() {
		if err := os.Chtimes(full, s.o.MTime, s.o.MTime); err != nil {
			s.err = err
			return
		}
	}
	s.files = append(s.files, File{Path: path, Mode: mode})
}

func (s *stager) copy(path, src string, mode os.FileMode) {
	data, err := os.ReadFile(src)
	if err != nil {
		if s.err == nil {
			s.err = err
		}
		return
	}
	s.write(path, data, mode)
}

// manPages writes ssi(1) and its subcommands' pages (from the cobra tree),
// <daemon>(8) from each daemon's --help, and openssi.yaml(5).
func (s *stager) manPages(cfg []byte) {
	if s.err != nil {
		return
	}
	date := s.o.MTime
	if date.IsZero() {
		date = time.Unix(0, 0).UTC()
	}
	tmp, err := os.MkdirTemp("", "openssi-man-")
	if err != nil {
		s.err = err
		return
	}
	defer os.RemoveAll(tmp)
	root := cli.Command()
	root.DisableAutoGenTag = true
	hdr := &doc.GenManHeader{Title: "SSI", Section: "1", Date: &date, Source: "OpenSSI " + s.o.Version, Manual: "OpenSSI Manual"}
	if err := doc.GenManTree(root, hdr, tmp); err != nil {
		s.err = fmt.Errorf("ssi man pages: %w", err)
		return
	}
	pages, _ := filepath.Glob(filepath.Join(tmp, "*.1"))
	sort.Strings(pages)
	for _, p := range pages {
		data, err := os.ReadFile(p)
		if err != nil {
			s.err = err
			return
		}
		s.write("/usr/share/man/man1/"+filepath.Base(p)+".gz", gz(data), 0o644)
	}
	for _, d := range Daemons() {
		out, err := exec.Command(filepath.Join(s.o.BinDir, d.Binary), "--help").Output()
		if err != nil {
			s.err = fmt.Errorf("%s --help: %w", d.Binary, err)
			return
		}
		page := roffPage(strings.ToUpper(d.Binary), "8", date, s.o.Version, d.Binary, "OpenSSI "+d.Summary,
			"OpenSSI daemon, run by systemd as "+d.Unit+" (part of openssi.target).", string(out),
			"ssi(1), openssi.yaml(5), systemctl(1)")
		s.write("/usr/share/man/man8/"+d.Binary+".8.gz", gz([]byte(page)), 0o644)
	}
	page := roffPage("OPENSSI.YAML", "5", date, s.o.Version, "openssi.yaml", "configuration of the OpenSSI daemons",
		"The file "+ConfigPath+" configures every OpenSSI daemon of a node. As shipped it lists every setting with its default and an explanation:",
		string(cfg), "ssi(1)")
	s.write("/usr/share/man/man5/openssi.yaml.5.gz", gz([]byte(page)), 0o644)
}

// roffPage renders a man page whose body is text shown verbatim.
func roffPage(title, section string, date time.Time, version, name, summary, intro, body, seeAlso string) string {
	var b strings.Builder
	fmt.Fprintf(&b, ".TH %q %q %q %q %q\n", title, section, date.Format("2006-01-02"), "OpenSSI "+version, "OpenSSI Manual")
	fmt.Fprintf(&b, ".SH NAME\n%s \\- %s\n", roffEscape(name), roffEscape(summary))
	fmt.Fprintf(&b, ".SH DESCRIPTION\n%s\n.PP\n.nf\n", roffEscape(intro))
	for _, line := range strings.Split(strings.TrimRight(body, "\n"), "\n") {
		fmt.Fprintf(&b, "\\&%s\n", roffEscape(line))
	}
	fmt.Fprintf(&b, ".fi\n.SH SEE ALSO\n%s\n", roffEscape(seeAlso))
	return b.String()
}

func roffEscape(s string) string {
	s = strings.ReplaceAll(s, `\`, `\e`)
	return strings.ReplaceAll(s, "-", `\-`)
}

// gz compresses data reproducibly (no name, no time) at the best level.
func gz(data []byte) []byte {
	var b bytes.Buffer
	w, _ := gzip.NewWriterLevel(&b, gzip.BestCompression)
	_, _ = w.Write(data)
	_ = w.Close()
	return b.Bytes()
}
