package usageexport

import (
	"crypto/sha256"
	"encoding/hex"
	"sort"
	"strconv"
	"time"
)

// Instance identifies one metered instance over its whole life.
type Instance struct {
	UID       string     `json:"uid"`
	Kind      string     `json:"kind"`
	Namespace string     `json:"namespace"`
	Name      string     `json:"name"`
	CreatedAt time.Time  `json:"createdAt"`
	DeletedAt *time.Time `json:"deletedAt,omitempty"`
}

// Shape is what is billed about an instance at a moment: a change to any of
// it cuts a slice.
type Shape struct {
	MilliVCores  int64             `json:"milliVCores"`
	MemoryBytes  int64             `json:"memoryBytes"`
	StorageBytes int64             `json:"storageBytes"`
	Labels       map[string]string `json:"labels"`
}

func (s Shape) equal(o Shape) bool {
	if s.MilliVCores != o.MilliVCores || s.MemoryBytes != o.MemoryBytes || s.StorageBytes != o.StorageBytes || len(s.Labels) != len(o.Labels) {
		return false
	}
	for k, v := range s.Labels {
		if ov, ok := o.Labels[k]; !ok || ov != v {
			return false
		}
	}
	return true
}

// Record is one slice of one instance's life inside one clock hour.
type Record struct {
	ID    string    `json:"id"`
	UID   string    `json:"uid"`
	Start time.Time `json:"start"`
	End   time.Time `json:"end"`
	Shape
	// MilliVCoreSeconds is the quantity: milli-vCores times seconds. It is
	// exact; VCoreHours is the same quantity for people.
	MilliVCoreSeconds int64  `json:"milliVCoreSeconds"`
	VCoreHours        string `json:"vCoreHours"`
}

// newRecord builds the record of one slice and derives its id.
func newRecord(siteID string, inst Instance, start, end time.Time, shape Shape) Record {
	r := Record{UID: inst.UID, Start: start.UTC(), End: end.UTC(), Shape: shape}
	r.MilliVCoreSeconds = shape.MilliVCores * int64(end.Sub(start)/time.Second)
	r.VCoreHours = VCoreHours(r.MilliVCoreSeconds)
	r.ID = RecordID(siteID, inst, r)
	return r
}

// RecordID is the sha256 of everything a record describes, in a fixed
// binary-safe layout (fields separated by NUL, labels sorted by key). Two
// records that describe the same slice have the same id, so storing one
// twice stores it once, at the site and at the hub.
func RecordID(siteID string, inst Instance, r Record) string {
	h := sha256.New()
	field := func(s string) {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	field("outpost-usage-record-v1")
	field(siteID)
	field(inst.UID)
	field(inst.Kind)
	field(inst.Namespace)
	field(inst.Name)
	field(strconv.FormatInt(r.Start.Unix(), 10))
	field(strconv.FormatInt(r.End.Unix(), 10))
	field(strconv.FormatInt(r.MilliVCores, 10))
	field(strconv.FormatInt(r.MemoryBytes, 10))
	field(strconv.FormatInt(r.StorageBytes, 10))
	keys := make([]string, 0, len(r.Labels))
	for k := range r.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		field(k)
		field(r.Labels[k])
	}
	return hex.EncodeToString(h.Sum(nil))
}
