package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"reflect"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-viper/mapstructure/v2"
	"github.com/spf13/pflag"
	"github.com/spf13/viper"
	"go.yaml.in/yaml/v3"

	"github.com/openssi/openssi/internal/settings"
)

var (
	// ErrUnknownKey is matched (errors.Is) by the error for a key in the
	// file that is not a setting, usually a typo.
	ErrUnknownKey = errors.New("config: unknown key")
	// ErrSyntax is matched (errors.Is) by the error for a file that is not
	// well-formed YAML or whose top level is not a mapping.
	ErrSyntax = errors.New("config: syntax error")
)

// EnvPrefix is the prefix of the environment variables that override
// settings: OPENSSI_ + the dotted key upper-cased with "." replaced by "_".
const EnvPrefix = "OPENSSI"

// defaultPath is DefaultPath; tests point it elsewhere.
var defaultPath = DefaultPath

// LoadOptions says where [Load] reads from.
type LoadOptions struct {
	// Path is the YAML file. "" means the value of the --config flag when it
	// was set in Flags, else DefaultPath. When the path is DefaultPath and
	// the file does not exist, the defaults are used; any other path must
	// exist.
	Path string
	// Flags is the parsed command line, or nil. Only flags that were set
	// (pflag.Flag.Changed) override settings.
	Flags *pflag.FlagSet
	// Bindings maps a flag name in Flags to the dotted setting it overrides,
	// e.g. {"log-level": "cluster.log_level"}. [AddFlags] returns it.
	Bindings map[string]string
	// Sections are the daemon sections the file may hold besides
	// `cluster:`: every daemon's, so that each daemon accepts (and
	// validates) the whole file of its node. A top-level key that is not
	// one of them is an unknown key.
	Sections []Section
}

// fileError is an error about the file as a whole, located by path and,
// when known, line.
type fileError struct {
	path string
	line int
	msg  string
	kind error
}

func (e *fileError) Error() string {
	loc := e.path
	if e.line > 0 {
		loc = fmt.Sprintf("%s:%d", e.path, e.line)
	}
	return "config: " + loc + ": " + e.msg
}

func (e *fileError) Unwrap() error { return e.kind }

// Load builds the configuration from the defaults, the file, the
// environment and the flags (in that order of precedence, lowest first) and
// validates it. Every error is one line starting with "config: "; see the
// package documentation.
func Load(opts LoadOptions) (*Config, error) {
	path := opts.Path
	if path == "" && opts.Flags != nil {
		if f := opts.Flags.Lookup("config"); f != nil && f.Changed {
			path = f.Value.String()
		}
	}
	if path == "" {
		path = defaultPath
	}

	w := newWhole(opts.Sections)
	v := viper.New()
	v.SetConfigType("yaml")
	walk(w.defaults(), "", func(key string, val reflect.Value, leaf bool) {
		if leaf {
			v.SetDefault(key, val.Interface())
		}
	})
	v.SetEnvPrefix(EnvPrefix)
	v.SetEnvKeyReplacer(strings.NewReplacer(".", "_"))
	v.AutomaticEnv()

	var root *yaml.Node
	data, err := os.ReadFile(path)
	switch {
	case err == nil:
		if root, err = readFile(v, path, data); err != nil {
			return nil, err
		}
	case errors.Is(err, fs.ErrNotExist) && path == defaultPath:
		// No file at the default place: defaults, environment and flags.
	default:
		return nil, fmt.Errorf("config: %w", err)
	}

	if err := bindFlags(v, opts.Flags, opts.Bindings, w.allowed); err != nil {
		return nil, err
	}

	decoded := reflect.New(w.typ)
	if err := v.UnmarshalExact(decoded.Interface(), viper.DecodeHook(decodeHook)); err != nil {
		return nil, w.decodeError(err, v, path, root)
	}
	c := w.config(decoded.Elem())
	if err := c.Validate(); err != nil {
		return nil, err
	}
	return c, nil
}

