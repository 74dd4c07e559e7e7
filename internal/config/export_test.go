package config

import (
	"reflect"

	"go.yaml.in/yaml/v3"

	"github.com/openssi/openssi/internal/settings"
)

// SetDefaultPath points DefaultPath's stand-in elsewhere until the
// returned function restores it.
func SetDefaultPath(p string) (restore func()) {
	defaultPath = p
	return func() { defaultPath = DefaultPath }
}

// Keys lists the settings of a file with the given sections: the leaves
// and all keys (sections included), in declaration order, and what each
// accepts.
func Keys(sections []Section) (leaves, all []string, allowed map[string]string) {
	w := newWhole(sections)
	settings.Walk(w.typ, "", func(key string, _ reflect.StructField, leaf bool) {
		all = append(all, key)
		if leaf {
			leaves = append(leaves, key)
		}
	})
	return leaves, all, w.allowed
}

// LineOf is lineOf.
func LineOf(root *yaml.Node, key string) int { return lineOf(root, key) }

// MaxFileSize is maxFileSize.
const MaxFileSize = maxFileSize
