package usageexport

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// SigningKey is the site's ed25519 key that signs exports and batches.
type SigningKey struct {
	Private ed25519.PrivateKey
}

// Public returns the public half.
func (k SigningKey) Public() ed25519.PublicKey { return k.Private.Public().(ed25519.PublicKey) }

// LoadOrCreateKey reads the site's signing key from path (PKCS#8 PEM), or
// creates it there with mode 0600 on first use.
func LoadOrCreateKey(path string) (SigningKey, error) {
	b, err := os.ReadFile(path)
	if err == nil {
		return parsePrivateKey(path, b)
	}
	if !errors.Is(err, os.ErrNotExist) {
		return SigningKey{}, fmt.Errorf("usage signing key %s: %w", path, err)
	}
	pemBytes, key, err := NewKeyPEM()
	if err != nil {
		return SigningKey{}, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return SigningKey{}, fmt.Errorf("usage signing key: %w", err)
	}
	// O_EXCL: two processes starting at once must not each write a key and
	// sign with different ones.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if errors.Is(err, os.ErrExist) {
		return LoadOrCreateKey(path)
	}
	if err != nil {
		return SigningKey{}, fmt.Errorf("usage signing key %s: %w", path, err)
	}
	if _, err := f.Write(pemBytes); err != nil {
		f.Close()
		return SigningKey{}, fmt.Errorf("usage signing key %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return SigningKey{}, fmt.Errorf("usage signing key %s: %w", path, err)
	}
	return key, nil
}

// NewKeyPEM generates a signing key and returns it with its PKCS#8 PEM
// form, which is how it is stored: in a 0600 file on one host, in a Secret
// on Kubernetes.
func NewKeyPEM() ([]byte, SigningKey, error) {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, SigningKey{}, fmt.Errorf("usage signing key: %w", err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(priv)
	if err != nil {
		return nil, SigningKey{}, fmt.Errorf("usage signing key: %w", err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), SigningKey{Private: priv}, nil
}

// ParseKeyPEM reads a signing key in the PEM form NewKeyPEM writes; source
// names where it came from in errors (a file, a Secret).
func ParseKeyPEM(source string, b []byte) (SigningKey, error) { return parsePrivateKey(source, b) }

// LoadKey reads an existing signing key.
func LoadKey(path string) (SigningKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return SigningKey{}, fmt.Errorf("usage signing key %s: %w (it is created when `outpost up` first starts)", path, err)
	}
	return parsePrivateKey(path, b)
}

func parsePrivateKey(path string, b []byte) (SigningKey, error) {
	block, _ := pem.Decode(b)
	if block == nil || block.Type != "PRIVATE KEY" {
		return SigningKey{}, fmt.Errorf("usage signing key %s: not a PEM PRIVATE KEY", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return SigningKey{}, fmt.Errorf("usage signing key %s: %w", path, err)
	}
	priv, ok := k.(ed25519.PrivateKey)
	if !ok {
		return SigningKey{}, fmt.Errorf("usage signing key %s: not an ed25519 key", path)
	}
	return SigningKey{Private: priv}, nil
}

// publicKeyPrefix marks the text form of a public key, so a key of another
// kind pasted by mistake is refused with a clear message.
const publicKeyPrefix = "ed25519:"

// FormatPublicKey is the text form of a public key: "ed25519:" and the
// standard base64 of its 32 bytes. `outpost usage key` prints it.
func FormatPublicKey(pub ed25519.PublicKey) string {
	return publicKeyPrefix + base64.StdEncoding.EncodeToString(pub)
}

// ParsePublicKey reads the text form of a public key.
func ParsePublicKey(s string) (ed25519.PublicKey, error) {
	s = strings.TrimSpace(s)
	if !strings.HasPrefix(s, publicKeyPrefix) {
		return nil, fmt.Errorf("public key %q: must start with %q", s, publicKeyPrefix)
	}
	b, err := base64.StdEncoding.Strict().DecodeString(s[len(publicKeyPrefix):])
	if err != nil || len(b) != ed25519.PublicKeySize {
		return nil, fmt.Errorf("public key %q: must be %q followed by the base64 of 32 bytes", s, publicKeyPrefix)
	}
	return ed25519.PublicKey(b), nil
}

// Fingerprint is "SHA256:" and the hex sha256 of the public key's bytes.
func Fingerprint(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return "SHA256:" + hex.EncodeToString(sum[:])
}

// SiteID is the site's stable identity: the first 16 bytes of its key's
// fingerprint. Deriving it from the key binds every record to the key that
// signs it, and it survives renaming the site.
func SiteID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:16])
}
