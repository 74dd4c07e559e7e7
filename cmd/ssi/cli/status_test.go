package cli

import (
	"bytes"
	"encoding/json"
	"io"
	"path/filepath"
	"strings"
	"testing"

	"github.com/sirupsen/logrus"
	"google.golang.org/grpc"
	grpchealth "google.golang.org/grpc/health"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/openssi/openssi/daemons/vprocd/server"
	"github.com/openssi/openssi/internal/criu"
	"github.com/openssi/openssi/internal/localapi"
)

// serveVprocd serves, on <dir>/vprocd.sock, the health service (SERVING)
// and, when st is not nil, a one-node vprocd that found CRIU in state st
// (nil: a vprocd too old to say).
func serveVprocd(t *testing.T, st *criu.State) string {
	t.Helper()
	dir := t.TempDir()
	ln, _, err := localapi.Listen(filepath.Join(dir, "vprocd.sock"), "")
	if err != nil {
		t.Fatal(err)
	}
	g := grpc.NewServer(grpc.Creds(localapi.Credentials()))
	h := grpchealth.NewServer()
	h.SetServingStatus("", healthpb.HealthCheckResponse_SERVING)
	healthpb.RegisterHealthServer(g, h)
	if st != nil {
		log := logrus.New()
		log.SetOutput(io.Discard)
		srv := server.New(server.Config{Node: 1, Log: log, Migrate: server.MigrateConfig{CRIU: *st}})
		t.Cleanup(func() { srv.Close() })
		server.NewAPI(srv).Register(g)
	}
	go func() { _ = g.Serve(ln) }()
	t.Cleanup(g.Stop)
	return dir
}

// TestStatusCRIU: ssi status shows, in one line under vprocd, the CRIU
// state vprocd found at start, or why it could not say.
func TestStatusCRIU(t *testing.T) {
	ready := criu.State{Status: criu.Ready, Bin: "/usr/sbin/criu", Version: criu.Version{Major: 4, Minor: 2, Sublevel: 1}}
	for _, tt := range []struct {
		name string
		st   *criu.State
		line string
	}{
		{"ready", &ready, "criu: ready: criu 4.2.1 at /usr/sbin/criu"},
		{"too old", &criu.State{Status: criu.TooOld, Bin: "/usr/sbin/criu", Version: criu.Version{Major: 3, Minor: 17, Sublevel: 1}, Reason: "4.2 or later is needed"},
			"criu: too-old: criu 3.17.1 at /usr/sbin/criu: 4.2 or later is needed"},
		{"missing", &criu.State{Status: criu.Missing, Reason: "no criu on PATH\n(install it)"}, "criu: missing: no criu on PATH (install it)"},
		{"broken", &criu.State{Status: criu.Broken, Bin: "/opt/criu", Reason: "exec format error"}, "criu: broken: /opt/criu: exec format error"},
		{"check failed", &criu.State{Status: criu.CheckFailed, Bin: "/usr/sbin/criu", Version: criu.Version{Major: 4, Minor: 2}, Reason: "criu check: exit 1"},
			"criu: check-failed: criu 4.2.0 at /usr/sbin/criu: criu check: exit 1"},
		{"old vprocd", nil, "criu: unknown: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			dir := serveVprocd(t, tt.st)
			var out, errs bytes.Buffer
			if code := Main([]string{"--run-dir", dir, "status"}, &out, &errs); code != 1 { // the other daemons are not running
				t.Fatalf("exit %d, stderr %q", code, errs.String())
			}
			lines := strings.Split(out.String(), "\n")
			i := 0
			for i < len(lines) && !strings.HasPrefix(lines[i], "vprocd ") {
				i++
			}
			if i+1 >= len(lines) || !strings.Contains(lines[i], "SERVING") {
				t.Fatalf("no vprocd row SERVING in\n%s", out.String())
			}
			under := strings.TrimSpace(lines[i+1])
			if !strings.HasPrefix(under, tt.line) || (tt.st != nil && under != tt.line) {
				t.Fatalf("line under vprocd %q, want %q; all:\n%s", under, tt.line, out.String())
			}
			t.Log(under)
			// Aligned under DETAIL, and the only such line.
			if col := strings.Index(lines[0], "DETAIL"); strings.Index(lines[i+1], "criu:") != col {
				t.Errorf("criu line not under DETAIL:\n%s", out.String())
			}
			n := 0
			for _, l := range lines {
				if strings.HasPrefix(strings.TrimSpace(l), "criu:") {
					n++
				}
			}
			if n != 1 {
				t.Errorf("%d criu lines:\n%s", n, out.String())
			}
		})
	}

	// -o json: the state in vprocd's row.
	dir := serveVprocd(t, &ready)
	var out, errs bytes.Buffer
	Main([]string{"--run-dir", dir, "status", "-o", "json"}, &out, &errs)
	var rows []struct {
		Daemon string `json:"daemon"`
		CRIU   *struct {
			Status, Path, Version, Reason string
		} `json:"criu"`
	}
	if err := json.Unmarshal(out.Bytes(), &rows); err != nil {
		t.Fatalf("%v: %s", err, out.String())
	}
	for _, r := range rows {
		if (r.CRIU != nil) != (r.Daemon == "vprocd") {
			t.Errorf("%s: criu %+v", r.Daemon, r.CRIU)
		}
		if r.Daemon == "vprocd" && (r.CRIU.Status != "ready" || r.CRIU.Version != "4.2.1" || r.CRIU.Path != "/usr/sbin/criu" || r.CRIU.Reason != "") {
			t.Errorf("vprocd's criu %+v", *r.CRIU)
		}
	}
}
