package rpc

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/sirupsen/logrus"
)

// FileConfig configures a [FileSource] (cluster.tls with source: files).
type FileConfig struct {
	// CertFile is the PEM certificate of this node's daemons, optionally
	// followed by intermediates. Its URI SANs must include the SPIFFE ID
	// of the per-node identity ("openssi-<daemon>.<node>", see
	// [Identity]) of every OpenSSI service that uses it, all of the same
	// node (see the package doc).
	CertFile string
	// KeyFile is the PEM private key of CertFile.
	KeyFile string
	// CAFile holds the PEM CA certificates peers must chain to.
	CAFile string
	// TrustDomain, when not empty, is the only SPIFFE trust domain peers
	// may have; empty accepts any (the CA alone decides).
	TrustDomain string
	// CheckInterval is how often, at most, a handshake checks whether the
	// files changed (size, mtime, inode) and reloads them. Zero means
	// DefaultFileCheckInterval; negative checks at every handshake.
	CheckInterval time.Duration
	// Log receives reload failures; nil means logrus.StandardLogger().
	Log logrus.FieldLogger
}

// DefaultFileCheckInterval is the default [FileConfig].CheckInterval.
const DefaultFileCheckInterval = 5 * time.Second

// FileSource is a [Source] that reads a certificate, key and CA bundle from
// PEM files. It reloads them when they change (checked lazily at
// handshake time, at most once per CheckInterval) or when Reload is
// called; a reload that fails (for example a half-written file) keeps the
// previous material and is retried at the next check.
type FileSource struct {
	cfg FileConfig
	log logrus.FieldLogger

	mu        sync.Mutex
	cur       material
	stamps    [3]fileStamp
	lastCheck time.Time
}

type fileStamp struct {
	size  int64
	mtime time.Time
	ino   uint64
}

// NewFileSource loads the files named by cfg; they must be valid now.
func NewFileSource(cfg FileConfig) (*FileSource, error) {
	if cfg.CertFile == "" || cfg.KeyFile == "" || cfg.CAFile == "" {
		return nil, fmt.Errorf("rpc: file source: cert_file, key_file and ca_file are all required")
	}
	if cfg.CheckInterval == 0 {
		cfg.CheckInterval = DefaultFileCheckInterval
	}
	if cfg.Log == nil {
		cfg.Log = logrus.StandardLogger()
	}
	f := &FileSource{cfg: cfg, log: cfg.Log.WithFields(logrus.Fields{"component": "rpc-files", "cert_file": cfg.CertFile})}
	if err := f.Reload(); err != nil {
		return nil, err
	}
	return f, nil
}

// Reload re-reads the three files now. On error the previous material
// stays in use.
func (f *FileSource) Reload() error {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.reloadLocked()
}

func (f *FileSource) reloadLocked() error {
	var stamps [3]fileStamp
	for i, name := range []string{f.cfg.CertFile, f.cfg.KeyFile, f.cfg.CAFile} {
		st, err := stampOf(name)
		if err != nil {
			return fmt.Errorf("rpc: file source: %w", err)
		}
		stamps[i] = st
	}
	certPEM, err := os.ReadFile(f.cfg.CertFile)
	if err != nil {
		return fmt.Errorf("rpc: file source: %w", err)
	}
	keyPEM, err := os.ReadFile(f.cfg.KeyFile)
	if err != nil {
		return fmt.Errorf("rpc: file source: %w", err)
	}
	caPEM, err := os.ReadFile(f.cfg.CAFile)
	if err != nil {
		return fmt.Errorf("rpc: file source: %w", err)
	}
	cert, err := keyPair(certPEM, keyPEM)
	if err != nil {
		return fmt.Errorf("rpc: file source: %s and %s: %w", f.cfg.CertFile, f.cfg.KeyFile, err)
	}
	roots, err := rootPool(caPEM)
	if err != nil {
		return fmt.Errorf("rpc: file source: %s: %w", f.cfg.CAFile, err)
	}
	if len(peerIdentities(cert.Leaf, f.cfg.TrustDomain)) == 0 {
		return fmt.Errorf("rpc: file source: %s names no %s<daemon>.<node> SPIFFE ID (URIs %v)", f.cfg.CertFile, ServicePrefix, cert.Leaf.URIs)
	}
	f.cur = material{cert: cert, roots: roots, trustDomain: strings.ToLower(f.cfg.TrustDomain)}
	f.stamps = stamps
	f.lastCheck = time.Now()
	return nil
}

func stampOf(name string) (fileStamp, error) {
	fi, err := os.Stat(name)
	if err != nil {
		return fileStamp{}, err
	}
	st := fileStamp{size: fi.Size(), mtime: fi.ModTime()}
	if sys, ok := fi.Sys().(*syscall.Stat_t); ok {
		st.ino = sys.Ino
	}
	return st, nil
}

// material returns the current material, reloading first when the check
// interval has passed and a file changed.
func (f *FileSource) material() (material, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := time.Now(); now.Sub(f.lastCheck) >= f.cfg.CheckInterval {
		f.lastCheck = now
		if f.changedLocked() {
			if err := f.reloadLocked(); err != nil {
				f.log.WithError(err).Warn("reload TLS files; keeping the previous certificate")
			} else {
				f.log.Info("TLS files reloaded")
			}
		}
	}
	return f.cur, nil
}

func (f *FileSource) changedLocked() bool {
	for i, name := range []string{f.cfg.CertFile, f.cfg.KeyFile, f.cfg.CAFile} {
		st, err := stampOf(name)
		if err != nil || !st.mtime.Equal(f.stamps[i].mtime) || st.size != f.stamps[i].size || st.ino != f.stamps[i].ino {
			return true
		}
	}
	return false
}

// Leaf returns the certificate currently presented.
func (f *FileSource) Leaf() *x509.Certificate {
	m, _ := f.material()
	return m.cert.Leaf
}

// ServerConfig implements [Source].
func (f *FileSource) ServerConfig() *tls.Config { return tlsConfigs(f.material).server() }

// ClientConfig implements [Source].
func (f *FileSource) ClientConfig(wantService string) *tls.Config {
	return tlsConfigs(f.material).client(wantService)
}

// Close implements [Source]; a FileSource has nothing running.
func (f *FileSource) Close() error { return nil }
