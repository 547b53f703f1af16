package localruntime

import (
	"net"
	"slices"
	"testing"
	"time"

	"github.com/outpostdata/outpost/postgres"
)

func TestServerCertificateNamesWhereTheInstanceListens(t *testing.T) {
	has := func(req postgres.CertRequest, ip string) bool {
		return slices.ContainsFunc(req.IPs, func(x net.IP) bool { return x.Equal(net.ParseIP(ip)) })
	}
	loop := serverCertRequest("db", "127.0.0.1")
	if !has(loop, "127.0.0.1") || !has(loop, "::1") || !slices.Contains(loop.DNSNames, "localhost") || len(loop.IPs) != 2 {
		t.Errorf("listening on loopback: %+v", loop)
	}
	site := serverCertRequest("db", "10.1.2.3")
	if !has(site, "10.1.2.3") || !has(site, "127.0.0.1") {
		t.Errorf("listening on 10.1.2.3: %+v", site)
	}
	// The same request twice is the same certificate: no reissue for
	// nothing on every reconcile.
	ca, err := postgres.NewCA("site", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	cert, _, err := ca.Issue(serverCertRequest("db", "0.0.0.0"), time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if why := ca.Reissue(cert, serverCertRequest("db", "0.0.0.0"), time.Now()); why != "" {
		t.Errorf("a fresh certificate for every address is reissued: %s", why)
	}
	if why := ca.Reissue(cert, site, time.Now()); why != "issued for other names" {
		t.Errorf("a new listen address: %q, want reissued", why)
	}
}
