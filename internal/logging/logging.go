// Package logging sets up the logrus logger every OpenSSI daemon uses.
//
// Logs go to stderr. Under systemd with stderr connected to the journal
// (JOURNAL_STREAM names stderr), each line is
//
//	<6>level=info msg="node joined" node=3
//
// with no timestamp (the journal records one) and the sd-daemon priority
// prefix (<3> error, <4> warning, <6> info, <7> debug and trace) so that
// journalctl -p filters and colours by level. Anywhere else each line is
// logrus' text format with a full timestamp:
//
//	time="2025-01-02T15:04:05.000000+01:00" level=info msg="node joined" node=3
//
// In both forms fields are key=value and a message or value holding a newline
// is quoted, so one entry is always one line.
package logging

import (
	"errors"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"

	"github.com/sirupsen/logrus"
)

// ErrUnknownLevel is matched (errors.Is) by the error for a level name that
// is not one of trace, debug, info, warn, error.
var ErrUnknownLevel = errors.New("logging: unknown level")

// TimestampFormat is the time format of the text (non-journal) form.
const TimestampFormat = "2006-01-02T15:04:05.000000Z07:00"

var levels = map[string]logrus.Level{
	"trace": logrus.TraceLevel,
	"debug": logrus.DebugLevel,
	"info":  logrus.InfoLevel,
	"warn":  logrus.WarnLevel,
	"error": logrus.ErrorLevel,
}

// New returns a logger writing to stderr at the given level (trace, debug,
// info, warn or error), in the journal form when stderr is the journal
// stream and the text form otherwise.
func New(level string) (*logrus.Logger, error) {
	return newLogger(level, os.Stderr, isJournal(os.Getenv("JOURNAL_STREAM"), os.Stderr))
}

func newLogger(level string, out io.Writer, journal bool) (*logrus.Logger, error) {
	l := logrus.New()
	l.SetOutput(out)
	l.SetFormatter(newFormatter(journal))
	if err := SetLevel(l, level); err != nil {
		return nil, err
	}
	return l, nil
}

// SetLevel changes l's level, e.g. after a SIGHUP re-read the configuration.
// It is safe while other goroutines log. On an unknown level l is unchanged
// and the error wraps [ErrUnknownLevel].
func SetLevel(l *logrus.Logger, level string) error {
	lv, ok := levels[level]
	if !ok {
		return fmt.Errorf("%w %q: want trace, debug, info, warn or error", ErrUnknownLevel, level)
	}
	l.SetLevel(lv)
	return nil
}

// newFormatter returns the journal or the text formatter.
func newFormatter(journal bool) logrus.Formatter {
	if journal {
		return &journalFormatter{text: logrus.TextFormatter{DisableTimestamp: true, DisableColors: true}}
	}
	return &logrus.TextFormatter{FullTimestamp: true, TimestampFormat: TimestampFormat}
}

// journalFormatter is logrus' text format without timestamp, each line
// prefixed with its sd-daemon priority.
type journalFormatter struct {
	text logrus.TextFormatter
}

// Format implements logrus.Formatter.
func (f *journalFormatter) Format(e *logrus.Entry) ([]byte, error) {
	b, err := f.text.Format(e)
	if err != nil {
		return nil, err
	}
	return append([]byte(priority(e.Level)), b...), nil
}

// priority returns the sd-daemon(3) prefix for a logrus level.
func priority(l logrus.Level) string {
	switch l {
	case logrus.PanicLevel, logrus.FatalLevel:
		return "<2>" // SD_CRIT
	case logrus.ErrorLevel:
		return "<3>" // SD_ERR
	case logrus.WarnLevel:
		return "<4>" // SD_WARNING
	case logrus.InfoLevel:
		return "<6>" // SD_INFO
	default:
		return "<7>" // SD_DEBUG: debug and trace
	}
}

// isJournal reports whether f is the journal stream named by the value of
// JOURNAL_STREAM ("<device>:<inode>", see systemd.exec(5)): systemd sets it
// for a service whose stderr is the journal, and a child whose stderr was
// redirected elsewhere inherits it, so the device and inode must match f. A
// value that cannot be parsed is trusted.
func isJournal(env string, f *os.File) bool {
	if env == "" {
		return false
	}
	devS, inoS, ok := strings.Cut(env, ":")
	dev, err1 := strconv.ParseUint(devS, 10, 64)
	ino, err2 := strconv.ParseUint(inoS, 10, 64)
	if !ok || err1 != nil || err2 != nil {
		return true
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		return false
	}
	return uint64(st.Dev) == dev && uint64(st.Ino) == ino
}
