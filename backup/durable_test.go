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

// dirtyBytes is the machine's page cache not yet on disk: waiting to be
// written (Dirty in /proc/meminfo) or being written (Writeback).
func dirtyBytes(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var total int64
	seen := 0
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		for _, field := range []string{"Dirty:", "Writeback:"} {
			if rest, ok := strings.CutPrefix(sc.Text(), field); ok {
				kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				if err != nil {
					t.Fatalf("/proc/meminfo: %q: %v", sc.Text(), err)
				}
				total += kb << 10
				seen++
			}
		}
	}
	if seen != 2 {
		t.Fatal("/proc/meminfo lacks its Dirty or Writeback line")
	}
	return total
}

// A restore that returns with its files still in the page cache loses them
// to a power cut. The kernel writes dirty pages back only after 30 s (or
// past gigabytes of them), so right after a restore of this size its data
// would all be dirty without the flush. The control is the peak during the
// restore: it shows the data did pass through dirty pages this test can
// see, so a restore that skipped the flush would fail here. That needs the
// write-behind off: it starts writing each piece back as it lands, which
// keeps the peak low, so with it on (as restores run) only the first
// subtest would see a missing flush. The second shows the write-behind at
// work: the restore's data never piles up unwritten.
func TestRestoreReturnsOnlyOnceItsFilesAreOnDisk(t *testing.T) {
	s := newSite(t, false)
	// About 200 MB of table, far above the noise of other tests' writes.
	s.exec(t, "CREATE TABLE t AS SELECT g AS id, repeat(md5(g::text), 8) AS w FROM generate_series(1, 700000) g")
	m := s.backup(t)

	restore := func(t *testing.T) (written, before, peak, after int64) {
		dir := filepath.Join(harness.TempDir(t), "data")
		before = dirtyBytes(t)
		var mu sync.Mutex
		stop := make(chan struct{})
		sampled := make(chan struct{})
		go func() {
			defer close(sampled)
			for {
				d := dirtyBytes(t)
				mu.Lock()
				peak = max(peak, d)
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
		after = dirtyBytes(t)
		close(stop)
		<-sampled
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("restored %d MB; dirty before %d MB, peak %d MB, after %d MB", written>>20, before>>20, peak>>20, after>>20)
		return written, before, peak, after
	}

	t.Run("without write-behind", func(t *testing.T) {
		backup.WithoutWriteBehind(t)
		written, before, peak, after := restore(t)
		if peak-before < written/2 {
			t.Fatalf("control: the restore's %d MB never showed as dirty page cache (peak %d MB over %d MB before); this test cannot see a missing flush", written>>20, peak>>20, before>>20)
		}
		if peak-after < written/2 {
			t.Fatalf("restore returned with its data still dirty in the page cache: %d MB dirty after, %d MB at the peak, for %d MB restored", after>>20, peak>>20, written>>20)
		}
	})
	t.Run("as restores run", func(t *testing.T) {
		written, before, peak, after := restore(t)
		if peak-before >= written/2 {
			t.Fatalf("with write-behind, %d MB of the restore's %d MB piled up unwritten (peak %d MB over %d MB before): its pieces were not handed to the disk as they landed", (peak-before)>>20, written>>20, peak>>20, before>>20)
		}
		if after-before > written/4 {
			t.Fatalf("restore returned with its data still dirty in the page cache: %d MB dirty after, %d MB before, for %d MB restored", after>>20, before>>20, written>>20)
		}
	})
}
