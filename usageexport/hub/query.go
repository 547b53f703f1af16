package hub

import (
	"context"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/usageexport"
)

// Site statuses by how long ago usage last arrived.
const (
	StatusOK      = "ok"
	StatusWarning = "warning"
	StatusOverdue = "overdue"
	StatusNever   = "never"
)

// SiteStatus is one row of the site list.
type SiteStatus struct {
	Name     string     `json:"name"`
	SiteID   string     `json:"siteId"`
	LastSeen *time.Time `json:"lastSeen,omitempty"`
	Status   string     `json:"status"`
	// MonthVCoreHours is the usage received for the current month.
	MonthVCoreHours string `json:"monthVCoreHours"`
}

// Sites lists every registered site with when it was last heard from.
func (h *Hub) Sites(ctx context.Context) ([]SiteStatus, error) {
	now := h.now().UTC()
	monthStart := time.Date(now.Year(), now.Month(), 1, 0, 0, 0, 0, time.UTC)
	rows, err := h.Pool.Query(ctx, `SELECT s.name, s.site_id, s.last_seen,
			COALESCE((SELECT sum(milli_vcore_seconds) FROM hub_records r WHERE r.site = s.name AND r.start_at >= $1 AND r.start_at < $2), 0)::bigint
		FROM hub_sites s ORDER BY s.name`, monthStart, monthStart.AddDate(0, 1, 0))
	if err != nil {
		return nil, fmt.Errorf("list sites: %w", err)
	}
	return pgx.CollectRows(rows, func(r pgx.CollectableRow) (SiteStatus, error) {
		var s SiteStatus
		var mvcs int64
		if err := r.Scan(&s.Name, &s.SiteID, &s.LastSeen, &mvcs); err != nil {
			return s, err
		}
		s.MonthVCoreHours = usageexport.VCoreHours(mvcs)
		s.Status = h.status(now, s.LastSeen)
		return s, nil
	})
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
