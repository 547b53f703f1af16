package backup

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"path"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
)

// chainFixture is a chain of four backups stored in a real MinIO, the third
// with no objects: each link's objects hold random bytes, and raw[i] is
// link i's stream.
type chainFixture struct {
	store *Store
	chain []*Manifest
	raw   [][]byte
}

func newChainFixture(t *testing.T) *chainFixture {
	t.Helper()
	ctx := context.Background()
	m := harness.StartMinIO(t)
	store, err := Open(ctx, StoreConfig{Endpoint: m.URL(), Bucket: m.Bucket, AccessKey: m.AccessKey, SecretKey: m.SecretKey})
	if err != nil {
		t.Fatal(err)
	}
	f := &chainFixture{store: store}
	rng := rand.New(rand.NewPCG(3, 4))
	for link, sizes := range [][]int{{300_001, 5, 200_000}, {70_000, 123_457}, {}, {9}} {
		man := &Manifest{Format: layoutFormat, Namespace: "ns", Instance: "db", SystemIdentifier: "7000000000000000001", ID: fmt.Sprintf("20261201T0000%02dZ", link)}
		var stream []byte
		for i, n := range sizes {
			raw := make([]byte, n)
			for j := range raw {
				raw[j] = byte(rng.Uint32())
			}
			var sealed bytes.Buffer
			if err := (Keys{}).seal(&sealed, raw); err != nil {
				t.Fatal(err)
			}
			name := fmt.Sprintf("data-%04d.zst", i)
			if err := store.put(ctx, path.Join(man.dir(), name), sealed.Bytes()); err != nil {
				t.Fatal(err)
			}
			sum := sha256.Sum256(sealed.Bytes())
			man.Objects = append(man.Objects, Object{Name: name, Size: int64(sealed.Len()), SHA256: hex.EncodeToString(sum[:]), RawSize: int64(n)})
			stream = append(stream, raw...)
		}
		f.chain = append(f.chain, man)
		f.raw = append(f.raw, stream)
	}
	return f
}

// readChainWithin runs readChain and fails the test if it has not returned
// within a minute: a fetch and a reader left waiting on each other.
func readChainWithin(t *testing.T, f *chainFixture, concurrency int, consume func(int, *chunkStream) error) error {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		done <- readChain(context.Background(), RestoreOptions{Store: f.store, Concurrency: concurrency}, f.chain, consume)
	}()
	select {
	case err := <-done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("readChain has not returned after a minute")
		return nil
	}
}

// Each link of a chain is read as its own stream, exactly its objects'
// bytes in order, and the fetch runs on into the next link while the one
// before is still unread: a restore of a chain does not start every link
// with nothing fetched. The control, one object fetched at a time, shows
// that the watch can fail: there the second link cannot be fetched before
// the first is read.
func TestChainFetchRunsIntoTheNextLinkAndKeepsEachLinkWhole(t *testing.T) {
	f := newChainFixture(t)
	for _, c := range []struct {
		concurrency int
		wait        time.Duration
		runsAhead   bool
	}{{4, 30 * time.Second, true}, {1, 3 * time.Second, false}} {
		secondLink := make(chan struct{}, 16)
		hook := func(link int) {
			if link == 1 {
				secondLink <- struct{}{}
			}
		}
		objectFetched.Store(&hook)
		var read []int
		ranAhead := false
		err := readChainWithin(t, f, c.concurrency, func(link int, s *chunkStream) error {
			if link == 0 {
				select {
				case <-secondLink:
					ranAhead = true
				case <-time.After(c.wait):
				}
			}
			got, err := io.ReadAll(s)
			if err != nil {
				return err
			}
			if !bytes.Equal(got, f.raw[link]) {
				return fmt.Errorf("link %d: read %d bytes that differ from its %d", link, len(got), len(f.raw[link]))
			}
			read = append(read, link)
			return nil
		})
		objectFetched.Store(nil)
		if err != nil {
			t.Fatalf("%d at a time: %v", c.concurrency, err)
		}
		if fmt.Sprint(read) != "[0 1 2 3]" {
			t.Fatalf("%d at a time: links read %v, want [0 1 2 3]", c.concurrency, read)
		}
		if ranAhead != c.runsAhead {
			t.Fatalf("%d objects fetched at a time: the second link fetched while the first was unread: %v, want %v", c.concurrency, ranAhead, c.runsAhead)
		}
	}
}

// A damaged first object of the second link fails that link's stream,
// not the first's, naming the object, after the first link was read whole;
// the links after it are never read.
func TestChainFetchFailsAtTheLinkWithTheDamagedObject(t *testing.T) {
	f := newChainFixture(t)
	bad := path.Join(f.chain[1].dir(), f.chain[1].Objects[0].Name)
	if err := f.store.put(context.Background(), bad, []byte("not the object")); err != nil {
		t.Fatal(err)
	}
	var read []int
	err := readChainWithin(t, f, 4, func(link int, s *chunkStream) error {
		read = append(read, link)
		got, err := io.ReadAll(s)
		if err != nil {
			return err
		}
		if !bytes.Equal(got, f.raw[link]) {
			return fmt.Errorf("link %d: read %d bytes that differ from its %d", link, len(got), len(f.raw[link]))
		}
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "checksum mismatch") || !strings.Contains(err.Error(), bad) {
		t.Fatalf("readChain: %v, want a checksum mismatch of %s", err, bad)
	}
	if fmt.Sprint(read) != "[0 1]" {
		t.Fatalf("links read: %v, want [0 1]", read)
	}
}

// A reader that stops early with an error ends the chain at once with that
// error; one that stops early without an error (a tar trailer before the
// end of the link's last object) leaves the rest of its link behind, and
// the next link is read from its own start.
func TestChainFetchEndsWhereTheReaderStops(t *testing.T) {
	f := newChainFixture(t)
	stop := errors.New("reader stopped")
	err := readChainWithin(t, f, 4, func(link int, s *chunkStream) error { return stop })
	if !errors.Is(err, stop) {
		t.Fatalf("readChain: %v, want the reader's error", err)
	}

	err = readChainWithin(t, f, 4, func(link int, s *chunkStream) error {
		if link == 0 {
			_, err := io.ReadFull(s, make([]byte, 10))
			return err
		}
		got, err := io.ReadAll(s)
		if err == nil && !bytes.Equal(got, f.raw[link]) {
			err = fmt.Errorf("link %d: read %d bytes that differ from its %d", link, len(got), len(f.raw[link]))
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// An object past a link's tar trailer is still fetched and checked: damaged,
// it fails the restore, naming the backup, though its bytes are never read.
func TestChainFetchChecksWhatFollowsALinksEnd(t *testing.T) {
	f := newChainFixture(t)
	bad := path.Join(f.chain[0].dir(), f.chain[0].Objects[2].Name)
	if err := f.store.put(context.Background(), bad, []byte("not the object")); err != nil {
		t.Fatal(err)
	}
	err := readChainWithin(t, f, 4, func(link int, s *chunkStream) error {
		_, err := io.ReadFull(s, make([]byte, 10))
		return err
	})
	if err == nil || !strings.Contains(err.Error(), "backup "+f.chain[0].ID) || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Fatalf("readChain: %v, want a checksum mismatch in backup %s", err, f.chain[0].ID)
	}
}
