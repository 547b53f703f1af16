package postgres

import (
	"net"
	"net/url"
	"strconv"
	"strings"
)

// ConnURL holds what a connection URI says. String builds the URI: every
// URI Outpost connects with or prints comes from here, so the TLS settings
// are written one way only.
type ConnURL struct {
	// Host is a host name or address, or a Unix socket directory (an
	// absolute path).
	Host string
	Port int
	// User and Password; an empty Password is left out (a pgpass file,
	// or a client certificate, authenticates instead).
	User, Password string
	Database       string
	// RootCert is the CA file that verifies the server
	// (sslmode=verify-full). Empty means no TLS (sslmode=disable): only for
	// Unix sockets and servers that serve loopback without TLS.
	RootCert string
	// ClientCert and ClientKey are a client certificate and its key, for
	// PostgreSQL's cert authentication.
	ClientCert, ClientKey string
	// Options are further URI parameters, such as connect_timeout.
	Options url.Values
}

// Socket reports whether Host is a Unix socket directory.
func (c ConnURL) Socket() bool { return strings.HasPrefix(c.Host, "/") }

// String is the URI, postgres://user:password@host:port/database?sslmode=...
func (c ConnURL) String() string {
	q := url.Values{}
	for k, v := range c.Options {
		q[k] = v
	}
	u := url.URL{Scheme: "postgres", Path: "/" + c.Database}
	switch {
	case c.Password != "":
		u.User = url.UserPassword(c.User, c.Password)
	case c.User != "":
		u.User = url.User(c.User)
	}
	if c.Socket() {
		q.Set("host", c.Host)
		q.Set("port", strconv.Itoa(c.Port))
	} else {
		u.Host = net.JoinHostPort(c.Host, strconv.Itoa(c.Port))
	}
	if c.RootCert != "" && !c.Socket() {
		q.Set("sslmode", "verify-full")
		q.Set("sslrootcert", c.RootCert)
		if c.ClientCert != "" {
			q.Set("sslcert", c.ClientCert)
			q.Set("sslkey", c.ClientKey)
		}
	} else {
		q.Set("sslmode", "disable")
	}
	// libpq does not read "+" as a space, as form encoding writes it (a
	// literal "+" is already %2B); a "/" may stay as it is in a query, which
	// keeps file paths readable.
	u.RawQuery = strings.NewReplacer("+", "%20", "%2F", "/").Replace(q.Encode())
	return u.String()
}
