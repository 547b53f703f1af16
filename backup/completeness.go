package backup

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
)

// ErrIncompleteRecovery is a recovery that ended before the end of the
// archived WAL it was meant to replay: it promoted early, and the restored
// instance lacks every transaction after that point.
var ErrIncompleteRecovery = errors.New("recovery stopped short of the archived WAL")

// archiveEnd is the newest archived segment of each timeline of m's
// cluster. Taken before recovery starts, so that WAL the source archives
// meanwhile is not required.
func archiveEnd(ctx context.Context, s *Store, m *Manifest) (map[uint32]uint64, error) {
	segs, err := archivedSegments(ctx, s, m)
	if err != nil {
		return nil, fmt.Errorf("list the archived WAL of backup %s: %w", m.ID, err)
	}
	end := map[uint32]uint64{}
	for name := range segs {
		tli, segno := parseSegment(name)
		if segno > end[tli] {
			end[tli] = segno
		}
	}
	return end, nil
}

// CheckRecoveryComplete compares where recovery of dataDir ended with
// archived, the newest archived segment per timeline when it started. It
// reads the timeline history file promotion wrote: its last line is the
// timeline recovery replayed, the position where replay ended, and why.
// When recovery ran to the end of WAL ("no recovery target specified") yet
// the archive holds a later segment of that timeline, the restore is
// incomplete: the error (ErrIncompleteRecovery) names the segment replay
// could not get past. A recovery that stopped at its target time is
// complete.
func CheckRecoveryComplete(ctx context.Context, s *Store, m *Manifest, dataDir string, archived map[uint32]uint64) error {
	tli, end, reason, err := replayEnd(dataDir)
	if err != nil {
		return err
	}
	if !strings.HasPrefix(reason, "no recovery target specified") {
		return nil
	}
	endSeg := end / walSegmentSize
	newest, ok := archived[tli]
	if !ok || endSeg >= newest {
		return nil
	}
	// Replay ended in endSeg: either the WAL there is damaged, or a
	// record continues into a next segment that is missing.
	stuck, what := segmentName(tli, endSeg), "could not be replayed past "+formatLSN(end)+" (damaged)"
	if segs, err := archivedSegments(ctx, s, m); err == nil {
		next := segmentName(tli, endSeg+1)
		if _, there := segs[stuck]; !there {
			what = "is missing from the archive"
		} else if _, there := segs[next]; !there {
			stuck, what = next, "is missing from the archive"
		}
	}
	return fmt.Errorf("restore of backup %s: %w: replay ended at %s because WAL segment %s %s, but the archive holds WAL up to segment %s; the transactions after %s are not in the restored instance, so the restore failed",
		m.ID, ErrIncompleteRecovery, formatLSN(end), stuck, what, segmentName(tli, newest), formatLSN(end))
}

// replayEnd reads the newest timeline history file in dataDir's pg_wal.
func replayEnd(dataDir string) (tli uint32, end uint64, reason string, err error) {
	files, err := filepath.Glob(filepath.Join(dataDir, "pg_wal", "*.history"))
	if err != nil || len(files) == 0 {
		return 0, 0, "", fmt.Errorf("recovery of %s left no timeline history file, so where replay ended is unknown", dataDir)
	}
	newest := files[0]
	for _, f := range files {
		if filepath.Base(f) > filepath.Base(newest) {
			newest = f
		}
	}
	f, err := os.Open(newest)
	if err != nil {
		return 0, 0, "", fmt.Errorf("read where recovery ended: %w", err)
	}
	defer f.Close()
	var last string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if line := strings.TrimSpace(sc.Text()); line != "" && !strings.HasPrefix(line, "#") {
			last = line
		}
	}
	if err := sc.Err(); err != nil {
		return 0, 0, "", fmt.Errorf("read %s: %w", newest, err)
	}
	fields := strings.SplitN(last, "\t", 3)
	if len(fields) < 3 {
		return 0, 0, "", fmt.Errorf("%s: cannot read the line %q", newest, last)
	}
	t, err := strconv.ParseUint(fields[0], 10, 32)
	if err != nil {
		return 0, 0, "", fmt.Errorf("%s: timeline %q: %w", newest, fields[0], err)
	}
	return uint32(t), parseLSN(fields[1]), strings.TrimSpace(fields[2]), nil
}
