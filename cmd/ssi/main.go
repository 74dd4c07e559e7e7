// Command ssi is OpenSSI's administration and user command line.
package main

import (
	"os"

	"github.com/openssi/openssi/cmd/ssi/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
