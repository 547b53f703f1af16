package hub_test

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/outpostdata/outpost/test/harness"
	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

// chromiumPath is where Debian's chromium package (installed by
// scripts/install-deps.sh) puts the browser.
const chromiumPath = "/usr/bin/chromium"

// chromium runs headless Chromium on url with the given mode flag
// (--dump-dom, or --screenshot=PATH) and returns its standard output. Every
// network feature that would reach beyond 127.0.0.1 is off, as on an
// air-gapped network.
func chromium(t *testing.T, url string, mode ...string) string {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("%s is missing: run scripts/install-deps.sh (it installs Debian's chromium package)", chromiumPath)
	}
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--window-size=1280,900"}
	args = append(append(args, mode...), url)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromiumPath, args...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium %s: %v\n%s", strings.Join(mode, " "), err, stderr.String())
	}
	return string(out)
}

// screenshotDir is where the page's screenshot goes: $OUTPOST_TEST_OUTPUT
// when set (kept after the test, for CI artifacts), else the test's own
// temporary folder.
func screenshotDir(t *testing.T) string {
	if dir := os.Getenv("OUTPOST_TEST_OUTPUT"); dir != "" {
		must(t, os.MkdirAll(dir, 0o755))
		return dir
	}
	return t.TempDir()
}

func TestHubPageShowsSitesAndTotalsInABrowser(t *testing.T) {
	pg := harness.StartPostgres(t)
	ctx := context.Background()
	hubPool, err := hub.Open(ctx, createDB(t, pg, "hub"))
	must(t, err)
	t.Cleanup(hubPool.Close)
	url, h := startHub(t, hubPool)
	h.Now = func() time.Time { return time.Date(2026, 11, 3, 0, 30, 0, 0, time.UTC) }

	// "plant" uploaded (at the hub's 00:30) two days of three instances
	// (0.5 + 1 + 1.5 vCores: 144 vCore-hours), so it is seen up to 00:00;
	// "harbour" is registered and has never reported.
	s := newSite(t, pg, "site1", false)
	token, err := h.AddSite(ctx, "plant", usageexport.FormatPublicKey(s.key.Public()))
	must(t, err)
	other := newSite(t, pg, "site2", false)
	_, err = h.AddSite(ctx, "harbour", usageexport.FormatPublicKey(other.key.Public()))
	must(t, err)
	s.run(t, 3, "2026-11-03T00:00:00Z")
	_, err = usageexport.Upload(ctx, s.export(t, "2026-11"), usageexport.UploadOptions{HubURL: url, Token: token})
	must(t, err)

	// The browser sends a read token as the basic-auth password.
	reader, err := h.CreateToken(ctx, hub.RoleRead, "browser")
	must(t, err)
	url = strings.Replace(url, "http://", "http://reader:"+reader+"@", 1)

	dom := chromium(t, url+"/", "--dump-dom")
	text := regexp.MustCompile(`\s+`).ReplaceAllString(regexp.MustCompile(`<[^>]*>`).ReplaceAllString(dom, " "), " ")
	for _, want := range []string{
		"Outpost hub — usage in 2026-11",
		"plant 2026-11-03 00:00 UTC ok none 144.000000 CSV · JSON",
		"harbour — never none 0.000000",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the page as Chromium rendered it does not show %q; its text:\n%s", want, text)
		}
	}
	if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(dom) {
		t.Errorf("the page refers to an external asset, which an air-gapped browser cannot fetch:\n%s", dom)
	}

	shot := filepath.Join(screenshotDir(t), "hub-page.png")
	chromium(t, url+"/", "--screenshot="+shot)
	png, err := os.ReadFile(shot)
	if err != nil || len(png) < 1000 || string(png[1:4]) != "PNG" {
		t.Fatalf("chromium wrote no screenshot at %s (%d bytes, %v)", shot, len(png), err)
	}
	t.Logf("screenshot of the hub page: %s (%d bytes)", shot, len(png))
}
