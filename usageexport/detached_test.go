package usageexport

import (
	"strings"
	"testing"
)

func TestDetachedSignatureChecksTheFileThePurposeAndTheKey(t *testing.T) {
	_, key, err := NewKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	_, other, err := NewKeyPEM()
	if err != nil {
		t.Fatal(err)
	}
	payload := []byte("aaaa  one\nbbbb  two\n")
	sig, err := SignDetached("test-v1", payload, key)
	if err != nil {
		t.Fatal(err)
	}
	pub, err := VerifyDetached("test-v1", payload, sig)
	if err != nil {
		t.Fatalf("a fresh signature does not verify: %v", err)
	}
	if !pub.Equal(key.Public()) {
		t.Errorf("VerifyDetached returned another key")
	}

	forged, err := SignDetached("test-v1", payload, other)
	if err != nil {
		t.Fatal(err)
	}
	sealed, err := Seal([]byte(`{"x":1}`), key)
	if err != nil {
		t.Fatal(err)
	}
	usageLine := sealed[strings.IndexByte(string(sealed), '\n')+1:]
	for what, c := range map[string]struct {
		purpose      string
		payload, sig []byte
	}{
		"an altered file":                 {"test-v1", []byte("aaaa  one\nbbbb  TWO\n"), sig},
		"another purpose":                 {"test-v2", payload, sig},
		"a signature line made for usage": {"test-v1", []byte(`{"x":1}`), usageLine},
		"a swapped public key":            {"test-v1", payload, []byte(strings.Replace(string(sig), FormatPublicKey(key.Public()), FormatPublicKey(other.Public()), 1))},
		"no newline":                      {"test-v1", payload, sig[:len(sig)-1]},
	} {
		if _, err := VerifyDetached(c.purpose, c.payload, c.sig); err == nil {
			t.Errorf("%s verified", what)
		}
	}
	// Another key's valid signature verifies, and says whose it is: the
	// caller compares it with the key it trusts.
	if pub, err := VerifyDetached("test-v1", payload, forged); err != nil || pub.Equal(key.Public()) {
		t.Errorf("another key's signature: key %v, err %v", pub, err)
	}
}
