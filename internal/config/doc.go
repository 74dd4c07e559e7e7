// Package config loads and validates the OpenSSI configuration shared by all
// daemons: one `cluster:` section every daemon reads ([Cluster], defaults in
// [DefaultCluster]), and one section per daemon. A daemon's section is owned
// by the daemon's own package (daemons/<name>/<name>spec): its Config struct,
// Default and Validate, its flags and its part of the shipped file, handed
// to this package as a [Section]; internal/daemons lists them all.
//
// # Sources and precedence
//
// [Load] merges, from lowest to highest precedence:
//
//  1. the built-in defaults ([DefaultCluster] and each section's Default; each
//     field's comment states its default),
//  2. the YAML file ([DefaultPath] unless another path is given),
//  3. environment variables OPENSSI_<SECTION>_<KEY>, the dotted key upper-cased
//     with dots replaced by underscores, e.g. OPENSSI_CLMSD_NODE_NUMBER for
//     clmsd.node_number and OPENSSI_CLUSTER_CONSUL_ADDRESS for
//     cluster.consul.address (an empty variable counts as unset),
//  4. command-line flags that were explicitly set (see [AddFlags]).
//
// # Errors
//
// Every error Load returns is a single line prefixed "config: ", fit to be
// printed as is. A bad value is a [*Error] naming the key, the value and what
// is allowed (it matches [ErrInvalid] with errors.Is); a key that is not a
// setting is [ErrUnknownKey]; a YAML syntax error is [ErrSyntax] and names the
// file and line. Daemons treat any of them as fatal and exit with status 2:
//
//	fs := pflag.NewFlagSet("clmsd", pflag.ContinueOnError)
//	bind := config.AddFlags(fs, &clmsdspec.Daemon.Config)
//	if err := fs.Parse(os.Args[1:]); err != nil {
//		os.Exit(2)
//	}
//	cfg, err := config.Load(config.LoadOptions{Flags: fs, Bindings: bind, Sections: daemons.Sections()})
//	if err != nil {
//		fmt.Fprintln(os.Stderr, err)
//		os.Exit(2)
//	}
//
// The annotated file shipped as /etc/openssi/openssi.yaml is [Example]: a
// header, the cluster section (cluster.yaml) and each daemon's section.
package config