// whole is the struct type of a whole file: `cluster:` and the daemon
// sections, built at run time so that each daemon package owns its section.
type whole struct {
	sections []Section
	typ      reflect.Type
	// allowed says, for every key, what values it accepts (the text of
	// [Error.Allowed]), from the want tags.
	allowed map[string]string
	// order ranks every key in declaration order.
	order map[string]int
}

func newWhole(sections []Section) *whole {
	fields := []reflect.StructField{{
		Name: "Cluster", Type: reflect.TypeFor[Cluster](),
		Tag: reflect.StructTag(fmt.Sprintf(`mapstructure:%q want:%q`, ClusterKey, "a mapping of cluster settings")),
	}}
	for i, s := range sections {
		fields = append(fields, reflect.StructField{
			Name: fmt.Sprintf("Section%d", i), Type: s.Type(),
			Tag: reflect.StructTag(fmt.Sprintf(`mapstructure:%q want:%q`, s.Name, s.Want())),
		})
	}
	w := &whole{sections: sections, typ: reflect.StructOf(fields), allowed: map[string]string{}, order: map[string]int{}}
	settings.Walk(w.typ, "", func(key string, f reflect.StructField, _ bool) {
		w.allowed[key] = "want a valid value"
		if want := f.Tag.Get("want"); want != "" {
			w.allowed[key] = "want " + want
		}
		w.order[key] = len(w.order)
	})
	return w
}

// defaults returns a value of the whole type holding every default.
func (w *whole) defaults() reflect.Value {
	v := reflect.New(w.typ).Elem()
	v.Field(0).Set(reflect.ValueOf(DefaultCluster()))
	for i, s := range w.sections {
		v.Field(i + 1).Set(reflect.ValueOf(s.Default()).Elem())
	}
	return v
}

// config splits a decoded value of the whole type into a Config.
func (w *whole) config(v reflect.Value) *Config {
	c := &Config{Cluster: v.Field(0).Interface().(Cluster), sections: w.sections, values: map[string]any{}}
	for i, s := range w.sections {
		p := reflect.New(s.Type())
		p.Elem().Set(v.Field(i + 1))
		c.values[s.Name] = p.Interface()
	}
	return c
}

// invalid builds the *Error for key.
func (w *whole) invalid(key, value string) *Error {
	a, ok := w.allowed[key]
	if !ok {
		a = "want a valid value"
	}
	return settings.NewError(key, value, a)
}

// maxFileSize bounds the configuration file; a real one is a few KiB.
const maxFileSize = 1 << 20

// readFile parses data as the YAML file at path into v and returns its
// node tree (for line numbers) or a one-line error.
func readFile(v *viper.Viper, path string, data []byte) (*yaml.Node, error) {
	if len(data) > maxFileSize {
		return nil, &fileError{path: path, msg: fmt.Sprintf("file is larger than %d bytes", maxFileSize), kind: ErrSyntax}
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(data, &doc); err != nil {
		line, msg := yamlMessage(err)
		if line == 0 {
			line = findErrorLine(data, msg)
		}
		return nil, &fileError{path: path, line: line, msg: msg, kind: ErrSyntax}
	}
	var root *yaml.Node
	if doc.Kind == yaml.DocumentNode && len(doc.Content) == 1 {
		root = doc.Content[0]
		if root.Kind != yaml.MappingNode && !(root.Kind == yaml.ScalarNode && root.Tag == "!!null") {
			return nil, &fileError{path: path, line: root.Line,
				msg: "want a mapping with cluster: and daemon sections at the top level", kind: ErrSyntax}
		}
	}
	if err := v.ReadConfig(bytes.NewReader(data)); err != nil {
		var pe viper.ConfigParseError
		if errors.As(err, &pe) && pe.Unwrap() != nil {
			err = pe.Unwrap()
		}
		line, msg := yamlMessage(err)
		if line == 0 {
			line = findErrorLine(data, msg)
		}
		return nil, &fileError{path: path, line: line, msg: msg, kind: ErrSyntax}
	}
	return root, nil
}

var yamlLineRE = regexp.MustCompile(`^line (\d+): `)

// yamlMessage turns a (possibly multi-line) yaml.v3 error into a line
// number (0 when unknown) and a one-line message.
func yamlMessage(err error) (int, string) {
	msg := strings.TrimPrefix(oneLine(err.Error()), "yaml: ")
	msg = strings.TrimPrefix(msg, "unmarshal errors:; ")
	line := 0
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ = strconv.Atoi(m[1])
		msg = msg[len(m[0]):]
	}
	return line, msg
}

