package backup

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// VerifyResult is what re-reading a backup found.
type VerifyResult struct {
	ID      string   `json:"id"`
	Objects int      `json:"objects"`
	Bytes   int64    `json:"bytes"`
	OK      bool     `json:"ok"`
	Errors  []string `json:"errors,omitempty"`
}

// Verify re-reads every object of a completed backup and checks it against
// the manifest's checksum, and checks that the WAL it needs is archived.
func Verify(ctx context.Context, s *Store, namespace, instance, id string) (*VerifyResult, error) {
	m, _, err := ReadManifest(ctx, s, namespace, instance, id)
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{ID: id, Objects: len(m.Objects)}
	dir := baseDir(namespace, instance, id)
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, o := range m.Objects {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			b, err := s.get(ctx, path.Join(dir, o.Name))
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err != nil:
				res.Errors = append(res.Errors, err.Error())
			case sha256Hex(b) != o.SHA256 || int64(len(b)) != o.Size:
				res.Errors = append(res.Errors, fmt.Sprintf("%s: checksum mismatch: the object was altered or damaged", path.Join(dir, o.Name)))
			default:
				res.Bytes += int64(len(b))
			}
		}()
	}
	wg.Wait()
	for _, seg := range segmentsBetween(m.Timeline, m.StartLSN, m.StopLSN) {
		ok, err := s.exists(ctx, walKey(namespace, instance, seg))
		if err != nil {
			res.Errors = append(res.Errors, err.Error())
		} else if !ok {
			res.Errors = append(res.Errors, fmt.Sprintf("WAL segment %s, which the backup needs, is not archived", seg))
		}
	}
	sort.Strings(res.Errors)
	res.OK = len(res.Errors) == 0
	return res, nil
}

const walSegmentSize = 16 << 20

func parseLSN(s string) uint64 {
	hi, lo, _ := strings.Cut(s, "/")
	h, _ := strconv.ParseUint(hi, 16, 32)
	l, _ := strconv.ParseUint(lo, 16, 32)
	return h<<32 | l
}

func segmentName(tli uint32, segno uint64) string {
	per := uint64(0x100000000 / walSegmentSize)
	return fmt.Sprintf("%08X%08X%08X", tli, segno/per, segno%per)
}

// segmentsBetween names the WAL segments from start to stop (inclusive).
func segmentsBetween(tli uint32, start, stop string) []string {
	a, b := parseLSN(start)/walSegmentSize, parseLSN(stop)/walSegmentSize
	if parseLSN(stop)%walSegmentSize == 0 && b > a {
		b--
	}
	var out []string
	for seg := a; seg <= b && seg-a < 1<<16; seg++ {
		out = append(out, segmentName(tli, seg))
	}
	return out
}

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
	// FirstRecoverabilityPoint is the end of the oldest kept backup: the
	// earliest time a restore can still target.
	FirstRecoverabilityPoint time.Time `json:"firstRecoverabilityPoint"`
}

// ApplyRetention deletes the backups the policy no longer keeps, backups
// that were interrupted (older than the newest completed one), and WAL older
// than the oldest kept backup needs. The newest completed backup is never
// deleted, and nothing is deleted when there is no completed backup.
func ApplyRetention(ctx context.Context, s *Store, namespace, instance string, p RetentionPolicy, now time.Time) (*RetentionResult, error) {
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
	var oldestKept *Manifest
	for _, b := range completed {
		if keep[b.ID] {
			res.Kept = append(res.Kept, b.ID)
			if oldestKept == nil {
				oldestKept = b.Manifest
				res.FirstRecoverabilityPoint = b.Manifest.StopTime
			}
		}
	}
	var doomed []string
	for _, b := range all {
		if keep[b.ID] || (!b.Completed && b.ID > newest.ID) {
			continue
		}
		objs, err := s.list(ctx, baseDir(namespace, instance, b.ID), true)
		if err != nil {
			return nil, err
		}
		// The manifest goes first, so a half-deleted backup is never
		// mistaken for a completed one.
		mf := path.Join(baseDir(namespace, instance, b.ID), manifestName)
		if b.Completed {
			if err := s.remove(ctx, []string{mf}); err != nil {
				return nil, err
			}
		}
		for _, o := range objs {
			if o.Key != mf {
				doomed = append(doomed, o.Key)
			}
		}
		res.DeletedBackups = append(res.DeletedBackups, b.ID)
	}
	wal, err := s.list(ctx, path.Join(instanceDir(namespace, instance), "wal"), true)
	if err != nil {
		return nil, err
	}
	for _, o := range wal {
		name := path.Base(o.Key)
		if len(name) >= 24 && !strings.HasSuffix(name, ".history") && name[:24] < oldestKept.StartWAL {
			doomed = append(doomed, o.Key)
			res.DeletedWAL++
		}
	}
	if len(doomed) > 0 {
		if err := s.remove(ctx, doomed); err != nil {
			return nil, err
		}
	}
	return res, nil
}
