package usageexport

import (
	"fmt"
	"time"
)

// FormatVersion is the version of the payload this package writes and
// reads. FORMAT.md describes it.
const FormatVersion = 1

// Payload kinds: a monthly export file, or a direct-mode batch.
const (
	KindMonthlyExport = "monthly-export"
	KindBatch         = "batch"
)

// Payload is the signed content of an export file or a direct-mode batch.
// It is written once (by encodePayload, as encoding/json writes it) and
// never re-serialised: the signature covers the exact bytes.
type Payload struct {
	FormatVersion     int       `json:"formatVersion"`
	Kind              string    `json:"kind"`
	Site              SiteInfo  `json:"site"`
	ControllerVersion string    `json:"controllerVersion"`
	GeneratedAt       time.Time `json:"generatedAt"`
	// Period is set for monthly exports.
	Period *Period `json:"period,omitempty"`
	// PreviousExportSHA256 is the payload sha256 of the export of the
	// latest earlier month, empty for the first; it chains a site's exports
	// so a missing month shows.
	PreviousExportSHA256 string          `json:"previousExportSha256"`
	Instances            []Instance      `json:"instances"`
	Records              []Record        `json:"records"`
	Totals               []InstanceTotal `json:"totals"`
	Total                Total           `json:"total"`
}

// SiteInfo identifies the site. ID is derived from the signing key.
type SiteInfo struct {
	ID     string            `json:"id"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// Period is the month an export covers. CoveredUntil is the end of the last
// closed hour included; it equals End unless the month is still running,
// and then Partial is true.
type Period struct {
	Month        string    `json:"month"`
	Start        time.Time `json:"start"`
	End          time.Time `json:"end"`
	CoveredUntil time.Time `json:"coveredUntil"`
	Partial      bool      `json:"partial"`
}

// InstanceTotal sums one instance's records.
type InstanceTotal struct {
	UID               string `json:"uid"`
	Records           int64  `json:"records"`
	MilliVCoreSeconds int64  `json:"milliVCoreSeconds"`
	VCoreHours        string `json:"vCoreHours"`
}

// Total sums every record.
type Total struct {
	Records           int64  `json:"records"`
	MilliVCoreSeconds int64  `json:"milliVCoreSeconds"`
	VCoreHours        string `json:"vCoreHours"`
}

// ParseMonth reads "2026-11" and returns the first instant of that month
// and of the next, in UTC.
func ParseMonth(month string) (start, end time.Time, err error) {
	t, err := time.Parse("2006-01", month)
	if err != nil || t.Format("2006-01") != month {
		return start, end, fmt.Errorf("month %q: must be YYYY-MM, for example 2026-11", month)
	}
	return t.UTC(), t.UTC().AddDate(0, 1, 0), nil
}
