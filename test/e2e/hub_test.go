package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/klauspost/compress/gzip"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
)

// hubProcess is a running `outpost hub`.
type hubProcess struct {
	cmd *exec.Cmd
	url string
	db  string
}

// startHub runs `outpost hub` on a free loopback port with extra flags and
// waits until it announces its URL. Cleanup stops it by its PID.
func startHub(t *testing.T, db string, flags ...string) *hubProcess {
	t.Helper()
	args := append([]string{"hub", "--db", db, "--listen", fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))}, flags...)
	cmd := exec.Command(outpostBin, args...)
	logf, err := os.Create(filepath.Join(t.TempDir(), "hub.log"))
	must(t, err)
	cmd.Stderr = logf
	stdout, err := cmd.StdoutPipe()
	must(t, err)
	must(t, cmd.Start())
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	urls := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			if m := regexp.MustCompile(`listening on (\S+)`).FindStringSubmatch(sc.Text()); m != nil {
				urls <- m[1]
			}
		}
		close(urls)
	}()
	select {
	case url, ok := <-urls:
		if !ok {
			log, _ := os.ReadFile(logf.Name())
			t.Fatalf("outpost hub exited before listening:\n%s", log)
		}
		return &hubProcess{cmd: cmd, url: url, db: db}
	case <-time.After(time.Minute):
		t.Fatal("outpost hub did not announce its address within a minute")
	}
	return nil
}

// cli runs `outpost hub ARGS --db` against this hub's database and
// returns its standard output, failing the test on an error.
func (h *hubProcess) cli(t *testing.T, args ...string) string {
	t.Helper()
	cmd := exec.Command(outpostBin, append(append([]string{"hub"}, args...), "--db", h.db)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("outpost hub %s: %v\n%s%s", strings.Join(args, " "), err, out, stderr.String())
	}
	return strings.TrimSpace(string(out))
}

// vmHWM is a process's peak resident set in bytes (VmHWM in
// /proc/PID/status).
func vmHWM(t *testing.T, pid int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	must(t, err)
	m := regexp.MustCompile(`(?m)^VmHWM:\s+(\d+) kB$`).FindSubmatch(b)
	if m == nil {
		t.Fatalf("no VmHWM in /proc/%d/status:\n%s", pid, b)
	}
	kb, _ := strconv.ParseInt(string(m[1]), 10, 64)
	return kb << 10
}

// siteExport writes a day of usage of two instances, ending at the last
// full hour before now, into a site ledger in db and returns the signed
// export file of that month, written to a file, with the site's public key.
func siteExport(t *testing.T, db string) (path, publicKey string) {
	t.Helper()
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, db)
	must(t, err)
	defer pool.Close()
	must(t, usageexport.EnsureSchema(ctx, pool))
	key, err := usageexport.LoadOrCreateKey(filepath.Join(t.TempDir(), "usage.key"))
	must(t, err)
	// 24 hours inside one month, the month exported: the last 24 before
	// this hour, or before this month began when those would straddle
	// it (in the first hours of a month the export held only the
	// previous month's part of them).
	end := time.Now().UTC().Truncate(time.Hour)
	if monthStart := time.Date(end.Year(), end.Month(), 1, 0, 0, 0, 0, time.UTC); end.Sub(monthStart) < 24*time.Hour {
		end = monthStart
	}
	start := end.Add(-24 * time.Hour)
	clock := harness.NewClock(start.Format(time.RFC3339))
	ledger := usageexport.NewLedger(pool, clock)
	for i := range 2 {
		inst := usageexport.Instance{UID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Kind: "PostgresInstance", Namespace: "default", Name: fmt.Sprintf("pg-%d", i)}
		must(t, ledger.Observe(ctx, inst, usageexport.Shape{MilliVCores: 1000}))
	}
	clock.Set(end.Format(time.RFC3339))
	sampler := &usageexport.Sampler{Pool: pool, Clock: clock, SiteID: usageexport.SiteID(key.Public())}
	res, err := usageexport.Export(ctx, pool, usageexport.ExportOptions{Month: start.Format("2006-01"), SiteName: "plant",
		ControllerVersion: "e2e", Key: key, Clock: clock, Sampler: sampler})
	must(t, err)
	path = filepath.Join(t.TempDir(), "usage.json")
	must(t, os.WriteFile(path, res.File, 0o644))
	return path, usageexport.FormatPublicKey(key.Public())
}

