package rpc

import (
	"context"
	"errors"
	"io"
	"testing"
	"time"

	healthpb "google.golang.org/grpc/health/grpc_health_v1"
)

func TestCallDeadlines(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	sCert, sKey := ca.Issue(t, svcID(fileTD, "openssi-clmsd.node1"))
	cCert, cKey := ca.Issue(t, svcID(fileTD, "openssi-dlmd.node2"))
	server, err := NewFileSource(writeFiles(t, dir, "s", sCert, sKey, ca.PEM))
	if err != nil {
		t.Fatal(err)
	}
	client, err := NewFileSource(writeFiles(t, dir, "c", cCert, cKey, ca.PEM))
	if err != nil {
		t.Fatal(err)
	}
	addr, log := serve(t, server)
	const def = 2 * time.Second
	conn, err := Dial(context.Background(), client, addr, "openssi-clmsd", WithDefaultTimeout(def))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	hc := healthpb.NewHealthClient(conn)

	long, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	tests := []struct {
		name     string
		ctx      context.Context
		stream   bool
		min, max time.Duration // 0, 0: no deadline
	}{
		{"unary without deadline gets the default", context.Background(), false, time.Second, def},
		{"unary keeps its own deadline", long, false, 59 * time.Minute, time.Hour},
		{"stream without deadline gets the default", context.Background(), true, time.Second, def},
		{"stream keeps its own deadline", long, true, 59 * time.Minute, time.Hour},
		{"unary marked WithoutTimeout has none", WithoutTimeout(context.Background()), false, 0, 0},
		{"stream marked WithoutTimeout has none", WithoutTimeout(context.Background()), true, 0, 0},
		{"WithoutTimeout keeps a deadline of its own", WithoutTimeout(long), true, 59 * time.Minute, time.Hour},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.stream {
				ctx, cancel := context.WithCancel(tt.ctx)
				defer cancel()
				w, err := hc.Watch(ctx, &healthpb.HealthCheckRequest{})
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Recv(); err != nil && err != io.EOF {
					t.Fatal(err)
				}
			} else if _, err := hc.Check(tt.ctx, &healthpb.HealthCheckRequest{}); err != nil {
				t.Fatal(err)
			}
			got := log.last().deadline
			if got < tt.min || got > tt.max {
				t.Fatalf("server saw deadline in %v, want in [%v, %v]", got, tt.min, tt.max)
			}
		})
	}
}

func TestDialUnreachable(t *testing.T) {
	dir := t.TempDir()
	ca := newTestCA(t, "ca")
	c, k := ca.Issue(t, svcID(fileTD, "openssi-dlmd.node2"))
	src, err := NewFileSource(writeFiles(t, dir, "c", c, k, ca.PEM))
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + itoa(freePorts(t, 1)[0]) // nothing listens
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	conn, err := Dial(ctx, src, addr, "openssi-clmsd")
	if err == nil {
		conn.Close()
		t.Fatal("Dial to a closed port succeeded")
	}
	if !errors.Is(err, ErrUnreachable) {
		t.Fatalf("Dial to a closed port: %v, want ErrUnreachable", err)
	}
}
