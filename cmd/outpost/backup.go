package main

import (
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	"github.com/outpostdata/outpost/controller/singlehost"
)

func newBackupCommand(f *singleHostFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "backup",
		Short: "Create, list, verify, restore, delete and prune backups of instances on this host",
	}
	cmd.AddCommand(newBackupCreateCommand(f), newBackupListCommand(f), newBackupVerifyCommand(f), newBackupRestoreCommand(f),
		newBackupDeleteCommand(f), newBackupPruneCommand(f), newBackupKeyCommand(f))
	return cmd
}

func newBackupCreateCommand(f *singleHostFlags) *cobra.Command {
	var output, typ, parent string
	cmd := &cobra.Command{
		Use:   "create INSTANCE [--type full|incremental] [--parent ID]",
		Short: "Make a base backup of a running instance now, full or incremental",
		Long: `Makes a base backup of INSTANCE now, under the instance's lease. --type
incremental stores only the pages that changed since its parent (--parent, by
default the newest completed backup of the instance, full or incremental),
plus whole files that are new or are not relation data; a restore rebuilds it
from its full backup and every incremental one up to it.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, t, err := f.backupTarget(cmd, args[0])
			if err != nil {
				return err
			}
			if t.ConnString == "" {
				return fmt.Errorf("instance %s/%s has no credentials yet: is `outpost up` running and the instance Ready?", f.namespace, args[0])
			}
			start := time.Now()
			m, err := backup.Create(cmd.Context(), backup.CreateOptions{
				Store: t.Store, Namespace: f.namespace, Instance: args[0],
				ConnString: t.ConnString, DataDir: t.DataDir, Keys: t.Keys,
				Progress: progressTo(cmd.ErrOrStderr(), "backed up"),
				Type:     typ, Parent: parent,
			})
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), m)
			}
			took := time.Since(start)
			on := ""
			if m.Incremental() {
				on = " on top of " + m.Parent
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s backup %s%s completed: %d MB read, %d MB stored, %s (%.0f MB/s), WAL %s..%s\n",
				m.TypeName(), m.ID, on, m.SourceBytes>>20, m.StoredBytes>>20, took.Round(time.Millisecond), float64(m.SourceBytes)/1e6/took.Seconds(), m.StartLSN, m.StopLSN)
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	cmd.Flags().StringVar(&typ, "type", backup.TypeFull, "full or incremental")
	cmd.Flags().StringVar(&parent, "parent", "", "the backup an incremental one goes on top of; default the newest completed one")
	return cmd
}

func newBackupListCommand(f *singleHostFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "list INSTANCE",
		Short: "List an instance's backups in its object store",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, t, err := f.backupTarget(cmd, args[0])
			if err != nil {
				return err
			}
			all, err := backup.List(cmd.Context(), t.Store, f.namespace, args[0])
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), all)
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "ID\tSTATE\tTYPE\tPARENT\tSTOPPED\tSTART LSN\tSTOP LSN\tSTORED\tENCRYPTED\tSYSTEM ID")
			var damaged []string
			for _, b := range all {
				switch {
				case b.Damaged != "":
					fmt.Fprintf(tw, "%s\tdamaged\t-\t-\t-\t-\t-\t-\t-\t%s\n", b.ID, dash(b.SystemIdentifier))
					damaged = append(damaged, b.Damaged)
				case !b.Completed:
					fmt.Fprintf(tw, "%s\tincomplete\t-\t-\t-\t-\t-\t-\t-\t%s\n", b.ID, dash(b.SystemIdentifier))
				default:
					m := b.Manifest
					fmt.Fprintf(tw, "%s\tcompleted\t%s\t%s\t%s\t%s\t%s\t%dMB\t%v\t%s\n", b.ID, m.TypeName(), dash(m.Parent), m.StopTime.UTC().Format(time.RFC3339), m.StartLSN, m.StopLSN, m.StoredBytes>>20, m.Encrypted, m.SystemIdentifier)
				}
			}
			if err := tw.Flush(); err != nil {
				return err
			}
			for _, d := range damaged {
				fmt.Fprintln(cmd.ErrOrStderr(), "damaged:", d)
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}

// backupTarget opens the state directory and resolves instance's backup
// store and key.
func (f *singleHostFlags) backupTarget(cmd *cobra.Command, instance string) (singlehost.StateDir, *singlehost.BackupTarget, error) {
	sd, err := f.open()
	if err != nil {
		return sd, nil, err
	}
	t, err := singlehost.ResolveBackup(cmd.Context(), sd, f.namespace, instance)
	return sd, t, err
}

func newBackupVerifyCommand(f *singleHostFlags) *cobra.Command {
	var output string
	var restore bool
	cmd := &cobra.Command{
		Use:   "verify INSTANCE BACKUP [--restore]",
		Short: "Re-read every object of a backup and check its checksum and WAL continuity; with --restore also restore and check it",
		Long: `Re-reads every object of backup BACKUP (an ID from outpost backup list) and
checks it against the manifest (for an incremental backup, every object of
every backup in its chain, from its full backup up; a missing link fails), and checks that the WAL from the backup's start
to the newest archived segment has no gap, reporting the newest point a
point-in-time restore can reach. With --restore it also restores the backup
into a throw-away local instance, starts it, runs amcheck on every B-tree
index and counts the rows of every table, then removes it. The result goes
into status.verification of the Backup that made the backup.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := f.open()
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				out = io.Discard
			}
			rep, err := singlehost.VerifyBackup(cmd.Context(), sd, singlehost.VerifyOptions{
				Namespace: f.namespace, Instance: args[0], ID: args[1], Restore: restore,
				Out: out, Err: cmd.ErrOrStderr(),
			})
			if rep != nil && output == "json" {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	cmd.Flags().BoolVar(&restore, "restore", false, "also restore into a throw-away instance, run amcheck and count rows, then remove it")
	return cmd
}

func newBackupRestoreCommand(f *singleHostFlags) *cobra.Command {
	var to, backupID, target string
	cmd := &cobra.Command{
		Use:   "restore SOURCE --to NEW [--backup-id ID] [--target-time RFC3339]",
		Short: "Create a new instance from SOURCE's backups, to the end of WAL or a target time",
		Long: `Writes a PostgresInstance NEW with spec.bootstrap.recovery into the manifests
directory; the controller (outpost up) restores it. A target time before the
first recoverability point is refused at once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := f.open()
			if err != nil {
				return err
			}
			o := singlehost.RestoreOptions{Namespace: f.namespace, Source: args[0], To: to, BackupID: backupID}
			if target != "" {
				if o.TargetTime, err = time.Parse(time.RFC3339Nano, target); err != nil {
					return fmt.Errorf("--target-time: %w (use RFC 3339, e.g. 2026-11-21T20:00:00Z)", err)
				}
			}
			return singlehost.RestoreBackup(cmd.Context(), sd, o, cmd.OutOrStdout(), cmd.ErrOrStderr())
		},
	}
	cmd.Flags().StringVar(&to, "to", "", "name of the new instance")
	cmd.Flags().StringVar(&backupID, "backup-id", "", "backup to restore; default the newest one before the target time")
	cmd.Flags().StringVar(&target, "target-time", "", "recover to this time (RFC 3339); default the end of WAL")
	_ = cmd.MarkFlagRequired("to")
	return cmd
}

func newBackupDeleteCommand(f *singleHostFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "delete INSTANCE BACKUP",
		Short: "Delete one backup from the object store",
		Long: `Deletes backup BACKUP (an ID from outpost backup list) of INSTANCE, under the
instance's lease, so never while a backup or retention runs. The newest
completed backup is refused, and so is a backup an incremental one is on top
of (delete the incrementals first, newest first). The WAL it needed stays until outpost backup prune
or the schedule's retention finds no kept backup needs it.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, t, err := f.backupTarget(cmd, args[0])
			if err != nil {
				return err
			}
			if err := backup.DeleteBackup(cmd.Context(), t.Store, f.namespace, args[0], args[1]); err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "backup %s of %s/%s deleted\n", args[1], f.namespace, args[0])
			return nil
		},
	}
}

