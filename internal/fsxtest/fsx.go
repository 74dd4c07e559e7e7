// Package fsxtest is an fsx-style random file-system tester: from a seed, it
// does the same random operations (writes at random offsets, appends,
// reads, truncates that grow and shrink, holes, renames, links,
// unlinks of open files, directories, symbolic links, modes, fsync) in a
// directory under test and in a reference directory on a local file
// system, and fails at the first operation whose result differs: data,
// size, type, mode, link count, directory listing or errno. The same
// seed does the same operations, so a failure is reproduced by its seed.
//
// It is a test helper (cfsd's mount is tested against a local directory
// with it); nothing in a daemon links it.
package fsxtest

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
)

// Config says how long to run and over how many names.
type Config struct {
	Seed  uint64
	Ops   int
	Files int // names per directory (default 6)
	Dirs  int // subdirectories besides the top (default 2)
	// MaxSize is the largest offset a write or truncate reaches
	// (default 1 MiB); writes are at most 64 KiB.
	MaxSize int64
}

// Run does cfg.Ops operations in test and in ref (both empty
// directories) and returns the first difference, with the last
// operations done, or nil.
func Run(test, ref string, cfg Config) error {
	if cfg.Files <= 0 {
		cfg.Files = 6
	}
	if cfg.Dirs < 0 {
		cfg.Dirs = 0
	} else if cfg.Dirs == 0 {
		cfg.Dirs = 2
	}
	if cfg.MaxSize <= 0 {
		cfg.MaxSize = 1 << 20
	}
	for _, d := range []string{test, ref} {
		entries, err := os.ReadDir(d)
		if err != nil {
			return err
		}
		if len(entries) > 0 {
			return fmt.Errorf("fsx: %s is not empty", d)
		}
	}
	r := &runner{cfg: cfg, rnd: rand.New(rand.NewPCG(cfg.Seed, cfg.Seed^0x9e3779b97f4a7c15)), sides: [2]*side{{root: test}, {root: ref}}}
	for _, s := range r.sides {
		s.open = map[string]*os.File{}
	}
	defer r.closeAll()
	for i := 0; i < cfg.Ops; i++ {
		if err := r.step(i); err != nil {
			return fmt.Errorf("fsx seed %d, operation %d: %w\nlast operations:\n%s", cfg.Seed, i, err, strings.Join(r.log, "\n"))
		}
	}
	// At the end, every file's content and the whole tree again.
	r.closeAll()
	if err := r.compareTree(); err != nil {
		return fmt.Errorf("fsx seed %d, at the end: %w", cfg.Seed, err)
	}
	return nil
}

type side struct {
	root string
	open map[string]*os.File // by name relative to root
}

type runner struct {
	cfg   Config
	rnd   *rand.Rand
	sides [2]*side
	log   []string
}

func (r *runner) note(format string, args ...any) {
	r.log = append(r.log, fmt.Sprintf(format, args...))
	if len(r.log) > 12 {
		r.log = r.log[1:]
	}
}

func (r *runner) closeAll() {
	for _, s := range r.sides {
		for n, f := range s.open {
			f.Close()
			delete(s.open, n)
		}
	}
}

func (r *runner) dir() string {
	d := r.rnd.IntN(r.cfg.Dirs + 1)
	if d == 0 {
		return "."
	}
	return fmt.Sprintf("d%d", d)
}

func (r *runner) name() string {
	return filepath.Join(r.dir(), fmt.Sprintf("f%d", r.rnd.IntN(r.cfg.Files)))
}

// errnoOf is the errno inside err, for comparing the two sides.
func errnoOf(err error) string {
	if err == nil {
		return "ok"
	}
	var e syscall.Errno
	if errors.As(err, &e) {
		return e.Error()
	}
	if errors.Is(err, io.EOF) {
		return "EOF"
	}
	return "error: " + err.Error()
}

// both runs op on both sides and fails unless their outcomes agree.
func (r *runner) both(what string, op func(s *side) (string, error)) error {
	var out [2]string
	var errs [2]string
	for i, s := range r.sides {
		o, err := op(s)
		out[i], errs[i] = o, errnoOf(err)
	}
	r.note("%s: %s", what, errs[1])
	if errs[0] != errs[1] {
		return fmt.Errorf("%s: the test directory says %s, the reference %s", what, errs[0], errs[1])
	}
	if out[0] != out[1] {
		return fmt.Errorf("%s: the test directory gives %s, the reference %s", what, clip(out[0]), clip(out[1]))
	}
	return nil
}

