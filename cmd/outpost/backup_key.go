package main

import (
	"fmt"

	"github.com/spf13/cobra"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller/localruntime"
)

func newBackupKeyCommand(f *singleHostFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "key",
		Short: "Manage the age keys that encrypt backups on this host",
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "generate NAME",
		Short: "Generate an age key for spec.backup.encryption.keySecret NAME",
		Long: `Generates an age identity into the file a single host reads for the Secret
NAME (secrets/NAMESPACE/NAME/age.key in the state directory, mode 0600, owned
by the user running this), and prints its recipient (public key). Archiving
uses only the recipient; the identity is read by restores and verification.
An existing key is never overwritten. Keep a copy of the key somewhere else:
without it no encrypted backup can be restored.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, err := localruntime.KeyFile(f.stateDir, f.namespace, args[0])
			if err != nil {
				return err
			}
			recipient, err := backup.WriteNewKeyFile(file)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "age key written to %s; keep a copy of it outside this host\n", file)
			fmt.Fprintln(cmd.OutOrStdout(), recipient)
			return nil
		},
	})
	return cmd
}
