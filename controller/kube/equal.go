package kube

import (
	"bytes"
	"encoding/json"
)

// equalJSON compares two values by their JSON form, which is what the API
// stores.
func equalJSON(a, b any) bool {
	ja, errA := json.Marshal(a)
	jb, errB := json.Marshal(b)
	return errA == nil && errB == nil && bytes.Equal(ja, jb)
}
