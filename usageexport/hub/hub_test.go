package hub_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

func createDB(t *testing.T, pg *harness.Postgres, name string) string {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, pg.URL("postgres"))
	must(t, err)
	defer conn.Close(ctx)
	_, err = conn.Exec(ctx, "CREATE DATABASE "+name)
	must(t, err)
	return pg.URL(name)
}

func must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// site is one site's controldb with a ledger, and its key.
type site struct {
	pool    *pgxpool.Pool
	key     usageexport.SigningKey
	clock   *harness.Clock
	ledger  *usageexport.Ledger
	sampler *usageexport.Sampler
}

func newSite(t *testing.T, pg *harness.Postgres, name string, outbox bool) *site {
	ctx := context.Background()
	pool, err := pgxpool.New(ctx, createDB(t, pg, name))
	must(t, err)
	t.Cleanup(pool.Close)
	must(t, usageexport.EnsureSchema(ctx, pool))
	key, err := usageexport.LoadOrCreateKey(filepath.Join(t.TempDir(), "usage.key"))
	must(t, err)
	c := harness.NewClock("2026-11-01T00:00:00Z")
	return &site{pool: pool, key: key, clock: c, ledger: usageexport.NewLedger(pool, c),
		sampler: &usageexport.Sampler{Pool: pool, Clock: c, SiteID: usageexport.SiteID(key.Public())}}
}

func (s *site) run(t *testing.T, instances int, until string) {
	ctx := context.Background()
	for i := range instances {
		inst := usageexport.Instance{UID: fmt.Sprintf("00000000-0000-4000-8000-%012d", i), Kind: "PostgresInstance", Namespace: "default", Name: fmt.Sprintf("pg-%d", i)}
		must(t, s.ledger.Observe(ctx, inst, usageexport.Shape{MilliVCores: int64(500 * (i + 1)), MemoryBytes: 1 << 30, StorageBytes: 10 << 30}))
	}
	s.clock.Set(until)
	_, err := s.sampler.Sample(ctx)
	must(t, err)
}

func (s *site) export(t *testing.T, month string) []byte {
	res, err := usageexport.Export(context.Background(), s.pool, usageexport.ExportOptions{Month: month, SiteName: "plant", ControllerVersion: "test", Key: s.key, Clock: s.clock, Sampler: s.sampler})
	must(t, err)
	return res.File
}

// startHub runs a hub on a loopback port and returns its URL.
func startHub(t *testing.T, pool *pgxpool.Pool) (string, *hub.Hub) {
	h := &hub.Hub{Pool: pool, Log: nilLog()}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	must(t, err)
	srv := &http.Server{Handler: h.Handler()}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
	return "http://" + l.Addr().String(), h
}

// hubWithSite starts a hub with the site "plant" registered for s and
// returns its URL, the hub and the site's token.
func hubWithSite(t *testing.T, pg *harness.Postgres, s *site) (string, *hub.Hub, string) {
	t.Helper()
	hubPool, err := hub.Open(context.Background(), createDB(t, pg, "hub"))
	must(t, err)
	t.Cleanup(hubPool.Close)
	url, h := startHub(t, hubPool)
	token, err := h.AddSite(context.Background(), "plant", usageexport.FormatPublicKey(s.key.Public()))
	must(t, err)
	return url, h, token
}

func hubTotal(t *testing.T, h *hub.Hub, siteName, month string) (int64, int64) {
	u, err := h.Usage(context.Background(), siteName, month)
	must(t, err)
	return u.Total.Records, u.Total.MilliVCoreSeconds
}

