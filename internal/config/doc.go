// Package config loads and validates the OpenSSI configuration shared by all
// daemons: one `cluster:` section every daemon reads, and one section per
// daemon (`clmsd:` today).
//
// # Sources and precedence
//
// [Load] merges, from lowest to highest precedence:
//
//  1. the built-in defaults ([Default]; each field's comment states its default),
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
//	bind := config.AddFlags(fs, "clmsd")
//	if err := fs.Parse(os.Args[1:]); err != nil {
//		os.Exit(2)
//	}
//	cfg, err := config.Load(config.LoadOptions{Flags: fs, Bindings: bind})
//	if err != nil {
//		fmt.Fprintln(os.Stderr, err)
//		os.Exit(2)
//	}
//
// An annotated example file, valid as shipped, is testdata/openssi.yaml.
package config
