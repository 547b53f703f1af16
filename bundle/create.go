package bundle

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/outpostdata/outpost/bundle/image"
	chart "github.com/outpostdata/outpost/charts/outpost"
	"github.com/outpostdata/outpost/usageexport"
)

// CreateOptions says what goes into a bundle.
type CreateOptions struct {
	// Output is the bundle file to write. It appears only when complete.
	Output string
	// Outpost is the outpost binary to carry and to put in the images.
	Outpost string
	// Version is the binary's version, recorded in bundle.json.
	Version string
	// Tag is the images' tag.
	Tag string
	// BaseLayer is the images' base layer (image.DefaultBaseLayer when
	// empty).
	BaseLayer string
	// Key signs SHA256SUMS.
	Key usageexport.SigningKey
}

// Create writes a bundle.
func Create(ctx context.Context, o CreateOptions) error {
	if o.Output == "" {
		return fmt.Errorf("bundle: no output file")
	}
	if o.Key.Private == nil {
		return fmt.Errorf("bundle: no signing key")
	}
	stage, err := os.MkdirTemp(filepath.Dir(o.Output), ".outpost-bundle-")
	if err != nil {
		return fmt.Errorf("bundle %s: %w", o.Output, err)
	}
	defer os.RemoveAll(stage)
	images := filepath.Join(stage, ImagesFile)
	spec := image.Spec{BaseLayer: o.BaseLayer, Outpost: o.Outpost, Tag: o.Tag, Dir: stage}
	if err := image.BuildArchive(ctx, spec, images); err != nil {
		return err
	}
	info, err := json.MarshalIndent(Info{
		Tag:             o.Tag,
		ControllerImage: image.ControllerRepository,
		InstanceImage:   image.InstanceRepository,
		Version:         o.Version,
	}, "", "  ")
	if err != nil {
		return err
	}

	tmp := filepath.Join(stage, "bundle.tar")
	f, err := os.Create(tmp)
	if err != nil {
		return fmt.Errorf("bundle %s: %w", o.Output, err)
	}
	defer f.Close()
	w := &writer{tw: tar.NewWriter(f), now: time.Now().UTC().Truncate(time.Second)}
	w.add(InfoFile, 0o644, strings.NewReader(string(info)+"\n"))
	w.addFS(ChartDir, chart.Files())
	w.addFile(BinaryFile, 0o755, o.Outpost)
	w.addFile(ImagesFile, 0o644, images)
	sums := w.sumsFile()
	sig, err := usageexport.SignDetached(signaturePurpose, sums, o.Key)
	if err != nil {
		return fmt.Errorf("bundle: signing %s: %w", SumsFile, err)
	}
	w.unsummed(SumsFile, sums)
	w.unsummed(SignatureFile, sig)
	if w.err == nil {
		w.err = w.tw.Close()
	}
	if w.err == nil {
		w.err = f.Sync()
	}
	if w.err != nil {
		return fmt.Errorf("bundle %s: %w", o.Output, w.err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("bundle %s: %w", o.Output, err)
	}
	if err := os.Rename(tmp, o.Output); err != nil {
		return fmt.Errorf("bundle %s: %w", o.Output, err)
	}
	return nil
}

// writer adds files to the bundle's tar and remembers their sha256; the
// first error stops it.
type writer struct {
	tw   *tar.Writer
	now  time.Time
	sums map[string]string
	err  error
}

func (w *writer) header(name string, mode int64, size int64) error {
	return w.tw.WriteHeader(&tar.Header{
		Typeflag: tar.TypeReg, Name: name, Mode: mode, Size: size,
		ModTime: w.now, Format: tar.FormatPAX,
	})
}

// add writes one file and records its sha256.
func (w *writer) add(name string, mode int64, r io.Reader) {
	if w.err != nil {
		return
	}
	// The size goes in the header first, so the content is staged in
	// memory only for small files; large ones come from addFile.
	b, err := io.ReadAll(r)
	if err != nil {
		w.err = fmt.Errorf("%s: %w", name, err)
		return
	}
	w.write(name, mode, int64(len(b)), bytes.NewReader(b))
}

func (w *writer) write(name string, mode, size int64, r io.Reader) {
	if w.err = w.header(name, mode, size); w.err != nil {
		return
	}
	h := sha256.New()
	if _, err := io.Copy(io.MultiWriter(w.tw, h), r); err != nil {
		w.err = fmt.Errorf("%s: %w", name, err)
		return
	}
	if w.sums == nil {
		w.sums = map[string]string{}
	}
	w.sums[name] = hex.EncodeToString(h.Sum(nil))
}

// addFile writes the file at src as name.
func (w *writer) addFile(name string, mode int64, src string) {
	if w.err != nil {
		return
	}
	f, err := os.Open(src)
	if err != nil {
		w.err = err
		return
	}
	defer f.Close()
	st, err := f.Stat()
	if err != nil {
		w.err = err
		return
	}
	w.write(name, mode, st.Size(), f)
}

// addFS writes every file of fsys under dir.
func (w *writer) addFS(dir string, fsys fs.FS) {
	if w.err != nil {
		return
	}
	w.err = fs.WalkDir(fsys, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		f, err := fsys.Open(p)
		if err != nil {
			return err
		}
		defer f.Close()
		w.add(path.Join(dir, p), 0o644, f)
		return w.err
	})
}

// sumsFile is SHA256SUMS as sha256sum writes it, sorted by name.
func (w *writer) sumsFile() []byte {
	names := make([]string, 0, len(w.sums))
	for n := range w.sums {
		names = append(names, n)
	}
	slices.Sort(names)
	var b strings.Builder
	for _, n := range names {
		fmt.Fprintf(&b, "%s  %s\n", w.sums[n], n)
	}
	return []byte(b.String())
}

// unsummed writes a file that SHA256SUMS does not list: itself and its
// signature.
func (w *writer) unsummed(name string, b []byte) {
	if w.err != nil {
		return
	}
	if w.err = w.header(name, 0o644, int64(len(b))); w.err == nil {
		_, w.err = w.tw.Write(b)
	}
}