func TestUploadingTheSameFileThreeTimesAndOverlappingFilesCountsOnce(t *testing.T) {
	pg := harness.StartPostgres(t)
	s := newSite(t, pg, "site1", false)
	url, h, token := hubWithSite(t, pg, s)

	s.run(t, 3, "2026-11-10T00:00:00Z")
	early := s.export(t, "2026-11") // partial: up to the 10th
	s.clock.Set("2026-11-20T05:00:00Z")
	later := s.export(t, "2026-11") // partial, overlapping: up to the 20th
	opts := usageexport.UploadOptions{HubURL: url, Token: token, PublicKey: s.key.Public()}

	rc, err := usageexport.Upload(context.Background(), early, opts)
	must(t, err)
	if rc.NewRecords != rc.Records || rc.Records != 3*9*24 {
		t.Fatalf("first upload: %+v, want %d new records", rc, 3*9*24)
	}
	n1, q1 := hubTotal(t, h, "plant", "2026-11")
	for range 2 {
		rc, err := usageexport.Upload(context.Background(), early, opts)
		must(t, err)
		if !rc.Duplicate || rc.NewRecords != 0 {
			t.Fatalf("repeated upload was not a no-op: %+v", rc)
		}
	}
	if n, q := hubTotal(t, h, "plant", "2026-11"); n != n1 || q != q1 {
		t.Fatalf("totals changed after repeating an upload: %d/%d, was %d/%d", n, q, n1, q1)
	}
	rc, err = usageexport.Upload(context.Background(), later, opts)
	must(t, err)
	if want := int64(3 * (19*24 + 5 - 9*24)); rc.NewRecords != want {
		t.Fatalf("overlapping upload stored %d new records, want only the %d it adds", rc.NewRecords, want)
	}
	n, q := hubTotal(t, h, "plant", "2026-11")
	// 0.5 + 1 + 1.5 vCores for 19 days and 5 hours.
	if want := int64(3000 * (19*24 + 5) * 3600); q != want || n != 3*(19*24+5) {
		t.Fatalf("hub total after overlapping uploads: %d records, %d milli-vCore-seconds; want %d, %d", n, q, 3*(19*24+5), want)
	}

	// A token the hub does not know is 401; a tampered file 400 with a reason.
	_, err = usageexport.Upload(context.Background(), later, usageexport.UploadOptions{HubURL: url, Token: "opt_wrong"})
	var refused *usageexport.HubError
	if !errors.As(err, &refused) || refused.Status != http.StatusUnauthorized {
		t.Fatalf("wrong token: got %v, want 401", err)
	}
	bad := append([]byte(nil), later...)
	bad[100] ^= 0x01
	resp, err := http.Post(url+usageexport.PathUploads, "application/octet-stream", strings.NewReader(string(bad)))
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("no token: status %d, want 401", resp.StatusCode)
	}
	req, _ := http.NewRequest(http.MethodPost, url+usageexport.PathUploads, strings.NewReader(string(bad)))
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err = http.DefaultClient.Do(req)
	must(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), "signature") {
		t.Fatalf("tampered file: status %d %s, want 400 naming the signature", resp.StatusCode, body)
	}

	reader, err := h.CreateToken(context.Background(), hub.RoleRead, "billing")
	must(t, err)
	for _, path := range []string{"/", "/api/v1/sites", "/api/v1/sites/plant/usage?month=2026-11&format=csv"} {
		if code, body := get(t, url+path, reader); code != http.StatusOK || !strings.Contains(body, "plant") {
			t.Errorf("GET %s: %d %s", path, code, body)
		}
	}
}

// get sends a GET with token as bearer token (none when empty) and returns
// the status and body.
func get(t *testing.T, url, token string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	must(t, err)
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, string(body)
}

