package server

import (
	"context"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/openssi/openssi/daemons/vprocd/cpid"
	"github.com/openssi/openssi/daemons/vprocd/migrate"
	vprocpeerv1 "github.com/openssi/openssi/proto/vprocpeer/v1"
)

// TestImagesBounded: a peer (authenticated, node 1) that opens Image
// streams announcing large states and never finishes them gets at most
// maxIncomingImages of them read at once; the next is refused with
// ResourceExhausted instead of another state's worth of memory, and one
// is taken again once a stream ends.
func TestImagesBounded(t *testing.T) {
	c := startCluster(t, 2)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := c.node(1).srv.peer(ctx, 2)
	if err != nil {
		t.Fatal(err)
	}
	cl := vprocpeerv1.NewVprocMigratePeerClient(conn)
	open := func(i int) (vprocpeerv1.VprocMigratePeer_ImageClient, context.CancelFunc) {
		sctx, scancel := context.WithCancel(ctx)
		st, err := cl.Image(sctx)
		if err != nil {
			t.Fatal(err)
		}
		mv := migrate.Move{ID: migrate.ID{Source: 1, Inc: 7, N: uint64(i + 1)}, CPID: uint64(cpid.MustMake(1, int32(100+i))), Origin: 1, Source: 1, Target: 2,
			Mech: migrate.Cooperative}
		first := &vprocpeerv1.ImageChunk{Message: messageProto(migrate.Message{Kind: migrate.MsgImage, From: 1, To: 2, Move: mv}),
			Program: &vprocpeerv1.MovedProgram{Argv: [][]byte{[]byte("/bin/true")}}, Size: 32 << 20}
		if err := st.Send(first); err != nil {
			t.Fatal(err)
		}
		return st, scancel
	}
	var cancels []context.CancelFunc
	for i := range maxIncomingImages {
		_, sc := open(i)
		cancels = append(cancels, sc)
	}
	// The server reads each first message in its own time: wait until
	// all are counted.
	srv := c.node(2).srv
	if !waitFor(func() bool {
		srv.mig.mu.Lock()
		defer srv.mig.mu.Unlock()
		return srv.mig.receiving == maxIncomingImages
	}) {
		t.Fatalf("%d images being received, want %d", srv.mig.receiving, maxIncomingImages)
	}
	st, sc := open(maxIncomingImages)
	defer sc()
	if _, err := st.CloseAndRecv(); status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("image %d: %v, want ResourceExhausted", maxIncomingImages+1, err)
	}
	cancels[0]()
	if !waitFor(func() bool {
		srv.mig.mu.Lock()
		defer srv.mig.mu.Unlock()
		return srv.mig.receiving == maxIncomingImages-1
	}) {
		t.Fatal("a cancelled image stream is still counted")
	}
	for _, sc := range cancels[1:] {
		sc()
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(cond func() bool) bool {
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}
