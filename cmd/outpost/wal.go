package main

import (
	"errors"

	"github.com/spf13/cobra"

	"github.com/outpostdata/outpost/backup"
)

// exitError ends the process with a code of its own, for commands whose
// caller (PostgreSQL) reads the code.
type exitError struct {
	code int
	err  error
}

func (e *exitError) Error() string { return e.err.Error() }

func newWALPushCommand() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "wal-push --config FILE PATH",
		Short: "Archive one WAL file (PostgreSQL's archive_command)",
		Long: `Compresses, optionally encrypts, and uploads one WAL file, and exits 0 only
after the object store holds it, checked by SHA-256. Pushing the same segment
again succeeds; a different segment under the same name fails.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := backup.ReadArchiveConfig(config)
			if err != nil {
				return err
			}
			return cfg.Push(cmd.Context(), args[0])
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "archive configuration (backup.json in the instance directory)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// Exit codes of wal-fetch. PostgreSQL reads 1 to 125 as "this file is not
// archived", ends recovery and promotes; above 125 it aborts recovery (as
// for a command the shell could not run), which is what every other
// failure must do, or a restore would stop early and lose the rest of WAL.
const (
	exitNotArchived   = 1
	exitAbortRecovery = 255
)

func newWALFetchCommand() *cobra.Command {
	var config string
	cmd := &cobra.Command{
		Use:   "wal-fetch --config FILE NAME DEST",
		Short: "Restore one archived WAL file (PostgreSQL's restore_command)",
		Long: `Downloads, decrypts and decompresses one archived WAL file into DEST.
Transient errors (an unreachable or hanging object store) are retried a few
times with backoff. Exits 1 only when the store says the file is not archived
(the end of recovery), and 255 on every other failure (damaged, undecryptable,
of another cluster, or the store still unreachable), which makes PostgreSQL
abort recovery instead of promoting early.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			cfg, err := backup.ReadArchiveConfig(config)
			if err != nil {
				return &exitError{code: exitAbortRecovery, err: err}
			}
			err = cfg.Fetch(cmd.Context(), args[0], args[1])
			if errors.Is(err, backup.ErrNotFound) {
				return &exitError{code: exitNotArchived, err: err}
			}
			if err != nil {
				return &exitError{code: exitAbortRecovery, err: err}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&config, "config", "", "archive configuration (backup.json in the instance directory)")
	_ = cmd.MarkFlagRequired("config")
	return cmd
}

// exitCode is the process exit code for err.
func exitCode(err error) int {
	var e *exitError
	if errors.As(err, &e) {
		return e.code
	}
	if err != nil {
		return 1
	}
	return 0
}
