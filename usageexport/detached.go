package usageexport

import (
	"bytes"
	"crypto/ed25519"
	"errors"
	"fmt"
	"strings"
)

// Detached signatures sign a file that stays as it is (an air-gap bundle's
// SHA256SUMS, which `sha256sum -c` must still read) with the site's kind of
// key, in a file of its own: one signature line, as a signed usage file
// ends with, followed by "\n". The message signed is detachedPrefix, the
// purpose, a NUL and the file's bytes, so a signature made for one purpose
// is never valid for another, nor for a usage payload (signingContext).
const detachedPrefix = "outpost-detached-"

func detachedMessage(purpose string, payload []byte) []byte {
	msg := make([]byte, 0, len(detachedPrefix)+len(purpose)+1+len(payload))
	msg = append(append(msg, detachedPrefix...), purpose...)
	return append(append(msg, 0), payload...)
}

func checkPurpose(purpose string) error {
	if purpose == "" || strings.IndexByte(purpose, 0) >= 0 {
		return fmt.Errorf("signature purpose %q: must be non-empty and without NUL", purpose)
	}
	return nil
}

// SignDetached signs payload for purpose (e.g. "bundle-sha256sums-v1") and
// returns the signature file.
func SignDetached(purpose string, payload []byte, key SigningKey) ([]byte, error) {
	if err := checkPurpose(purpose); err != nil {
		return nil, err
	}
	line, _, err := signatureLine(detachedMessage(purpose, payload), payload, key)
	if err != nil {
		return nil, err
	}
	return append(line, '\n'), nil
}

// VerifyDetached checks that sigFile, as SignDetached wrote it, signs
// payload for purpose, and returns the key that signed it. Callers that
// know whose key to expect compare it.
func VerifyDetached(purpose string, payload, sigFile []byte) (ed25519.PublicKey, error) {
	if err := checkPurpose(purpose); err != nil {
		return nil, err
	}
	line, ok := bytes.CutSuffix(sigFile, []byte("\n"))
	if !ok || bytes.IndexByte(line, '\n') >= 0 {
		return nil, errors.New("signature file: want exactly one signature line ending with a newline")
	}
	_, pub, sig, _, err := parseBlock(line, payload)
	if err != nil {
		return nil, err
	}
	if !ed25519.Verify(pub, detachedMessage(purpose, payload), sig) {
		return nil, errors.New("signature does not match: the signed file was altered or signed by another key")
	}
	return pub, nil
}
