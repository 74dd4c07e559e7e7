// Package stdioflow holds the sizes that carry a remote program's stdio:
// how much one message holds and the gRPC flow-control windows and
// buffers of the connections it crosses (the caller's to its vprocd,
// vprocd's to the target's). Both ends of each hop use them.
//
// gRPC's defaults (a 64 KiB window grown by its bandwidth estimate, 32 KiB
// read and write buffers) and 32 KiB messages made `ssi exec -- cat`
// slower than `ssh host cat`: each message crosses two hops each way, and
// per message and per window update costs dominated.
package stdioflow

import (
	"google.golang.org/grpc"
	"google.golang.org/grpc/experimental"
)

// Chunk is the most stdio bytes one message carries: just under 1 MiB,
// so that a message and its few bytes of framing fit one of the pool's
// 1 MiB buffers (everything over 32 KiB is served from those; gRPC's
// default pool, which also zeroes the whole buffer on each use, is not
// used on these connections: see pool). gRPC's default limit on a
// received message is 4 MiB.
const Chunk = 1<<20 - 1<<10

// FirstRead is the buffer of a stream's first read: most programs write
// little, and a Chunk-sized buffer for each of their streams cost every
// exec megabytes of zeroed memory (a remote `true` took twice as long).
const FirstRead = 32 << 10

// NextRead returns the size of the buffer to read into after a read of k
// bytes into one of size: a read that filled its buffer is a fast writer,
// read four times as much at a time, up to a Chunk.
func NextRead(size, k int) int {
	if k >= size && size < Chunk {
		return min(4*size, Chunk)
	}
	return size
}

// The windows are fixed (setting them turns off gRPC's estimate, which on
// a fast link starts at 64 KiB): a stream may have 2 MiB in flight (as an
// OpenSSH channel), a connection, which carries every exec between two
// nodes, 8 MiB.
const (
	streamWindow = 2 << 20
	connWindow   = 8 << 20
	bufferSize   = 256 << 10
)

// ServerOptions are the options of a server that stdio streams cross:
// the windows and buffers above, and the pool and codec that do not zero
// every buffer.
func ServerOptions() []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.InitialWindowSize(streamWindow),
		grpc.InitialConnWindowSize(connWindow),
		grpc.ReadBufferSize(bufferSize),
		grpc.WriteBufferSize(bufferSize),
		experimental.BufferPool(pool),
		grpc.ForceServerCodecV2(Codec{}),
	}
}

// DialOptions are the options of a client connection that stdio streams
// cross (as ServerOptions).
func DialOptions() []grpc.DialOption {
	return []grpc.DialOption{
		grpc.WithInitialWindowSize(streamWindow),
		grpc.WithInitialConnWindowSize(connWindow),
		grpc.WithReadBufferSize(bufferSize),
		grpc.WithWriteBufferSize(bufferSize),
		experimental.WithBufferPool(pool),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec{})),
	}
}
