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

// dirtyBytes is the machine's page cache waiting to be written to disk
// (Dirty in /proc/meminfo).
func dirtyBytes(t *testing.T) int64 {
	t.Helper()
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "Dirty:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			if err != nil {
				t.Fatalf("/proc/meminfo: %q: %v", sc.Text(), err)
			}
			return kb << 10
		}
	}
	t.Fatal("/proc/meminfo has no Dirty line")
	return 0
}

// A restore that returns with its files still in the page cache loses them
// to a power cut. The kernel writes dirty pages back only after 30 s (or
// past gigabytes of them), so right after a restore of this size its data
// would all be dirty without the flush. The control is the peak during the
// restore: it shows the data did pass through dirty pages this test can
// see, so a restore that skipped the flush would fail here. That needs the
// write-behind off (it starts writing each piece back as it lands, which
// is what keeps the peak low); with it on, as restores run, the data must
// be on disk all the same when the restore returns.
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
		written, before, _, after := restore(t)
		if after-before > written/4 {
			t.Fatalf("restore returned with its data still dirty in the page cache: %d MB dirty after, %d MB before, for %d MB restored", after>>20, before>>20, written>>20)
		}
	})
}
