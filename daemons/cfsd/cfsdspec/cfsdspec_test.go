package cfsdspec

import (
	"strings"
	"testing"
)

func TestValidate(t *testing.T) {
	home := Export{Name: "home", Path: "/srv/cfs/home", Mount: "/cluster/home", Server: 1}
	srv := Export{Name: "srv", Path: "/srv/data", Mount: "/cluster/srv", Server: 2}
	with := func(es ...Export) Config {
		c := Default()
		c.Exports = es
		return c
	}
	edit := func(e Export, f func(*Export)) Export { f(&e); return e }
	for _, c := range []struct {
		name string
		cfg  Config
		want string // "" for valid, else what the one line must say
	}{
		{"default", Default(), ""},
		{"two exports", with(home, srv), ""},
		{"name", with(edit(home, func(e *Export) { e.Name = "Home!" })), `cfsd.exports[0].name`},
		{"same name", with(home, edit(srv, func(e *Export) { e.Name = "home" })), `exports[0] has it`},
		{"relative path", with(edit(home, func(e *Export) { e.Path = "srv/home" })), `cfsd.exports[0].path`},
		{"export of /", with(edit(home, func(e *Export) { e.Path = "/" })), `cfsd.exports[0].path`},
		{"unclean mount", with(edit(home, func(e *Export) { e.Mount = "/cluster/home/" })), `cfsd.exports[0].mount`},
		{"mount on /", with(edit(home, func(e *Export) { e.Mount = "/" })), `cfsd.exports[0].mount`},
		{"no server", with(edit(home, func(e *Export) { e.Server = 0 })), `cfsd.exports[0].server`},
		{"same mount", with(home, edit(srv, func(e *Export) { e.Mount = "/cluster/home" })), `outside exports[0]'s /cluster/home`},
		{"mount inside another", with(home, edit(srv, func(e *Export) { e.Mount = "/cluster/home/srv" })), `cfsd.exports[1].mount`},
		{"mount holding another", with(home, edit(srv, func(e *Export) { e.Mount = "/cluster" })), `cfsd.exports[1].mount`},
		{"a prefix is not inside", with(home, edit(srv, func(e *Export) { e.Mount = "/cluster/homes" })), ""},
		{"timeout", func() Config { c := Default(); c.Timeout = 0; return c }(), `cfsd.timeout`},
	} {
		err := c.cfg.Validate()
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error saying %q", c.name, err, c.want)
		case err != nil && strings.Contains(err.Error(), "\n"):
			t.Errorf("%s: more than one line: %q", c.name, err)
		}
	}
}
