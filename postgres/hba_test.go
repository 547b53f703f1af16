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
		if got := strings.Contains(hba, " all       all "); got != tc.remote {
			t.Errorf("listen %q: admits every address = %v, want %v\n%s", tc.listen, got, tc.remote, hba)
		}
		for _, line := range strings.Split(strings.TrimSpace(hba), "\n") {
			if !strings.HasPrefix(line, "#") && (!strings.HasPrefix(line, "host ") || !strings.HasSuffix(line, "scram-sha-256")) {
				t.Errorf("listen %q: line %q is not a TCP line with SCRAM", tc.listen, line)
			}
		}
	}
}

func TestHBAWithTLSAdmitsTCPOnlyOverTLSAndTheSuperuserOnlyByCertificate(t *testing.T) {
	srv := &Server{ListenAddress: "0.0.0.0", SocketDir: "/run/pg", TLS: &TLSFiles{}}
	var tcp []string
	for _, line := range strings.Split(strings.TrimSpace(string(srv.renderHBA())), "\n") {
		f := strings.Fields(line)
		switch {
		case f[0] == "#":
		case f[0] == "local":
			if f[len(f)-1] != "scram-sha-256" {
				t.Errorf("socket line %q does not ask for a password", line)
			}
		case f[0] != "hostssl":
			t.Errorf("TCP line %q is not hostssl", line)
		default:
			tcp = append(tcp, f[2]+" "+f[4])
		}
	}
	// pg_hba.conf takes the first line that matches: the superuser's
	// certificate lines come before the password lines for everyone.
	want := "postgres cert,postgres cert,all scram-sha-256,all scram-sha-256"
	if got := strings.Join(tcp, ","); got != want {
		t.Errorf("TCP lines (user method) = %s, want %s", got, want)
	}
}
