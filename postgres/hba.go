package postgres

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
)

// hbaPath is the server's pg_hba.conf, which Outpost owns from initdb on.
func (s *Server) hbaPath() string { return filepath.Join(s.DataDir, "pg_hba.conf") }

// renderHBA returns pg_hba.conf: SCRAM-SHA-256 passwords for every
// connection, over TCP only (there are no Unix sockets). Clients on this
// host may always connect; clients elsewhere only when the server listens
// beyond loopback, which is how an operator opens an instance to the site's
// network. Replication connections (base backups) follow the same rule.
func (s *Server) renderHBA() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by Outpost; edits are overwritten.\n")
	b.WriteString("# TYPE  DATABASE     USER  ADDRESS       METHOD\n")
	addresses := []string{"127.0.0.1/32", "::1/128"}
	if !listensOnLoopbackOnly(s.listenAddress()) {
		addresses = []string{"all"}
	}
	for _, db := range []string{"all", "replication"} {
		for _, a := range addresses {
			b.WriteString("host    " + pad(db, 13) + "all   " + pad(a, 14) + "scram-sha-256\n")
		}
	}
	return b.Bytes()
}

// listensOnLoopbackOnly reports whether every address of a
// listen_addresses value is a loopback one.
func listensOnLoopbackOnly(listen string) bool {
	for _, a := range strings.Split(listen, ",") {
		a = strings.TrimSpace(a)
		if a == "localhost" {
			continue
		}
		ip := net.ParseIP(a)
		if ip == nil || !ip.IsLoopback() {
			return false
		}
	}
	return true
}

func pad(s string, n int) string {
	if len(s) >= n {
		return s + " "
	}
	return s + strings.Repeat(" ", n-len(s))
}
