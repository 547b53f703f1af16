package kubesource

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

// statusChanged compares two statuses by what the API would store, ignoring
// conditions' lastTransitionTime: the core keeps those when nothing else
// changed, and a write that changes nothing only costs the apiserver.
func statusChanged(before, after any) bool {
	return !equalJSON(withoutTransitionTimes(before), withoutTransitionTimes(after))
}

func withoutTransitionTimes(status any) any {
	b, err := json.Marshal(status)
	if err != nil {
		return status
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return status
	}
	if conds, ok := m["conditions"].([]any); ok {
		for _, c := range conds {
			if cm, ok := c.(map[string]any); ok {
				delete(cm, "lastTransitionTime")
			}
		}
	}
	return m
}
