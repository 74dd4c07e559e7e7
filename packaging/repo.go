package packaging

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Repository layout under RepoOptions.Dir.
const (
	// KeyringName is the exported public key apt uses (signed-by=).
	KeyringName = "openssi-archive-keyring.gpg"
	// KeyASCName is the same key armored, for rpm --import and yum's gpgkey=.
	KeyASCName = "openssi-archive-keyring.asc"
	// Suite and Component of the apt repository.
	Suite     = "stable"
	Component = "main"
	keyUID    = "OpenSSI local repository <openssi@localhost>"
)

// RepoOptions say what goes into the repositories.
type RepoOptions struct {
	// Dir receives apt/, yum/, the public keys and the snippets.
	Dir string
	// Debs and RPMs are the packages to publish.
	Debs, RPMs []string
	// KeyDir keeps the project's signing key (a GnuPG home), made on first
	// use; never in git.
	KeyDir string
	// URL is where clients will find Dir ("" = file://<Dir>); the snippets
	// name it.
	URL string
	// KeyringPath is where clients install KeyringName (signed-by=).
	KeyringPath string
}

// Repo builds a signed apt repository (dists/stable/main, Packages,
// Release, InRelease, Release.gpg) with apt-ftparchive and gpg, and a yum
// repository with createrepo_c (repomd.xml signed), plus openssi.list and
// openssi.repo snippets for Ansible and Vagrant.
func Repo(o RepoOptions) error {
	for _, tool := range []string{"gpg", "apt-ftparchive", "createrepo_c"} {
		if _, err := exec.LookPath(tool); err != nil {
			return fmt.Errorf("packaging: repo: %s not found (apt-get install gnupg apt-utils createrepo-c)", tool)
		}
	}
	dir, err := filepath.Abs(o.Dir)
	if err != nil {
		return fmt.Errorf("packaging: repo: %w", err)
	}
	if o.URL == "" {
		o.URL = "file://" + dir
	}
	if o.KeyringPath == "" {
		o.KeyringPath = "/usr/share/keyrings/" + KeyringName
	}
	if err := os.RemoveAll(dir); err != nil {
		return fmt.Errorf("packaging: repo: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("packaging: repo: %w", err)
	}
	g, err := ensureKey(o.KeyDir)
	if err != nil {
		return err
	}
	defer g.stopAgent()
	if err := g.run(nil, "--output", filepath.Join(dir, KeyringName), "--export", keyUID); err != nil {
		return err
	}
	if err := g.run(nil, "--armor", "--output", filepath.Join(dir, KeyASCName), "--export", keyUID); err != nil {
		return err
	}
	// apt
	apt := filepath.Join(dir, "apt")
	pool := filepath.Join(apt, "pool", Component)
	bin := filepath.Join(apt, "dists", Suite, Component, "binary-amd64")
	for _, d := range []string{pool, bin} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			return fmt.Errorf("packaging: repo: %w", err)
		}
	}
	for _, deb := range o.Debs {
		if err := copyFile(deb, filepath.Join(pool, filepath.Base(deb))); err != nil {
			return err
		}
	}
	pkgs, err := runIn(apt, "apt-ftparchive", "packages", "pool")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(bin, "Packages"), pkgs, 0o644); err != nil {
		return fmt.Errorf("packaging: repo: %w", err)
	}
	if _, err := runIn(bin, "gzip", "-9nk", "Packages"); err != nil {
		return err
	}
	rel, err := runIn(apt, "apt-ftparchive",
		"-o", "APT::FTPArchive::Release::Origin=OpenSSI",
		"-o", "APT::FTPArchive::Release::Label=OpenSSI",
		"-o", "APT::FTPArchive::Release::Suite="+Suite,
		"-o", "APT::FTPArchive::Release::Codename="+Suite,
		"-o", "APT::FTPArchive::Release::Architectures=amd64",
		"-o", "APT::FTPArchive::Release::Components="+Component,
		"release", filepath.Join("dists", Suite))
	if err != nil {
		return err
	}
	release := filepath.Join(apt, "dists", Suite, "Release")
	if err := os.WriteFile(release, rel, 0o644); err != nil {
		return fmt.Errorf("packaging: repo: %w", err)
	}
	if err := g.run(nil, "--local-user", keyUID, "--clearsign", "--output", filepath.Join(apt, "dists", Suite, "InRelease"), release); err != nil {
		return err
	}
	if err := g.run(nil, "--local-user", keyUID, "--armor", "--detach-sign", "--output", release+".gpg", release); err != nil {
		return err
	}
	// yum
	yum := filepath.Join(dir, "yum")
	if err := os.MkdirAll(yum, 0o755); err != nil {
		return fmt.Errorf("packaging: repo: %w", err)
	}
	for _, rpm := range o.RPMs {
		if err := copyFile(rpm, filepath.Join(yum, filepath.Base(rpm))); err != nil {
			return err
		}
	}
	if _, err := runIn(yum, "createrepo_c", "--quiet", "."); err != nil {
		return err
	}
	repomd := filepath.Join(yum, "repodata", "repomd.xml")
	if err := g.run(nil, "--local-user", keyUID, "--armor", "--detach-sign", "--output", repomd+".asc", repomd); err != nil {
		return err
	}
	// Snippets.
	list := fmt.Sprintf("# OpenSSI packages (made by `make repo`).\ndeb [signed-by=%s] %s/apt %s %s\n", o.KeyringPath, o.URL, Suite, Component)
	repo := fmt.Sprintf(`# OpenSSI packages (made by `+"`make repo`"+`). The repository metadata is
# signed (repo_gpgcheck); the rpms themselves are not (gpgcheck=0).
[openssi]
name=OpenSSI
baseurl=%s/yum
enabled=1
repo_gpgcheck=1
gpgcheck=0
gpgkey=%s/%s
`, o.URL, o.URL, KeyASCName)
	if err := os.WriteFile(filepath.Join(dir, "openssi.list"), []byte(list), 0o644); err != nil {
		return fmt.Errorf("packaging: repo: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "openssi.repo"), []byte(repo), 0o644); err != nil {
		return fmt.Errorf("packaging: repo: %w", err)
	}
	return nil
}

