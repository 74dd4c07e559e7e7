package runner

// A gated program starts as this same binary (/proc/self/exe) under the
// name gate.Name, already with the caller's credentials, directory and
// environment, and blocks on a pipe (descriptor gate.FD) until Open: then
// it executes the program in its place (package gate, whose init runs the
// gate in any binary that links this package, before the inits of nearly
// every other package).

// Open lets a gated program run (no-op otherwise).
func (p *Proc) Open() {
	if p.gate != nil {
		_, _ = p.gate.Write([]byte{1})
		p.gate.Close()
		p.gate = nil
	}
}
