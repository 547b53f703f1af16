package main

import (
	"fmt"

	"github.com/spf13/cobra"
)

// newRootCommand builds the command tree. Each command, or group of related
// commands (the single-host ones, wal-push and wal-fetch), lives in a file
// named for it; output.go holds how they all print and log.
func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:   "outpost",
		Short: "Outpost: PostgreSQL with pgvector, backups and usage metering for disconnected sites",
		Long: `Outpost is a data services controller for sites that are often or always
offline. It provisions PostgreSQL with pgvector, hosts vector feature stores,
backs every instance up to S3-compatible storage, and meters usage.`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	var sh singleHostFlags
	sh.register(root)
	root.AddCommand(
		newVersionCommand(),
		newUpCommand(&sh),
		newApplyCommand(&sh),
		newGetCommand(&sh),
		newDescribeCommand(&sh),
		newDeleteCommand(&sh),
		newPsqlCommand(&sh),
		newFeatureStoreCommand(&sh),
		newUsageCommand(&sh),
		newHubCommand(),
		newControllerCommand(&sh),
		newInstanceCommand(),
		newWALPushCommand(),
		newWALFetchCommand(),
		newBackupCommand(&sh),
		newBundleCommand(),
	)
	refuseUnknownSubcommands(root)
	return root
}

// refuseUnknownSubcommands makes every command that only groups others
// fail on a word that names none of them: cobra would print the help and
// exit 0, and a script's typo (`outpost backup kye`) would pass as done.
func refuseUnknownSubcommands(cmd *cobra.Command) {
	for _, sub := range cmd.Commands() {
		refuseUnknownSubcommands(sub)
	}
	if !cmd.HasSubCommands() || cmd.Run != nil || cmd.RunE != nil || cmd == cmd.Root() {
		return
	}
	cmd.Args = cobra.ArbitraryArgs
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			return fmt.Errorf("unknown command %q for %q (see %s --help)", args[0], cmd.CommandPath(), cmd.CommandPath())
		}
		return cmd.Help()
	}
}
