package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"filippo.io/age"
	"github.com/klauspost/compress/zstd"
)

// Keys encrypt and decrypt objects with age (X25519). The zero value means
// no encryption; Identities are needed only to read.
type Keys struct {
	Recipients []age.Recipient
	Identities []age.Identity
}

// Encrypted reports whether objects written with these keys are encrypted.
func (k Keys) Encrypted() bool { return len(k.Recipients) > 0 }

// ParseKeys reads age identities ("AGE-SECRET-KEY-1...") and uses their
// recipients for writing.
func ParseKeys(text string) (Keys, error) {
	ids, err := age.ParseIdentities(strings.NewReader(text))
	if err != nil {
		return Keys{}, fmt.Errorf("age key: %w", err)
	}
	var k Keys
	for _, id := range ids {
		x, ok := id.(*age.X25519Identity)
		if !ok {
			return Keys{}, errors.New("age key: only X25519 identities (AGE-SECRET-KEY-1...) are supported")
		}
		k.Identities = append(k.Identities, x)
		k.Recipients = append(k.Recipients, x.Recipient())
	}
	return k, nil
}

// ReadKeyFile reads an age identity file.
func ReadKeyFile(file string) (Keys, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return Keys{}, fmt.Errorf("age key: %w", err)
	}
	k, err := ParseKeys(string(b))
	if err != nil {
		return Keys{}, fmt.Errorf("%s: %w", file, err)
	}
	return k, nil
}

// GenerateKey returns a new age identity in its text form.
func GenerateKey() (string, error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", err
	}
	return id.String(), nil
}

// zstd level 1 compresses at several hundred MB/s per core; each object is
// compressed on its own so that objects compress in parallel. The shared
// encoder holds one state per CPU: EncodeAll takes a free one, so as many
// objects as there are CPUs compress at once (a concurrency of 1 would make
// every upload worker queue for a single state). No lower-memory mode: with
// it the fast encoder slides its whole window down after every 128 KiB block,
// which costs more than the compression. No frame CRC: every stored object's
// SHA-256 is checked before it is decompressed, and the CRC's xxhash pass
// over the raw bytes would be the second hash of the same data. A 512 KiB
// window instead of the default 8 MiB: the encoder copies its input through
// a history buffer of twice the window, which then stays in the CPU cache;
// on PostgreSQL pages it compresses as well (matches are near) and about
// twice as fast.
var (
	encoder, _ = zstd.NewWriter(nil, zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false), zstd.WithWindowSize(512<<10))
	decoder, _ = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<32))
)

const ageHeader = "age-encryption.org/v1"

// objectSuffix is the ending of a stored object's name.
func (k Keys) objectSuffix() string {
	if k.Encrypted() {
		return ".zst.age"
	}
	return ".zst"
}

// seal compresses and, with recipients, encrypts raw, appending to dst.
func (k Keys) seal(dst *bytes.Buffer, raw []byte) error {
	if !k.Encrypted() {
		dst.Write(encoder.EncodeAll(raw, dst.AvailableBuffer()))
		return nil
	}
	w, err := age.Encrypt(dst, k.Recipients...)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if _, err := w.Write(encoder.EncodeAll(raw, nil)); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	return w.Close()
}

// open reverses seal. name is the object, for messages.
func (k Keys) open(name string, stored []byte) ([]byte, error) {
	compressed := stored
	if bytes.HasPrefix(stored, []byte(ageHeader)) {
		if len(k.Identities) == 0 {
			return nil, fmt.Errorf("%s is encrypted with age and no key was given: configure spec.backup.encryption, or pass --age-key with the identity file the backup was made with", name)
		}
		r, err := age.Decrypt(bytes.NewReader(stored), k.Identities...)
		if err != nil {
			return nil, fmt.Errorf("%s: decrypt with the given age key: %w", name, err)
		}
		if compressed, err = io.ReadAll(r); err != nil {
			return nil, fmt.Errorf("%s: decrypt: %w", name, err)
		}
	}
	raw, err := decoder.DecodeAll(compressed, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: decompress: %w", name, err)
	}
	return raw, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
