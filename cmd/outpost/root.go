package main

import "github.com/spf13/cobra"

// newRootCommand builds the command tree. Each subcommand lives in a file of
// its own.
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
	return root
}
