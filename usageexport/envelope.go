package usageexport

import (
	"bytes"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/klauspost/compress/gzip"
)

// A signed file is the payload (one line of compact JSON, which never
// contains a raw newline) followed by "\n", then the signature block (one
// line of JSON) followed by "\n". The signature is over the payload's exact
// bytes, prefixed by signingContext; nothing is re-serialised to verify.
// The whole file may be gzipped.

// signingContext separates these signatures from any other use of the key.
const signingContext = "outpost-usage-payload-v1\x00"

// maxFileSize bounds what is read or decompressed: a year of 1,000
// instances is far below it.
const maxFileSize = 4 << 30

// maxDeflateRatio bounds how much larger deflate's output can be than its
// input.
const maxDeflateRatio = 1032

// SignatureBlock is the last line of a signed file.
type SignatureBlock struct {
	Algorithm      string `json:"algorithm"`
	PublicKey      string `json:"publicKey"`
	KeyFingerprint string `json:"keyFingerprint"`
	PayloadSHA256  string `json:"payloadSha256"`
	PayloadLength  int64  `json:"payloadLength"`
	Signature      string `json:"signature"`
}

// Seal signs payload bytes with key and returns the file.
func Seal(payload []byte, key SigningKey) ([]byte, error) {
	file, _, err := seal(payload, key)
	return file, err
}

// seal is Seal, also returning the payload's sha256.
func seal(payload []byte, key SigningKey) ([]byte, [sha256.Size]byte, error) {
	msg := make([]byte, 0, len(signingContext)+len(payload)+512)
	return sealMessage(append(append(msg, signingContext...), payload...), key)
}

// sealMessage signs msg, which is signingContext followed by the payload,
// and returns the file, written over msg's memory when it has room.
func sealMessage(msg []byte, key SigningKey) ([]byte, [sha256.Size]byte, error) {
	if !bytes.HasPrefix(msg, []byte(signingContext)) {
		return nil, [sha256.Size]byte{}, errors.New("seal: message without the signing context")
	}
	payload := msg[len(signingContext):]
	if bytes.IndexByte(payload, '\n') >= 0 {
		return nil, [sha256.Size]byte{}, errors.New("seal: payload must be one line")
	}
	line, sum, err := signatureLine(msg, payload, key)
	if err != nil {
		return nil, sum, err
	}
	out := append(append(append(msg, '\n'), line...), '\n')[len(signingContext):]
	return out, sum, nil
}

// signatureLine signs msg, which is a signing context followed by payload,
// and returns the signature line (without its newline) and the payload's
// sha256.
func signatureLine(msg, payload []byte, key SigningKey) ([]byte, [sha256.Size]byte, error) {
	sum := sha256.Sum256(payload)
	pub := key.Public()
	line, err := json.Marshal(SignatureBlock{
		Algorithm:      "ed25519",
		PublicKey:      FormatPublicKey(pub),
		KeyFingerprint: Fingerprint(pub),
		PayloadSHA256:  hex.EncodeToString(sum[:]),
		PayloadLength:  int64(len(payload)),
		Signature:      base64.StdEncoding.EncodeToString(ed25519.Sign(key.Private, msg)),
	})
	return line, sum, err
}

// Gzip compresses a file. Verification accepts both forms.
func Gzip(file []byte) ([]byte, error) {
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.DefaultCompression)
	if err != nil {
		return nil, err
	}
	if _, err := zw.Write(file); err != nil {
		return nil, err
	}
	if err := zw.Close(); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// Opened is a file whose signature checked out.
type Opened struct {
	// Payload is the exact signed bytes.
	Payload []byte
	// PayloadSHA256 is hex; it is the idempotency key of an upload.
	PayloadSHA256 string
	PublicKey     ed25519.PublicKey
	Block         SignatureBlock
	Gzipped       bool
}

