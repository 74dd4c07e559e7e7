package logging

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"syscall"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestJournalFormat(t *testing.T) {
	var buf bytes.Buffer
	l, err := newLogger("trace", &buf, true)
	if err != nil {
		t.Fatal(err)
	}
	l.WithField("node", 3).Info("node joined")
	l.WithFields(logrus.Fields{"b": "two words", "a": 1}).Warn("skew")
	l.Error("line one\nline two")
	l.Debug("dbg")
	l.Trace("trc")
	want := `<6>level=info msg="node joined" node=3
<4>level=warning msg=skew a=1 b="two words"
<3>level=error msg="line one\nline two"
<7>level=debug msg=dbg
<7>level=trace msg=trc
`
	if got := buf.String(); got != want {
		t.Errorf("journal output:\n%s\nwant:\n%s", got, want)
	}
}

func TestTextFormat(t *testing.T) {
	var buf bytes.Buffer
	l, err := newLogger("info", &buf, false)
	if err != nil {
		t.Fatal(err)
	}
	l.WithField("node", 3).Info("node joined")
	l.Debug("hidden")
	l.Error("a\nb")
	re := regexp.MustCompile(`^time="\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}(Z|[+-]\d\d:\d\d)" level=info msg="node joined" node=3
time="[^"]+" level=error msg="a\\nb"
$`)
	if got := buf.String(); !re.MatchString(got) {
		t.Errorf("text output:\n%s", got)
	}
}

func TestPriority(t *testing.T) {
	for l, want := range map[logrus.Level]string{
		logrus.PanicLevel: "<2>", logrus.FatalLevel: "<2>", logrus.ErrorLevel: "<3>",
		logrus.WarnLevel: "<4>", logrus.InfoLevel: "<6>", logrus.DebugLevel: "<7>", logrus.TraceLevel: "<7>",
	} {
		if got := priority(l); got != want {
			t.Errorf("priority(%v) = %s, want %s", l, got, want)
		}
	}
}

func TestSetLevel(t *testing.T) {
	l := logrus.New()
	for name, want := range map[string]logrus.Level{
		"trace": logrus.TraceLevel, "debug": logrus.DebugLevel, "info": logrus.InfoLevel,
		"warn": logrus.WarnLevel, "error": logrus.ErrorLevel,
	} {
		if err := SetLevel(l, name); err != nil || l.GetLevel() != want {
			t.Errorf("SetLevel(%s) = %v, level %v", name, err, l.GetLevel())
		}
	}
	for _, bad := range []string{"", "INFO", "warning", "fatal"} {
		l.SetLevel(logrus.InfoLevel)
		err := SetLevel(l, bad)
		if !errors.Is(err, ErrUnknownLevel) || l.GetLevel() != logrus.InfoLevel {
			t.Errorf("SetLevel(%q) = %v, level %v", bad, err, l.GetLevel())
		}
	}
	want := `logging: unknown level "verbose": want trace, debug, info, warn or error`
	if err := SetLevel(l, "verbose"); err == nil || err.Error() != want {
		t.Errorf("SetLevel(verbose) = %v, want %s", err, want)
	}
}

func TestIsJournal(t *testing.T) {
	f, err := os.CreateTemp(t.TempDir(), "stderr")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st syscall.Stat_t
	if err := syscall.Fstat(int(f.Fd()), &st); err != nil {
		t.Fatal(err)
	}
	match := fmt.Sprintf("%d:%d", st.Dev, st.Ino)
	other := fmt.Sprintf("%d:%d", st.Dev, st.Ino+1)
	tests := []struct {
		env  string
		want bool
	}{
		{"", false},
		{match, true},
		{other, false},
		{"garbage", true},
		{"1:x", true},
	}
	for _, tt := range tests {
		if got := isJournal(tt.env, f); got != tt.want {
			t.Errorf("isJournal(%q) = %v, want %v", tt.env, got, tt.want)
		}
	}
	closed, _ := os.CreateTemp(t.TempDir(), "closed")
	closed.Close()
	if isJournal(match, closed) {
		t.Error("isJournal on a closed file = true")
	}
}

func TestNew(t *testing.T) {
	t.Setenv("JOURNAL_STREAM", "")
	l, err := New("debug")
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Formatter.(*logrus.TextFormatter); !ok || l.GetLevel() != logrus.DebugLevel || l.Out != os.Stderr {
		t.Errorf("New without journal: formatter %T level %v", l.Formatter, l.GetLevel())
	}
	t.Setenv("JOURNAL_STREAM", "unparsable")
	if l, err = New("info"); err != nil {
		t.Fatal(err)
	}
	if _, ok := l.Formatter.(*journalFormatter); !ok {
		t.Errorf("New with journal: formatter %T", l.Formatter)
	}
	if _, err := New("loud"); !errors.Is(err, ErrUnknownLevel) {
		t.Errorf("New(loud) = %v", err)
	}
}
