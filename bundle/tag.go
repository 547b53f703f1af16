package bundle

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
)

// tagPattern is what a container image tag may be.
var tagPattern = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$`)

// DefaultTag is the images' tag for a bundle of binary, whose version is
// version: the version itself when it makes a tag; a development build
// (whose version names at most a commit, which uncommitted changes share)
// gets one from its contents, so two builds never share a tag and `helm
// upgrade` to a new build rolls the pods.
func DefaultTag(version, binary string) (string, error) {
	v := strings.ReplaceAll(version, "+", "-")
	if tagPattern.MatchString(v) && !strings.HasPrefix(v, "dev") && v != "unknown" {
		return v, nil
	}
	f, err := os.Open(binary)
	if err != nil {
		return "", fmt.Errorf("tag: %w", err)
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", fmt.Errorf("tag: reading %s: %w", binary, err)
	}
	return "dev-" + hex.EncodeToString(h.Sum(nil))[:12], nil
}
