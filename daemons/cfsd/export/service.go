package export

import (
	"context"
	"sync"

	pb "github.com/openssi/openssi/proto/cfspeer/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// Service is the peer protocol's server: it hands each request to the
// export it names, for the client node ClientOf names (from the peer's
// certificate, never from the request).
type Service struct {
	pb.UnimplementedCfsPeerServer
	clientOf func(ctx context.Context) (string, error)

	mu      sync.RWMutex
	exports map[string]*Export
}

// NewService serves no export yet; clientOf says which node a request
// came from, or why it is refused.
func NewService(clientOf func(ctx context.Context) (string, error)) *Service {
	return &Service{clientOf: clientOf, exports: map[string]*Export{}}
}

// Add serves e; Remove stops serving the export name and returns it.
func (s *Service) Add(e *Export) {
	s.mu.Lock()
	s.exports[e.Name()] = e
	s.mu.Unlock()
}

// Remove stops serving the export name and returns it (nil if none).
func (s *Service) Remove(name string) *Export {
	s.mu.Lock()
	defer s.mu.Unlock()
	e := s.exports[name]
	delete(s.exports, name)
	return e
}

// CloseClient closes every file client has open on any export.
func (s *Service) CloseClient(client string) int {
	s.mu.RLock()
	defer s.mu.RUnlock()
	n := 0
	for _, e := range s.exports {
		n += e.CloseClient(client)
	}
	return n
}

type request interface {
	GetExport() string
	GetCaller() *pb.Caller
}

// call runs op for the request r on the export it names.
func call[R request, P any](s *Service, ctx context.Context, r R, op func(*Export, Op, R) P) (P, error) {
	var none P
	client, err := s.clientOf(ctx)
	if err != nil {
		return none, status.Errorf(codes.PermissionDenied, "cfsd: %v", err)
	}
	if err := checkCaller(r.GetCaller()); err != nil {
		return none, status.Errorf(codes.InvalidArgument, "cfsd: %v", err)
	}
	s.mu.RLock()
	e := s.exports[r.GetExport()]
	s.mu.RUnlock()
	if e == nil {
		return none, status.Errorf(codes.NotFound, "cfsd: this node does not serve the export %q", r.GetExport())
	}
	if !e.Enter() {
		return none, status.Errorf(codes.NotFound, "cfsd: this node no longer serves the export %q", r.GetExport())
	}
	defer e.Leave()
	return op(e, Op{Client: client, Cred: CredOf(r.GetCaller()), Ctx: ctx}, r), nil
}

func (s *Service) Root(ctx context.Context, r *pb.RootRequest) (*pb.Entry, error) {
	return call(s, ctx, r, (*Export).Root)
}
func (s *Service) Lookup(ctx context.Context, r *pb.NameRequest) (*pb.Entry, error) {
	return call(s, ctx, r, (*Export).Lookup)
}
func (s *Service) GetAttr(ctx context.Context, r *pb.HandleRequest) (*pb.AttrReply, error) {
	return call(s, ctx, r, (*Export).GetAttr)
}
func (s *Service) SetAttr(ctx context.Context, r *pb.SetAttrRequest) (*pb.AttrReply, error) {
	return call(s, ctx, r, (*Export).SetAttr)
}
func (s *Service) Readlink(ctx context.Context, r *pb.HandleRequest) (*pb.ReadlinkReply, error) {
	return call(s, ctx, r, (*Export).Readlink)
}
func (s *Service) ReadDir(ctx context.Context, r *pb.ReadDirRequest) (*pb.ReadDirReply, error) {
	return call(s, ctx, r, (*Export).ReadDir)
}
func (s *Service) Open(ctx context.Context, r *pb.OpenRequest) (*pb.OpenReply, error) {
	return call(s, ctx, r, (*Export).Open)
}
func (s *Service) Create(ctx context.Context, r *pb.CreateRequest) (*pb.OpenReply, error) {
	return call(s, ctx, r, (*Export).Create)
}
func (s *Service) Read(ctx context.Context, r *pb.ReadRequest) (*pb.ReadReply, error) {
	return call(s, ctx, r, (*Export).Read)
}
func (s *Service) Write(ctx context.Context, r *pb.WriteRequest) (*pb.WriteReply, error) {
	return call(s, ctx, r, (*Export).Write)
}
func (s *Service) Fsync(ctx context.Context, r *pb.FileRequest) (*pb.Errno, error) {
	return call(s, ctx, r, (*Export).Fsync)
}
func (s *Service) Release(ctx context.Context, r *pb.FileRequest) (*pb.Errno, error) {
	return call(s, ctx, r, (*Export).Release)
}
func (s *Service) Allocate(ctx context.Context, r *pb.AllocateRequest) (*pb.Errno, error) {
	return call(s, ctx, r, (*Export).Allocate)
}
func (s *Service) Lseek(ctx context.Context, r *pb.LseekRequest) (*pb.LseekReply, error) {
	return call(s, ctx, r, (*Export).Lseek)
}
func (s *Service) Mkdir(ctx context.Context, r *pb.MakeRequest) (*pb.Entry, error) {
	return call(s, ctx, r, (*Export).Mkdir)
}
func (s *Service) Mknod(ctx context.Context, r *pb.MakeRequest) (*pb.Entry, error) {
	return call(s, ctx, r, (*Export).Mknod)
}
func (s *Service) Symlink(ctx context.Context, r *pb.SymlinkRequest) (*pb.Entry, error) {
	return call(s, ctx, r, (*Export).Symlink)
}
func (s *Service) Link(ctx context.Context, r *pb.LinkRequest) (*pb.Entry, error) {
	return call(s, ctx, r, (*Export).Link)
}
func (s *Service) Unlink(ctx context.Context, r *pb.NameRequest) (*pb.Errno, error) {
	return call(s, ctx, r, (*Export).Unlink)
}
func (s *Service) Rmdir(ctx context.Context, r *pb.NameRequest) (*pb.Errno, error) {
	return call(s, ctx, r, (*Export).Rmdir)
}
func (s *Service) Rename(ctx context.Context, r *pb.RenameRequest) (*pb.Errno, error) {
	return call(s, ctx, r, (*Export).Rename)
}
func (s *Service) Statfs(ctx context.Context, r *pb.HandleRequest) (*pb.StatfsReply, error) {
	return call(s, ctx, r, (*Export).Statfs)
}
func (s *Service) GetXattr(ctx context.Context, r *pb.XattrRequest) (*pb.XattrReply, error) {
	return call(s, ctx, r, (*Export).GetXattr)
}
func (s *Service) ListXattr(ctx context.Context, r *pb.XattrRequest) (*pb.XattrReply, error) {
	return call(s, ctx, r, (*Export).ListXattr)
}
func (s *Service) SetXattr(ctx context.Context, r *pb.XattrRequest) (*pb.Errno, error) {
	return call(s, ctx, r, (*Export).SetXattr)
}
func (s *Service) RemoveXattr(ctx context.Context, r *pb.XattrRequest) (*pb.Errno, error) {
	return call(s, ctx, r, (*Export).RemoveXattr)
}
