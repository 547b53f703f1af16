package backup_test

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/outpostdata/outpost/backup"
	"github.com/outpostdata/outpost/test/harness"
)

// pageCache reads the machine's page cache not yet on disk from
// /proc/meminfo: dirty is waiting to be written (Dirty), writeback is
// handed to the disk and being written (Writeback).
func pageCache(t *testing.T) (dirty, writeback int64) {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	seen := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for field, into := range map[string]*int64{"Dirty:": &dirty, "Writeback:": &writeback} {
			if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					t.Fatalf("/proc/meminfo: %q: %v", sc.Text(), err)
				}
				*into = kb << 10
				seen++
			}
		}
	}
	if seen != 2 {
		t.Fatal("/proc/meminfo lacks its Dirty or Writeback line")
	}
	return dirty, writeback
}

// A restore that returns with its files still in the page cache loses them
// to a power cut. The kernel writes dirty pages back only after 30 s (or
// past gigabytes of them), so right after a restore of this size its data
// would all be dirty without the flush. The control is the peak during the
// restore: it shows the data did pass through dirty pages this test can
// see, so a restore that skipped the flush would fail here. That needs the
// write-behind off: it hands each piece to the disk as it lands, which
// keeps the peak low, so with it on no counter of the whole machine could
// tell a missing flush from a fast disk. What write-behind saves is
// measured in the restore benchmark's final-sync stage.
func TestRestoreReturnsOnlyOnceItsFilesAreOnDisk(t *testing.T) {
	s := newSite(t, false)
	// About 200 MB of table, far above the noise of other tests' writes.
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, repeat(md5(g::text), 8) AS w FROM generate_series(1, 700000) g")
	m := s.backup(t)

	// A restore's page cache: unwritten counts Dirty and Writeback (not
	// on disk yet), dirty only what was not handed to the disk.
	type sample struct{ dirty, unwritten int64 }
	read := func(t *testing.T) sample {
		d, wb := pageCache(t)
		return sample{d, d + wb}
	}
	restore := func(t *testing.T) (written int64, before, peak, after sample) {
		dir := filepath.Join(harness.TempDir(t), "data")
		before = read(t)
		var mu sync.Mutex
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				d := read(t)
				mu.Lock()
				peak.dirty, peak.unwritten = max(peak.dirty, d.dirty), max(peak.unwritten, d.unwritten)
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(5 * time.Millisecond):
				}
			}
		}()
		_, err := backup.Restore(context.Background(), backup.RestoreOptions{
			Store: s.store, Namespace: "default", Instance: "src", BackupID: m.ID, DataDir: dir,
			// The peak is sampled while the data is written, not while it
			// is flushed: the flush comes after the last file.
			Progress: func(n int64) { written = n },
		})
		after = read(t)
		close(stop)
		<-sampled
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restored %d MB; not on disk (dirty) before %d (%d) MB, peak %d (%d) MB, after %d (%d) MB", written>>20,
			before.unwritten>>20, before.dirty>>20, peak.unwritten>>20, peak.dirty>>20, after.unwritten>>20, after.dirty>>20)
		return written, before, peak, after
	}

	t.Run("without write-behind", func(t *testing.T) {
		backup.WithoutWriteBehind(t)
		written, before, peak, after := restore(t)
		if peak.unwritten-before.unwritten < written/2 {
			t.Fatalf("control: the restore's %d MB never showed as unwritten page cache (peak %d MB over %d MB before); this test cannot see a missing flush", written>>20, peak.unwritten>>20, before.unwritten>>20)
		}
		if peak.unwritten-after.unwritten < written/2 {
			t.Fatalf("restore returned with its data not on disk: %d MB unwritten after, %d MB at the peak, for %d MB restored", after.unwritten>>20, peak.unwritten>>20, written>>20)
		}
	})
}
