package settings

import (
	"errors"
	"strings"
	"testing"
)

type sample struct {
	Port  int `mapstructure:"port" want:"an integer 1..65535"`
	Inner struct {
		Name string `mapstructure:"name" want:"a name"`
		Bare string `mapstructure:"bare"`
	} `mapstructure:"inner" want:"a mapping"`
}

func (s *sample) Validate() error {
	return Checks("x", s,
		Check{Key: "port", Value: "0", OK: IsPort(s.Port)},
		Check{Key: "inner.name", Value: s.Inner.Name, OK: s.Inner.Name != ""},
		Check{Key: "inner.bare", Value: s.Inner.Bare, OK: s.Inner.Bare != "!"},
	)
}

type loaded map[string]any

func (l loaded) Section(name string) any { return l[name] }

func TestSection(t *testing.T) {
	s := NewSection("x", func() sample { return sample{Port: 1} }, "# x\nx:\n", Flag{Name: "port", Key: "port", Usage: "the port"})
	var keys []string
	for _, set := range s.Settings() {
		keys = append(keys, set.Key+"="+set.Want)
	}
	if got := strings.Join(keys, ","); got != "port=an integer 1..65535,inner=a mapping,inner.name=a name,inner.bare=" {
		t.Errorf("Settings() = %s", got)
	}
	if s.Want() != "a mapping of x settings" || s.Type().Name() != "sample" {
		t.Errorf("Want() = %q, Type() = %v", s.Want(), s.Type())
	}
	for _, tt := range []struct {
		edit func(*sample)
		err  string
	}{
		{func(v *sample) { v.Inner.Name = "n" }, ""},
		{func(v *sample) { v.Port = 0 }, `config: x.port: "0" is not valid: want an integer 1..65535`},
		{func(v *sample) {}, `config: x.inner.name: "" is not valid: want a name`},
		{func(v *sample) { v.Inner.Name, v.Inner.Bare = "n", "!" }, `config: x.inner.bare: "!" is not valid: want a valid value`},
	} {
		v := s.Default().(*sample)
		tt.edit(v)
		err := s.Validate(v)
		if got := ""; err != nil {
			got = err.Error()
			if got != tt.err || !errors.Is(err, ErrInvalid) {
				t.Errorf("Validate = %s, want %s", got, tt.err)
			}
		} else if tt.err != "" {
			t.Errorf("Validate = nil, want %s", tt.err)
		}
	}
	if got := Of[sample](loaded{"x": &sample{Port: 9}}, "x"); got.Port != 9 {
		t.Errorf("Of = %+v", got)
	}
	defer func() {
		if recover() == nil {
			t.Error("Of of a missing section did not panic")
		}
	}()
	Of[sample](loaded{}, "x")
}

func TestNewErrorShortens(t *testing.T) {
	e := NewError("k", strings.Repeat("v", 100), "want v")
	if len(e.Value) != 83 || !strings.HasSuffix(e.Value, "...") {
		t.Errorf("Value = %q", e.Value)
	}
}