func newBackupPruneCommand(f *singleHostFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "prune INSTANCE",
		Short: "Apply the instance's retention policy now",
		Long: `Deletes the backups spec.backup.retention no longer keeps, interrupted
backups, and WAL no kept backup needs, under the instance's lease. The newest
completed backup is always kept, and so is every backup a kept incremental one
is on top of, down to its full backup.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			_, t, err := f.backupTarget(cmd, args[0])
			if err != nil {
				return err
			}
			p, err := controller.RetentionOf(t.Instance.Spec.Backup.Retention)
			if err != nil {
				return err
			}
			res, err := backup.ApplyRetention(cmd.Context(), t.Store, f.namespace, args[0], p, time.Now())
			if err != nil {
				return err
			}
			if output == "json" {
				return printJSON(cmd.OutOrStdout(), res)
			}
			fmt.Fprintf(cmd.OutOrStdout(), "deleted %d backups and %d WAL files; kept %s\n", len(res.DeletedBackups), res.DeletedWAL, strings.Join(res.Kept, ", "))
			if len(res.KeptAsParents) > 0 {
				fmt.Fprintf(cmd.OutOrStdout(), "kept %s only because kept incremental backups are on top of them\n", strings.Join(res.KeptAsParents, ", "))
			}
			return nil
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "", "output format: json")
	return cmd
}
