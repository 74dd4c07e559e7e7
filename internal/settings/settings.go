// Package settings is the vocabulary a daemon's package uses to describe
// its section of openssi.yaml: a [Section] built from the daemon's own
// Config struct (keys and accepted values in its field tags, its defaults
// and its Validate), its [Flag]s, and the one-line [*Error] of a bad value.
// It has no dependencies, so that describing a daemon costs nothing to the
// programs that only list daemons (ssi); internal/config loads the file.
package settings

import (
	"errors"
	"fmt"
	"reflect"
)

// Section is one daemon's part of the configuration: the top-level YAML
// mapping named after the daemon, decoded into the daemon's own Config
// struct. The daemon's package owns the struct, its defaults and its
// validation and builds the Section with [NewSection]; the loader
// (internal/config), the flags, the environment variables and the shipped
// example file all come from it.
//
// Each field of the struct has a mapstructure tag (its key) and a want tag
// saying what it accepts, the text of [Error.Allowed] without "want ":
//
//	RPCPort int `mapstructure:"rpc_port" want:"an integer 1..65535"`
type Section struct {
	// Name is the top-level key: the daemon's name.
	Name string
	// Flags are the daemon's own command-line flags (the shared ones,
	// --config, --log-level and --consul-address, come with
	// internal/config's AddFlags).
	Flags []Flag
	// Example is the section as the shipped openssi.yaml shows it: a
	// comment line, the key and every setting at its default under a
	// comment. A test checks it against the defaults.
	Example string

	typ      reflect.Type
	def      func() any // a pointer to a new struct holding the defaults
	validate func(any) error
}

// Flag is a command-line flag that overrides one setting of its section.
type Flag struct {
	// Name is the flag without dashes, e.g. "rpc-port".
	Name string
	// Key is the setting within the section, e.g. "rpc_port".
	Key string
	// Usage says what it sets; " (overrides <section>.<key>)" is added.
	Usage string
}

// NewSection builds the Section of a daemon from its Config type T: def
// returns the defaults (valid as returned) and *T's Validate checks a
// decoded section. example and flags: see [Section].
func NewSection[T any, P interface {
	*T
	Validate() error
}](name string, def func() T, example string, flags ...Flag) Section {
	return Section{
		Name:    name,
		Flags:   flags,
		Example: example,
		typ:     reflect.TypeFor[T](),
		def: func() any {
			v := def()
			return &v
		},
		validate: func(v any) error { return P(v.(*T)).Validate() },
	}
}

// Type is the section's Config type.
func (s Section) Type() reflect.Type { return s.typ }

// Default returns a pointer to a new struct holding the section's defaults.
func (s Section) Default() any { return s.def() }

// Validate validates v, a pointer to the section's Config type.
func (s Section) Validate(v any) error { return s.validate(v) }

// Setting is one key of a section, as [Section.Settings] lists it.
type Setting struct {
	// Key is the dotted key within the section, e.g. "rpc_port".
	Key string
	// Want is the field's want tag ("" when it has none).
	Want string
	// Kind is the field's kind (a time.Duration is an reflect.Int64).
	Kind reflect.Kind
	// Leaf is false for a nested mapping.
	Leaf bool
}

// Settings lists the keys of the section in declaration order, nested
// mappings before their keys.
func (s Section) Settings() []Setting {
	var out []Setting
	Walk(s.typ, "", func(key string, f reflect.StructField, leaf bool) {
		out = append(out, Setting{Key: key, Want: f.Tag.Get("want"), Kind: f.Type.Kind(), Leaf: leaf})
	})
	return out
}

// Check is one rule of a Validate method: the setting's key within its
// section, its value as written in an error, and whether it is allowed.
type Check struct {
	Key   string
	Value string
	OK    bool
}

// Checks returns the first failed check as an [*Error] for
// "<section>.<key>", whose Allowed text is the want tag of the field of
// struct (a value or pointer of the section's type) with that key; nil when
// every check passed. Daemons' Validate methods end with it.
func Checks(section string, structure any, checks ...Check) error {
	for _, c := range checks {
		if !c.OK {
			key := section + "." + c.Key
			return NewError(key, c.Value, wantOf(reflect.TypeOf(structure), c.Key))
		}
	}
	return nil
}

// wantOf returns the want tag of the field of t at the dotted key,
// prefixed "want ", or "want a valid value" when there is none.
func wantOf(t reflect.Type, key string) string {
	for t != nil && t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if t == nil || t.Kind() != reflect.Struct {
		return "want a valid value"
	}
	var want string
	found := false
	Walk(t, "", func(k string, f reflect.StructField, _ bool) {
		if k == key {
			want, found = f.Tag.Get("want"), true
		}
	})
	if !found || want == "" {
		return "want a valid value"
	}
	return "want " + want
}

// Walk calls fn for every field of the struct type t, nested mappings
// before their fields, in declaration order, with the dotted key (from the
// mapstructure tags) below prefix; leaf is false for nested mappings.
func Walk(t reflect.Type, prefix string, fn func(key string, f reflect.StructField, leaf bool)) {
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("mapstructure")
		if prefix != "" {
			key = prefix + "." + key
		}
		if f.Type.Kind() == reflect.Struct {
			fn(key, f, false)
			Walk(f.Type, key, fn)
			continue
		}
		fn(key, f, true)
	}
}

// Want is the want tag of a daemon section: it must be a mapping.
func (s Section) Want() string { return fmt.Sprintf("a mapping of %s settings", s.Name) }

// Of returns the section named name of a loaded configuration c (see
// internal/config's Config.Section) as the daemon's Config type T. It
// panics when the section is missing or of another type, a wiring mistake
// the first test that starts the daemon catches.
func Of[T any](c interface{ Section(name string) any }, name string) T {
	p, ok := c.Section(name).(*T)
	if !ok {
		panic("settings: no section " + name + " of type " + reflect.TypeFor[T]().String())
	}
	return *p
}

// IsPort reports whether p is a TCP or UDP port, 1..65535.
func IsPort(p int) bool { return p >= 1 && p <= 65535 }

// ErrInvalid is matched (errors.Is) by every [*Error]: a setting has a value
// that is not allowed.
var ErrInvalid = errors.New("config: invalid value")

// Error reports one setting whose value is not allowed. Its message is one
// line, for example:
//
//	config: clmsd.node_number: "abc" is not valid: want an integer 0..511 (0 = claim automatically)
type Error struct {
	// Key is the dotted setting name, e.g. "clmsd.node_number".
	Key string
	// Value is the offending value as given (shortened when very long).
	Value string
	// Allowed says what would be accepted, starting with "want".
	Allowed string
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("config: %s: %q is not valid: %s", e.Key, e.Value, e.Allowed)
}

// Is reports whether target is [ErrInvalid].
func (e *Error) Is(target error) bool { return target == ErrInvalid }

// NewError builds the *Error for key, shortening a long value.
func NewError(key, value, allowed string) *Error {
	const max = 80
	if len(value) > max {
		value = value[:max] + "..."
	}
	return &Error{Key: key, Value: value, Allowed: allowed}
}
