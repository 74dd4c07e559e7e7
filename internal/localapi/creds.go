package localapi

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strconv"
	"strings"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
)

// Cred is the identity of the process at the other end of a local API
// connection, as the kernel reported it when the connection was accepted.
type Cred struct {
	PID int32  // process id of the caller
	UID uint32 // effective user id of the caller
	GID uint32 // effective group id of the caller
	// Groups are the caller's supplementary groups when it connected
	// (SO_PEERGROUPS; on kernels without it, read from /proc/<pid> at
	// accept time).
	Groups []uint32
}

// String formats the credential for logs and error messages.
func (c Cred) String() string {
	return fmt.Sprintf("pid %d uid %d gid %d", c.PID, c.UID, c.GID)
}

// AuthType is the [credentials.AuthInfo] type name of [AuthInfo].
const AuthType = "peercred"

// AuthInfo is the [credentials.AuthInfo] that [Credentials] attaches to
// every connection; handlers normally use [CallerFrom] instead.
type AuthInfo struct {
	credentials.CommonAuthInfo
	// Cred is the peer's identity from SO_PEERCRED and SO_PEERGROUPS.
	Cred Cred
	// Files is the connection's queue of files passed, with
	// [FileCredentials]; nil otherwise.
	Files *Files
}

// AuthType implements [credentials.AuthInfo].
func (AuthInfo) AuthType() string { return AuthType }

// Credentials returns the gRPC transport credentials for a local API
// server: no encryption (the kernel carries the bytes), and the peer's
// pid/uid/gid read with SO_PEERCRED and its supplementary groups with
// SO_PEERGROUPS during the handshake. Connections that
// are not Unix sockets are refused.
//
//	srv := grpc.NewServer(grpc.Creds(localapi.Credentials()))
func Credentials() credentials.TransportCredentials { return peerCreds{} }

type peerCreds struct{}

// ClientHandshake also reads SO_PEERCRED, so a client using these
// credentials learns who serves the socket.
func (peerCreds) ClientHandshake(_ context.Context, _ string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return handshake(conn)
}

func (peerCreds) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return handshake(conn)
}

func handshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	cred, err := peerCred(conn)
	if err != nil {
		return nil, nil, err
	}
	return conn, authInfo(cred), nil
}

// authInfo is the AuthInfo of a caller of a local socket.
func authInfo(cred Cred) AuthInfo {
	// A Unix socket never leaves the kernel: as private as it gets.
	return AuthInfo{
		CommonAuthInfo: credentials.CommonAuthInfo{SecurityLevel: credentials.PrivacyAndIntegrity},
		Cred:           cred,
	}
}

func (peerCreds) Info() credentials.ProtocolInfo {
	return credentials.ProtocolInfo{SecurityProtocol: AuthType}
}

func (peerCreds) Clone() credentials.TransportCredentials { return peerCreds{} }

// OverrideServerName implements the (deprecated) interface method; there is
// no server name on a Unix socket.
func (peerCreds) OverrideServerName(string) error { return nil }

// peerCred reads SO_PEERCRED and SO_PEERGROUPS from a Unix socket
// connection: both are the peer's credentials when it connected, so they
// name the process that connected even if it is gone and its pid reused.
func peerCred(conn net.Conn) (Cred, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return Cred{}, errors.New("localapi: connection has no file descriptor")
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return Cred{}, fmt.Errorf("localapi: peer credentials: %w", err)
	}
	var (
		ucred  *unix.Ucred
		groups []uint32
		domain int
		serr   error
		gerr   error
	)
	if err := raw.Control(func(fd uintptr) {
		domain, serr = unix.GetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DOMAIN)
		if serr != nil || domain != unix.AF_UNIX {
			return
		}
		if ucred, serr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED); serr != nil {
			return
		}
		groups, gerr = peerGroups(int(fd))
	}); err != nil {
		return Cred{}, fmt.Errorf("localapi: peer credentials: %w", err)
	}
	if serr != nil {
		return Cred{}, fmt.Errorf("localapi: SO_PEERCRED: %w", serr)
	}
	if domain != unix.AF_UNIX {
		return Cred{}, fmt.Errorf("localapi: connection from %v is not a Unix socket", conn.RemoteAddr())
	}
	if errors.Is(gerr, unix.ENOPROTOOPT) {
		// Before Linux 4.13: the process's groups now, the best there
		// is; none (fewer rights, never more) when it cannot be read.
		groups, gerr = procGroups(ucred.Pid)
		if gerr != nil {
			groups, gerr = nil, nil
		}
	}
	if gerr != nil {
		return Cred{}, fmt.Errorf("localapi: supplementary groups of pid %d: %w", ucred.Pid, gerr)
	}
	return Cred{PID: ucred.Pid, UID: ucred.Uid, GID: ucred.Gid, Groups: groups}, nil
}

