package backup

import (
	"archive/tar"
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Large files are written past the page cache, in aligned windows copied
// from slices of the decoded objects (see extractOddSizes for the sizes).
// Each file must come back byte for byte, and the pages of the large ones
// (but their unaligned tail) must not be in the page cache: were the
// direct path lost to a silent fallback, they would be.
func TestLargeFilesAreWrittenPastThePageCacheExactly(t *testing.T) {
	dir := t.TempDir()
	want := extractOddSizes(t, dir)
	for name, data := range want {
		p := filepath.Join(dir, name)
		// Residency first: reading the file brings it into the cache.
		if n := len(data); n >= directMin {
			tail := 0
			if n%directAlign != 0 {
				tail = 1
			}
			if got := cachedPages(t, p, n); got > tail {
				t.Errorf("%s (%d bytes): %d of its pages are in the page cache after the restore, want at most %d (the unaligned tail): it was not written directly", name, n, got, tail)
			}
		}
	}
	checkFiles(t, dir, want)
}

// A file system that refuses O_DIRECT (ramfs here; tmpfs before Linux 6.6,
// some FUSE ones) gets every file through the page cache, byte for byte,
// instead of a failed restore. (Were a refused open taken as an error, the
// restore would fail with "invalid argument".)
func TestLargeFilesAreWrittenThroughThePageCacheWhereODirectIsRefused(t *testing.T) {
	dir := t.TempDir()
	if err := unix.Mount("ramfs", dir, "ramfs", 0, ""); err != nil {
		t.Fatalf("mount a ramfs on %s (the test runs as root, as CI does): %v", dir, err)
	}
	t.Cleanup(func() {
		// Detached, as a file a failed restore left open keeps it busy.
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	probe := filepath.Join(dir, "probe")
	if err := os.WriteFile(probe, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	if f, err := os.OpenFile(probe, os.O_WRONLY|unix.O_DIRECT, 0); err == nil {
		f.Close()
		t.Fatal("ramfs took an O_DIRECT open: this test needs a file system that refuses it")
	}
	checkFiles(t, dir, extractOddSizes(t, dir))
}

// extractOddSizes restores, through extractTar into dir, files of sizes
// that end on no boundary, on a page, on a window, and one byte either side
// of one, from objects cut at an odd size, so that every file's data begins
// and is split at unaligned places. Each object given back is overwritten
// at once, as a reused buffer would be, and each must be given back exactly
// once. It returns what each file must hold.
func extractOddSizes(t *testing.T, dir string) map[string][]byte {
	t.Helper()
	sizes := []int64{
		directMin, directMin + 1, 3*directWindow + 100, directWindow, directWindow - 1, directWindow + 1,
		2*directWindow + directAlign, 5000, 0, directMin - 1, 9*directWindow/2 + 511,
	}
	rng := rand.New(rand.NewPCG(1, 2))
	var stream bytes.Buffer
	tw := tar.NewWriter(&stream)
	want := map[string][]byte{}
	for i, n := range sizes {
		data := make([]byte, n)
		for j := range data {
			data[j] = byte(rng.Uint32())
		}
		name := fmt.Sprintf("base/5/%d", 16384+i)
		want[name] = data
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name, Mode: 0o600, Size: n}); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(data); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}

	if err := os.MkdirAll(filepath.Join(dir, "base/5"), 0o700); err != nil {
		t.Fatal(err)
	}
	// An object given back is overwritten at once, as a reused buffer
	// would be: a window still pointing into it would write the junk.
	const objectSize = 1_000_003
	objects := (stream.Len() + objectSize - 1) / objectSize
	var released atomic.Int32
	release := func(b []byte) {
		for i := range b {
			b[i] = 0xa5
		}
		released.Add(1)
	}
	chunks := make(chan *decoded, 4)
	go func() {
		defer close(chunks)
		for b := stream.Bytes(); len(b) > 0; {
			n := min(objectSize, len(b))
			d := &decoded{data: bytes.Clone(b[:n]), release: release}
			d.refs.Store(1)
			chunks <- d
			b = b[n:]
		}
	}()
	s := &chunkStream{ctx: context.Background(), chunks: chunks, fetchErr: func() error { return nil }}
	if err := extractTar(s, dir, nil, nil); err != nil {
		t.Fatal(err)
	}
	if got := released.Load(); got != int32(objects) {
		t.Errorf("%d of the %d objects were given back once written", got, objects)
	}
	return want
}

// checkFiles fails t unless each file under dir holds what want says.
func checkFiles(t *testing.T, dir string, want map[string][]byte) {
	t.Helper()
	for name, data := range want {
		got, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, data) {
			t.Errorf("%s: the %d bytes restored differ from the %d written", name, len(got), len(data))
		}
	}
}

// cachedPages counts the pages of file p, of n bytes, that are in the page
// cache.
func cachedPages(t *testing.T, p string, n int) int {
	t.Helper()
	f, err := os.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	m, err := unix.Mmap(int(f.Fd()), 0, n, unix.PROT_READ, unix.MAP_SHARED)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Munmap(m)
	vec := make([]byte, (n+os.Getpagesize()-1)/os.Getpagesize())
	// x/sys/unix has no wrapper for mincore(2).
	if _, _, errno := unix.Syscall(unix.SYS_MINCORE, uintptr(unsafe.Pointer(&m[0])), uintptr(n), uintptr(unsafe.Pointer(&vec[0]))); errno != 0 {
		t.Fatalf("mincore %s: %v", p, errno)
	}
	resident := 0
	for _, v := range vec {
		resident += int(v & 1)
	}
	return resident
}
