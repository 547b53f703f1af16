package hub

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/outpostdata/outpost/usageexport"
)

// Site is a registered site.
type Site struct {
	Name      string
	SiteID    string
	PublicKey ed25519.PublicKey
	CreatedAt time.Time
	LastSeen  *time.Time
}

var siteName = regexp.MustCompile(`^[a-z0-9]([-a-z0-9]*[a-z0-9])?$`)

// AddSite registers a site under name with its public key (the text that
// `outpost usage key` prints) and returns the token the site presents. Only
// the token's hash is stored; it is shown once.
func (h *Hub) AddSite(ctx context.Context, name, publicKey string) (token string, err error) {
	if len(name) > 63 || !siteName.MatchString(name) {
		return "", fmt.Errorf("site name %q: must be lower-case letters, digits and '-', at most 63", name)
	}
	pub, err := usageexport.ParsePublicKey(publicKey)
	if err != nil {
		return "", fmt.Errorf("--public-key: %w", err)
	}
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", err
	}
	token = "opt_" + base64.RawURLEncoding.EncodeToString(raw)
	_, err = h.Pool.Exec(ctx, `INSERT INTO hub_sites (name, site_id, public_key, token_sha256) VALUES ($1, $2, $3, $4)`,
		name, usageexport.SiteID(pub), usageexport.FormatPublicKey(pub), tokenHash(token))
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == "23505" {
		return "", fmt.Errorf("site %q or its key is already registered", name)
	}
	if err != nil {
		return "", fmt.Errorf("register site %s: %w", name, err)
	}
	return token, nil
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// siteByToken returns the site a token belongs to; ok is false for an
// unknown token.
func (h *Hub) siteByToken(ctx context.Context, token string) (Site, bool, error) {
	var s Site
	var pub string
	err := h.Pool.QueryRow(ctx, `SELECT name, site_id, public_key, created_at, last_seen FROM hub_sites WHERE token_sha256 = $1`,
		tokenHash(token)).Scan(&s.Name, &s.SiteID, &pub, &s.CreatedAt, &s.LastSeen)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	s.PublicKey, err = usageexport.ParsePublicKey(pub)
	return s, err == nil, err
}
