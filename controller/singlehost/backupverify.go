package singlehost

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/outpostdata/outpost/backup"
	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/localruntime"
)

// VerifyOptions are what `outpost backup verify` checks and how it reports.
type VerifyOptions struct {
	Namespace, Instance, ID string
	// Restore also restores the backup into a throw-away server under the
	// state directory and checks it there.
	Restore bool
	// Out takes a line per check as it finishes (io.Discard for none); Err
	// the problems found and notes.
	Out, Err io.Writer
}

// VerifyReport is `outpost backup verify -o json`.
type VerifyReport struct {
	Checksums *backup.VerifyResult `json:"checksums"`
	// Continuity is the WAL from the backup to the newest archived segment.
	Continuity *backup.Continuity            `json:"continuity"`
	Restore    *localruntime.RestoreCheck    `json:"restore,omitempty"`
	Status     *outpostv1.BackupVerification `json:"verification"`
	// RecordedOn are the Backups whose status.verification now holds it.
	RecordedOn []string `json:"recordedOn"`
}

// VerifyBackup re-reads every object of a backup against its checksums,
// checks the archived WAL from the backup on, and with Restore restores it
// into a throw-away server and checks that, then records the result in the
// status of the Backups that made it. Each check is printed as it finishes,
// since a restore can take long. Once the checks ran, the report comes back
// and the error says why the backup failed; without a report the error says
// why they could not run. A failure to record is only a note, since the
// verification itself ran.
func VerifyBackup(ctx context.Context, sd StateDir, o VerifyOptions) (*VerifyReport, error) {
	t, err := ResolveBackup(ctx, sd, o.Namespace, o.Instance)
	if err != nil {
		return nil, err
	}
	rep := &VerifyReport{}
	res, err := backup.Verify(ctx, t.Store, o.Namespace, o.Instance, o.ID)
	if err != nil {
		return nil, err
	}
	rep.Checksums = res
	v := &outpostv1.BackupVerification{Time: metav1.Now(), ChecksumsOK: res.OK}
	var failure error
	if !res.OK {
		for _, e := range res.Errors {
			fmt.Fprintln(o.Err, e)
		}
		failure = fmt.Errorf("backup %s failed verification: %d problems", res.ID, len(res.Errors))
		v.Message = fmt.Sprintf("%d objects do not match the manifest; first: %s", len(res.Errors), res.Errors[0])
	} else {
		fmt.Fprintf(o.Out, "backup %s: %d objects, %d bytes, every checksum matches\n", res.ID, res.Objects, res.Bytes)
		if len(res.Chain) > 1 {
			fmt.Fprintf(o.Out, "its chain, every link checked: %s\n", strings.Join(res.Chain, " <- "))
		}
	}
	cont, err := backup.CheckContinuity(ctx, t.Store, o.Namespace, o.Instance, o.ID)
	if err != nil {
		return nil, err
	}
	rep.Continuity = cont
	fmt.Fprintln(o.Out, cont)
	if !cont.OK() && failure == nil {
		failure = fmt.Errorf("backup %s: %s", o.ID, cont)
		v.Message = failure.Error()
	}
	if failure == nil && o.Restore {
		// The throw-away server's restore_command runs this binary.
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		check, err := localruntime.VerifyByRestore(ctx, t.StoreConfig, t.KeyFile, o.Namespace, o.Instance, o.ID, exe, sd.Root, slog.New(slog.DiscardHandler))
		if err != nil {
			failure = fmt.Errorf("backup %s: restore check failed: %w", o.ID, err)
			v.Message = failure.Error()
		} else {
			rep.Restore, v.Restored = check, true
			v.Message = fmt.Sprintf("restored: %d databases, %d B-tree indexes pass amcheck, %d tables with %d rows", check.Databases, check.IndexesOK, check.Tables, check.Rows)
			fmt.Fprintf(o.Out, "backup %s restores: %d databases, %d B-tree indexes pass amcheck, %d tables with %d rows (restore took %s)\n",
				o.ID, check.Databases, check.IndexesOK, check.Tables, check.Rows, check.RestoreTook.Round(time.Millisecond))
		}
	}
	rep.Status = v
	names, err := RecordVerification(ctx, sd, o.Namespace, o.Instance, o.ID, v)
	switch {
	case err != nil:
		fmt.Fprintf(o.Err, "note: %v\n", err)
	case len(names) == 0:
		fmt.Fprintf(o.Err, "note: no Backup object records backup %s (it was made with outpost backup create), so no status was updated\n", o.ID)
	default:
		fmt.Fprintf(o.Out, "recorded in the status of Backup %s\n", strings.Join(names, ", "))
	}
	rep.RecordedOn = names
	return rep, failure
}
