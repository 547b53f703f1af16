package hub_test

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

// siteStatus is the hub's JSON view of one site, read with a read token.
func siteStatus(t *testing.T, url, token, name string) hub.SiteStatus {
	t.Helper()
	code, body := get(t, url+"/api/v1/sites", token)
	if code != http.StatusOK {
		t.Fatalf("GET /api/v1/sites: %d %s", code, body)
	}
	var sites []hub.SiteStatus
	must(t, json.Unmarshal([]byte(body), &sites))
	for _, s := range sites {
		if s.Name == name {
			return s
		}
	}
	t.Fatalf("site %s is not listed: %s", name, body)
	return hub.SiteStatus{}
}

// TestOverdueSiteStaysOverdueOnOldUsageAndSkippedMonthIsAGap: freshness
// is what the data covers, not when it arrived. A site overdue by the
// hub's clock that uploads October again, or a late October file the hub
// never had, stays overdue with the same "last seen"; the chain of exports
// shows the November it skipped as a gap, on the JSON and on the page, until
// November arrives. Fresh usage (the control) makes it ok.
func TestOverdueSiteStaysOverdueOnOldUsageAndSkippedMonthIsAGap(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	s := newSite(t, pg, "site1", false)
	url, h, token := hubWithSite(t, pg, s)
	hubClock := harness.NewClock("2026-11-01T00:30:00Z")
	h.Now = hubClock.Now
	reader, err := h.CreateToken(ctx, hub.RoleRead, "test")
	must(t, err)
	opts := usageexport.UploadOptions{HubURL: url, Token: token}

	s.clock.Set("2026-10-01T00:00:00Z")
	s.run(t, 2, "2026-10-20T00:00:00Z")
	octPartial := s.export(t, "2026-10") // never uploaded until late
	s.clock.Set("2026-11-01T00:00:00Z")
	oct := s.export(t, "2026-10")
	s.clock.Set("2026-12-01T00:00:00Z")
	nov := s.export(t, "2026-11")
	s.clock.Set("2026-12-05T00:00:00Z")
	dec := s.export(t, "2026-12") // partial, up to the 5th

	_, err = usageexport.Upload(ctx, oct, opts)
	must(t, err)
	st := siteStatus(t, url, reader, "plant")
	if st.Status != hub.StatusOK || st.LastSeen == nil || !st.LastSeen.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("after October's export: %+v, want ok and last seen at the end of October (not the 00:30 it arrived)", st)
	}

	hubClock.Set("2026-12-05T00:30:00Z")
	if st := siteStatus(t, url, reader, "plant"); st.Status != hub.StatusOverdue {
		t.Fatalf("34 days later: status %s, want overdue", st.Status)
	}
	rc, err := usageexport.Upload(ctx, oct, opts)
	must(t, err)
	if !rc.Duplicate {
		t.Fatalf("October again was not a duplicate: %+v", rc)
	}
	rc, err = usageexport.Upload(ctx, octPartial, opts)
	must(t, err)
	if rc.Duplicate {
		t.Fatalf("the partial October export is a file the hub never had: %+v", rc)
	}
	st = siteStatus(t, url, reader, "plant")
	if st.Status != hub.StatusOverdue || !st.LastSeen.Equal(time.Date(2026, 11, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("after old files arrived: %+v, want still overdue, last seen still 2026-11-01", st)
	}

	// November is skipped: December's export follows one the hub never had.
	_, err = usageexport.Upload(ctx, dec, opts)
	must(t, err)
	st = siteStatus(t, url, reader, "plant")
	if len(st.Gaps) != 1 || st.Gaps[0].Month != "2026-11" || !strings.Contains(st.Gaps[0].Reason, "2026-12 follows") {
		t.Fatalf("gaps with November skipped: %+v, want one gap, 2026-11", st.Gaps)
	}
	if st.Status != hub.StatusOK || !st.LastSeen.Equal(time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("after December's usage up to the 5th: %+v, want ok, last seen 2026-12-05", st)
	}
	if code, page := get(t, url+"/", reader); code != http.StatusOK || !strings.Contains(page, "gap 2026-11") {
		t.Fatalf("the page does not show November's gap: %d\n%s", code, page)
	}

	_, err = usageexport.Upload(ctx, nov, opts)
	must(t, err)
	if st := siteStatus(t, url, reader, "plant"); len(st.Gaps) != 0 {
		t.Fatalf("November arrived, yet gaps: %+v", st.Gaps)
	}
}

