package postgres

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"time"
)

// Validity of what a site's CA signs. The CA lives ten years; server and
// client certificates one year, and are issued again once less than a third
// of that remains (Reissue), so a controller that runs at least every few
// months never lets one expire.
const (
	caValidity   = 10 * 365 * 24 * time.Hour
	CertValidity = 365 * 24 * time.Hour
)

// CA is a site's certificate authority: it signs the server certificate of
// every instance and the controller's client certificate, and clients
// verify servers with its certificate (sslrootcert).
type CA struct {
	Cert    *x509.Certificate
	CertPEM []byte
	key     crypto.Signer
	keyPEM  []byte
}

// NewCA creates a CA named after the site.
func NewCA(name string, now time.Time) (*CA, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: name, Organization: []string{"Outpost"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(caValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("create CA %s: %w", name, err)
	}
	keyPEM, err := encodeKey(key)
	if err != nil {
		return nil, err
	}
	return ParseCA(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM)
}

// ParseCA reads a CA from its certificate and private key in PEM.
func ParseCA(certPEM, keyPEM []byte) (*CA, error) {
	cert, err := parseCert(certPEM)
	if err != nil {
		return nil, fmt.Errorf("CA certificate: %w", err)
	}
	if !cert.IsCA {
		return nil, errors.New("CA certificate: it is not a CA certificate")
	}
	block, _ := pem.Decode(keyPEM)
	if block == nil {
		return nil, errors.New("CA key: no PEM block")
	}
	k, err := x509.ParsePKCS8PrivateKey(block.Bytes)
	if err != nil {
		return nil, fmt.Errorf("CA key: %w", err)
	}
	signer, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("CA key: not a signing key")
	}
	if !publicKeysEqual(signer.Public(), cert.PublicKey) {
		return nil, errors.New("CA key: it does not belong to the CA certificate")
	}
	return &CA{Cert: cert, CertPEM: certPEM, key: signer, keyPEM: keyPEM}, nil
}

// KeyPEM is the CA's private key, PKCS #8 in PEM, to be kept where only
// the controller reads it.
func (ca *CA) KeyPEM() []byte { return ca.keyPEM }

// CertRequest says what a certificate is for.
type CertRequest struct {
	// CommonName is the subject; for a client certificate, the role it
	// authenticates (PostgreSQL's cert method compares the two).
	CommonName string
	// DNSNames and IPs are the names a server answers to.
	DNSNames []string
	IPs      []net.IP
	// Client makes a client certificate; otherwise a server one.
	Client bool
}

// Issue signs a new key pair for req, valid for CertValidity from now.
func (ca *CA) Issue(req CertRequest, now time.Time) (certPEM, keyPEM []byte, err error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	usage := x509.ExtKeyUsageServerAuth
	if req.Client {
		usage = x509.ExtKeyUsageClientAuth
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: req.CommonName},
		DNSNames:     req.DNSNames,
		IPAddresses:  req.IPs,
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(CertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{usage},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.Cert, key.Public(), ca.key)
	if err != nil {
		return nil, nil, fmt.Errorf("issue a certificate for %s: %w", req.CommonName, err)
	}
	keyPEM, err = encodeKey(key)
	if err != nil {
		return nil, nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), keyPEM, nil
}

// Reissue reports why a certificate must be issued again, or "" when it
// may stay: it is missing or unreadable, not signed by this CA, for other
// names than req, or has less than a third of its validity left (PostgreSQL
// loads the new files on its next reload, so rotating early costs nothing).
func (ca *CA) Reissue(certPEM []byte, req CertRequest, now time.Time) string {
	cert, err := parseCert(certPEM)
	if err != nil {
		return "no valid certificate yet"
	}
	if err := cert.CheckSignatureFrom(ca.Cert); err != nil {
		return "not signed by the site CA"
	}
	if cert.Subject.CommonName != req.CommonName || !slices.Equal(cert.DNSNames, req.DNSNames) ||
		!slices.EqualFunc(cert.IPAddresses, req.IPs, net.IP.Equal) {
		return "issued for other names"
	}
	if left := cert.NotAfter.Sub(now); left < cert.NotAfter.Sub(cert.NotBefore)/3 {
		return fmt.Sprintf("expires %s", cert.NotAfter.UTC().Format(time.RFC3339))
	}
	return ""
}

func parseCert(certPEM []byte) (*x509.Certificate, error) {
	block, _ := pem.Decode(certPEM)
	if block == nil || block.Type != "CERTIFICATE" {
		return nil, errors.New("no PEM certificate")
	}
	return x509.ParseCertificate(block.Bytes)
}

func encodeKey(key crypto.Signer) ([]byte, error) {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, err
	}
	return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ad, err1 := x509.MarshalPKIXPublicKey(a)
	bd, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(ad, bd)
}

func serial() *big.Int {
	n, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	if err != nil {
		panic(err) // crypto/rand does not fail on Linux
	}
	return n
}

// TLSFiles are what a server with TLS reads: the site CA's certificate
// (to check client certificates), and its own certificate and key. The key
// must be readable by the server's account only.
type TLSFiles struct {
	CAFile, CertFile, KeyFile string
}

// settings are the postgresql.conf lines that turn TLS on.
func (t *TLSFiles) settings() map[string]string {
	return map[string]string{
		"ssl":                      "on",
		"ssl_ca_file":              t.CAFile,
		"ssl_cert_file":            t.CertFile,
		"ssl_key_file":             t.KeyFile,
		"ssl_min_protocol_version": "TLSv1.2",
	}
}

// InstallTLS puts a server's TLS files into dir (created 0700): the CA
// certificate, the server's certificate and its key, each 0600 and owned
// by the server's account, which PostgreSQL insists on for the key. It
// rewrites only what changed and reports whether anything did: a running
// server then needs a Reload to serve the new certificate.
func InstallTLS(dir string, caPEM, certPEM, keyPEM []byte) (files *TLSFiles, changed bool, err error) {
	acct, err := serverAccount()
	if err != nil {
		return nil, false, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, false, fmt.Errorf("TLS directory: %w", err)
	}
	if err := acct.own(dir); err != nil {
		return nil, false, fmt.Errorf("TLS directory %s: %w", dir, err)
	}
	files = &TLSFiles{CAFile: filepath.Join(dir, "ca.crt"), CertFile: filepath.Join(dir, "server.crt"), KeyFile: filepath.Join(dir, "server.key")}
	for _, f := range []struct {
		path    string
		content []byte
	}{{files.CAFile, caPEM}, {files.CertFile, certPEM}, {files.KeyFile, keyPEM}} {
		if old, err := os.ReadFile(f.path); err == nil && bytes.Equal(old, f.content) {
			continue
		}
		if err := writeOwned(acct, f.path, f.content); err != nil {
			return nil, changed, err
		}
		changed = true
	}
	return files, changed, nil
}
