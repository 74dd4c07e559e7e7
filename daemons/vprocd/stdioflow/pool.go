package stdioflow

import (
	"sync"

	"google.golang.org/grpc/mem"
)

// poolTiers are the capacities of the buffers pool keeps, as gRPC's
// default pool: small messages and control frames, a page, an HTTP/2
// frame (16 KiB), io.Copy's 32 KiB, and 1 MiB, which holds a Chunk and its
// framing. Larger requests are allocated and not kept.
var poolTiers = [...]int{256, 4 << 10, 16 << 10, 32 << 10, 1 << 20}

// dirtyPool is gRPC's tiered buffer pool without the zeroing: gRPC's
// default pool clears the whole buffer on every Get, which for stdio
// (1 MiB buffers, one per message at each marshal and each unmarshal of
// a large message) cost more CPU than the copies. gRPC fills every byte
// of a buffer it takes (a read of exactly that length, or a marshal)
// before it uses it, so what a buffer held before is never read; and the
// buffers never leave the process.
type dirtyPool struct {
	tiers [len(poolTiers)]sync.Pool
}

// pool is the one pool of the process's stdio connections.
var pool = &dirtyPool{}

var _ mem.BufferPool = pool

// tierOf returns the index of the smallest tier holding n bytes, or -1.
func tierOf(n int) int {
	for i, c := range poolTiers {
		if n <= c {
			return i
		}
	}
	return -1
}

// Get returns a buffer of length n, its content undefined.
func (p *dirtyPool) Get(n int) *[]byte {
	i := tierOf(n)
	if i < 0 {
		b := make([]byte, n)
		return &b
	}
	if bp, ok := p.tiers[i].Get().(*[]byte); ok {
		*bp = (*bp)[:n]
		return bp
	}
	b := make([]byte, n, poolTiers[i])
	return &b
}

// Put keeps b for a later Get of the largest tier its capacity holds; a
// buffer smaller than every tier, or larger than the largest, is dropped.
func (p *dirtyPool) Put(bp *[]byte) {
	if i := putTier(cap(*bp)); i >= 0 {
		*bp = (*bp)[:0]
		p.tiers[i].Put(bp)
	}
}

// putTier returns the tier a buffer of capacity c is kept in, or -1.
func putTier(c int) int {
	last := len(poolTiers) - 1
	if c > poolTiers[last] {
		return -1
	}
	for i := last; i >= 0; i-- {
		if c >= poolTiers[i] {
			return i
		}
	}
	return -1
}
