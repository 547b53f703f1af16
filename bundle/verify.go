package bundle

import (
	"archive/tar"
	"bufio"
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"

	"github.com/outpostdata/outpost/usageexport"
)

// Verified is a bundle whose signature and checksums checked out.
type Verified struct {
	Info Info
	// SignedBy is the key that signed SHA256SUMS.
	SignedBy ed25519.PublicKey
	// Files are the files SHA256SUMS lists, by name.
	Files []string
}

// VerifyOptions says whom to trust.
type VerifyOptions struct {
	// PublicKey, when set, is the only key whose signature is accepted.
	// Without it the key in the signature is used, which proves the bundle
	// is intact but not who made it.
	PublicKey ed25519.PublicKey
}

// Verify reads the bundle at file and checks its signature and every
// checksum. Its error names the file that is wrong.
func Verify(file string, o VerifyOptions) (*Verified, error) {
	return read(file, "", o)
}

// maxSmallFile bounds the files Verify keeps in memory (SHA256SUMS, its
// signature, bundle.json).
const maxSmallFile = 1 << 20

// read reads the bundle, extracting each file under dir when dir is not
// empty, then checks it.
func read(file, dir string, o VerifyOptions) (*Verified, error) {
	f, err := os.Open(file)
	if err != nil {
		return nil, fmt.Errorf("bundle: %w", err)
	}
	defer f.Close()
	got := map[string]string{}   // name -> sha256 of what the bundle holds
	small := map[string][]byte{} // SHA256SUMS, its signature, bundle.json
	tr := tar.NewReader(bufio.NewReaderSize(f, 1<<20))
	last := "the start"
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("bundle %s: truncated or not a tar file, after %s: %w", file, last, err)
		}
		name, err := entryName(h)
		if err != nil {
			return nil, fmt.Errorf("bundle %s: %w", file, err)
		}
		if _, dup := got[name]; dup {
			return nil, fmt.Errorf("bundle %s: %s is in it twice", file, name)
		}
		sum := sha256.New()
		var dst io.Writer = sum
		var keep bytes.Buffer
		isSmall := name == SumsFile || name == SignatureFile || name == InfoFile
		if isSmall {
			if h.Size > maxSmallFile {
				return nil, fmt.Errorf("bundle %s: %s is %d bytes, more than a bundle ever writes", file, name, h.Size)
			}
			dst = io.MultiWriter(sum, &keep)
		}
		var out *os.File
		if dir != "" {
			if out, err = create(dir, name, h.Mode); err != nil {
				return nil, err
			}
			dst = io.MultiWriter(dst, out)
		}
		_, err = io.Copy(dst, tr)
		if out != nil {
			if cerr := out.Close(); err == nil {
				err = cerr
			}
		}
		if err != nil {
			return nil, fmt.Errorf("bundle %s: truncated or unreadable in %s: %w", file, name, err)
		}
		got[name] = hex.EncodeToString(sum.Sum(nil))
		if isSmall {
			small[name] = keep.Bytes()
		}
		last = name
	}
	if len(got) == 0 {
		return nil, fmt.Errorf("bundle %s: holds no files (not an outpost bundle?)", file)
	}
	v, err := check(got, small, o)
	if err != nil {
		return nil, fmt.Errorf("bundle %s: %w", file, err)
	}
	return v, nil
}

// entryName returns a tar entry's name if it is a regular file with a
// plain relative path: anything else could write outside the directory
// a bundle is extracted into.
func entryName(h *tar.Header) (string, error) {
	if h.Typeflag != tar.TypeReg {
		return "", fmt.Errorf("%s: not a regular file (type %q); a bundle holds only files", h.Name, h.Typeflag)
	}
	if h.Name == "" || path.IsAbs(h.Name) || path.Clean(h.Name) != h.Name || h.Name == ".." || strings.HasPrefix(h.Name, "../") {
		return "", fmt.Errorf("%q: not a plain relative file name", h.Name)
	}
	return h.Name, nil
}