// TestTamperedFilesAreAllRejectedByVerifyAndHub flips one random byte of
// an export 1,000 times. Each mutation is refused by verify (with and
// without the site's public key) and by the hub over HTTP with the site's
// valid token: 400 with a reason, and nothing stored.
func TestTamperedFilesAreAllRejectedByVerifyAndHub(t *testing.T) {
	pg := harness.StartPostgres(t)
	s := newSite(t, pg, "site1", false)
	url, h, token := hubWithSite(t, pg, s)
	s.run(t, 2, "2026-11-02T00:00:00Z")
	file := s.export(t, "2026-11")
	if _, err := usageexport.Verify(file, usageexport.VerifyOptions{PublicKey: s.key.Public()}); err != nil {
		t.Fatalf("untouched file does not verify: %v", err)
	}
	post := func(data []byte) (int, string) {
		code, body := post(t, url+usageexport.PathUploads, token, bytes.NewReader(data))
		return code, strings.TrimSpace(body)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 1000 {
		bad := append([]byte(nil), file...)
		pos := rng.IntN(len(bad))
		bad[pos] ^= byte(1 + rng.IntN(255)) // never a no-op
		if _, err := usageexport.Verify(bad, usageexport.VerifyOptions{}); err == nil {
			t.Fatalf("mutation %d (byte %d) accepted by verify", i, pos)
		}
		if _, err := usageexport.Verify(bad, usageexport.VerifyOptions{PublicKey: s.key.Public()}); err == nil {
			t.Fatalf("mutation %d (byte %d) accepted by verify --public-key", i, pos)
		}
		code, body := post(bad)
		var reason struct{ Error string }
		if code != http.StatusBadRequest || json.Unmarshal([]byte(body), &reason) != nil || reason.Error == "" {
			t.Fatalf("mutation %d (byte %d): hub answered %d %q, want 400 with a reason", i, pos, code, body)
		}
	}
	if n, _ := hubTotal(t, h, "plant", "2026-11"); n != 0 {
		t.Fatalf("hub stored %d records from tampered files", n)
	}
	// The untouched file is accepted by the same route, so the 400s were
	// about the bytes, not the request.
	if code, body := post(file); code != http.StatusOK {
		t.Fatalf("untouched file: hub answered %d %s", code, body)
	}
}

func TestDirectModeOutageDrainsExactly(t *testing.T) {
	pg := harness.StartPostgres(t)
	s := newSite(t, pg, "site1", true)
	hubURL := createDB(t, pg, "hub")
	hubPool, err := hub.Open(context.Background(), hubURL)
	must(t, err)
	t.Cleanup(hubPool.Close)
	h := &hub.Hub{Pool: hubPool, Log: nilLog()}
	token, err := h.AddSite(context.Background(), "plant", usageexport.FormatPublicKey(s.key.Public()))
	must(t, err)

	// The hub listens on a fixed port so it can be stopped and started.
	addr := fmt.Sprintf("127.0.0.1:%d", harness.FreePort(t))
	serve := func() *http.Server {
		l, err := net.Listen("tcp", addr)
		must(t, err)
		srv := &http.Server{Handler: h.Handler()}
		go srv.Serve(l)
		return srv
	}
	streamer := &usageexport.Streamer{Pool: s.pool, Key: s.key, Clock: s.clock, SiteName: "plant", BatchSize: 50,
		Hub: usageexport.UploadOptions{HubURL: "http://" + addr, Token: token, Attempts: 1}}
	ctx := context.Background()

	srv := serve()
	s.run(t, 4, "2026-11-02T00:00:00Z")
	sent, err := streamer.Flush(ctx)
	must(t, err)
	if sent != 4*24 {
		t.Fatalf("sent %d records before the outage, want %d", sent, 4*24)
	}
	srv.Close()

	// Hub down: two days of records accumulate.
	for day := 3; day <= 4; day++ {
		s.clock.Set(fmt.Sprintf("2026-11-%02dT00:00:00Z", day))
		_, err := s.sampler.Sample(ctx)
		must(t, err)
		if _, err := streamer.Flush(ctx); err == nil {
			t.Fatal("flush succeeded with the hub down")
		}
	}
	backlog, err := usageexport.Backlog(ctx, s.pool)
	must(t, err)
	if backlog != 4*48 {
		t.Fatalf("backlog %d during the outage, want %d", backlog, 4*48)
	}

	srv = serve()
	defer srv.Close()
	sent, err = streamer.Flush(ctx)
	must(t, err)
	if backlog, _ := usageexport.Backlog(ctx, s.pool); sent != 4*48 || backlog != 0 {
		t.Fatalf("after the outage sent %d, backlog %d; want %d and 0", sent, backlog, 4*48)
	}
	// Hub's total equals the site's ledger exactly.
	n, q := hubTotal(t, h, "plant", "2026-11")
	var wantN, wantQ int64
	must(t, s.pool.QueryRow(ctx, "SELECT count(*), sum(milli_vcore_seconds) FROM usage_records").Scan(&wantN, &wantQ))
	if n != wantN || q != wantQ || n != 4*72 {
		t.Fatalf("hub has %d records, %d milli-vCore-seconds; site recorded %d, %d", n, q, wantN, wantQ)
	}
}