// TestHubRefusesRecordsFromTheFuture: a site whose clock is 3 days ahead
// exports and streams hours that have not happened at the hub. The file
// and the batch are refused (400) naming the records, nothing is stored,
// and the refusal carries the hub's time. Records within the skew (the
// control) are accepted, and the receipt carries serverTime too.
func TestHubRefusesRecordsFromTheFuture(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	s := newSite(t, pg, "site1", true)
	url, h, token := hubWithSite(t, pg, s)
	hubClock := harness.NewClock("2026-11-02T00:00:00Z")
	h.Now = hubClock.Now

	s.run(t, 2, "2026-11-05T00:00:00Z") // the site's clock: 3 days ahead
	file := s.export(t, "2026-11")
	_, err := usageexport.Upload(ctx, file, usageexport.UploadOptions{HubURL: url, Token: token, Attempts: 1})
	var refused *usageexport.HubError
	if !errors.As(err, &refused) || refused.Status != http.StatusBadRequest ||
		!strings.Contains(refused.Reason, "records[24] (id ") || !strings.Contains(refused.Reason, "latest ending 2026-11-05T00:00:00Z") ||
		!strings.Contains(refused.Reason, "clock is ahead") {
		t.Fatalf("a file with future records: %v, want 400 naming them", err)
	}
	if !refused.ServerTime.Equal(hubClock.Now()) {
		t.Errorf("the refusal's serverTime is %s, want the hub's %s", refused.ServerTime, hubClock.Now())
	}

	// The same hours as a direct-mode batch, captured on their way out.
	var batch []byte
	capture := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		batch, _ = io.ReadAll(r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
	}))
	defer capture.Close()
	streamer := &usageexport.Streamer{Pool: s.pool, Key: s.key, Clock: s.clock, SiteName: "plant", BatchSize: 1000,
		Hub: usageexport.UploadOptions{HubURL: capture.URL, Token: token, Attempts: 1}}
	streamer.Flush(ctx)
	if len(batch) == 0 {
		t.Fatal("the streamer sent no batch")
	}
	code, body := post(t, url+usageexport.PathBatches, token, strings.NewReader(string(batch)))
	if code != http.StatusBadRequest || !strings.Contains(body, "latest ending 2026-11-05T00:00:00Z") || !strings.Contains(body, `"serverTime":"2026-11-02T00:00:00Z"`) {
		t.Fatalf("a batch with future records: %d %s, want 400 naming them with the hub's time", code, body)
	}
	if n, _ := hubTotal(t, h, "plant", "2026-11"); n != 0 {
		t.Fatalf("the hub stored %d records from the future", n)
	}

	// Control: with the hub's clock 5 minutes past the newest record end
	// (inside the 10 minute skew), the same file is accepted.
	hubClock.Set("2026-11-04T23:55:00Z")
	rc, err := usageexport.Upload(ctx, file, usageexport.UploadOptions{HubURL: url, Token: token, Attempts: 1})
	must(t, err)
	if rc.NewRecords != 2*4*24 || !rc.ServerTime.Equal(hubClock.Now()) {
		t.Fatalf("within the skew: %+v, want %d new records and serverTime %s", rc, 2*4*24, hubClock.Now())
	}
}

// post sends body to url with token as bearer token and returns the status
// and body.
func post(t *testing.T, url, token string, body io.Reader) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, body)
	must(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	must(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	must(t, err)
	return resp.StatusCode, string(b)
}
