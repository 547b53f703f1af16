package localruntime

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/postgres"
)

// CAFile is the site CA's certificate on this host, readable by everyone:
// clients verify instances with it (sslmode=verify-full sslrootcert=...).
func CAFile(stateDir string) string { return filepath.Join(stateDir, "tls", "ca.crt") }

// caKeyFile is the CA's private key, 0600 for the controller's account.
func caKeyFile(stateDir string) string { return filepath.Join(stateDir, "tls", "ca.key") }

// LoadCA reads the site's CA, creating it the first time.
func LoadCA(stateDir string) (*postgres.CA, error) {
	certPEM, err := os.ReadFile(CAFile(stateDir))
	if errors.Is(err, fs.ErrNotExist) {
		return createCA(stateDir)
	}
	if err != nil {
		return nil, fmt.Errorf("site CA: %w", err)
	}
	keyPEM, err := os.ReadFile(caKeyFile(stateDir))
	if err != nil {
		return nil, fmt.Errorf("site CA: %w (the key belongs beside %s)", err, CAFile(stateDir))
	}
	ca, err := postgres.ParseCA(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("site CA %s: %w", CAFile(stateDir), err)
	}
	return ca, nil
}

func createCA(stateDir string) (*postgres.CA, error) {
	host, _ := os.Hostname()
	ca, err := postgres.NewCA("Outpost site CA "+host, time.Now())
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(CAFile(stateDir)), 0o755); err != nil {
		return nil, fmt.Errorf("site CA: %w", err)
	}
	// The key first: a certificate without its key would be read as a CA
	// that cannot sign.
	if err := writePrivate(caKeyFile(stateDir), ca.KeyPEM()); err != nil {
		return nil, fmt.Errorf("site CA key: %w", err)
	}
	if err := writeFileAtomic(CAFile(stateDir), ca.CertPEM, 0o644); err != nil {
		return nil, fmt.Errorf("site CA: %w", err)
	}
	return ca, nil
}

// serverCertRequest is what an instance's certificate names: loopback
// (localhost, 127.0.0.1, ::1), the listen address, and when the server
// listens on every address, this host's name and addresses.
func serverCertRequest(name, listen string) postgres.CertRequest {
	req := postgres.CertRequest{CommonName: name, DNSNames: []string{"localhost"},
		IPs: []net.IP{net.IPv4(127, 0, 0, 1).To4(), net.IPv6loopback}}
	for _, a := range strings.Split(listen, ",") {
		ip := net.ParseIP(strings.TrimSpace(a))
		switch {
		case ip == nil:
			if a = strings.TrimSpace(a); a != "localhost" && a != "" {
				req.DNSNames = append(req.DNSNames, a)
			}
		case ip.IsUnspecified():
			// Every address: the host's name and each of its addresses.
			if host, err := os.Hostname(); err == nil && host != "localhost" {
				req.DNSNames = append(req.DNSNames, host)
			}
			addrs, _ := net.InterfaceAddrs()
			for _, a := range addrs {
				if n, ok := a.(*net.IPNet); ok && !n.IP.IsLoopback() && !n.IP.IsLinkLocalUnicast() {
					req.IPs = append(req.IPs, canonicalIP(n.IP))
				}
			}
		case !ip.IsLoopback():
			req.IPs = append(req.IPs, canonicalIP(ip))
		}
	}
	return req
}

// canonicalIP is an IPv4 address in its 4-byte form, as certificates
// parse it back, so comparing names does not reissue for nothing.
func canonicalIP(ip net.IP) net.IP {
	if ip4 := ip.To4(); ip4 != nil {
		return ip4
	}
	return ip
}

// ensureServerCert gives an instance a certificate from the site CA for
// where it listens, issuing a new one when the old is missing, names other
// addresses, or has less than a third of its life left. It reports whether
// the files changed, so that a running server reloads them.
func ensureServerCert(ca *postgres.CA, dir, name, listen string) (*postgres.TLSFiles, bool, string, error) {
	tlsDir := filepath.Join(dir, "tls")
	req := serverCertRequest(name, listen)
	now := time.Now()
	certPEM, _ := os.ReadFile(filepath.Join(tlsDir, "server.crt"))
	keyPEM, _ := os.ReadFile(filepath.Join(tlsDir, "server.key"))
	why := ca.Reissue(certPEM, req, now)
	if why != "" || len(keyPEM) == 0 {
		var err error
		if certPEM, keyPEM, err = ca.Issue(req, now); err != nil {
			return nil, false, "", err
		}
	}
	files, changed, err := postgres.InstallTLS(tlsDir, ca.CertPEM, certPEM, keyPEM)
	if err != nil {
		return nil, false, "", fmt.Errorf("server certificate of %s: %w", name, err)
	}
	return files, changed, why, nil
}

// writeFileAtomic writes a file through a temporary file and a rename.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, data, mode); err != nil {
		return err
	}
	if err := os.Chmod(tmp, mode); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

// serverTLS loads the site CA if need be and makes sure an instance has a
// valid certificate and a socket directory before its server starts. The
// caller holds r.mu.
func (r *Runtime) serverTLS(dir, name, listen string) (*postgres.TLSFiles, error) {
	if r.ca == nil {
		ca, err := LoadCA(r.StateDir)
		if err != nil {
			return nil, err
		}
		r.ca = ca
	}
	if err := os.MkdirAll(SocketDir(dir), 0o700); err != nil {
		return nil, fmt.Errorf("socket directory: %w", err)
	}
	if err := postgres.OwnByServer(SocketDir(dir)); err != nil {
		return nil, err
	}
	files, _, _, err := ensureServerCert(r.ca, dir, name, listen)
	return files, err
}

// rotateServerCert issues a running instance a new certificate before its
// old one expires, and reloads the server so new connections get it.
func (r *Runtime) rotateServerCert(ctx context.Context, in *instance, inst *outpostv1.PostgresInstance) error {
	r.mu.Lock()
	ca := r.ca
	r.mu.Unlock()
	_, changed, why, err := ensureServerCert(ca, in.dir, inst.Name, in.server.ListenAddress)
	if err != nil || !changed {
		return err
	}
	r.Log.Info("new server certificate", "instance", inst.Namespace+"/"+inst.Name, "reason", why)
	return in.server.Reload(ctx)
}
