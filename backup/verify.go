package backup

import (
	"context"
	"fmt"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// VerifyResult is what re-reading a backup found.
type VerifyResult struct {
	ID string `json:"id"`
	// Chain is every backup whose objects were checked: for an incremental
	// backup, its full backup and the incrementals up to it, oldest first.
	Chain   []string `json:"chain"`
	Objects int      `json:"objects"`
	Bytes   int64    `json:"bytes"`
	OK      bool     `json:"ok"`
	Errors  []string `json:"errors,omitempty"`
}

// Verify re-reads every object of a completed backup, and for an
// incremental one of every backup in its chain, and checks it against its
// manifest's checksum; a missing or damaged link of the chain is an error
// in the result. It also checks that the WAL the backup needs is archived.
func Verify(ctx context.Context, s *Store, namespace, instance, id string) (*VerifyResult, error) {
	m, _, err := ReadManifest(ctx, s, namespace, instance, id)
	if err != nil {
		return nil, err
	}
	res := &VerifyResult{ID: id}
	chain, err := Chain(ctx, s, namespace, instance, id)
	if err != nil {
		// What can be checked still is: the backup's own objects.
		res.Errors = append(res.Errors, err.Error())
		chain = []*Manifest{m}
	}
	var mu sync.Mutex
	sem := make(chan struct{}, 8)
	var wg sync.WaitGroup
	for _, b := range chain {
		res.Chain = append(res.Chain, b.ID)
		res.Objects += len(b.Objects)
		dir := b.dir()
		for _, o := range b.Objects {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				data, err := s.get(ctx, path.Join(dir, o.Name))
				mu.Lock()
				defer mu.Unlock()
				switch {
				case err != nil:
					res.Errors = append(res.Errors, err.Error())
				case sha256Hex(data) != o.SHA256 || int64(len(data)) != o.Size:
					res.Errors = append(res.Errors, fmt.Sprintf("%s: checksum mismatch: the object was altered or damaged", path.Join(dir, o.Name)))
				default:
					res.Bytes += int64(len(data))
				}
			}()
		}
	}
	wg.Wait()
	segs, err := archivedSegments(ctx, s, m)
	if err != nil {
		res.Errors = append(res.Errors, err.Error())
	}
	for _, seg := range segmentsBetween(m.Timeline, m.StartLSN, m.StopLSN) {
		if _, ok := segs[seg]; !ok && err == nil {
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
