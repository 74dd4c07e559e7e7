package load

import (
	"fmt"
	"path"
	"strings"
	"unicode"
)

// MaxProgramName bounds a program name registered for load leveling (a
// file name: 255 bytes on Linux).
const MaxProgramName = 255

// CheckProgram checks a program name registered for load leveling: what
// ProgramOf returns of a command, non-empty, at most MaxProgramName bytes,
// no '/', no space or control character, not "." or "..".
func CheckProgram(name string) error {
	switch {
	case name == "":
		return fmt.Errorf("load: a program name is empty")
	case len(name) > MaxProgramName:
		return fmt.Errorf("load: program name %.40q... is longer than %d bytes", name, MaxProgramName)
	case name == "." || name == "..":
		return fmt.Errorf("load: %q is not a program name", name)
	case strings.ContainsRune(name, '/'):
		return fmt.Errorf("load: program name %q has a '/': give the name without its directory", name)
	case strings.ContainsFunc(name, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) || r == unicode.ReplacementChar }):
		return fmt.Errorf("load: program name %q has a space or control character", name)
	}
	return nil
}

// ProgramOf returns the program name of a command's argv[0], as load
// leveling matches it: its last path element ("/usr/bin/make" is "make").
func ProgramOf(argv0 string) string {
	if argv0 == "" {
		return ""
	}
	return path.Base(argv0)
}
