package usageexport

import "time"

// Receipt is the hub's answer to an upload or a batch.
type Receipt struct {
	// PayloadSHA256 is the idempotency key the hub stored it under.
	PayloadSHA256 string `json:"payloadSha256"`
	Site          string `json:"site"`
	Kind          string `json:"kind"`
	Records       int64  `json:"records"`
	// NewRecords is how many records the hub did not have yet.
	NewRecords int64 `json:"newRecords"`
	// Duplicate is true when the hub had received these exact bytes before.
	Duplicate bool `json:"duplicate"`
	// ServerTime is the hub's clock when it answered (RFC 3339): a time the
	// site can trust when its own clock may be wrong.
	ServerTime time.Time `json:"serverTime"`
}

// Hub API paths, shared by the clients here and the hub.
const (
	PathUploads = "/api/v1/uploads"
	PathBatches = "/api/v1/batches"
)
