package backup

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

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

// ParseKeys reads age keys, one a line: identities ("AGE-SECRET-KEY-1..."),
// whose recipients are used for writing, or recipients alone ("age1..."),
// which can write but not read. Lines starting with # are comments.
func ParseKeys(text string) (Keys, error) {
	var k Keys
	var idText strings.Builder
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		switch {
		case line == "" || strings.HasPrefix(line, "#"):
		case strings.HasPrefix(line, "age1"):
			r, err := age.ParseX25519Recipient(line)
			if err != nil {
				return Keys{}, fmt.Errorf("age recipient: %w", err)
			}
			k.Recipients = append(k.Recipients, r)
		default:
			idText.WriteString(line + "\n")
		}
	}
	if idText.Len() > 0 {
		ids, err := age.ParseIdentities(strings.NewReader(idText.String()))
		if err != nil {
			return Keys{}, fmt.Errorf("age key: %w", err)
		}
		for _, id := range ids {
			x, ok := id.(*age.X25519Identity)
			if !ok {
				return Keys{}, errors.New("age key: only X25519 identities (AGE-SECRET-KEY-1...) are supported")
			}
			k.Identities = append(k.Identities, x)
			k.Recipients = append(k.Recipients, x.Recipient())
		}
	}
	if len(k.Recipients) == 0 {
		return Keys{}, errors.New("age key: no identity (AGE-SECRET-KEY-1...) or recipient (age1...) in it")
	}
	return k, nil
}

// configured reports whether a key was given at all: then every object
// read must be age-encrypted.
func (k Keys) configured() bool { return len(k.Recipients) > 0 || len(k.Identities) > 0 }

// IdentityStrings are the identities in their text form, for a restore's
// configuration.
func (k Keys) IdentityStrings() []string {
	var out []string
	for _, id := range k.Identities {
		if x, ok := id.(*age.X25519Identity); ok {
			out = append(out, x.String())
		}
	}
	return out
}

// Recipient is the text form of the first recipient, what archiving needs.
func (k Keys) Recipient() string {
	if len(k.Recipients) == 0 {
		return ""
	}
	if x, ok := k.Recipients[0].(*age.X25519Recipient); ok {
		return x.String()
	}
	return ""
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

// WriteNewKeyFile generates an age identity into file (mode 0600, its
// directory 0700), refusing to replace one that exists: a lost identity
// makes every backup encrypted to it unreadable. It returns the recipient.
func WriteNewKeyFile(file string) (recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", err
	}
	// The key's own directory is private; the ones above it (the state
	// directory among them) must stay passable for the server's account.
	if err := os.MkdirAll(filepath.Dir(filepath.Dir(file)), 0o755); err != nil {
		return "", fmt.Errorf("age key: %w", err)
	}
	if err := os.Mkdir(filepath.Dir(file), 0o700); err != nil && !errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("age key: %w", err)
	}
	f, err := os.OpenFile(file, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, fs.ErrExist) {
		return "", fmt.Errorf("age key %s already exists: backups encrypted to it need it to be restored, so it is never overwritten (remove it yourself if you are sure)", file)
	}
	if err != nil {
		return "", fmt.Errorf("age key: %w", err)
	}
	text := "# created " + time.Now().UTC().Format(time.RFC3339) + "\n# recipient: " + id.Recipient().String() + "\n" + id.String() + "\n"
	if _, err := f.WriteString(text); err != nil {
		f.Close()
		return "", fmt.Errorf("age key %s: %w", file, err)
	}
	if err := f.Close(); err != nil {
		return "", fmt.Errorf("age key %s: %w", file, err)
	}
	return id.Recipient().String(), nil
}

