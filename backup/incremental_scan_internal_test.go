package backup

import (
	"context"
	"encoding/binary"
	"errors"
	"maps"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"testing"
)

// An incremental backup keeps the pages whose LSN is at or after its
// parent's start, and new (zeroed) pages; a file that shrinks while it is
// scanned ends the scan with the pages found so far, since its truncation
// is after the backup's start and WAL replay repeats it. Scanning with a
// size larger than the file is that moment.
func TestPageScanKeepsNewerPagesAndSurvivesAFileThatShrank(t *testing.T) {
	const since = 0x1_00000000
	lsns := []uint64{since + 0x10, since - 1, 0, since, 0x20, since + 1<<20}
	pages := make([]byte, len(lsns)*pageSize)
	for i, lsn := range lsns {
		binary.LittleEndian.PutUint32(pages[i*pageSize:], uint32(lsn>>32))
		binary.LittleEndian.PutUint32(pages[i*pageSize+4:], uint32(lsn))
		pages[i*pageSize+100] = 0xff // content that is not an LSN
	}
	f := relationFile(t, pages)
	want := []uint32{0, 2, 3, 5}
	inv := &inventory{since: since}
	expectBlocks(t, inv, f, int64(len(pages)), 10*pageSize, want)
	if got, err := inv.changedPages(context.Background(), f, 0); err != nil || len(got) != 0 {
		t.Errorf("scan of an empty file: %v, %v", got, err)
	}
}

// A large file is scanned in spans side by side: the blocks come back in
// order, whole, with those at the spans' edges, also when the file ends
// short of the size scanned.
func TestPageScanOfALargeFileInSpansMissesNoPage(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	const since = 0x1_00000000
	n := 3*scanSpan/pageSize + 5
	pages := make([]byte, n*pageSize)
	for i := range n {
		binary.LittleEndian.PutUint32(pages[i*pageSize:], 0)
		binary.LittleEndian.PutUint32(pages[i*pageSize+4:], 0x10) // older than since
	}
	// The changed pages are the first and last, and those on each side
	// of every edge between spans, for both sizes scanned below (3 spans
	// of the file, 4 of the file and one more span).
	changed := map[uint32]bool{0: true, uint32(n - 1): true}
	for _, size := range []int64{int64(n) * pageSize, int64(n)*pageSize + scanSpan} {
		spans := min(4, size/scanSpan)
		per := (size/spans + pageSize - 1) / pageSize
		for k := int64(1); k < spans && k*per < int64(n); k++ {
			changed[uint32(k*per-1)], changed[uint32(k*per)] = true, true
		}
	}
	want := slices.Sorted(maps.Keys(changed))
	for _, b := range want {
		binary.LittleEndian.PutUint32(pages[int(b)*pageSize:], 1) // since + b
		binary.LittleEndian.PutUint32(pages[int(b)*pageSize+4:], b)
	}
	f := relationFile(t, pages)
	inv := &inventory{since: since}
	expectBlocks(t, inv, f, int64(len(pages)), scanSpan, want)
	if len(inv.scan) < 3 {
		t.Errorf("the file was scanned through %d buffers, want one for each of 3 spans at least", len(inv.scan))
	}
}

// A cancelled backup stops scanning at once, in every span, with the
// cancel's cause: not after the rest of a 1 GiB segment, and not with the
// blocks found so far as if the scan had finished.
func TestPageScanStopsWhenTheBackupIsCancelled(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	f := relationFile(t, make([]byte, 2*scanSpan)) // every page new (LSN 0)
	stop := errors.New("backup cancelled")
	ctx, cancel := context.WithCancelCause(context.Background())
	cancel(stop)
	inv := &inventory{since: 0x1_00000000}
	for _, size := range []int64{pageSize, 2 * scanSpan} {
		got, err := inv.changedPages(ctx, f, size)
		if !errors.Is(err, stop) || got != nil {
			t.Errorf("cancelled scan of %d bytes: %d blocks, error %v; want no blocks and %q", size, len(got), err, stop)
		}
	}
}

// relationFile is a file holding pages, open for reading until t ends.
func relationFile(t *testing.T, pages []byte) *os.File {
	t.Helper()
	file := filepath.Join(t.TempDir(), "16384")
	if err := os.WriteFile(file, pages, 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := os.Open(file)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return f
}

// expectBlocks scans f, of length bytes, as its own size and as extra
// bytes more (the file shrank after it was listed), and checks that both
// find the blocks want.
func expectBlocks(t *testing.T, inv *inventory, f *os.File, length, extra int64, want []uint32) {
	t.Helper()
	for _, size := range []int64{length, length + extra} {
		got, err := inv.changedPages(context.Background(), f, size)
		if err != nil {
			t.Fatalf("scan of %d bytes (the file has %d): %v", size, length, err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("scan of %d bytes (the file has %d): blocks %v, want %v", size, length, got, want)
		}
	}
}
