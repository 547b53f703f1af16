package postgres

import (
	"bytes"
	"net"
	"path/filepath"
	"strings"
)

// hbaPath is the server's pg_hba.conf, which Outpost owns from initdb on.
func (s *Server) hbaPath() string { return filepath.Join(s.DataDir, "pg_hba.conf") }

// renderHBA returns pg_hba.conf. Every password is checked with
// SCRAM-SHA-256. Clients on this host may always connect over TCP; clients
// elsewhere only when the server listens beyond loopback, which is how an
// operator opens an instance to the site's network. Replication
// connections (base backups) follow the same rules.
//
// With TLS every TCP line is hostssl, so a client without TLS is refused
// whatever its address, and the superuser may come over TCP only with a
// client certificate the site CA signed for it (the cert method): its
// password works on the Unix socket alone, which only the server's account
// and root can reach.
func (s *Server) renderHBA() []byte {
	var b bytes.Buffer
	b.WriteString("# Written by Outpost; edits are overwritten.\n")
	b.WriteString("# TYPE  DATABASE     USER      ADDRESS       METHOD\n")
	line := func(typ, db, user, addr, method string) {
		b.WriteString(pad(typ, 8) + pad(db, 13) + pad(user, 10) + pad(addr, 14) + method + "\n")
	}
	dbs := []string{"all", "replication"}
	if s.SocketDir != "" {
		for _, db := range dbs {
			line("local", db, "all", "", "scram-sha-256")
		}
	}
	addresses := []string{"127.0.0.1/32", "::1/128"}
	if !listensOnLoopbackOnly(s.listenAddress()) {
		addresses = []string{"all"}
	}
	if s.TLS == nil {
		for _, db := range dbs {
			for _, a := range addresses {
				line("host", db, "all", a, "scram-sha-256")
			}
		}
		return b.Bytes()
	}
	for _, user := range []string{Superuser, "all"} {
		method := "scram-sha-256"
		if user == Superuser {
			method = "cert"
		}
		for _, db := range dbs {
			for _, a := range addresses {
				line("hostssl", db, user, a, method)
			}
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
