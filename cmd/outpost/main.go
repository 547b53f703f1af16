// Command outpost is the one Outpost binary. Its subcommands parse flags and
// call the packages that do the work; they hold no logic of their own.
package main

import (
	"fmt"
	"os"
)

func main() {
	if err := newRootCommand().Execute(); err != nil {
		fmt.Fprintln(os.Stderr, "outpost:", err)
		os.Exit(exitCode(err))
	}
}
