package image

import (
	"archive/tar"
	"crypto/sha256"
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	v1 "github.com/google/go-containerregistry/pkg/v1"
	"github.com/google/go-containerregistry/pkg/v1/types"
)

// fileLayer is an uncompressed layer tar on disk. Its blob is the tar
// itself, so its digest and diff ID are the same sha256, computed once.
// go-containerregistry's own file layers gzip on the way out, which for the
// base layer costs more time than anything else in a build.
type fileLayer struct {
	path string
	once sync.Once
	hash v1.Hash
	size int64
	err  error
}

var _ v1.Layer = (*fileLayer)(nil)

func (l *fileLayer) sum() (v1.Hash, int64, error) {
	l.once.Do(func() {
		f, err := os.Open(l.path)
		if err != nil {
			l.err = fmt.Errorf("layer %s: %w", l.path, err)
			return
		}
		defer f.Close()
		h := sha256.New()
		n, err := io.Copy(h, f)
		if err != nil {
			l.err = fmt.Errorf("layer %s: %w", l.path, err)
			return
		}
		l.hash = v1.Hash{Algorithm: "sha256", Hex: fmt.Sprintf("%x", h.Sum(nil))}
		l.size = n
	})
	return l.hash, l.size, l.err
}

func (l *fileLayer) Digest() (v1.Hash, error) { h, _, err := l.sum(); return h, err }
func (l *fileLayer) DiffID() (v1.Hash, error) { h, _, err := l.sum(); return h, err }
func (l *fileLayer) Size() (int64, error)     { _, n, err := l.sum(); return n, err }
func (l *fileLayer) Compressed() (io.ReadCloser, error) {
	f, err := os.Open(l.path)
	if err != nil {
		return nil, fmt.Errorf("layer %s: %w", l.path, err)
	}
	return f, nil
}
func (l *fileLayer) Uncompressed() (io.ReadCloser, error) { return l.Compressed() }
func (l *fileLayer) MediaType() (types.MediaType, error) {
	return types.DockerUncompressedLayer, nil
}

// epoch is the time of every entry in the outpost layer and of the image
// configs: a fixed time makes the same binary give the same digests.
var epoch = time.Unix(0, 0).UTC()

// outpostPath is where both images hold the binary; the Dockerfiles copy it
// to the same place.
const outpostPath = "usr/local/bin/outpost"

// writeOutpostLayer writes the thin layer, /usr/local/bin/outpost owned by
// root and mode 0755, to dst.
func writeOutpostLayer(binary, dst string) error {
	in, err := os.Open(binary)
	if err != nil {
		return fmt.Errorf("outpost binary: %w", err)
	}
	defer in.Close()
	st, err := in.Stat()
	if err != nil {
		return fmt.Errorf("outpost binary: %w", err)
	}
	if !st.Mode().IsRegular() {
		return fmt.Errorf("outpost binary %s: not a regular file", binary)
	}
	out, err := os.Create(dst)
	if err != nil {
		return fmt.Errorf("outpost layer: %w", err)
	}
	tw := tar.NewWriter(out)
	// The parent directories are in the base layer already; they are
	// repeated with the base's modes so the layer also stands alone.
	for _, dir := range []string{"usr/", "usr/local/", "usr/local/bin/"} {
		if err := tw.WriteHeader(&tar.Header{Typeflag: tar.TypeDir, Name: dir, Mode: 0o755, ModTime: epoch, Format: tar.FormatPAX}); err != nil {
			out.Close()
			return fmt.Errorf("outpost layer: %w", err)
		}
	}
	hdr := &tar.Header{Typeflag: tar.TypeReg, Name: outpostPath, Mode: 0o755, Size: st.Size(), ModTime: epoch, Format: tar.FormatPAX}
	if err := tw.WriteHeader(hdr); err != nil {
		out.Close()
		return fmt.Errorf("outpost layer: %w", err)
	}
	// The tar writer refuses a short or long copy, so a binary that
	// changes while it is read fails here rather than in an import.
	if _, err := io.Copy(tw, in); err != nil {
		out.Close()
		return fmt.Errorf("outpost layer: copying %s: %w", binary, err)
	}
	if err := tw.Close(); err != nil {
		out.Close()
		return fmt.Errorf("outpost layer: %w", err)
	}
	if err := out.Close(); err != nil {
		return fmt.Errorf("outpost layer: %w", err)
	}
	return nil
}
