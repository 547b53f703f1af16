package backup

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"
)

// RetentionPolicy keeps backups for a recovery window or by count.
type RetentionPolicy struct {
	Window time.Duration
	Count  int
}

// RetentionResult says what retention deleted.
type RetentionResult struct {
	DeletedBackups []string `json:"deletedBackups"`
	DeletedWAL     int      `json:"deletedWAL"`
	Kept           []string `json:"kept"`
	// KeptAsParents are backups the policy alone would delete, kept
	// because a kept incremental backup is on top of them: deleting them
	// would leave it unrestorable. They go once nothing kept needs them.
	KeptAsParents []string `json:"keptAsParents,omitempty"`
	// FirstRecoverabilityPoint is the end of the oldest kept backup: the
	// earliest time a restore can still target.
	FirstRecoverabilityPoint time.Time `json:"firstRecoverabilityPoint"`
}

// ApplyRetention deletes the backups the policy no longer keeps, backups
// that were interrupted or are damaged (older than the newest completed
// one), and WAL older than the oldest kept backup of its cluster needs. The
// newest completed backup is never deleted, nor is any backup a kept
// incremental backup depends on (its parent, and theirs, down to the full
// backup), and nothing is deleted when there is no completed backup. It holds the instance's lease, so it never
// runs while a backup does (ErrBusy).
//
// WAL of a cluster none of whose backups is kept (an instance deleted and
// re-created under the same name) stays; so does WAL of the old layout
// when no backup in the old layout is kept.
func ApplyRetention(ctx context.Context, s *Store, namespace, instance string, p RetentionPolicy, now time.Time) (*RetentionResult, error) {
	lease, ctx, err := AcquireLease(ctx, s, namespace, instance, "retention")
	if err != nil {
		return nil, fmt.Errorf("retention: %w", err)
	}
	defer lease.Release(ctx)
	all, err := List(ctx, s, namespace, instance)
	if err != nil {
		return nil, err
	}
	var completed []BackupInfo
	for _, b := range all {
		if b.Completed {
			completed = append(completed, b)
		}
	}
	res := &RetentionResult{}
	if len(completed) == 0 {
		return res, nil
	}
	newest := completed[len(completed)-1]
	keep := map[string]bool{newest.ID: true}
	switch {
	case p.Count > 0:
		for i := max(0, len(completed)-p.Count); i < len(completed); i++ {
			keep[completed[i].ID] = true
		}
	case p.Window > 0:
		start := now.Add(-p.Window)
		for i, b := range completed {
			if !b.Manifest.StopTime.Before(start) {
				keep[b.ID] = true
				// The backup before the window's first one is needed to
				// restore to the window's start.
				if i > 0 {
					keep[completed[i-1].ID] = true
				}
			}
		}
	default:
		for _, b := range completed {
			keep[b.ID] = true
		}
	}
	res.KeptAsParents = keepAncestors(all, keep)
	// The oldest kept backup's first segment, per WAL directory.
	oldestWAL := map[string]string{}
	for _, b := range completed {
		if keep[b.ID] {
			res.Kept = append(res.Kept, b.ID)
			if res.FirstRecoverabilityPoint.IsZero() {
				res.FirstRecoverabilityPoint = b.Manifest.StopTime
			}
			d := clusterDir(namespace, instance, b.Manifest.layoutSysid())
			if _, ok := oldestWAL[d]; !ok {
				oldestWAL[d] = b.Manifest.StartWAL
			}
		}
	}
	var doomed []string
	for _, b := range all {
		if keep[b.ID] || (!b.Completed && b.ID > newest.ID) {
			continue
		}
		keys, err := backupObjects(ctx, s, b)
		if err != nil {
			return nil, err
		}
		doomed = append(doomed, keys...)
		res.DeletedBackups = append(res.DeletedBackups, b.ID)
	}
	for d, first := range oldestWAL {
		wal, err := s.list(ctx, path.Join(d, "wal"), true)
		if err != nil {
			return nil, err
		}
		for _, o := range wal {
			name := path.Base(o.Key)
			if len(name) >= 24 && isSegmentName(name[:24]) && !strings.HasSuffix(name, ".history") && name[:24] < first {
				doomed = append(doomed, o.Key)
				res.DeletedWAL++
			}
		}
	}
	if len(doomed) > 0 {
		if err := s.remove(ctx, doomed); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// keepAncestors adds to keep every backup a kept incremental one is on top
// of, directly or through others, and returns those it added. A parent
// that is damaged or incomplete is kept too: the kept backup names it, and
// deleting it would make a broken chain permanent.
func keepAncestors(all []BackupInfo, keep map[string]bool) []string {
	byID := make(map[string]BackupInfo, len(all))
	for _, b := range all {
		byID[b.ID] = b
	}
	var added []string
	for _, b := range all {
		if !keep[b.ID] || !b.Completed {
			continue
		}
		for p := b.Manifest.Parent; p != ""; {
			parent, ok := byID[p]
			if !ok || keep[p] {
				break
			}
			keep[p] = true
			added = append(added, p)
			if !parent.Completed {
				break
			}
			p = parent.Manifest.Parent
		}
	}
	sort.Strings(added)
	return added
}

// dependents are the completed incremental backups directly on top of id.
func dependents(all []BackupInfo, id string) []string {
	var out []string
	for _, b := range all {
		if b.Completed && b.Manifest.Parent == id {
			out = append(out, b.ID)
		}
	}
	return out
}

// backupObjects deletes a completed backup's manifest first, so that a
// half-deleted backup is never mistaken for a completed one, and returns
// the keys of the rest of its objects, to be deleted next.
func backupObjects(ctx context.Context, s *Store, b BackupInfo) ([]string, error) {
	objs, err := s.list(ctx, b.dir, true)
	if err != nil {
		return nil, err
	}
	mf := path.Join(b.dir, manifestName)
	if b.Completed {
		if err := s.remove(ctx, []string{mf}); err != nil {
			return nil, err
		}
	}
	var keys []string
	for _, o := range objs {
		if o.Key != mf {
			keys = append(keys, o.Key)
		}
	}
	return keys, nil
}

// DeleteBackup deletes one backup by hand, under the instance's lease. The
// newest completed backup is refused: without it, WAL archived since would
// have nothing to be replayed onto. Incomplete and damaged backups can be
// deleted. A backup an incremental one is on top of is refused, naming
// them: they would no longer restore. The WAL the backup needed stays
// until retention finds that no kept backup needs it.
func DeleteBackup(ctx context.Context, s *Store, namespace, instance, id string) error {
	lease, ctx, err := AcquireLease(ctx, s, namespace, instance, "delete")
	if err != nil {
		return fmt.Errorf("delete backup %s: %w", id, err)
	}
	defer lease.Release(ctx)
	all, err := List(ctx, s, namespace, instance)
	if err != nil {
		return err
	}
	var target *BackupInfo
	var newest string
	for i, b := range all {
		if b.ID == id {
			target = &all[i]
		}
		if b.Completed {
			newest = b.ID
		}
	}
	switch {
	case target == nil:
		return fmt.Errorf("delete backup %s: %s/%s has no such backup in %s (outpost backup list shows them)", id, namespace, instance, s)
	case target.ID == newest:
		return fmt.Errorf("delete backup %s: it is the newest completed backup of %s/%s, which every restore to the end of WAL starts from; make a newer one first", id, namespace, instance)
	}
	if deps := dependents(all, id); len(deps) > 0 {
		return fmt.Errorf("delete backup %s: incremental backups %s are on top of it and would no longer restore without it; delete them first, newest first", id, strings.Join(deps, ", "))
	}
	keys, err := backupObjects(ctx, s, *target)
	if err != nil {
		return err
	}
	return s.remove(ctx, keys)
}
