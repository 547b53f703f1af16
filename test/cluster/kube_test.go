package cluster

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"fmt"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/test/harness"
)

// kubectl runs the tools' kubectl against the cluster, failing the test
// when it fails.
func kubectl(t *testing.T, stdin string, args ...string) string {
	t.Helper()
	out, err := tryKubectl(t, stdin, args...)
	if err != nil {
		t.Fatalf("kubectl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func tryKubectl(t *testing.T, stdin string, args ...string) (string, error) {
	t.Helper()
	return run(t, stdin, harness.Tool(t, "kubectl"), append([]string{"--kubeconfig", cl.Kubeconfig}, args...)...)
}

// helm runs the tools' helm against the cluster.
func helm(t *testing.T, args ...string) string {
	t.Helper()
	out, err := run(t, "", harness.Tool(t, "helm"), append([]string{"--kubeconfig", cl.Kubeconfig}, args...)...)
	if err != nil {
		t.Fatalf("helm %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func run(t *testing.T, stdin, bin string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdin = strings.NewReader(stdin)
	out, err := cmd.CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

// waitFor polls cond until it holds, failing the test after timeout with
// what cond last said.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, string)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		ok, state := cond()
		if ok {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not happen within %s; last seen: %s", what, timeout, state)
		}
		time.Sleep(500 * time.Millisecond)
	}
}

// jsonpath reads one field with kubectl get -o jsonpath; "" when the
// object does not exist.
func jsonpath(t *testing.T, namespace, object, path string) string {
	t.Helper()
	out, err := tryKubectl(t, "", "get", "-n", namespace, object, "-o", "jsonpath="+path)
	if err != nil {
		return ""
	}
	return out
}

// waitInstanceRunning waits until `kubectl get pgi` shows the instance
// Running and returns its endpoint.
func waitInstanceRunning(t *testing.T, namespace, name string, timeout time.Duration) string {
	t.Helper()
	waitFor(t, timeout, "pgi/"+name+" Running", func() (bool, string) {
		out, _ := tryKubectl(t, "", "get", "pgi", "-n", namespace, name)
		return strings.Contains(out, "Running"), out + "\n" + podState(t, namespace, name+"-0")
	})
	return jsonpath(t, namespace, "pgi/"+name, "{.status.endpoint}")
}

// podState is a pod's phase, readiness and restarts, for failure messages.
func podState(t *testing.T, namespace, pod string) string {
	t.Helper()
	out, _ := tryKubectl(t, "", "get", "pod", "-n", namespace, pod, "-o",
		`jsonpath={.status.phase} ready={.status.conditions[?(@.type=="Ready")].status} restarts={.status.containerStatuses[*].restartCount} {.status.containerStatuses[*].state}`)
	return "pod " + pod + ": " + out
}

// secretValue decodes one key of a Secret.
func secretValue(t *testing.T, namespace, secret, key string) string {
	t.Helper()
	enc := jsonpath(t, namespace, "secret/"+secret, "{.data."+strings.ReplaceAll(key, ".", `\.`)+"}")
	b, err := base64.StdEncoding.DecodeString(enc)
	if err != nil || len(b) == 0 {
		t.Fatalf("secret %s/%s has no key %s", namespace, secret, key)
	}
	return string(b)
}

// connectApp connects to an instance as its application, the way an
// application in the cluster would: with the app Secret's credentials, to
// the Service's name (resolved by the cluster's DNS, then routed from the
// host through kube-proxy), verifying the server's certificate for that
// name against the site CA from the Secret (sslmode=verify-full).
func connectApp(t *testing.T, namespace, instance, database string) *pgx.Conn {
	t.Helper()
	secret := instance + "-app"
	host, port := secretValue(t, namespace, secret, "host"), secretValue(t, namespace, secret, "port")
	if database == "" {
		database = secretValue(t, namespace, secret, "database")
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM([]byte(secretValue(t, namespace, secret, "ca.crt"))) {
		t.Fatalf("secret %s/%s: ca.crt holds no certificate", namespace, secret)
	}
	cfg, err := pgx.ParseConfig(fmt.Sprintf("postgres://%s:%s/%s?sslmode=verify-full&connect_timeout=5", host, port, database))
	if err != nil {
		t.Fatal(err)
	}
	cfg.User = secretValue(t, namespace, secret, "username")
	cfg.Password = secretValue(t, namespace, secret, "password")
	cfg.TLSConfig = &tls.Config{RootCAs: pool, ServerName: host, MinVersion: tls.VersionTLS12}
	cfg.LookupFunc = func(ctx context.Context, h string) ([]string, error) {
		addrs, err := cl.LookupHost(ctx, h)
		for _, a := range addrs {
			if !cl.ServiceCIDR().Contains(net.ParseIP(a)) {
				return nil, fmt.Errorf("%s resolves to %s, not a ClusterIP in %s", h, a, cl.ServiceCIDR())
			}
		}
		return addrs, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatalf("connect to %s:%s/%s as the app of %s/%s: %v", host, port, database, namespace, instance, err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// explainOnFailure logs, when the test has failed, what a user would look
// at next: every pod, the recent events, and the pods' logs.
func explainOnFailure(t *testing.T) {
	t.Cleanup(func() {
		if !t.Failed() {
			return
		}
		pods, _ := tryKubectl(t, "", "get", "pods", "-A", "-o", "wide")
		events, _ := tryKubectl(t, "", "get", "events", "-A", "--sort-by=.lastTimestamp")
		t.Logf("pods:\n%s\nevents:\n%s", pods, tail(events, 40))
		all, _ := tryKubectl(t, "", "get", "pods", "-A", "-o",
			`jsonpath={range .items[*]}{.metadata.namespace}/{.metadata.name}{"\n"}{end}`)
		for _, p := range strings.Fields(all) {
			ns, name, _ := strings.Cut(p, "/")
			logs, _ := tryKubectl(t, "", "logs", "-n", ns, name, "--all-containers", "--tail=12")
			t.Logf("logs of %s:\n%s", p, logs)
		}
		t.Logf("the node's logs are in %s", cl.Dir)
	})
}

func tail(s string, n int) string {
	lines := strings.Split(s, "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