// create makes the file for name under dir, executable if the entry is.
func create(dir, name string, mode int64) (*os.File, error) {
	p := filepath.Join(dir, filepath.FromSlash(name))
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		return nil, fmt.Errorf("extracting %s: %w", name, err)
	}
	perm := os.FileMode(0o644)
	if mode&0o111 != 0 {
		perm = 0o755
	}
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_EXCL, perm)
	if err != nil {
		return nil, fmt.Errorf("extracting %s: %w", name, err)
	}
	return f, nil
}

// check holds what the bundle holds (got: name -> sha256) to SHA256SUMS,
// and SHA256SUMS to its signature.
func check(got map[string]string, small map[string][]byte, o VerifyOptions) (*Verified, error) {
	sums, ok := small[SumsFile]
	if !ok {
		return nil, fmt.Errorf("%s is missing (not an outpost bundle?)", SumsFile)
	}
	sig, ok := small[SignatureFile]
	if !ok {
		return nil, fmt.Errorf("%s is missing: %s is not signed", SignatureFile, SumsFile)
	}
	// When the signature names a SHA256SUMS other than this one, it is
	// SHA256SUMS that changed; otherwise the signature is at fault.
	var block usageexport.SignatureBlock
	if json.Unmarshal(sig, &block) == nil && block.PayloadSHA256 != "" && block.PayloadSHA256 != got[SumsFile] {
		return nil, fmt.Errorf("%s was altered after it was signed: %s signs sha256 %s, the file's is %s", SumsFile, SignatureFile, block.PayloadSHA256, got[SumsFile])
	}
	pub, err := usageexport.VerifyDetached(signaturePurpose, sums, sig)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", SignatureFile, err)
	}
	if o.PublicKey != nil && !pub.Equal(o.PublicKey) {
		return nil, fmt.Errorf("%s: signed by %s (%s), not by the key you trust, %s", SignatureFile,
			usageexport.FormatPublicKey(pub), usageexport.Fingerprint(pub), usageexport.FormatPublicKey(o.PublicKey))
	}
	listed, err := parseSums(sums)
	if err != nil {
		return nil, err
	}
	var errs []error
	v := &Verified{SignedBy: pub}
	for _, name := range slices.Sorted(maps.Keys(listed)) {
		want := listed[name]
		switch have, ok := got[name]; {
		case !ok:
			errs = append(errs, fmt.Errorf("%s is listed in %s but missing from the bundle", name, SumsFile))
		case have != want:
			errs = append(errs, fmt.Errorf("%s: sha256 %s, but %s says %s: the file was altered or damaged", name, have, SumsFile, want))
		default:
			v.Files = append(v.Files, name)
		}
	}
	for _, name := range slices.Sorted(maps.Keys(got)) {
		if _, ok := listed[name]; !ok && name != SumsFile && name != SignatureFile {
			errs = append(errs, fmt.Errorf("%s is in the bundle but not in %s", name, SumsFile))
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	for _, need := range []string{InfoFile, BinaryFile, ImagesFile, ChartDir + "/Chart.yaml"} {
		if _, ok := listed[need]; !ok {
			return nil, fmt.Errorf("%s is missing from the bundle", need)
		}
	}
	dec := json.NewDecoder(bytes.NewReader(small[InfoFile]))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&v.Info); err != nil {
		return nil, fmt.Errorf("%s: %w", InfoFile, err)
	}
	if v.Info.Tag == "" || v.Info.ControllerImage == "" || v.Info.InstanceImage == "" {
		return nil, fmt.Errorf("%s: tag, controllerImage and instanceImage must all be set", InfoFile)
	}
	return v, nil
}

// parseSums reads SHA256SUMS: "HEX  NAME" per line, as sha256sum writes.
func parseSums(b []byte) (map[string]string, error) {
	out := map[string]string{}
	for i, line := range strings.Split(strings.TrimSuffix(string(b), "\n"), "\n") {
		sum, name, ok := strings.Cut(line, "  ")
		if _, err := hex.DecodeString(sum); !ok || err != nil || len(sum) != 2*sha256.Size || name == "" {
			return nil, fmt.Errorf("%s line %d: %q is not \"SHA256  NAME\"", SumsFile, i+1, line)
		}
		out[name] = sum
	}
	return out, nil
}
