package logging

import (
	"testing"

	"github.com/sirupsen/logrus"
	"github.com/sirupsen/logrus/hooks/test"
)

func TestOnce(t *testing.T) {
	log, hook := test.NewNullLogger()
	log.SetLevel(logrus.DebugLevel)
	var o Once
	for _, key := range []string{"a", "a", "b", "a"} {
		o.Log(log, key, logrus.Fields{"k": key}, "refused")
	}
	var levels []logrus.Level
	for _, e := range hook.AllEntries() {
		levels = append(levels, e.Level)
	}
	want := []logrus.Level{logrus.ErrorLevel, logrus.DebugLevel, logrus.ErrorLevel, logrus.DebugLevel}
	if len(levels) != len(want) {
		t.Fatalf("levels %v, want %v", levels, want)
	}
	for i := range want {
		if levels[i] != want[i] {
			t.Fatalf("levels %v, want %v", levels, want)
		}
	}
}
