package config

import (
	"reflect"

	"github.com/spf13/pflag"
)

// AddFlags registers on fs the flags every daemon accepts and those of the
// daemon's own section (nil for none), and returns the bindings to pass as
// [LoadOptions.Bindings]:
//
//	--config PATH          the configuration file (default DefaultPath); read by Load itself
//	--log-level LEVEL      cluster.log_level
//	--consul-address ADDR  cluster.consul.address
//
// and, for each [Flag] of own, --<Name> for <own.Name>.<Key>, an integer
// flag when the setting is an integer. A flag overrides the file and the
// environment only when it is given on the command line.
func AddFlags(fs *pflag.FlagSet, own *Section) map[string]string {
	fs.String("config", DefaultPath, "configuration file")
	fs.String("log-level", "", "log level: trace, debug, info, warn or error (overrides cluster.log_level)")
	fs.String("consul-address", "", "Consul agent address host:port (overrides cluster.consul.address)")
	bind := map[string]string{
		"log-level":      "cluster.log_level",
		"consul-address": "cluster.consul.address",
	}
	if own == nil {
		return bind
	}
	kinds := map[string]reflect.Kind{}
	for _, s := range own.Settings() {
		kinds[s.Key] = s.Kind
	}
	for _, f := range own.Flags {
		key := own.Name + "." + f.Key
		usage := f.Usage + " (overrides " + key + ")"
		if kinds[f.Key] == reflect.Int {
			fs.Int(f.Name, 0, usage)
		} else {
			fs.String(f.Name, "", usage)
		}
		bind[f.Name] = key
	}
	return bind
}