func clip(s string) string {
	if len(s) > 200 {
		return s[:200] + "..."
	}
	return s
}

func (r *runner) data(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.rnd.IntN(256))
	}
	return b
}

// fileOf is the side's open file of name, opened read-write (and
// created) if it is not yet open.
func (s *side) fileOf(name string) (*os.File, error) {
	if f := s.open[name]; f != nil {
		return f, nil
	}
	f, err := os.OpenFile(filepath.Join(s.root, name), os.O_RDWR|os.O_CREATE, 0o644)
	if err != nil {
		return nil, err
	}
	s.open[name] = f
	return f, nil
}

func (r *runner) step(i int) error {
	name := r.name()
	switch k := r.rnd.IntN(100); {
	case k < 25: // write at a random offset
		off := r.rnd.Int64N(r.cfg.MaxSize)
		b := r.data(1 + r.rnd.IntN(64<<10))
		return r.both(fmt.Sprintf("write %s %d+%d", name, off, len(b)), func(s *side) (string, error) {
			f, err := s.fileOf(name)
			if err != nil {
				return "", err
			}
			n, err := f.WriteAt(b, off)
			return fmt.Sprint(n), err
		})
	case k < 32: // append through a fresh O_APPEND descriptor
		b := r.data(1 + r.rnd.IntN(8<<10))
		return r.both(fmt.Sprintf("append %s +%d", name, len(b)), func(s *side) (string, error) {
			f, err := os.OpenFile(filepath.Join(s.root, name), os.O_WRONLY|os.O_APPEND|os.O_CREATE, 0o644)
			if err != nil {
				return "", err
			}
			defer f.Close()
			n, err := f.Write(b)
			return fmt.Sprint(n), err
		})
	case k < 50: // read at a random offset, from an open file or a fresh one
		off := r.rnd.Int64N(r.cfg.MaxSize + 4096)
		n := 1 + r.rnd.IntN(128<<10)
		fresh := r.rnd.IntN(2) == 0
		return r.both(fmt.Sprintf("read %s %d+%d fresh=%v", name, off, n, fresh), func(s *side) (string, error) {
			var f *os.File
			var err error
			if fresh {
				f, err = os.Open(filepath.Join(s.root, name))
				if err == nil {
					defer f.Close()
				}
			} else {
				f, err = s.fileOf(name)
			}
			if err != nil {
				return "", err
			}
			buf := make([]byte, n)
			got, err := f.ReadAt(buf, off)
			if errors.Is(err, io.EOF) {
				err = nil
			}
			return fmt.Sprintf("%d bytes %x", got, digest(buf[:got])), err
		})
	case k < 58: // truncate, growing or shrinking
		size := r.rnd.Int64N(r.cfg.MaxSize)
		byFile := r.rnd.IntN(2) == 0
		return r.both(fmt.Sprintf("truncate %s %d byfile=%v", name, size, byFile), func(s *side) (string, error) {
			if byFile {
				f, err := s.fileOf(name)
				if err != nil {
					return "", err
				}
				return "", f.Truncate(size)
			}
			return "", os.Truncate(filepath.Join(s.root, name), size)
		})
	case k < 64: // stat
		return r.both("stat "+name, func(s *side) (string, error) { return statOf(filepath.Join(s.root, name)) })
	case k < 68: // close
		return r.both("close "+name, func(s *side) (string, error) {
			if f := s.open[name]; f != nil {
				delete(s.open, name)
				return "", f.Close()
			}
			return "", nil
		})
	case k < 73: // unlink (an open file stays usable)
		return r.both("unlink "+name, func(s *side) (string, error) { return "", os.Remove(filepath.Join(s.root, name)) })
	case k < 78: // rename over another name
		to := r.name()
		return r.both(fmt.Sprintf("rename %s %s", name, to), func(s *side) (string, error) {
			if err := os.Rename(filepath.Join(s.root, name), filepath.Join(s.root, to)); err != nil {
				return "", err
			}
			// The open file follows the inode, not the name.
			if f := s.open[name]; f != nil && name != to {
				if old := s.open[to]; old != nil {
					old.Close()
				}
				s.open[to] = f
				delete(s.open, name)
			}
			return "", nil
		})
	case k < 81: // hard link
		to := r.name()
		return r.both(fmt.Sprintf("link %s %s", name, to), func(s *side) (string, error) {
			return "", os.Link(filepath.Join(s.root, name), filepath.Join(s.root, to))
		})
	case k < 84: // symbolic link and its text
		to := r.name()
		return r.both(fmt.Sprintf("symlink %s -> %s", to, name), func(s *side) (string, error) {
			if err := os.Symlink(filepath.Base(name), filepath.Join(s.root, to)); err != nil {
				return "", err
			}
			return os.Readlink(filepath.Join(s.root, to))
		})
	case k < 87: // directories
		d := fmt.Sprintf("d%d", 1+r.rnd.IntN(max(r.cfg.Dirs, 1)))
		if r.rnd.IntN(3) == 0 {
			return r.both("rmdir "+d, func(s *side) (string, error) { return "", syscall.Rmdir(filepath.Join(s.root, d)) })
		}
		return r.both("mkdir "+d, func(s *side) (string, error) { return "", os.Mkdir(filepath.Join(s.root, d), 0o755) })
	case k < 90: // chmod
		mode := os.FileMode(0o600 + r.rnd.IntN(0o100))
		return r.both(fmt.Sprintf("chmod %s %o", name, mode), func(s *side) (string, error) {
			return "", os.Chmod(filepath.Join(s.root, name), mode)
		})
	case k < 93: // fsync
		return r.both("fsync "+name, func(s *side) (string, error) {
			f := s.open[name]
			if f == nil {
				return "not open", nil
			}
			return "", f.Sync()
		})
	case k < 96: // a whole directory's listing
		d := r.dir()
		return r.both("readdir "+d, func(s *side) (string, error) { return listing(filepath.Join(s.root, d)) })
	default: // the whole file's content through a fresh open
		return r.both("readfile "+name, func(s *side) (string, error) {
			b, err := os.ReadFile(filepath.Join(s.root, name))
			return fmt.Sprintf("%d bytes %x", len(b), digest(b)), err
		})
	}
}

