package logging

import (
	"sync"

	"github.com/sirupsen/logrus"
)

// maxOnce bounds the kinds of event a Once remembers; past it every
// event is logged at debug level.
const maxOnce = 1024

// Once logs each kind of event (named by a key) once at error level and
// again at debug level: for what repeats without end when it happens at
// all, such as a refused peer that redials. The zero value is ready.
type Once struct {
	mu   sync.Mutex
	seen map[string]bool
}

// Log logs msg with f at error level the first time key is seen, at
// debug level after.
func (o *Once) Log(log logrus.FieldLogger, key string, f logrus.Fields, msg string) {
	o.mu.Lock()
	first := !o.seen[key] && len(o.seen) < maxOnce
	if first {
		if o.seen == nil {
			o.seen = map[string]bool{}
		}
		o.seen[key] = true
	}
	o.mu.Unlock()
	if first {
		log.WithFields(f).Error(msg)
		return
	}
	log.WithFields(f).Debug(msg)
}
