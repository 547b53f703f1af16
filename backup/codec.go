package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
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

// compress appends raw to dst as zstd frames of up to segmentSize (4 MiB)
// bytes. A segment whose first probeSize bytes do not compress (random or
// already compressed data, which PostgreSQL keeps in TOAST) is stored in raw
// blocks without searching it for matches: that search would cost a
// core-second per GB for nothing, CPU the object store needs to take the
// bytes in.
// Concatenated frames are one valid zstd stream.
func compress(dst, raw []byte) []byte {
	var probe [probeSize + 512]byte
	for len(raw) > 0 {
		seg := raw[:min(segmentSize, len(raw))]
		raw = raw[len(seg):]
		if len(seg) >= 2*probeSize && len(encoder.EncodeAll(seg[:probeSize], probe[:0])) > probeSize*97/100 {
			dst = appendRawFrame(dst, seg)
			continue
		}
		dst = encoder.EncodeAll(seg, dst)
	}
	return dst
}

const (
	segmentSize = 4 << 20
	probeSize   = 16 << 10
	// maxBlockSize is the largest zstd block.
	maxBlockSize = 128 << 10
)

// appendRawFrame appends a zstd frame that stores b uncompressed (RFC 8878,
// section 3.1.1): the magic number, a single-segment header with a 4-byte
// content size, and raw blocks of at most 128 KiB.
func appendRawFrame(dst, b []byte) []byte {
	dst = append(dst, 0x28, 0xb5, 0x2f, 0xfd)
	// Frame_Header_Descriptor: FCS_Field_Size 2 (4 bytes), Single_Segment.
	dst = append(dst, 0xa0)
	dst = binary.LittleEndian.AppendUint32(dst, uint32(len(b)))
	for first := true; len(b) > 0 || first; first = false {
		blk := b[:min(maxBlockSize, len(b))]
		b = b[len(blk):]
		// Block_Header: Last_Block, Block_Type 0 (raw), Block_Size.
		h := uint32(len(blk)) << 3
		if len(b) == 0 {
			h |= 1
		}
		dst = append(dst, byte(h), byte(h>>8), byte(h>>16))
		dst = append(dst, blk...)
	}
	return dst
}

// seal compresses and, with recipients, encrypts raw, appending to dst.
func (k Keys) seal(dst *bytes.Buffer, raw []byte) error {
	if !k.Encrypted() {
		dst.Write(compress(dst.AvailableBuffer(), raw))
		return nil
	}
	w, err := age.Encrypt(dst, k.Recipients...)
	if err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	if _, err := w.Write(compress(nil, raw)); err != nil {
		return fmt.Errorf("encrypt: %w", err)
	}
	return w.Close()
}

// open reverses seal. name is the object, for messages.
func (k Keys) open(name string, stored []byte) ([]byte, error) {
	return k.openInto(name, stored, nil)
}

// openInto is open that decodes into dst's spare capacity.
func (k Keys) openInto(name string, stored, dst []byte) ([]byte, error) {
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
	raw, err := decoder.DecodeAll(compressed, dst[:0])
	if err != nil {
		return nil, fmt.Errorf("%s: decompress: %w", name, err)
	}
	return raw, nil
}

func sha256Hex(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}