// digest is a short fingerprint of data, for comparing reads.
func digest(b []byte) uint64 {
	h := uint64(14695981039346656037)
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

// statOf is what must agree of two files' lstat: type, mode, size,
// link count (not inode numbers, owners or times).
func statOf(p string) (string, error) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil {
		return "", err
	}
	size := st.Size
	if st.Mode&syscall.S_IFMT == syscall.S_IFDIR {
		size = 0 // directory sizes are the file system's own
	}
	return fmt.Sprintf("mode %o size %d nlink %d", st.Mode, size, st.Nlink), nil
}

// listing is a directory's sorted names with their stat.
func listing(dir string) (string, error) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return "", err
	}
	var b bytes.Buffer
	for _, e := range entries {
		st, err := statOf(filepath.Join(dir, e.Name()))
		if err != nil {
			return "", err
		}
		fmt.Fprintf(&b, "%s: %s; ", e.Name(), st)
	}
	return b.String(), nil
}

// compareTree compares every directory's listing and every regular
// file's content.
func (r *runner) compareTree() error {
	var names [2][]string
	for i, s := range r.sides {
		err := filepath.WalkDir(s.root, func(p string, d os.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if rel, _ := filepath.Rel(s.root, p); rel != "." {
				names[i] = append(names[i], rel) // the roots are the caller's
			}
			return nil
		})
		if err != nil {
			return err
		}
		slices.Sort(names[i])
	}
	if !slices.Equal(names[0], names[1]) {
		return fmt.Errorf("the trees differ: %v against %v", names[0], names[1])
	}
	for _, n := range names[1] {
		err := r.both("final "+n, func(s *side) (string, error) {
			p := filepath.Join(s.root, n)
			st, err := statOf(p)
			if err != nil || !strings.HasPrefix(st, "mode 10") {
				return st, err
			}
			b, err := os.ReadFile(p)
			return fmt.Sprintf("%s, %x", st, digest(b)), err
		})
		if err != nil {
			return err
		}
	}
	return nil
}
