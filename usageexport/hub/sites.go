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
	// Disabled is when the site was disabled; its uploads are refused.
	Disabled *time.Time
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
	if token, err = newToken(); err != nil {
		return "", err
	}
	_, err = h.Pool.Exec(ctx, `INSERT INTO hub_sites (name, site_id, public_key, token_sha256) VALUES ($1, $2, $3, $4)`,
		name, usageexport.SiteID(pub), usageexport.FormatPublicKey(pub), tokenHash(token))
	if isUniqueViolation(err) {
		return "", fmt.Errorf("site %q or its key is already registered", name)
	}
	if err != nil {
		return "", fmt.Errorf("register site %s: %w", name, err)
	}
	return token, nil
}

// RotateToken gives a site a new token and returns it. The old token stops
// working at once: every request looks its token up in the database.
func (h *Hub) RotateToken(ctx context.Context, name string) (string, error) {
	token, err := newToken()
	if err != nil {
		return "", err
	}
	return token, h.updateSite(ctx, name, "rotate the token of", `UPDATE hub_sites SET token_sha256 = $2 WHERE name = $1`, tokenHash(token))
}

// SetKey replaces the public key a site's files must be signed with, for
// example after the site's signing key was lost and re-created. Files
// signed with the old key are refused from then on.
func (h *Hub) SetKey(ctx context.Context, name, publicKey string) error {
	pub, err := usageexport.ParsePublicKey(publicKey)
	if err != nil {
		return fmt.Errorf("--public-key: %w", err)
	}
	err = h.updateSite(ctx, name, "set the key of", `UPDATE hub_sites SET public_key = $2, site_id = $3 WHERE name = $1`,
		usageexport.FormatPublicKey(pub), usageexport.SiteID(pub))
	if isUniqueViolation(err) {
		return fmt.Errorf("set the key of site %s: another site is registered with key %s", name, usageexport.Fingerprint(pub))
	}
	return err
}

// Disable refuses every upload and batch from a site until Enable; what it
// delivered before stays.
func (h *Hub) Disable(ctx context.Context, name string) error {
	return h.updateSite(ctx, name, "disable", `UPDATE hub_sites SET disabled_at = COALESCE(disabled_at, now()) WHERE name = $1`)
}

// Enable accepts a disabled site's uploads again.
func (h *Hub) Enable(ctx context.Context, name string) error {
	return h.updateSite(ctx, name, "enable", `UPDATE hub_sites SET disabled_at = NULL WHERE name = $1`)
}

// updateSite runs one UPDATE of hub_sites whose first argument is the
// site's name, and says so when there is no such site.
func (h *Hub) updateSite(ctx context.Context, name, what, sql string, args ...any) error {
	tag, err := h.Pool.Exec(ctx, sql, append([]any{name}, args...)...)
	if err != nil {
		return fmt.Errorf("%s site %s: %w", what, name, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("%s site %s: no such site (see `outpost hub site list`)", what, name)
	}
	return nil
}

// Token roles: read sees usage and sites; admin is a superset of read.
const (
	RoleRead  = "read"
	RoleAdmin = "admin"
)

// CreateToken makes a token with role (read or admin) for the reader
// named name (a person or a program, for the operator's records), and
// returns it. Only its hash is stored; it is shown once.
func (h *Hub) CreateToken(ctx context.Context, role, name string) (string, error) {
	if role != RoleRead && role != RoleAdmin {
		return "", fmt.Errorf("--role %q: must be %s or %s", role, RoleRead, RoleAdmin)
	}
	token, err := newToken()
	if err != nil {
		return "", err
	}
	if _, err := h.Pool.Exec(ctx, `INSERT INTO hub_tokens (token_sha256, role, name) VALUES ($1, $2, $3)`, tokenHash(token), role, name); err != nil {
		return "", fmt.Errorf("create %s token: %w", role, err)
	}
	return token, nil
}

// TokenInfo describes a read or admin token without revealing it: ID is
// the start of its hash, which `token revoke` takes.
type TokenInfo struct {
	ID        string    `json:"id"`
	Role      string    `json:"role"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// tokenIDLength is how much of a token's hash names it.
const tokenIDLength = 12

// Tokens lists the read and admin tokens, oldest first.
func (h *Hub) Tokens(ctx context.Context) ([]TokenInfo, error) {
	rows, err := h.Pool.Query(ctx, `SELECT left(token_sha256, $1), role, name, created_at FROM hub_tokens ORDER BY created_at, token_sha256`, tokenIDLength)
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (TokenInfo, error) {
		var t TokenInfo
		return t, r.Scan(&t.ID, &t.Role, &t.Name, &t.CreatedAt)
	})
}

// RevokeToken deletes the read or admin token whose ID (from Tokens) is
// id; it stops working at once.
func (h *Hub) RevokeToken(ctx context.Context, id string) error {
	if len(id) != tokenIDLength {
		return fmt.Errorf("token id %q: must be the %d characters `outpost hub token list` shows", id, tokenIDLength)
	}
	tag, err := h.Pool.Exec(ctx, `DELETE FROM hub_tokens WHERE left(token_sha256, $1) = $2`, tokenIDLength, id)
	if err != nil {
		return fmt.Errorf("revoke token %s: %w", id, err)
	}
	if tag.RowsAffected() == 0 {
		return fmt.Errorf("revoke token %s: no such token (see `outpost hub token list`)", id)
	}
	return nil
}

// tokenRole returns the role of a read or admin token; ok is false for any
// other token.
func (h *Hub) tokenRole(ctx context.Context, token string) (role string, ok bool, err error) {
	err = h.Pool.QueryRow(ctx, `SELECT role FROM hub_tokens WHERE token_sha256 = $1`, tokenHash(token)).Scan(&role)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return role, err == nil, err
}

func newToken() (string, error) {
	raw := make([]byte, 32)
	if _, err := rand.Read(raw); err != nil {
		return "", fmt.Errorf("new token: %w", err)
	}
	return "opt_" + base64.RawURLEncoding.EncodeToString(raw), nil
}

func tokenHash(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

func isUniqueViolation(err error) bool {
	var pgErr *pgconn.PgError
	return errors.As(err, &pgErr) && pgErr.Code == uniqueViolation
}

// siteByToken returns the site a token belongs to; ok is false for an
// unknown token.
func (h *Hub) siteByToken(ctx context.Context, token string) (Site, bool, error) {
	var s Site
	var pub string
	err := h.Pool.QueryRow(ctx, `SELECT name, site_id, public_key, created_at, disabled_at FROM hub_sites WHERE token_sha256 = $1`,
		tokenHash(token)).Scan(&s.Name, &s.SiteID, &pub, &s.CreatedAt, &s.Disabled)
	if errors.Is(err, pgx.ErrNoRows) {
		return s, false, nil
	}
	if err != nil {
		return s, false, err
	}
	s.PublicKey, err = usageexport.ParsePublicKey(pub)
	return s, err == nil, err
}
