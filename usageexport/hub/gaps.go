package hub

import (
	"cmp"
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/outpostdata/outpost/usageexport"
)

// Gap is a month whose export a site wrote but the hub never received.
type Gap struct {
	Month  string `json:"month"`
	Reason string `json:"reason"`
}

// receivedExport is one monthly export the hub stored.
type receivedExport struct {
	site, month, sha256 string
	previous            *string
}

// gaps follows every site's chain of exports: each export names the
// payload of the export before it (previousExportSha256). A name the hub
// never received means a month is missing: every month between the export
// and the latest earlier month the hub has, or that earlier month itself
// when the hub holds only another version of it (a partial export), or,
// with nothing earlier at all, the month before.
func (h *Hub) gaps(ctx context.Context) (map[string][]Gap, error) {
	rows, err := h.Pool.Query(ctx, `SELECT site, month, payload_sha256, previous_sha256 FROM hub_receipts
		WHERE kind = $1 AND month IS NOT NULL ORDER BY site, month, received_at`, usageexport.KindMonthlyExport)
	if err != nil {
		return nil, fmt.Errorf("export chain: %w", err)
	}
	exports, err := pgx.CollectRows(rows, func(r pgx.CollectableRow) (receivedExport, error) {
		var e receivedExport
		return e, r.Scan(&e.site, &e.month, &e.sha256, &e.previous)
	})
	if err != nil {
		return nil, fmt.Errorf("export chain: %w", err)
	}
	out := map[string][]Gap{}
	for start := 0; start < len(exports); {
		end := start + 1
		for end < len(exports) && exports[end].site == exports[start].site {
			end++
		}
		if g := siteGaps(exports[start:end]); len(g) > 0 {
			out[exports[start].site] = g
		}
		start = end
	}
	return out, nil
}

// siteGaps finds the gaps in one site's exports, sorted by month.
func siteGaps(exports []receivedExport) []Gap {
	received := map[string]bool{}
	var months []string // sorted, as exports are
	for _, e := range exports {
		received[e.sha256] = true
		if len(months) == 0 || months[len(months)-1] != e.month {
			months = append(months, e.month)
		}
	}
	found := map[string]Gap{}
	for _, e := range exports {
		// NULL: received before the hub kept the chain; "": the site's
		// first export.
		if e.previous == nil || *e.previous == "" || received[*e.previous] {
			continue
		}
		missing := fmt.Sprintf("the export that %s follows (payload sha256 %s) was not received", e.month, *e.previous)
		i, _ := slices.BinarySearch(months, e.month)
		switch {
		case i == 0:
			found[addMonths(e.month, -1)] = Gap{Month: addMonths(e.month, -1), Reason: missing + "; it covers this month or an earlier one"}
		case months[i-1] == addMonths(e.month, -1):
			found[months[i-1]] = Gap{Month: months[i-1], Reason: missing + "; the hub has only another (earlier) export of this month: upload its newest file"}
		default:
			for m := addMonths(months[i-1], 1); m < e.month; m = addMonths(m, 1) {
				found[m] = Gap{Month: m, Reason: "no export of this month was received; " + missing}
			}
		}
	}
	gaps := make([]Gap, 0, len(found))
	for _, g := range found {
		gaps = append(gaps, g)
	}
	slices.SortFunc(gaps, func(a, b Gap) int { return cmp.Compare(a.Month, b.Month) })
	return gaps
}

// addMonths moves a YYYY-MM month by n months. Months here come from
// verified payloads; one that does not parse (never expected) moves to
// "9999-12", past every real month, so no loop over months runs forever.
func addMonths(month string, n int) string {
	t, err := time.Parse("2006-01", month)
	if err != nil {
		return "9999-12"
	}
	return t.AddDate(0, n, 0).Format("2006-01")
}