// peerGroups reads SO_PEERGROUPS (x/sys has no getter for a list of
// gids: GetsockoptString stops at the first zero byte).
func peerGroups(fd int) ([]uint32, error) {
	buf := make([]uint32, 32)
	for {
		size := uint32(len(buf) * 4)
		_, _, e := unix.Syscall6(unix.SYS_GETSOCKOPT, uintptr(fd), unix.SOL_SOCKET, unix.SO_PEERGROUPS,
			uintptr(unsafe.Pointer(&buf[0])), uintptr(unsafe.Pointer(&size)), 0)
		switch {
		case e == unix.ERANGE && int(size/4) > len(buf):
			buf = make([]uint32, size/4) // size is what the kernel needs
		case e != 0:
			return nil, e
		default:
			if size == 0 {
				return nil, nil
			}
			return buf[: size/4 : size/4], nil
		}
	}
}

// procGroups reads a process's supplementary groups from /proc.
func procGroups(pid int32) ([]uint32, error) {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return nil, err
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Groups:"); ok {
			var out []uint32
			for _, g := range strings.Fields(rest) {
				n, err := strconv.ParseUint(g, 10, 32)
				if err != nil {
					return nil, fmt.Errorf("/proc/%d/status: group %q: %w", pid, g, err)
				}
				out = append(out, uint32(n))
			}
			return out, nil
		}
	}
	if err := sc.Err(); err != nil {
		return nil, err
	}
	return nil, fmt.Errorf("/proc/%d/status has no Groups line", pid)
}

// CallerFrom returns the identity of the process that made the call
// handled under ctx. ok is false when the server does not use
// [Credentials] (or ctx is not a gRPC handler context).
func CallerFrom(ctx context.Context) (Cred, bool) {
	p, ok := peer.FromContext(ctx)
	if !ok || p.AuthInfo == nil {
		return Cred{}, false
	}
	ai, ok := p.AuthInfo.(AuthInfo)
	if !ok {
		return Cred{}, false
	}
	return ai.Cred, true
}

// RequireRoot returns nil when the caller is root (uid 0) and otherwise a
// gRPC PermissionDenied status saying that only root may do this. Like
// RequireUID's, its message is the detail only: the code already says
// "permission denied", and the client library adds its own prefix.
func RequireRoot(ctx context.Context) error {
	c, ok := CallerFrom(ctx)
	if !ok {
		return status.Error(codes.PermissionDenied, "caller identity unknown; only root may do this")
	}
	if c.UID != 0 {
		return status.Errorf(codes.PermissionDenied, "only root may do this (caller is uid %d, pid %d)", c.UID, c.PID)
	}
	return nil
}

// RequireUID returns nil when the caller is root or runs as uid (the owner
// of the object acted on), and otherwise a gRPC PermissionDenied status
// saying who may do it.
func RequireUID(ctx context.Context, uid uint32) error {
	c, ok := CallerFrom(ctx)
	if !ok {
		return status.Errorf(codes.PermissionDenied, "caller identity unknown; only root or uid %d may do this", uid)
	}
	if c.UID != 0 && c.UID != uid {
		return status.Errorf(codes.PermissionDenied, "only root or uid %d may do this (caller is uid %d, pid %d)", uid, c.UID, c.PID)
	}
	return nil
}