// upload runs `outpost usage upload` and returns its combined output.
func upload(file, hubURL, token string, flags ...string) (string, error) {
	cmd := exec.Command(outpostBin, append([]string{"usage", "upload", file, "--hub", hubURL, "--token", token, "--attempts", "1"}, flags...)...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// httpGet sends a GET with a bearer token (none when empty) through client.
func httpGet(t *testing.T, client *http.Client, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	must(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, string(b)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestHubOverHTTPSIsReachedThroughItsCAWithTokens: `outpost hub` serves
// HTTPS with --tls-cert/--tls-key. `outpost usage upload --hub-ca` reaches
// it; without the CA the upload fails on the certificate. Reads need a
// token from `outpost hub token create`; a token rotated with `outpost hub
// site rotate-token` stops at once, and `site disable` refuses the site.
func TestHubOverHTTPSIsReachedThroughItsCAWithTokens(t *testing.T) {
	pg := harness.StartPostgres(t)
	db := pg.URL("postgres")
	certFile, keyFile := harness.ServerCert(t, t.TempDir())
	h := startHub(t, db, "--tls-cert", certFile, "--tls-key", keyFile)
	if !strings.HasPrefix(h.url, "https://") {
		t.Fatalf("the hub announced %s, want an https URL", h.url)
	}
	file, pub := siteExport(t, db)
	token := h.cli(t, "site", "add", "plant", "--public-key", pub)

	if out, err := upload(file, h.url, token); err == nil || !strings.Contains(out, "certificate signed by unknown authority") {
		t.Fatalf("upload without the hub's CA: %v\n%s\nwant a refusal of the certificate", err, out)
	}
	if out, err := upload(file, h.url, token, "--hub-ca", certFile); err != nil || !strings.Contains(out, "48 records (48 new)") {
		t.Fatalf("upload with --hub-ca: %v\n%s", err, out)
	}

	caPEM, err := os.ReadFile(certFile)
	must(t, err)
	client, err := usageexport.HubClient(caPEM, certFile)
	must(t, err)
	reader := h.cli(t, "token", "create", "--role", "read", "--name", "billing")
	for _, path := range []string{"/", "/api/v1/sites", "/api/v1/sites/plant/usage"} {
		if code, body := httpGet(t, client, h.url+path, ""); code != http.StatusUnauthorized {
			t.Errorf("GET %s without a token: %d %s, want 401", path, code, body)
		}
		if code, body := httpGet(t, client, h.url+path, reader); code != http.StatusOK || !strings.Contains(body, "plant") {
			t.Errorf("GET %s with a read token: %d %s, want 200", path, code, body)
		}
	}

	rotated := h.cli(t, "site", "rotate-token", "plant")
	if out, err := upload(file, h.url, token, "--hub-ca", certFile); err == nil || !strings.Contains(out, "401") {
		t.Fatalf("upload with the rotated-away token: %v\n%s\nwant 401", err, out)
	}
	if out, err := upload(file, h.url, rotated, "--hub-ca", certFile); err != nil || !strings.Contains(out, "already had this file") {
		t.Fatalf("upload with the new token: %v\n%s", err, out)
	}
	h.cli(t, "site", "disable", "plant")
	if out, err := upload(file, h.url, rotated, "--hub-ca", certFile); err == nil || !strings.Contains(out, "403") || !strings.Contains(out, "disabled") {
		t.Fatalf("upload from a disabled site: %v\n%s\nwant 403", err, out)
	}
	if list := h.cli(t, "site", "list"); !strings.Contains(list, "disabled") {
		t.Errorf("site list does not show the site disabled:\n%s", list)
	}
}

// TestHubRefusesAGzipBombWithin200MB: a 4 MiB gzip body that
// decompresses to 4 GiB, sent to the real `outpost hub` with a valid site
// token, is refused with 413, and the hub's peak resident set
// (/proc/PID/status VmHWM) stays under 200 MB. A real gzipped file (the
// control) is taken by the same hub.
func TestHubRefusesAGzipBombWithin200MB(t *testing.T) {
	pg := harness.StartPostgres(t)
	db := pg.URL("postgres")
	h := startHub(t, db)
	file, pub := siteExport(t, db)
	token := h.cli(t, "site", "add", "plant", "--public-key", pub)

	var bomb bytes.Buffer
	// BestSpeed compresses zeros about 1000:1 too, in seconds.
	zw, err := gzip.NewWriterLevel(&bomb, gzip.BestSpeed)
	must(t, err)
	_, err = io.Copy(zw, io.LimitReader(zeroReader{}, 4<<30))
	must(t, err)
	must(t, zw.Close())
	t.Logf("gzip bomb: %d bytes, 4 GiB decompressed", bomb.Len())

	before := vmHWM(t, h.cmd.Process.Pid)
	req, err := http.NewRequest(http.MethodPost, h.url+usageexport.PathUploads, bytes.NewReader(bomb.Bytes()))
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	peak := vmHWM(t, h.cmd.Process.Pid)
	t.Logf("hub peak RSS (VmHWM): %.1f MB before the bomb, %.1f MB after", float64(before)/1e6, float64(peak)/1e6)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "decompresses to more than") {
		t.Fatalf("gzip bomb: %d %s, want 413", resp.StatusCode, body)
	}
	if peak >= 200e6 {
		t.Fatalf("the hub's peak RSS reached %.1f MB on a gzip bomb, want under 200 MB", float64(peak)/1e6)
	}

	data, err := os.ReadFile(file)
	must(t, err)
	gz, err := usageexport.Gzip(data)
	must(t, err)
	gzFile := filepath.Join(t.TempDir(), "usage.json.gz")
	must(t, os.WriteFile(gzFile, gz, 0o644))
	if out, err := upload(gzFile, h.url, token); err != nil || !strings.Contains(out, "48 new") {
		t.Fatalf("a real gzipped file after the bomb: %v\n%s", err, out)
	}
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestApplyRefusesADirectModeSiteWithAnHTTPHub: `outpost apply` refuses
// a direct-mode DataController whose hub URL is http://, naming the field
// and allowInsecureHub, and writes nothing; with allowInsecureHub: true
// (the control) it is applied.
func TestApplyRefusesADirectModeSiteWithAnHTTPHub(t *testing.T) {
	stateDir := filepath.Join(t.TempDir(), "state")
	// A site's state directory as `outpost up` leaves it, without running it.
	must(t, os.MkdirAll(filepath.Join(stateDir, "manifests"), 0o755))
	manifest := `apiVersion: outpost.dev/v1alpha1
kind: DataController
metadata: {name: site, namespace: default}
spec:
  site: {name: plant}
  connectivity:
    mode: direct
    hub: {url: "http://hub.plant.local:8470"%s}
`
	apply := func(extra string) (string, error) {
		f := filepath.Join(t.TempDir(), "site.yaml")
		must(t, os.WriteFile(f, []byte(fmt.Sprintf(manifest, extra)), 0o644))
		out, err := exec.Command(outpostBin, "apply", "-f", f, "--state-dir", stateDir).CombinedOutput()
		return string(out), err
	}
	out, err := apply("")
	if err == nil || !strings.Contains(out, "spec.connectivity.hub.url") || !strings.Contains(out, "allowInsecureHub") {
		t.Fatalf("outpost apply of an http:// hub in direct mode: %v\n%s\nwant a refusal naming spec.connectivity.hub.url", err, out)
	}
	if entries, _ := os.ReadDir(filepath.Join(stateDir, "manifests")); len(entries) != 0 {
		t.Fatalf("the refused manifest was written: %v", entries)
	}
	if out, err := apply(", allowInsecureHub: true"); err != nil {
		t.Fatalf("outpost apply with allowInsecureHub: true: %v\n%s", err, out)
	}
}
