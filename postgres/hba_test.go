package postgres

import (
	"strings"
	"testing"
)

func TestHBAAdmitsOtherHostsOnlyWhenListeningBeyondLoopback(t *testing.T) {
	for _, tc := range []struct {
		listen string
		remote bool
	}{
		{"127.0.0.1", false},
		{"::1", false},
		{"localhost", false},
		{"127.0.0.2", false},
		{"0.0.0.0", true},
		{"10.1.2.3", true},
		{"127.0.0.1, 10.1.2.3", true},
	} {
		hba := string((&Server{ListenAddress: tc.listen}).renderHBA())
		if got := strings.Contains(hba, " all   all "); got != tc.remote {
			t.Errorf("listen %q: admits every address = %v, want %v\n%s", tc.listen, got, tc.remote, hba)
		}
		for _, line := range strings.Split(strings.TrimSpace(hba), "\n") {
			if !strings.HasPrefix(line, "#") && (!strings.HasPrefix(line, "host ") || !strings.HasSuffix(line, "scram-sha-256")) {
				t.Errorf("listen %q: line %q is not a TCP line with SCRAM", tc.listen, line)
			}
		}
	}
}