// zstd level 1 compresses at several hundred MB/s per core; each object is
// compressed on its own so that objects compress in parallel. The shared
// encoders hold one state per CPU (about 1.6 MiB each): EncodeAll takes a
// free one, so as many objects as there are CPUs compress at once (a
// concurrency of 1 would make every upload worker queue for a single
// state). No lower-memory mode: with it the fast encoder slides its whole
// window down after every block,
// which costs more than the compression. No frame CRC: every stored object's
// SHA-256 is checked before it is decompressed, and the CRC's xxhash pass
// over the raw bytes would be the second hash of the same data. A 512 KiB
// window instead of the default 8 MiB: the encoder copies its input through
// a history buffer of twice the window, which then stays in the CPU cache;
// on PostgreSQL pages it compresses as well (matches are near) and about
// twice as fast.
//
// Huffman coding of literals only where literals are few. Restore waits
// on decoding, and Huffman decoding is most of it where pages are mostly
// literals: on pgvector tables with their HNSW index, Huffman coding stored
// 0.751 of the raw bytes where 0.840 is stored without it, but decoded at
// 695 MB/s a core against 5.8 GB/s (pgBackRest's lz4 stores 0.87), and
// encoded at half the speed. On pgbench tables, whose pages are mostly
// matches, it stored 0.052 against 0.063 and decoded at 1.4 against 1.6
// GB/s: there the bytes are worth it, and the daily incrementals a slow
// link carries are such pages.
var (
	encoder        = newEncoder(zstd.WithNoEntropyCompression(true))
	huffmanEncoder = newEncoder()
	decoder, _     = zstd.NewReader(nil, zstd.WithDecoderConcurrency(0), zstd.WithDecoderMaxMemory(1<<32))
)

func newEncoder(opts ...zstd.EOption) *zstd.Encoder {
	e, err := zstd.NewWriter(nil, append([]zstd.EOption{zstd.WithEncoderLevel(zstd.SpeedFastest), zstd.WithEncoderConcurrency(runtime.GOMAXPROCS(0)), zstd.WithEncoderCRC(false), zstd.WithWindowSize(512 << 10)}, opts...)...)
	if err != nil {
		panic(err)
	}
	return e
}

const ageHeader = "age-encryption.org/v1"

// objectSuffix is the ending of a stored object's name.
func (k Keys) objectSuffix() string {
	if k.Encrypted() {
		return ".zst.age"
	}
	return ".zst"
}

// compress appends raw to dst as zstd frames of up to segmentSize (4 MiB)
// bytes. Each segment's first probeSize bytes, encoded without Huffman
// coding, decide how it is stored:
//   - not compressing (random or already compressed data, which PostgreSQL
//     keeps in TOAST): in raw blocks, without searching it for matches,
//     which would cost a core-second per GB for nothing, CPU the object
//     store needs to take the bytes in;
//   - to under half its size: with Huffman-coded literals, which are then
//     at most half the bytes to decode (without it, pgbench pages
//     compressed to 0.063 of their size, pgvector pages to 0.84; with a
//     quarter here rather than half, the pages an incremental backup of
//     pgbench took were stored in 6.6 MB, where Huffman coding stores
//     them in 5.3);
//   - otherwise with literals stored as they are.
//
// Concatenated frames are one valid zstd stream.
func compress(dst, raw []byte) []byte {
	var probe [probeSize + 512]byte
	for len(raw) > 0 {
		seg := raw[:min(segmentSize, len(raw))]
		raw = raw[len(seg):]
		if len(seg) >= 2*probeSize {
			switch n := len(encoder.EncodeAll(seg[:probeSize], probe[:0])); {
			case n > probeSize*97/100:
				dst = appendRawFrame(dst, seg)
				continue
			case n < probeSize/2:
				dst = huffmanEncoder.EncodeAll(seg, dst)
				continue
			}
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
	encrypted := bytes.HasPrefix(stored, []byte(ageHeader))
	if !encrypted && k.configured() {
		// With a key configured, a plaintext object can only be one that
		// somebody else put there: reading it would let them feed the
		// restore anything.
		return nil, fmt.Errorf("%s is not encrypted, but an age key is configured: refusing an object that anyone with write access to the bucket could have planted", name)
	}
	if encrypted {
		if len(k.Identities) == 0 {
			return nil, fmt.Errorf("%s is encrypted with age and no key was given: configure spec.backup.encryption, or pass --age-key with the identity file the backup was made with", name)
		}
		r, err := age.Decrypt(bytes.NewReader(stored), k.Identities...)
		if err != nil {
			return nil, fmt.Errorf("%s: decrypt with the given age key: %w", name, err)
		}
		// The plaintext is shorter than the stored object: one buffer of
		// that size holds it, where io.ReadAll would grow one by copying.
		buf := bytes.NewBuffer(make([]byte, 0, len(stored)+bytes.MinRead))
		if _, err := buf.ReadFrom(r); err != nil {
			return nil, fmt.Errorf("%s: decrypt: %w", name, err)
		}
		compressed = buf.Bytes()
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
