package usageexport

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"
)

// UploadOptions configure Upload. The zero value of each field is a
// sensible default.
type UploadOptions struct {
	// HubURL is the hub's base URL, for example https://hub.example.com.
	HubURL string
	// Token is the site's hub token.
	Token string
	// PublicKey, when set, must be the key the file is signed with.
	PublicKey ed25519.PublicKey
	// Attempts is how often to try; 0 means 8.
	Attempts int
	// Backoff is the first wait between attempts, doubled each time up to
	// a minute; 0 means one second.
	Backoff time.Duration
	// Progress, when set, receives a progress line per attempt (for a
	// terminal).
	Progress io.Writer
	// Client sends the requests; HubClient makes one that trusts the hub's
	// own CA. Nil means the system roots.
	Client *http.Client
}

// HubClient returns an HTTP client that trusts only the CA certificates in
// caPEM (a PEM bundle) for the hub's certificate: a hub with a certificate
// from the site's or vendor's private CA.
func HubClient(caPEM []byte, source string) (*http.Client, error) {
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("%s: holds no PEM certificate", source)
	}
	return &http.Client{Timeout: uploadTimeout, Transport: &http.Transport{
		Proxy:           http.ProxyFromEnvironment,
		TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12},
	}}, nil
}

// uploadTimeout bounds one attempt: the largest file the hub takes, over a
// slow link.
const uploadTimeout = 10 * time.Minute

// HubError is a refusal by the hub that retrying will not change (a 4xx
// other than 429, which is retried).
type HubError struct {
	Status int
	Reason string
	// ServerTime is the hub's clock when it refused, when it said.
	ServerTime time.Time
}

func (e *HubError) Error() string { return fmt.Sprintf("hub refused (%d): %s", e.Status, e.Reason) }

// Upload verifies an export file and sends it to the hub, retrying with
// exponential backoff on network errors and 5xx answers. The idempotency
// key is the payload's sha256, and the hub stores each record once, so
// uploading again (or after a lost answer) counts nothing twice.
func Upload(ctx context.Context, data []byte, opts UploadOptions) (*Receipt, error) {
	v, err := Verify(data, VerifyOptions{PublicKey: opts.PublicKey})
	if err != nil {
		return nil, fmt.Errorf("not uploading, the file does not verify: %w", err)
	}
	if v.Payload.Kind != KindMonthlyExport {
		return nil, fmt.Errorf("not uploading: kind %q is not an export file", v.Payload.Kind)
	}
	return post(ctx, PathUploads, data, v.PayloadSHA256, opts)
}

// post sends a signed file to the hub with retries.
func post(ctx context.Context, path string, data []byte, key string, opts UploadOptions) (*Receipt, error) {
	if opts.HubURL == "" {
		return nil, errors.New("hub URL: not set (--hub)")
	}
	attempts, backoff := opts.Attempts, opts.Backoff
	if attempts <= 0 {
		attempts = 8
	}
	if backoff <= 0 {
		backoff = time.Second
	}
	client := opts.Client
	if client == nil {
		client = &http.Client{Timeout: uploadTimeout}
	}
	url := strings.TrimSuffix(opts.HubURL, "/") + path
	var last error
	for attempt := 1; attempt <= attempts; attempt++ {
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "uploading %d bytes to %s (attempt %d of %d)...\n", len(data), url, attempt, attempts)
		}
		rc, err := postOnce(ctx, client, url, data, key, opts.Token)
		var refused *HubError
		// 429: the hub is busy with this site's other uploads; the rest
		// of the 4xx will not change by retrying.
		if err == nil || errors.As(err, &refused) && refused.Status < 500 && refused.Status != http.StatusTooManyRequests {
			return rc, err
		}
		last = err
		if attempt == attempts {
			break
		}
		if opts.Progress != nil {
			fmt.Fprintf(opts.Progress, "  %v; retrying in %s\n", err, backoff)
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(backoff):
		}
		backoff = min(2*backoff, time.Minute)
	}
	return nil, fmt.Errorf("hub %s unreachable after %d attempts: %w", opts.HubURL, attempts, last)
}

func postOnce(ctx context.Context, client *http.Client, url string, data []byte, key, token string) (*Receipt, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, url, bytes.NewReader(data))
	if err != nil {
		return nil, err
	}
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("Idempotency-Key", key)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error      string    `json:"error"`
			ServerTime time.Time `json:"serverTime"`
		}
		if json.Unmarshal(body, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(body))
		}
		return nil, &HubError{Status: resp.StatusCode, Reason: e.Error, ServerTime: e.ServerTime}
	}
	var rc Receipt
	if err := json.Unmarshal(body, &rc); err != nil {
		return nil, fmt.Errorf("hub answer: %w", err)
	}
	if rc.PayloadSHA256 != key {
		return nil, fmt.Errorf("hub acknowledged payload %s, not %s", rc.PayloadSHA256, key)
	}
	return &rc, nil
}
