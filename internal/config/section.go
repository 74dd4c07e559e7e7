package config

import (
	"fmt"
	"reflect"
)

// Section is one daemon's part of the configuration: the top-level YAML
// mapping named after the daemon, decoded into the daemon's own Config
// struct. The daemon's package owns the struct, its defaults and its
// validation and builds the Section with [NewSection]; the loader, the
// flags, the environment variables and the shipped example file all come
// from it.
//
// Each field of the struct has a mapstructure tag (its key) and a want tag
// saying what it accepts, the text of [Error.Allowed] without "want ":
//
//	RPCPort int `mapstructure:"rpc_port" want:"an integer 1..65535"`
type Section struct {
	// Name is the top-level key: the daemon's name.
	Name string
	// Flags are the daemon's own command-line flags (the shared ones,
	// --config, --log-level and --consul-address, come with [AddFlags]).
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
	walkType(s.typ, "", func(key string, f reflect.StructField, leaf bool) {
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
			return newError(key, c.Value, wantOf(reflect.TypeOf(structure), c.Key))
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
	walkType(t, "", func(k string, f reflect.StructField, _ bool) {
		if k == key {
			want, found = f.Tag.Get("want"), true
		}
	})
	if !found || want == "" {
		return "want a valid value"
	}
	return "want " + want
}

// walkType calls fn for every field of the struct type t, sections before
// their fields, in declaration order, with the dotted key below prefix;
// leaf is false for nested sections.
func walkType(t reflect.Type, prefix string, fn func(key string, f reflect.StructField, leaf bool)) {
	for i := range t.NumField() {
		f := t.Field(i)
		key := f.Tag.Get("mapstructure")
		if prefix != "" {
			key = prefix + "." + key
		}
		if f.Type.Kind() == reflect.Struct && f.Type != durationType {
			fn(key, f, false)
			walkType(f.Type, key, fn)
			continue
		}
		fn(key, f, true)
	}
}

// sectionWant is the Allowed text of a daemon section that is not a
// mapping.
func sectionWant(name string) string { return fmt.Sprintf("want a mapping of %s settings", name) }
