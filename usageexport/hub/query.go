package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/usageexport"
)

// Site statuses by how far the site's delivered data lags the hub's clock.
const (
	StatusOK       = "ok"
	StatusWarning  = "warning"
	StatusOverdue  = "overdue"
	StatusNever    = "never"
	StatusDisabled = "disabled"
)

// SiteStatus is one row of the site list.
type SiteStatus struct {
	Name   string `json:"name"`
	SiteID string `json:"siteId"`
	// LastSeen is the newest time the site's delivered data covers (the end
	// of its newest record, or of an export's coverage), not when anything
	// arrived: a late upload of old usage does not make a site fresh.
	LastSeen *time.Time `json:"lastSeen,omitempty"`
	Status   string     `json:"status"`
	// Gaps are the months the site exported but the hub never received, as
	// its chain of exports (previousExportSha256) shows.
	Gaps []Gap `json:"gaps"`
	// MonthVCoreHours is the usage received for the current month.
	MonthVCoreHours string `json:"monthVCoreHours"`
}

// Sites lists every registered site with how fresh its data is and which
// exported months are missing.
func (h *Hub) Sites(ctx context.Context) ([]SiteStatus, error) {
	now := h.now().UTC()
	monthStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	rows, err := h.Pool.Query(ctx, `SELECT s.name, s.site_id, s.data_until, s.disabled_at IS NOT NULL,
			COALESCE((SELECT sum(milli_vcore_seconds) FROM hub_records r WHERE r.site = s.name AND r.start_at >= $1 AND r.start_at < $2), 0)::bigint
		FROM hub_sites s ORDER BY s.name`, monthStart, monthStart.AddDate(0, 1, 0))
	if err != nil {
		return nil, fmt.Errorf("list sites: %w", err)
	}
	sites, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (SiteStatus, error) {
		var s SiteStatus
		var mvcs int64
		var disabled bool
		if err := r.Scan(&s.Name, &s.SiteID, &s.LastSeen, &disabled, &mvcs); err != nil {
			return s, err
		}
		s.MonthVCoreHours = usageexport.VCoreHours(mvcs)
		s.Status = h.status(now, s.LastSeen)
		if disabled {
			s.Status = StatusDisabled
		}
		return s, nil
	})
	if err != nil {
		return nil, fmt.Errorf("list sites: %w", err)
	}
	gaps, err := h.gaps(ctx)
	if err != nil {
		return nil, err
	}
	for i := range sites {
		sites[i].Gaps = gaps[sites[i].Name]
		if sites[i].Gaps == nil {
			sites[i].Gaps = []Gap{}
		}
	}
	return sites, nil
}

func (h *Hub) status(now time.Time, last *time.Time) string {
	warn, overdue := h.Warning, h.Overdue
	if warn == 0 {
		warn = 48 * time.Hour
	}
	if overdue == 0 {
		overdue = 30 * 24 * time.Hour
	}
	switch {
	case last == nil:
		return StatusNever
	case now.Sub(*last) >= overdue:
		return StatusOverdue
	case now.Sub(*last) >= warn:
		return StatusWarning
	}
	return StatusOK
}

// UsageRow is one instance's usage in a month at the hub.
type UsageRow struct {
	UID               string     `json:"uid"`
	Kind              string     `json:"kind"`
	Namespace         string     `json:"namespace"`
	Name              string     `json:"name"`
	DeletedAt         *time.Time `json:"deletedAt,omitempty"`
	Records           int64      `json:"records"`
	MilliVCoreSeconds int64      `json:"milliVCoreSeconds"`
	VCoreHours        string     `json:"vCoreHours"`
}

// MonthUsage is a site's usage in one month.
type MonthUsage struct {
	Site      string            `json:"site"`
	Month     string            `json:"month"`
	Instances []UsageRow        `json:"instances"`
	Total     usageexport.Total `json:"total"`
}

// Usage sums a site's records that start in month, per instance.
func (h *Hub) Usage(ctx context.Context, site, month string) (*MonthUsage, error) {
	start, end, err := usageexport.ParseMonth(month)
	if err != nil {
		return nil, err
	}
	rows, err := h.Pool.Query(ctx, `SELECT r.uid, i.kind, i.namespace, i.name, i.deleted_at, count(*), sum(r.milli_vcore_seconds)::bigint
		FROM hub_records r JOIN hub_instances i ON i.site = r.site AND i.uid = r.uid
		WHERE r.site = $1 AND r.start_at >= $2 AND r.start_at < $3
		GROUP BY r.uid, i.kind, i.namespace, i.name, i.deleted_at ORDER BY i.namespace, i.name, r.uid`, site, start, end)
	if err != nil {
		return nil, fmt.Errorf("usage of %s in %s: %w", site, month, err)
	}
	u := &MonthUsage{Site: site, Month: month}
	u.Instances, err = pgx.CollectRows(rows, func(r pgx.CollectableRow) (UsageRow, error) {
		var row UsageRow
		err := r.Scan(&row.UID, &row.Kind, &row.Namespace, &row.Name, &row.DeletedAt, &row.Records, &row.MilliVCoreSeconds)
		row.VCoreHours = usageexport.VCoreHours(row.MilliVCoreSeconds)
		return row, err
	})
	if err != nil {
		return nil, fmt.Errorf("usage of %s in %s: %w", site, month, err)
	}
	for _, row := range u.Instances {
		u.Total.Records += row.Records
		u.Total.MilliVCoreSeconds += row.MilliVCoreSeconds
	}
	u.Total.VCoreHours = usageexport.VCoreHours(u.Total.MilliVCoreSeconds)
	return u, nil
}
