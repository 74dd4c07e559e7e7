package gate

import "syscall"

// A warm gate is started before anyone asks for a program: as its
// caller's identity, alone in argv (Name and nothing else), with no
// program yet, and vprocd puts it in a scope of its own while it waits.
// When a request of that same identity comes, vprocd sends it a Launch
// over descriptor FD, a stream socket, together with the program's
// standard descriptors (SCM_RIGHTS): the gate takes them as 0, 1 and 2,
// makes its process group or session, enters the directory, writes one
// byte back (its group now exists, signals may be sent to it) and
// executes the program. So a request waits neither for a new process nor
// for systemd: both were done ahead of it.

// Launch is what a warm gate is told to run.
type Launch struct {
	// Path is the program file, Argv its arguments (Argv[0] its name).
	Path string
	Argv []string
	// Env is its whole environment; Dir the directory it runs in.
	Env []string
	Dir string
	// Setsid makes it a new session's leader (a terminal, a detached
	// program), Setctty then takes descriptor 0 as its controlling
	// terminal; Setpgid makes it a new process group's leader.
	Setsid, Setctty, Setpgid bool
}

// MaxLaunch bounds an encoded Launch: Linux's own bound on a program's
// arguments and environment together (ARG_MAX of a 8 MiB stack) with room
// for the rest.
const MaxLaunch = 2<<20 + 64<<10

// launch flags
const (
	flagSetsid = 1 << iota
	flagSetctty
	flagSetpgid
)

// launchVersion is the first byte of an encoded Launch.
const launchVersion = 1

// Encode returns l as the bytes a warm gate reads: a 4-byte big-endian
// length of what follows, a version byte, a flags byte, then Path, Dir,
// len(Argv), Argv..., len(Env), Env..., every string and count as a
// 4-byte big-endian length or number (a string followed by its bytes).
func Encode(l Launch) []byte {
	b := make([]byte, 4, 64)
	b = append(b, launchVersion, flagsOf(l))
	b = appendString(b, l.Path)
	b = appendString(b, l.Dir)
	b = appendStrings(b, l.Argv)
	b = appendStrings(b, l.Env)
	putUint32(b, uint32(len(b)-4))
	return b
}

func flagsOf(l Launch) byte {
	var f byte
	if l.Setsid {
		f |= flagSetsid
	}
	if l.Setctty {
		f |= flagSetctty
	}
	if l.Setpgid {
		f |= flagSetpgid
	}
	return f
}

