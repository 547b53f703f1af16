package main

import (
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"sigs.k8s.io/yaml"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/controller"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/localruntime"
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

// verifyReport is `outpost backup verify -o json`.
type verifyReport struct {
	Checksums *backup.VerifyResult `json:"checksums"`
	// Continuity is the WAL from the backup to the newest archived segment.
	Continuity *backup.Continuity            `json:"continuity"`
	Restore    *localruntime.RestoreCheck    `json:"restore,omitempty"`
	Status     *outpostv1.BackupVerification `json:"verification"`
	// RecordedOn are the Backups whose status.verification now holds it.
	RecordedOn []string `json:"recordedOn"`
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
			sd, t, err := f.backupTarget(cmd, args[0])
			if err != nil {
				return err
			}
			instance, id := args[0], args[1]
			rep := &verifyReport{}
			res, err := backup.Verify(cmd.Context(), t.Store, f.namespace, instance, id)
			if err != nil {
				return err
			}
			rep.Checksums = res
			v := &outpostv1.BackupVerification{Time: metav1.Now(), ChecksumsOK: res.OK}
			var failure error
			if !res.OK {
				for _, e := range res.Errors {
					fmt.Fprintln(cmd.ErrOrStderr(), e)
				}
				failure = fmt.Errorf("backup %s failed verification: %d problems", res.ID, len(res.Errors))
				v.Message = fmt.Sprintf("%d objects do not match the manifest; first: %s", len(res.Errors), res.Errors[0])
			} else if output != "json" {
				fmt.Fprintf(cmd.OutOrStdout(), "backup %s: %d objects, %d bytes, every checksum matches\n", res.ID, res.Objects, res.Bytes)
				if len(res.Chain) > 1 {
					fmt.Fprintf(cmd.OutOrStdout(), "its chain, every link checked: %s\n", strings.Join(res.Chain, " <- "))
				}
			}
			cont, err := backup.CheckContinuity(cmd.Context(), t.Store, f.namespace, instance, id)
			if err != nil {
				return err
			}
			rep.Continuity = cont
			if output != "json" {
				fmt.Fprintln(cmd.OutOrStdout(), cont)
			}
			if !cont.OK() && failure == nil {
				failure = fmt.Errorf("backup %s: %s", id, cont)
				v.Message = failure.Error()
			}
			if failure == nil && restore {
				exe, err := os.Executable()
				if err != nil {
					return err
				}
				check, err := localruntime.VerifyByRestore(cmd.Context(), t.StoreConfig, t.KeyFile, f.namespace, instance, id, exe, sd.Root, slog.New(slog.NewTextHandler(io.Discard, nil)))
				if err != nil {
					failure = fmt.Errorf("backup %s: restore check failed: %w", id, err)
					v.Message = failure.Error()
				} else {
					rep.Restore, v.Restored = check, true
					v.Message = fmt.Sprintf("restored: %d databases, %d B-tree indexes pass amcheck, %d tables with %d rows", check.Databases, check.IndexesOK, check.Tables, check.Rows)
					if output != "json" {
						fmt.Fprintf(cmd.OutOrStdout(), "backup %s restores: %d databases, %d B-tree indexes pass amcheck, %d tables with %d rows (restore took %s)\n",
							id, check.Databases, check.IndexesOK, check.Tables, check.Rows, check.RestoreTook.Round(time.Millisecond))
					}
				}
			}
			rep.Status = v
			names, err := singlehost.RecordVerification(cmd.Context(), sd, f.namespace, instance, id, v)
			switch {
			case err != nil:
				fmt.Fprintf(cmd.ErrOrStderr(), "note: %v\n", err)
			case len(names) == 0:
				fmt.Fprintf(cmd.ErrOrStderr(), "note: no Backup object records backup %s (it was made with outpost backup create), so no status was updated\n", id)
			case output != "json":
				fmt.Fprintf(cmd.OutOrStdout(), "recorded in the status of Backup %s\n", strings.Join(names, ", "))
			}
			rep.RecordedOn = names
			if output == "json" {
				if err := printJSON(cmd.OutOrStdout(), rep); err != nil {
					return err
				}
			}
			return failure
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
			sd, t, err := f.backupTarget(cmd, args[0])
			if err != nil {
				return err
			}
			rec := &outpostv1.RecoveryBootstrap{Source: args[0], ObjectStore: t.Instance.Spec.Backup.ObjectStore, BackupID: backupID}
			var tt time.Time
			if target != "" {
				if tt, err = time.Parse(time.RFC3339Nano, target); err != nil {
					return fmt.Errorf("--target-time: %w (use RFC 3339, e.g. 2026-11-21T20:00:00Z)", err)
				}
				rec.TargetTime = &metav1.Time{Time: tt}
			}
			m, err := backup.ChooseBackup(cmd.Context(), t.Store, f.namespace, args[0], backupID, tt)
			if err != nil {
				return err
			}
			inst := &outpostv1.PostgresInstance{}
			inst.APIVersion, inst.Kind = outpostv1.GroupVersion.String(), "PostgresInstance"
			inst.Name, inst.Namespace = to, f.namespace
			inst.Spec = *t.Instance.Spec.DeepCopy()
			inst.Spec.Backup = nil
			if enc := t.Instance.Spec.Backup.Encryption; enc != nil {
				// The key is needed to read the source's backups; the new
				// instance archives nowhere until given a policy of its own.
				inst.Spec.Backup = &outpostv1.BackupPolicy{ObjectStore: rec.ObjectStore, Encryption: enc, Retention: t.Instance.Spec.Backup.Retention}
			}
			inst.Spec.Bootstrap = outpostv1.Bootstrap{Recovery: rec}
			b, err := yaml.Marshal(inst)
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "restoring from backup %s (ended %s)\n", m.ID, m.StopTime.UTC().Format(time.RFC3339))
			return singlehost.Apply(cmd.Context(), sd, to+".yaml", b, cmd.OutOrStdout())
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
