package hub_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

// serveTLS serves h with o on a loopback port and returns the https URL.
func serveTLS(t *testing.T, h *hub.Hub, o hub.ServeOptions) string {
	t.Helper()
	srv, err := h.NewServer(o)
	must(t, err)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	go srv.ServeTLS(l, "", "")
	t.Cleanup(func() { srv.Close() })
	return "https://" + l.Addr().String()
}

// TestDirectModeReachesAnHTTPSHubThroughItsCA: the streamer sends its
// batch to a hub serving TLS with a private CA's certificate when its
// client trusts that CA (what connectivity.hub.caSecret gives it), and
// fails on the certificate with the system roots.
func TestDirectModeReachesAnHTTPSHubThroughItsCA(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	s := newSite(t, pg, "site1", true)
	_, h, token := hubWithSite(t, pg, s)
	certFile, keyFile := harness.ServerCert(t, t.TempDir())
	url := serveTLS(t, h, hub.ServeOptions{CertFile: certFile, KeyFile: keyFile})
	s.run(t, 2, "2026-11-02T00:00:00Z")

	streamer := &usageexport.Streamer{Pool: s.pool, Key: s.key, Clock: s.clock, SiteName: "plant",
		Hub: usageexport.UploadOptions{HubURL: url, Token: token, Attempts: 1}}
	if _, err := streamer.Flush(ctx); err == nil || !strings.Contains(err.Error(), "certificate signed by unknown authority") {
		t.Fatalf("streaming to the hub without its CA: %v, want a certificate error", err)
	}
	ca, err := os.ReadFile(certFile)
	must(t, err)
	streamer.Hub.Client, err = usageexport.HubClient(ca, certFile)
	must(t, err)
	sent, err := streamer.Flush(ctx)
	must(t, err)
	if n, _ := hubTotal(t, h, "plant", "2026-11"); sent != 48 || n != 48 {
		t.Fatalf("through the hub's CA: sent %d, hub has %d; want 48", sent, n)
	}
	if _, err := usageexport.HubClient([]byte("not a certificate"), "ca.crt"); err == nil || !strings.Contains(err.Error(), "ca.crt") {
		t.Errorf("a CA file without a certificate: %v, want an error naming it", err)
	}
}

// TestMutualTLSRefusesClientsWithoutACertificate: with a client CA the
// hub completes no request from a client without a certificate signed by
// it, and serves one with such a certificate.
func TestMutualTLSRefusesClientsWithoutACertificate(t *testing.T) {
	pg := harness.StartPostgres(t)
	s := newSite(t, pg, "site1", false)
	_, h, _ := hubWithSite(t, pg, s)
	dir := t.TempDir()
	certFile, keyFile := harness.ServerCert(t, dir)
	clientCA, clientCert := clientCertificate(t, dir)
	url := serveTLS(t, h, hub.ServeOptions{CertFile: certFile, KeyFile: keyFile, ClientCAFile: clientCA})
	reader, err := h.CreateToken(context.Background(), hub.RoleRead, "")
	must(t, err)

	ca, err := os.ReadFile(certFile)
	must(t, err)
	client, err := usageexport.HubClient(ca, certFile)
	must(t, err)
	req, err := http.NewRequest(http.MethodGet, url+"/api/v1/sites", nil)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+reader)
	if resp, err := client.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("a client without a certificate got %d, want the handshake refused", resp.StatusCode)
	}
	client.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{clientCert}
	resp, err := client.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("a client with a certificate from the client CA: %d", resp.StatusCode)
	}

	if _, err := h.NewServer(hub.ServeOptions{CertFile: certFile}); err == nil || !strings.Contains(err.Error(), "--tls-key") {
		t.Errorf("a certificate without its key: %v, want an error naming --tls-key", err)
	}
	if _, err := h.NewServer(hub.ServeOptions{ClientCAFile: clientCA}); err == nil || !strings.Contains(err.Error(), "--tls-client-ca") {
		t.Errorf("a client CA without TLS: %v, want an error naming --tls-client-ca", err)
	}
}

// clientCertificate writes a CA into dir as client-ca.crt and returns its
// path and a client certificate it signed.
func clientCertificate(t *testing.T, dir string) (string, tls.Certificate) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "site clients"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	must(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	must(t, err)
	path := filepath.Join(dir, "client-ca.crt")
	must(t, os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644))

	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "plant uploader"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	must(t, err)
	return path, tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
}
