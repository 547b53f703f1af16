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
	var hexID [2 * sha256.Size]byte
	sum := recordSum(siteID, inst, &r)
	hex.Encode(hexID[:], sum[:])
	return string(hexID[:])
}

// recordIDIs reports whether id is RecordID(siteID, inst, *r), without
// allocating.
func recordIDIs(id, siteID string, inst Instance, r *Record) bool {
	if len(id) != 2*sha256.Size {
		return false
	}
	var hexID [2 * sha256.Size]byte
	sum := recordSum(siteID, inst, r)
	hex.Encode(hexID[:], sum[:])
	return string(hexID[:]) == id
}

func recordSum(siteID string, inst Instance, r *Record) [sha256.Size]byte {
	var stack [512]byte
	b := stack[:0]
	field := func(s string) {
		b = append(append(b, s...), 0)
	}
	num := func(v int64) {
		b = append(strconv.AppendInt(b, v, 10), 0)
	}
	field("outpost-usage-record-v1")
	field(siteID)
	field(inst.UID)
	field(inst.Kind)
	field(inst.Namespace)
	field(inst.Name)
	num(r.Start.Unix())
	num(r.End.Unix())
	num(r.MilliVCores)
	num(r.MemoryBytes)
	num(r.StorageBytes)
	switch len(r.Labels) {
	case 0:
	case 1:
		for k, v := range r.Labels {
			field(k)
			field(v)
		}
	default:
		keys := make([]string, 0, len(r.Labels))
		for k := range r.Labels {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			field(k)
			field(r.Labels[k])
		}
	}
	return sha256.Sum256(b)
}