// findErrorLine finds the line of a YAML error whose message carries none
// (yaml.v3 omits "line 1" and the line of some semantic errors): the first
// line at which the file cut after it fails with the same message. It
// returns 0 when no such line is found or the file is too long to search.
func findErrorLine(data []byte, msg string) int {
	lines := bytes.SplitAfter(data, []byte("\n"))
	if len(lines) > 1000 {
		return 0
	}
	var prefix []byte
	for i, l := range lines {
		prefix = append(prefix, l...)
		var m map[string]any
		if err := yaml.Unmarshal(prefix, &m); err != nil {
			if _, m := yamlMessage(err); m == msg {
				return i + 1
			}
		}
	}
	return 0
}

// oneLine joins the non-empty lines of s with "; ".
func oneLine(s string) string {
	var parts []string
	for _, l := range strings.Split(s, "\n") {
		if l = strings.TrimSpace(l); l != "" {
			parts = append(parts, l)
		}
	}
	return strings.Join(parts, "; ")
}

// bindFlags makes every flag of fs that was set override its bound setting.
func bindFlags(v *viper.Viper, fs *pflag.FlagSet, bindings, allowed map[string]string) error {
	if fs == nil {
		return nil
	}
	names := make([]string, 0, len(bindings))
	for name := range bindings {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		key := bindings[name]
		if _, ok := allowed[key]; !ok {
			return fmt.Errorf("config: flag --%s is bound to %q, which is not a setting", name, key)
		}
		f := fs.Lookup(name)
		if f == nil || !f.Changed {
			continue
		}
		if err := v.BindPFlag(key, f); err != nil {
			return fmt.Errorf("config: flag --%s: %s", name, oneLine(err.Error()))
		}
	}
	return nil
}

// walk calls fn for every setting of the struct value v, sections before
// their fields, in declaration order; leaf is false for sections.
func walk(v reflect.Value, prefix string, fn func(key string, val reflect.Value, leaf bool)) {
	t := v.Type()
	for i := range t.NumField() {
		key := t.Field(i).Tag.Get("mapstructure")
		if prefix != "" {
			key = prefix + "." + key
		}
		fv := v.Field(i)
		if fv.Kind() == reflect.Struct && fv.Type() != durationType {
			fn(key, fv, false)
			walk(fv, key, fn)
			continue
		}
		fn(key, fv, true)
	}
}

// badValue is returned by decodeHook for a value of the wrong type.
type badValue struct{ value any }

func (b badValue) Error() string { return fmt.Sprintf("bad value %v", b.value) }

var durationType = reflect.TypeOf(time.Duration(0))

// decodeHook converts what YAML, the environment and flags deliver into the
// field types, strictly: a duration must be written with a unit ("5s"), an
// integer must be whole, and a string may not be a boolean, list or mapping.
func decodeHook(_ reflect.Type, to reflect.Type, data any) (any, error) {
	switch {
	case to == durationType:
		switch d := data.(type) {
		case time.Duration:
			return d, nil
		case string:
			if dur, err := time.ParseDuration(strings.TrimSpace(d)); err == nil {
				return dur, nil
			}
		}
		return nil, badValue{data}
	case to.Kind() == reflect.Int:
		if n, ok := toInt(data); ok {
			return n, nil
		}
		return nil, badValue{data}
	case to.Kind() == reflect.String:
		switch s := data.(type) {
		case string:
			return s, nil
		case int, int64, uint64, float64:
			return fmt.Sprint(s), nil
		}
		return nil, badValue{data}
	}
	return data, nil
}

