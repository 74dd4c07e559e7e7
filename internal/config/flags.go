package config

import "github.com/spf13/pflag"

// AddFlags registers on fs the flags every daemon accepts and, for daemons
// "clmsd" and "dlmd", their own, and returns the bindings to pass as
// [LoadOptions.Bindings]:
//
//	--config PATH          the configuration file (default DefaultPath); read by Load itself
//	--log-level LEVEL      cluster.log_level
//	--consul-address ADDR  cluster.consul.address
//	--node-number N        clmsd.node_number (clmsd only)
//	--rpc-port PORT        clmsd.rpc_port (clmsd only)
//	--rpc-port PORT        dlmd.rpc_port (dlmd only)
//
// A flag overrides the file and the environment only when it is given on the
// command line.
func AddFlags(fs *pflag.FlagSet, daemon string) map[string]string {
	fs.String("config", DefaultPath, "configuration file")
	fs.String("log-level", "", "log level: trace, debug, info, warn or error (overrides cluster.log_level)")
	fs.String("consul-address", "", "Consul agent address host:port (overrides cluster.consul.address)")
	bind := map[string]string{
		"log-level":      "cluster.log_level",
		"consul-address": "cluster.consul.address",
	}
	if daemon == "clmsd" {
		fs.Int("node-number", 0, "node number 1..1024, 0 = claim automatically (overrides clmsd.node_number)")
		fs.Int("rpc-port", 0, "inter-node gRPC port (overrides clmsd.rpc_port)")
		bind["node-number"] = "clmsd.node_number"
		bind["rpc-port"] = "clmsd.rpc_port"
	}
	if daemon == "dlmd" {
		fs.Int("rpc-port", 0, "inter-node gRPC port (overrides dlmd.rpc_port)")
		bind["rpc-port"] = "dlmd.rpc_port"
	}
	return bind
}
