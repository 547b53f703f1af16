package backup

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"time"
)

// Continuity is what CheckContinuity found: whether the archived WAL from a
// backup's start onwards has no gap, and how far a point-in-time recovery
// from it can get.
type Continuity struct {
	Backup string `json:"backup"`
	// From is the backup's first WAL segment; Newest the newest archived
	// segment of its timeline.
	From   string `json:"from"`
	Newest string `json:"newest"`
	// Missing are the segments between From and Newest that are not
	// archived, oldest first (at most 100; MissingCount counts them all).
	Missing      []string `json:"missing,omitempty"`
	MissingCount int      `json:"missingCount"`
	// Reachable is the last segment a recovery from the backup replays:
	// the one before the first gap, or Newest. ReachableLSN is where it
	// ends, and ReachableTime when it was archived, at or after the last
	// transaction in it.
	Reachable     string    `json:"reachable"`
	ReachableLSN  string    `json:"reachableLSN"`
	ReachableTime time.Time `json:"reachableTime"`
}

// OK reports whether the archive is continuous.
func (c *Continuity) OK() bool { return c.MissingCount == 0 }

// String says it in one line for people.
func (c *Continuity) String() string {
	if c.OK() {
		return fmt.Sprintf("WAL from %s to %s is continuous; a restore from backup %s reaches %s (segment %s, archived %s)",
			c.From, c.Newest, c.Backup, c.ReachableLSN, c.Reachable, c.ReachableTime.UTC().Format(time.RFC3339))
	}
	return fmt.Sprintf("WAL has a gap: %d segments between %s and %s are missing, first %s; a restore from backup %s stops at %s (segment %s, archived %s)",
		c.MissingCount, c.From, c.Newest, c.Missing[0], c.Backup, c.ReachableLSN, c.Reachable, c.ReachableTime.UTC().Format(time.RFC3339))
}

// CheckContinuity checks that the WAL a recovery from backup id replays,
// from the backup's first segment to the newest archived one of its
// timeline and cluster, is all archived, and reports the newest point a
// point-in-time recovery from it can reach. A gap is not an error: it is in
// the result.
func CheckContinuity(ctx context.Context, s *Store, namespace, instance, id string) (*Continuity, error) {
	m, _, err := ReadManifest(ctx, s, namespace, instance, id)
	if err != nil {
		return nil, err
	}
	segs, err := archivedSegments(ctx, s, m)
	if err != nil {
		return nil, err
	}
	c := &Continuity{Backup: id, From: m.StartWAL, Newest: m.StartWAL}
	_, first := parseSegment(m.StartWAL)
	var have []uint64
	for name := range segs {
		tli, segno := parseSegment(name)
		if tli == m.Timeline && segno >= first {
			have = append(have, segno)
			if name > c.Newest {
				c.Newest = name
			}
		}
	}
	sort.Slice(have, func(i, j int) bool { return have[i] < have[j] })
	reach := first - 1
	gapped := false
	next := first
	for _, n := range have {
		for ; next < n; next++ {
			gapped = true
			c.MissingCount++
			if len(c.Missing) < 100 {
				c.Missing = append(c.Missing, segmentName(m.Timeline, next))
			}
		}
		if !gapped {
			reach = n
		}
		next = n + 1
	}
	if len(have) == 0 || have[0] != first {
		// Even the first segment is missing: the backup itself cannot be
		// restored.
		c.Reachable = ""
		if len(have) == 0 {
			c.MissingCount++
			c.Missing = append(c.Missing, m.StartWAL)
		}
		return c, nil
	}
	c.Reachable = segmentName(m.Timeline, reach)
	c.ReachableLSN = formatLSN((reach + 1) * walSegmentSize)
	c.ReachableTime = segs[c.Reachable]
	return c, nil
}

// archivedSegments lists the WAL segments archived for m's cluster, with
// their archive times: its own directory and, for a cluster that has
// backups in the old layout, the old WAL directory.
func archivedSegments(ctx context.Context, s *Store, m *Manifest) (map[string]time.Time, error) {
	dirs := []string{clusterDir(m.Namespace, m.Instance, m.SystemIdentifier)}
	if m.layoutSysid() == "" {
		dirs = append(dirs, clusterDir(m.Namespace, m.Instance, ""))
	}
	out := map[string]time.Time{}
	for _, d := range dirs {
		objs, err := s.list(ctx, path.Join(d, "wal"), true)
		if err != nil {
			return nil, err
		}
		for _, o := range objs {
			if name := path.Base(o.Key); isSegmentName(name) {
				if _, dup := out[name]; !dup {
					out[name] = o.Modified
				}
			}
		}
	}
	return out, nil
}

// parseSegment splits a segment name into timeline and segment number.
func parseSegment(name string) (tli uint32, segno uint64) {
	if !isSegmentName(name) {
		return 0, 0
	}
	t, _ := strconv.ParseUint(name[:8], 16, 32)
	hi, _ := strconv.ParseUint(name[8:16], 16, 32)
	lo, _ := strconv.ParseUint(name[16:], 16, 32)
	return uint32(t), hi*(0x100000000/walSegmentSize) + lo
}

func formatLSN(lsn uint64) string { return fmt.Sprintf("%X/%X", lsn>>32, uint32(lsn)) }