type gnupg struct{ home string }

// ensureKey returns the GnuPG home in keyDir holding the project's signing
// key, generating the key on first use.
func ensureKey(keyDir string) (*gnupg, error) {
	if keyDir == "" {
		home, err := os.UserHomeDir()
		if err != nil {
			return nil, fmt.Errorf("packaging: repo key: %w", err)
		}
		keyDir = filepath.Join(home, ".cache", "openssi", "repo-key")
	}
	if err := os.MkdirAll(keyDir, 0o700); err != nil {
		return nil, fmt.Errorf("packaging: repo key: %w", err)
	}
	if err := os.Chmod(keyDir, 0o700); err != nil {
		return nil, fmt.Errorf("packaging: repo key: %w", err)
	}
	g := &gnupg{home: keyDir}
	if err := g.run(nil, "--list-secret-keys", keyUID); err == nil {
		return g, nil
	}
	if err := g.run(nil, "--passphrase", "", "--quick-generate-key", keyUID, "ed25519", "sign", "never"); err != nil {
		return nil, err
	}
	return g, nil
}

func (g *gnupg) run(stdin []byte, args ...string) error {
	cmd := exec.Command("gpg", append([]string{"--batch", "--yes", "--quiet", "--pinentry-mode", "loopback"}, args...)...)
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home)
	if stdin != nil {
		cmd.Stdin = strings.NewReader(string(stdin))
	}
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("packaging: gpg %s: %v: %s", args[len(args)-1], err, strings.TrimSpace(string(out)))
	}
	return nil
}

// stopAgent ends the gpg-agent that gpg started for this home.
func (g *gnupg) stopAgent() {
	cmd := exec.Command("gpgconf", "--kill", "gpg-agent")
	cmd.Env = append(os.Environ(), "GNUPGHOME="+g.home)
	_ = cmd.Run()
}

func runIn(dir, name string, args ...string) ([]byte, error) {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return nil, fmt.Errorf("packaging: %s: %v: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	return out, nil
}

func copyFile(src, dst string) error {
	data, err := os.ReadFile(src)
	if err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		return fmt.Errorf("packaging: %w", err)
	}
	return nil
}
