package cli

import (
	"io"

	"github.com/spf13/cobra"
)

// Command returns ssi's command tree without running it, for generating
// its man pages and shell completion (packaging/).
func Command() *cobra.Command {
	return newRoot(&globals{out: io.Discard, errOut: io.Discard})
}
