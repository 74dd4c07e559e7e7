package daemons

import (
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"

	"github.com/openssi/openssi/internal/config"
	"github.com/openssi/openssi/internal/describe"
)

// TestDescriptions checks every registered daemon against its description:
// the list is consistent, the daemon's main starts from its description,
// its section is valid at its defaults, says what each setting accepts,
// binds its flags to settings and ships an example that loads to the
// defaults and shows every setting.
func TestDescriptions(t *testing.T) {
	if err := Check(All); err != nil {
		t.Fatal(err)
	}
	mainRE := regexp.MustCompile(`daemon\.Main\(\w+\.Daemon, `)
	for _, d := range All {
		main, err := os.ReadFile(filepath.Join("..", "..", "daemons", d.Name, "main.go"))
		if err != nil {
			t.Errorf("%s: %v (a daemon's main is daemons/<name>/main.go)", d.Name, err)
		} else if !mainRE.Match(main) {
			t.Errorf("%s: daemons/%s/main.go does not call daemon.Main with its description", d.Name, d.Name)
		}

		s := d.Config
		if err := s.Validate(s.Default()); err != nil {
			t.Errorf("%s: its defaults are not valid: %v", d.Name, err)
		}
		keys := map[string]bool{}
		var leaves []string
		for _, set := range s.Settings() {
			keys[set.Key] = true
			if set.Leaf {
				leaves = append(leaves, set.Key)
			}
			if set.Key == "" || strings.HasSuffix(set.Key, ".") || set.Want == "" {
				t.Errorf("%s: setting %q needs a mapstructure and a want tag", d.Name, set.Key)
			}
		}
		for _, f := range s.Flags {
			if !keys[f.Key] || f.Name == "" || f.Usage == "" {
				t.Errorf("%s: flag %+v is not bound to a setting of its section", d.Name, f)
			}
		}

		if !strings.HasPrefix(s.Example, "# ") || !strings.Contains(s.Example, "\n"+d.Name+":\n") {
			t.Errorf("%s: its example is not a comment line then %s:", d.Name, d.Name)
		}
		path := filepath.Join(t.TempDir(), "openssi.yaml")
		if err := os.WriteFile(path, []byte(s.Example), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(config.LoadOptions{Path: path, Sections: []config.Section{s}})
		if err != nil {
			t.Errorf("%s: its example does not load: %v", d.Name, err)
			continue
		}
		if got, want := c.Section(d.Name), s.Default(); !reflect.DeepEqual(got, want) {
			t.Errorf("%s: its example differs from its defaults:\n got %+v\nwant %+v", d.Name, got, want)
		}
		var doc map[string]map[string]any
		if err := yaml.Unmarshal([]byte(s.Example), &doc); err != nil {
			t.Fatal(err)
		}
		for _, k := range leaves {
			if _, ok := doc[d.Name][strings.Split(k, ".")[0]]; !ok {
				t.Errorf("%s: its example does not show %s", d.Name, k)
			}
		}
	}
}

func TestCheck(t *testing.T) {
	ok := func(name string, needs ...string) Daemon {
		d := All[0]
		d.Name, d.Unit, d.Needs = name, "openssi-"+name+".service", needs
		d.Config.Name = name
		return d
	}
	edit := func(d Daemon, f func(*Daemon)) Daemon { f(&d); return d }
	tests := []struct {
		list []Daemon
		err  string // "" = valid
	}{
		{[]Daemon{ok("a"), ok("b", "a")}, ""},
		{[]Daemon{ok("b", "a"), ok("a")}, "daemons: b needs a, which is not listed before it"},
		{[]Daemon{ok("a", "a")}, "daemons: a needs a, which is not listed before it"},
		{[]Daemon{ok("a"), ok("a")}, "daemons: a is listed twice"},
		{[]Daemon{ok("A")}, `daemons: name "A" is not a short lower-case name`},
		{[]Daemon{ok("a/b")}, `daemons: name "a/b" is not a short lower-case name`},
		{[]Daemon{edit(ok("a"), func(d *Daemon) { d.Unit = "a.service" })}, `daemons: a: unit "a.service" is not openssi-a.service`},
		{[]Daemon{edit(ok("a"), func(d *Daemon) { d.Config.Name = "b" })}, `daemons: a: its configuration section is named "b"`},
		{[]Daemon{edit(ok("a"), func(d *Daemon) { d.About = "" })}, "daemons: a lacks a binary, summary or about text"},
		{[]Daemon{edit(ok("a"), func(d *Daemon) { d.Hardening = describe.Hardening{} })}, "daemons: a: its hardening profile lacks the reason, the address families or the exposure"},
	}
	for _, tt := range tests {
		err := Check(tt.list)
		if got := ""; err != nil {
			got = err.Error()
			if got != tt.err {
				t.Errorf("Check = %s, want %s", got, tt.err)
			}
		} else if tt.err != "" {
			t.Errorf("Check = nil, want %s", tt.err)
		}
	}
}

func TestFind(t *testing.T) {
	for _, d := range All {
		if got, ok := Find(d.Name); !ok || got.Unit != d.Unit {
			t.Errorf("Find(%s) = %v, %v", d.Name, got.Name, ok)
		}
	}
	if _, ok := Find("nosuchd"); ok {
		t.Error("Find(nosuchd) found one")
	}
	if got := Sections(); len(got) != len(All) || got[0].Name != All[0].Name {
		t.Errorf("Sections() = %d sections", len(got))
	}
}

// TestDefaultPortsDiffer: every daemon of a node listens on its own ports,
// so no two registered daemons may default to the same *_port setting.
func TestDefaultPortsDiffer(t *testing.T) {
	owner := map[int64]string{}
	ports := 0
	for _, d := range All {
		def := reflect.ValueOf(d.Config.Default())
		for def.Kind() == reflect.Pointer {
			def = def.Elem()
		}
		for _, s := range d.Config.Settings() {
			if !s.Leaf || !strings.HasSuffix(s.Key, "_port") || s.Kind != reflect.Int {
				continue
			}
			v, ok := fieldByKey(def, s.Key)
			if !ok {
				t.Fatalf("%s.%s: no field with that key in its Default()", d.Name, s.Key)
			}
			ports++
			key := d.Name + "." + s.Key
			if other, dup := owner[v.Int()]; dup {
				t.Errorf("%s and %s both default to port %d", other, key, v.Int())
			}
			owner[v.Int()] = key
		}
	}
	// openssi-keepalived and openssi-lvsd have no peer protocol, hence
	// no port.
	if ports < len(All)-2 {
		t.Fatalf("found %d *_port settings for %d daemons; the walk no longer matches the descriptions", ports, len(All))
	}
}

// fieldByKey finds the field of struct v whose mapstructure key is the
// dotted key.
func fieldByKey(v reflect.Value, key string) (reflect.Value, bool) {
	name, rest, nested := strings.Cut(key, ".")
	for i := 0; i < v.NumField(); i++ {
		if strings.Split(v.Type().Field(i).Tag.Get("mapstructure"), ",")[0] != name {
			continue
		}
		if nested {
			return fieldByKey(v.Field(i), rest)
		}
		return v.Field(i), true
	}
	return reflect.Value{}, false
}