// toInt converts a whole number given as a number or a decimal string.
func toInt(data any) (int, bool) {
	switch n := data.(type) {
	case int:
		return n, true
	case int64:
		return int(n), n >= math.MinInt && n <= math.MaxInt
	case uint64:
		return int(n), n <= math.MaxInt
	case float64:
		if n == math.Trunc(n) && n >= -1<<53 && n <= 1<<53 {
			return int(n), true
		}
	case string:
		i, err := strconv.Atoi(strings.TrimSpace(n))
		return i, err == nil
	}
	return 0, false
}

// format renders a raw value for an [*Error].
func format(v any) string {
	switch s := v.(type) {
	case nil:
		return ""
	case string:
		return s
	}
	return fmt.Sprint(v)
}

// decodeError turns the error of UnmarshalExact into one line: unknown keys
// first, then the first bad value in declaration order.
func (w *whole) decodeError(err error, v *viper.Viper, path string, root *yaml.Node) error {
	var decs []*mapstructure.DecodeError
	collect(err, &decs)

	var unknown []string
	for _, d := range decs {
		if rest, ok := strings.CutPrefix(d.Unwrap().Error(), "has invalid keys: "); ok {
			for _, k := range strings.Split(rest, ", ") {
				if d.Name() != "" {
					k = d.Name() + "." + k
				}
				unknown = append(unknown, k)
			}
		}
	}
	if len(unknown) > 0 {
		// Report the first in the file.
		sort.Strings(unknown)
		first, line := unknown[0], lineOf(root, unknown[0])
		for _, k := range unknown[1:] {
			if l := lineOf(root, k); l < line {
				first, line = k, l
			}
		}
		msg := fmt.Sprintf("unknown key %q", first)
		if len(unknown) > 1 {
			msg += fmt.Sprintf(" (and %d more)", len(unknown)-1)
		}
		if line == math.MaxInt32 {
			line = 0
		}
		return &fileError{path: path, line: line, msg: msg, kind: ErrUnknownKey}
	}

	if len(decs) == 0 {
		return fmt.Errorf("config: %s", oneLine(err.Error()))
	}
	order := w.order
	rank := func(name string) int {
		if r, ok := order[name]; ok {
			return r
		}
		return len(order)
	}
	sort.SliceStable(decs, func(i, j int) bool { return rank(decs[i].Name()) < rank(decs[j].Name()) })
	d := decs[0]
	if _, known := order[d.Name()]; !known {
		return fmt.Errorf("config: %s: %s", d.Name(), oneLine(d.Unwrap().Error()))
	}
	var (
		bad badValue
		pe  *mapstructure.ParseError
		ute *mapstructure.UnconvertibleTypeError
		raw any
	)
	switch {
	case errors.As(d, &bad):
		raw = bad.value
	case errors.As(d, &pe):
		raw = pe.Value
	case errors.As(d, &ute):
		raw = ute.Value
	default:
		raw = v.Get(d.Name())
	}
	return w.invalid(d.Name(), format(raw))
}

// collect appends every *mapstructure.DecodeError in err's tree to out.
func collect(err error, out *[]*mapstructure.DecodeError) {
	switch e := err.(type) {
	case nil:
	case *mapstructure.DecodeError:
		*out = append(*out, e)
	case interface{ Unwrap() []error }:
		for _, c := range e.Unwrap() {
			collect(c, out)
		}
	default:
		collect(errors.Unwrap(err), out)
	}
}

// lineOf returns the line of the dotted key in the YAML mapping root, or
// math.MaxInt32 when it is not there (keys compare case-insensitively, as
// viper does).
func lineOf(root *yaml.Node, key string) int {
	n := root
	line := math.MaxInt32
	for _, part := range strings.Split(key, ".") {
		if n == nil || n.Kind != yaml.MappingNode {
			return line
		}
		var next *yaml.Node
		for i := 0; i+1 < len(n.Content); i += 2 {
			if strings.EqualFold(n.Content[i].Value, part) {
				line, next = n.Content[i].Line, n.Content[i+1]
				break
			}
		}
		if next == nil {
			return math.MaxInt32
		}
		n = next
	}
	return line
}
