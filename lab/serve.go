package lab

import (
	"archive/zip"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/openssi/openssi/internal/rootfs"
)

// A bare lab's nodes have no network but the bridge. The server on the
// bridge address hands them what an Ansible rollout installs (Served):
//
//	/openssi/...         the build's signed repository (dist/repo)
//	/consul/consul       the pinned consul binary
//	/consul/<zip>        the same in HashiCorp's release zip, and its SHA256SUMS
//	/debian/...          the Debian archive (proxied: chrony, python3-apt, ...)
//	/debian-security/... Debian's security archive (proxied)
//
// It serves nothing else, and only on the bridge address.

// ServeLog is the file in the lab directory where a server started by
// `lab up --bare` writes its log.
const ServeLog = "serve.log"

// ServerArgs are the arguments of the lab command that runs the server of
// the lab in dir in the foreground (`lab serve`); Down recognises that
// process by them (ServerCommand).
func ServerArgs(dir string) []string { return []string{"serve", "--dir=" + dir} }

// ServerCommand reports whether argv (a process's command line) is the
// server of the lab in dir.
func ServerCommand(argv []string, dir string) bool {
	want := ServerArgs(dir)
	if len(argv) < 1+len(want) {
		return false
	}
	for i, a := range want {
		if argv[1+i] != a {
			return false
		}
	}
	return true
}

// SetServer records the pid of the server process the lab command
// started, for Down.
func (l *Lab) SetServer(pid int) error {
	l.mu.Lock()
	if l.state == nil {
		l.mu.Unlock()
		return ErrNoLab
	}
	l.state.ServerPID = pid
	l.mu.Unlock()
	return l.save()
}

// Server is a bare lab's server (Serve). Close stops it.
type Server struct {
	srv  *http.Server
	h    *serveHandler
	done chan error
	// Addr is host:port it listens on.
	Addr string
}

// Serve starts the server of a bare lab on its bridge address, serving the
// lab's dist/repo and Consul binary; it runs until Close.
func (l *Lab) Serve() (*Server, error) {
	s := l.State()
	if s == nil {
		return nil, ErrNoLab
	}
	upstream := os.Getenv("OPENSSI_DEBIAN_MIRROR")
	if upstream == "" {
		upstream = rootfs.DefaultMirror
	}
	h, err := newServeHandler(filepath.Join(s.Dist, "repo"), l.opts.Consul, upstream)
	if err != nil {
		return nil, err
	}
	addr := fmt.Sprintf("%s.1:%d", s.Subnet, ServePort)
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("lab: serve the nodes: %w", err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	sv := &Server{srv: srv, h: h, done: make(chan error, 1), Addr: addr}
	go func() { sv.done <- srv.Serve(ln) }()
	l.progress("serving the repository, Consul and a Debian mirror to the nodes at http://%s", addr)
	return sv, nil
}

// SetRepo serves another signed repository (a directory like dist/repo)
// from now on: a newer build for an upgrade.
func (s *Server) SetRepo(dir string) { s.h.setRepo(dir) }

// Wait returns when the server stopped.
func (s *Server) Wait() error {
	err := <-s.done
	s.done <- err
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// Close stops the server.
func (s *Server) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return s.srv.Shutdown(ctx)
}

// serveHandler is the server's routing, apart from its listener.
type serveHandler struct {
	mu     sync.Mutex
	repo   string
	consul []byte // the binary
	zip    []byte // the binary in a release zip
	sums   string // SHA256SUMS of the zip
	mirror map[string]*httputil.ReverseProxy
}

func newServeHandler(repo, consulBin, debianMirror string) (*serveHandler, error) {
	bin, err := os.ReadFile(consulBin)
	if err != nil {
		return nil, fmt.Errorf("lab: serve the consul binary: %w", err)
	}
	var zb bytes.Buffer
	zw := zip.NewWriter(&zb)
	fh := &zip.FileHeader{Name: "consul", Method: zip.Deflate, Modified: time.Unix(0, 0).UTC()}
	fh.SetMode(0o755)
	w, err := zw.CreateHeader(fh)
	if err == nil {
		_, err = w.Write(bin)
	}
	if err == nil {
		err = zw.Close()
	}
	if err != nil {
		return nil, fmt.Errorf("lab: zip the consul binary: %w", err)
	}
	sum := sha256.Sum256(zb.Bytes())
	h := &serveHandler{
		repo:   repo,
		consul: bin,
		zip:    zb.Bytes(),
		sums:   hex.EncodeToString(sum[:]) + "  " + consulZipName() + "\n",
		mirror: map[string]*httputil.ReverseProxy{},
	}
	main, err := url.Parse(strings.TrimRight(debianMirror, "/"))
	if err != nil || main.Scheme == "" || main.Host == "" {
		return nil, fmt.Errorf("lab: Debian mirror %q is not a URL", debianMirror)
	}
	security := *main
	security.Path = strings.TrimSuffix(main.Path, "/debian") + "/debian-security"
	h.mirror["/debian/"] = mirrorProxy(main)
	h.mirror["/debian-security/"] = mirrorProxy(&security)
	return h, nil
}

// mirrorProxy forwards /<prefix>/rest to upstream/rest.
func mirrorProxy(upstream *url.URL) *httputil.ReverseProxy {
	return &httputil.ReverseProxy{Rewrite: func(r *httputil.ProxyRequest) {
		rest := r.In.URL.Path[strings.Index(r.In.URL.Path[1:], "/")+1:]
		r.Out.URL.Scheme, r.Out.URL.Host = upstream.Scheme, upstream.Host
		r.Out.URL.Path = upstream.Path + rest
		r.Out.URL.RawPath = ""
		r.Out.Host = upstream.Host
	}}
}

func (h *serveHandler) setRepo(dir string) {
	h.mu.Lock()
	h.repo = dir
	h.mu.Unlock()
}

func (h *serveHandler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "only GET and HEAD", http.StatusMethodNotAllowed)
		return
	}
	p := r.URL.Path
	switch {
	case strings.HasPrefix(p, "/openssi/"):
		h.mu.Lock()
		repo := h.repo
		h.mu.Unlock()
		http.StripPrefix("/openssi", http.FileServer(noListing{http.Dir(repo)})).ServeHTTP(w, r)
	case p == "/consul/consul":
		serveBytes(w, r, "consul", h.consul)
	case p == "/consul/"+consulZipName():
		serveBytes(w, r, consulZipName(), h.zip)
	case p == "/consul/"+ConsulSumsName():
		serveBytes(w, r, ConsulSumsName(), []byte(h.sums))
	default:
		for prefix, proxy := range h.mirror {
			if strings.HasPrefix(p, prefix) && !strings.Contains(p, "..") {
				proxy.ServeHTTP(w, r)
				return
			}
		}
		http.NotFound(w, r)
	}
}

func serveBytes(w http.ResponseWriter, r *http.Request, name string, b []byte) {
	http.ServeContent(w, r, name, time.Unix(0, 0), bytes.NewReader(b))
}

// noListing serves files only: a directory without index.html is 404,
// so the repository's layout is not browsed (apt and dnf never ask).
type noListing struct{ fs http.FileSystem }

func (n noListing) Open(name string) (http.File, error) {
	f, err := n.fs.Open(name)
	if err != nil {
		return nil, err
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, err
	}
	if st.IsDir() {
		f.Close()
		return nil, os.ErrNotExist
	}
	return f, nil
}
