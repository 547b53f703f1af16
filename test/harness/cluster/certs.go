package cluster

import (
	"fmt"
	"net"
	"os"
	"path/filepath"
	"time"

	"github.com/outpostdata/outpost/postgres"
)

// certs are the cluster's own: one CA (the project's site CA code) signs
// the apiserver's serving certificate, the kubelet's, and the client
// certificate the apiserver shows the kubelet (kubectl exec and logs).
// envtest keeps its own CA for the users' client certificates.
//
// envtest would make the apiserver's serving certificate for its bind
// address only; pods reach the apiserver as the kubernetes Service, by its
// ClusterIP and kubernetes.default.svc, which must be in the certificate.
// envtest keeps certificates it finds in its CertDir, so these go there.
type certs struct {
	Dir    string
	CAFile string
	CAPEM  []byte
	// Files in Dir.
	KubeletCert, KubeletKey             string
	KubeletClientCert, KubeletClientKey string
}

// File names envtest's apiserver reads from its CertDir.
const (
	apiserverCertFile = "apiserver.crt"
	apiserverKeyFile  = "apiserver.key"
	saCertFile        = "sa-signer.crt"
	saKeyFile         = "sa-signer.key"
)

func writeCerts(dir string, n *network, nodeName string) (*certs, error) {
	now := time.Now()
	ca, err := postgres.NewCA("outpost test cluster", now)
	if err != nil {
		return nil, err
	}
	// The service account token signer: a key pair, written as envtest
	// writes its own.
	sa, err := postgres.NewCA("outpost test cluster service accounts", now)
	if err != nil {
		return nil, err
	}
	c := &certs{Dir: dir, CAFile: filepath.Join(dir, "cluster-ca.crt"), CAPEM: ca.CertPEM}
	files := map[string][]byte{
		"cluster-ca.crt": ca.CertPEM,
		saCertFile:       sa.CertPEM,
		saKeyFile:        sa.KeyPEM(),
	}
	issue := func(certName, keyName string, req postgres.CertRequest) error {
		cert, key, err := ca.Issue(req, now)
		if err != nil {
			return err
		}
		files[certName], files[keyName] = cert, key
		return nil
	}
	if err := issue(apiserverCertFile, apiserverKeyFile, postgres.CertRequest{
		CommonName: "kube-apiserver",
		DNSNames: []string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc",
			"kubernetes.default.svc." + clusterDomain},
		IPs: []net.IP{n.HostIP, n.KubernetesServiceIP(), net.IPv4(127, 0, 0, 1)},
	}); err != nil {
		return nil, err
	}
	c.KubeletCert, c.KubeletKey = filepath.Join(dir, "kubelet.crt"), filepath.Join(dir, "kubelet.key")
	if err := issue("kubelet.crt", "kubelet.key", postgres.CertRequest{
		CommonName: nodeName, DNSNames: []string{nodeName}, IPs: []net.IP{n.NodeIP},
	}); err != nil {
		return nil, err
	}
	c.KubeletClientCert, c.KubeletClientKey = filepath.Join(dir, "kubelet-client.crt"), filepath.Join(dir, "kubelet-client.key")
	if err := issue("kubelet-client.crt", "kubelet-client.key", postgres.CertRequest{
		CommonName: "kube-apiserver-kubelet-client", Client: true,
	}); err != nil {
		return nil, err
	}
	for name, data := range files {
		if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
			return nil, fmt.Errorf("cluster certificates: %w", err)
		}
	}
	return c, nil
}
