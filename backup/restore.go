package backup

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"time"
)

// RestoreOptions says which backup to put where.
type RestoreOptions struct {
	Store               *Store
	Namespace, Instance string
	// BackupID restores this backup; empty picks the newest completed one
	// that ended before TargetTime (or the newest, without one).
	BackupID string
	// TargetTime, when not zero, is where recovery will stop; it must not be
	// before the chosen backup's end.
	TargetTime time.Time
	// DataDir must not exist or be empty.
	DataDir string
	Keys    Keys
	// Concurrency of downloads; 0 means twice the number of CPUs, at least 4.
	Concurrency int
	// Progress, if set, is called with the bytes written so far.
	Progress func(written int64)
}

// ChooseBackup picks the backup a restore starts from and checks the target
// time against it. A target before the first recoverability point is
// refused with the earliest possible time.
func ChooseBackup(ctx context.Context, s *Store, namespace, instance, id string, target time.Time) (*Manifest, error) {
	all, err := List(ctx, s, namespace, instance)
	if err != nil {
		return nil, err
	}
	var completed []*Manifest
	for _, b := range all {
		if b.Completed {
			completed = append(completed, b.Manifest)
		}
	}
	if len(completed) == 0 {
		return nil, fmt.Errorf("no completed backup of %s/%s in %s", namespace, instance, s)
	}
	earliest := completed[0].StopTime
	if id != "" {
		for _, m := range completed {
			if m.ID == id {
				if !target.IsZero() && target.Before(m.StopTime) {
					return nil, fmt.Errorf("target time %s is before the end of backup %s; the earliest time it can restore to is %s", target.UTC().Format(time.RFC3339Nano), id, m.StopTime.UTC().Format(time.RFC3339Nano))
				}
				return m, nil
			}
		}
		return nil, fmt.Errorf("backup %s of %s/%s is not a completed backup in %s (outpost backup list shows them)", id, namespace, instance, s)
	}
	if target.IsZero() {
		return completed[len(completed)-1], nil
	}
	if target.Before(earliest) {
		return nil, fmt.Errorf("target time %s is before the first recoverability point of %s/%s; the earliest time a restore can target is %s", target.UTC().Format(time.RFC3339Nano), namespace, instance, earliest.UTC().Format(time.RFC3339Nano))
	}
	var pick *Manifest
	for _, m := range completed {
		if !m.StopTime.After(target) {
			pick = m
		}
	}
	return pick, nil
}

// FirstRecoverabilityPoint is the earliest time a restore can target: the
// end of the oldest completed backup. Zero when there is none.
func FirstRecoverabilityPoint(ctx context.Context, s *Store, namespace, instance string) (time.Time, error) {
	all, err := List(ctx, s, namespace, instance)
	if err != nil {
		return time.Time{}, err
	}
	for _, b := range all {
		if b.Completed {
			return b.Manifest.StopTime, nil
		}
	}
	return time.Time{}, nil
}

// Restore downloads a base backup into DataDir, checking every object's
// checksum, and writes its backup_label. It does not start recovery: the
// caller adds recovery.signal and restore_command (see RecoverySettings).
func Restore(ctx context.Context, opts RestoreOptions) (*Manifest, error) {
	m, err := ChooseBackup(ctx, opts.Store, opts.Namespace, opts.Instance, opts.BackupID, opts.TargetTime)
	if err != nil {
		return nil, err
	}
	if m.Encrypted && len(opts.Keys.Identities) == 0 {
		return nil, fmt.Errorf("backup %s is encrypted with age and no key was given: configure spec.backup.encryption on the source, or pass --age-key", m.ID)
	}
	if entries, err := os.ReadDir(opts.DataDir); err == nil && len(entries) > 0 {
		return nil, fmt.Errorf("restore into %s: the directory is not empty", opts.DataDir)
	}
	if err := os.MkdirAll(opts.DataDir, 0o700); err != nil {
		return nil, err
	}
	pr, pw := io.Pipe()
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	go func() { pw.CloseWithError(fetchObjects(ctx, opts, m, pw)) }()
	err = extractTar(pr, opts.DataDir, opts.Progress)
	pr.CloseWithError(errors.New("restore stopped"))
	if err != nil {
		cancel(err)
		return nil, fmt.Errorf("restore backup %s: %w", m.ID, err)
	}
	if err := os.WriteFile(filepath.Join(opts.DataDir, "backup_label"), []byte(m.BackupLabel), 0o600); err != nil {
		return nil, err
	}
	if m.TablespaceMap != "" {
		if err := os.WriteFile(filepath.Join(opts.DataDir, "tablespace_map"), []byte(m.TablespaceMap), 0o600); err != nil {
			return nil, err
		}
	}
	return m, nil
}

// fetchObjects downloads, checks and opens the backup's objects with some
// running ahead, and writes them to w in order.
func fetchObjects(ctx context.Context, opts RestoreOptions, m *Manifest, w io.Writer) error {
	conc := opts.Concurrency
	if conc <= 0 {
		conc = max(4, 2*runtime.GOMAXPROCS(0))
	}
	type result struct {
		data []byte
		err  error
	}
	dir := baseDir(m.Namespace, m.Instance, m.ID)
	slots := make([]chan result, len(m.Objects))
	for i := range slots {
		slots[i] = make(chan result, 1)
	}
	sem := make(chan struct{}, conc)
	go func() {
		for i, o := range m.Objects {
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			go func() {
				data, err := fetchObject(ctx, opts.Store, opts.Keys, dir, o)
				slots[i] <- result{data, err}
			}()
		}
	}()
	for i := range m.Objects {
		var r result
		select {
		case r = <-slots[i]:
		case <-ctx.Done():
			return context.Cause(ctx)
		}
		<-sem
		if r.err != nil {
			return r.err
		}
		if _, err := w.Write(r.data); err != nil {
			return err
		}
	}
	return nil
}

func fetchObject(ctx context.Context, s *Store, keys Keys, dir string, o Object) ([]byte, error) {
	stored, err := s.getSized(ctx, path.Join(dir, o.Name), o.Size)
	if err != nil {
		return nil, err
	}
	if got := sha256Hex(stored); got != o.SHA256 || int64(len(stored)) != o.Size {
		return nil, fmt.Errorf("%s: checksum mismatch (stored object has sha256 %s, %d bytes; manifest says %s, %d bytes): the object was altered or damaged", path.Join(dir, o.Name), got, len(stored), o.SHA256, o.Size)
	}
	return keys.open(path.Join(dir, o.Name), stored)
}