func putUint32(b []byte, v uint32) {
	b[0], b[1], b[2], b[3] = byte(v>>24), byte(v>>16), byte(v>>8), byte(v)
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendString(b []byte, s string) []byte {
	return append(appendUint32(b, uint32(len(s))), s...)
}

func appendStrings(b []byte, ss []string) []byte {
	b = appendUint32(b, uint32(len(ss)))
	for _, s := range ss {
		b = appendString(b, s)
	}
	return b
}

// errBadLaunch is Decode's one error: what is not a Launch Encode made.
var errBadLaunch = syscall.EINVAL

// Decode reads a Launch from body, the bytes after Encode's length.
// Anything but what Encode makes (a short or long body, a count past the
// end, an unknown version or flag, an empty Path or Argv, a NUL inside a
// string that execve would cut) is an error.
func Decode(body []byte) (Launch, error) {
	d := decoder{b: body}
	var l Launch
	if len(body) < 2 || body[0] != launchVersion || body[1]&^(flagSetsid|flagSetctty|flagSetpgid) != 0 {
		return l, errBadLaunch
	}
	f := body[1]
	l.Setsid, l.Setctty, l.Setpgid = f&flagSetsid != 0, f&flagSetctty != 0, f&flagSetpgid != 0
	d.b = body[2:]
	l.Path = d.string()
	l.Dir = d.string()
	l.Argv = d.strings()
	l.Env = d.strings()
	if d.bad || len(d.b) != 0 || l.Path == "" || len(l.Argv) == 0 || (l.Setctty && !l.Setsid) || (l.Setsid && l.Setpgid) {
		return Launch{}, errBadLaunch
	}
	return l, nil
}

type decoder struct {
	b   []byte
	bad bool
}

func (d *decoder) uint32() uint32 {
	if len(d.b) < 4 {
		d.bad = true
		d.b = nil
		return 0
	}
	v := uint32(d.b[0])<<24 | uint32(d.b[1])<<16 | uint32(d.b[2])<<8 | uint32(d.b[3])
	d.b = d.b[4:]
	return v
}

func (d *decoder) string() string {
	n := d.uint32()
	if d.bad || uint64(n) > uint64(len(d.b)) {
		d.bad = true
		d.b = nil
		return ""
	}
	s := d.b[:n]
	d.b = d.b[n:]
	for _, c := range s {
		if c == 0 {
			d.bad = true
		}
	}
	return string(s)
}

func (d *decoder) strings() []string {
	n := d.uint32()
	// Each string takes at least its 4-byte length: a count past what
	// is left is a lie, not an allocation to make.
	if d.bad || uint64(n) > uint64(len(d.b))/4 {
		d.bad = true
		d.b = nil
		return nil
	}
	ss := make([]string, 0, n)
	for i := uint32(0); i < n && !d.bad; i++ {
		ss = append(ss, d.string())
	}
	return ss
}

// warm is a warm gate's life: wait for a Launch and its descriptors on
// FD, take them, say so, and execute the program; it returns only when
// something failed, with the status a shell gives. vprocd closing its end
// first (it stopped, or the gate was idle too long) ends it quietly.
func warm() int {
	l, fds, ok := receive()
	if !ok {
		return exitRefused
	}
	for i, fd := range fds {
		if fd != i {
			if err := syscall.Dup3(fd, i, 0); err != nil {
				return refuse("take descriptor", err)
			}
		}
	}
	for i, fd := range fds {
		if fd > 2 && !takenAgain(fds[:i], fd) {
			_ = syscall.Close(fd)
		}
	}
	switch {
	case l.Setsid:
		if _, err := syscall.Setsid(); err != nil {
			return refuse("new session", err)
		}
		if l.Setctty {
			if _, _, e := syscall.RawSyscall(syscall.SYS_IOCTL, 0, syscall.TIOCSCTTY, 0); e != 0 {
				return refuse("take the terminal", e)
			}
		}
	case l.Setpgid:
		if err := syscall.Setpgid(0, 0); err != nil {
			return refuse("new process group", err)
		}
	}
	if err := syscall.Chdir(l.Dir); err != nil {
		return refuse(l.Dir, err)
	}
	if _, err := syscall.Write(FD, []byte{1}); err != nil {
		return exitRefused // vprocd gave up on it
	}
	_ = syscall.Close(FD)
	err := syscall.Exec(l.Path, l.Argv, l.Env)
	msg := l.Argv[0] + ": " + Reason(err) + "\n"
	_, _ = syscall.Write(2, []byte(msg))
	if err == syscall.ENOENT {
		return exitNotFound
	}
	return exitNotExecutable
}

func takenAgain(fds []int, fd int) bool {
	for _, f := range fds {
		if f == fd {
			return true
		}
	}
	return false
}

// refuse says on the program's stderr what failed before it could run.
func refuse(what string, err error) int {
	_, _ = syscall.Write(2, []byte("vprocd: "+what+": "+Reason(err)+"\n"))
	return exitRefused
}

// receive reads one encoded Launch and the descriptors sent with its
// first bytes (none, or 0, 1 and 2 to be) from FD.
func receive() (Launch, []int, bool) {
	head := make([]byte, 64<<10)
	oob := make([]byte, syscall.CmsgSpace(3*4))
	n, oobn, _, _, err := syscall.Recvmsg(FD, head, oob, syscall.MSG_CMSG_CLOEXEC)
	for err == syscall.EINTR {
		n, oobn, _, _, err = syscall.Recvmsg(FD, head, oob, syscall.MSG_CMSG_CLOEXEC)
	}
	if err != nil || n < 4 {
		return Launch{}, nil, false
	}
	var fds []int
	if oobn > 0 {
		msgs, err := syscall.ParseSocketControlMessage(oob[:oobn])
		if err != nil || len(msgs) != 1 {
			return Launch{}, nil, false
		}
		if fds, err = syscall.ParseUnixRights(&msgs[0]); err != nil || (len(fds) != 0 && len(fds) != 3) {
			return Launch{}, nil, false
		}
	}
	size := int(uint32(head[0])<<24 | uint32(head[1])<<16 | uint32(head[2])<<8 | uint32(head[3]))
	if size > MaxLaunch || n-4 > size {
		return Launch{}, nil, false
	}
	body := make([]byte, size)
	got := copy(body, head[4:n])
	for got < size {
		k, err := syscall.Read(FD, body[got:])
		if err == syscall.EINTR {
			continue
		}
		if err != nil || k <= 0 {
			return Launch{}, nil, false
		}
		got += k
	}
	l, err := Decode(body)
	if err != nil {
		return Launch{}, nil, false
	}
	return l, fds, true
}