// OpenSigned splits a file (gzipped or not) into payload and signature
// block and checks the signature. It does not look inside the payload.
func OpenSigned(data []byte) (*Opened, error) {
	o := &Opened{}
	// prefixed, when set, is signingContext followed by data: the message
	// the signature covers, without copying the payload again.
	var prefixed []byte
	if len(data) >= 2 && data[0] == 0x1f && data[1] == 0x8b {
		zr, err := gzip.NewReader(bytes.NewReader(data))
		if err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		// One member only: bytes appended after the stream are tampering.
		zr.Multistream(false)
		// The gzip trailer's size (untrusted, so only a hint) spares
		// growing the buffer step by step. It is bounded by what the
		// compressed bytes can expand to (deflate's ratio is at most
		// 1032:1): a forged trailer on a few bytes must not make the
		// verifier or the hub allocate gigabytes (found by FuzzVerify).
		var buf bytes.Buffer
		if len(data) >= 18 {
			hint := int(binary.LittleEndian.Uint32(data[len(data)-4:]))
			buf.Grow(len(signingContext) + min(hint, maxFileSize, maxDeflateRatio*len(data)) + 1)
		}
		buf.WriteString(signingContext)
		if _, err := buf.ReadFrom(io.LimitReader(zr, maxFileSize+1)); err != nil {
			return nil, fmt.Errorf("gzip: %w", err)
		}
		if buf.Len()-len(signingContext) > maxFileSize {
			return nil, fmt.Errorf("gzip: file is larger than %d bytes uncompressed", maxFileSize)
		}
		if rest, _ := io.ReadAll(zr); len(rest) > 0 {
			return nil, errors.New("gzip: data after the compressed stream")
		}
		prefixed = buf.Bytes()
		data, o.Gzipped = prefixed[len(signingContext):], true
	}
	if len(data) == 0 || data[len(data)-1] != '\n' {
		return nil, errors.New("file does not end with the signature line and a newline")
	}
	cut := bytes.LastIndexByte(data[:len(data)-1], '\n')
	if cut < 0 {
		return nil, errors.New("file has no signature line: expected the payload line, then the signature line")
	}
	o.Payload = data[:cut]
	block, pub, sig, sum, err := parseBlock(data[cut+1:len(data)-1], o.Payload)
	if err != nil {
		return nil, err
	}
	o.Block, o.PublicKey, o.PayloadSHA256 = block, pub, sum
	var msg []byte
	if prefixed != nil {
		msg = prefixed[:len(signingContext)+len(o.Payload)]
	} else {
		msg = make([]byte, 0, len(signingContext)+len(o.Payload))
		msg = append(append(msg, signingContext...), o.Payload...)
	}
	if !ed25519.Verify(pub, msg, sig) {
		return nil, errors.New("signature does not match the payload: the file was altered or signed by another key")
	}
	return o, nil
}

// parseBlock reads a signature line and checks it against payload: its
// form, the key and fingerprint, the payload's length and sha256. It
// returns the signature, which the caller verifies over the message its
// context makes of the payload.
func parseBlock(line, payload []byte) (b SignatureBlock, pub ed25519.PublicKey, sig []byte, sum string, err error) {
	dec := json.NewDecoder(bytes.NewReader(line))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&b); err != nil {
		return b, nil, nil, "", fmt.Errorf("signature line: %w", err)
	}
	// The signature line is not itself signed, so it must be exactly as
	// Seal writes it: no second spelling of the same content is accepted.
	if canonical, _ := json.Marshal(b); !bytes.Equal(canonical, line) {
		return b, nil, nil, "", errors.New("signature line: not in canonical form (altered?)")
	}
	if b.Algorithm != "ed25519" {
		return b, nil, nil, "", fmt.Errorf("signature line: algorithm %q is not supported, want ed25519", b.Algorithm)
	}
	pub, err = ParsePublicKey(b.PublicKey)
	if err != nil {
		return b, nil, nil, "", fmt.Errorf("signature line: publicKey: %w", err)
	}
	if b.KeyFingerprint != Fingerprint(pub) {
		return b, nil, nil, "", errors.New("signature line: keyFingerprint does not match publicKey")
	}
	if b.PayloadLength != int64(len(payload)) {
		return b, nil, nil, "", fmt.Errorf("signature line: payloadLength is %d, but the payload has %d bytes", b.PayloadLength, len(payload))
	}
	h := sha256.Sum256(payload)
	sum = hex.EncodeToString(h[:])
	if b.PayloadSHA256 != sum {
		return b, nil, nil, "", errors.New("signature line: payloadSha256 does not match the payload (altered?)")
	}
	sig, err = base64.StdEncoding.Strict().DecodeString(b.Signature)
	if err != nil || len(sig) != ed25519.SignatureSize {
		return b, nil, nil, "", errors.New("signature line: signature is not the base64 of 64 bytes")
	}
	return b, pub, sig, sum, nil
}
