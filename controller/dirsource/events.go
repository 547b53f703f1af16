package dirsource

import (
	"context"
	"log/slog"

	"k8s.io/apimachinery/pkg/api/meta"
	"k8s.io/apimachinery/pkg/runtime"

	"github.com/outpostdata/outpost/controller/controldb"
)

// EventRecorder keeps events in controldb, where `outpost describe` reads
// them, and logs them.
type EventRecorder struct {
	DB  *controldb.DB
	Log *slog.Logger
}

// Event records one event of an object.
func (r *EventRecorder) Event(obj runtime.Object, eventType, reason, message string) {
	m, err := meta.Accessor(obj)
	if err != nil {
		r.Log.Error("event for an object without metadata", "reason", reason, "message", message)
		return
	}
	kind := obj.GetObjectKind().GroupVersionKind().Kind
	level := slog.LevelInfo
	if eventType == "Warning" {
		level = slog.LevelWarn
	}
	r.Log.Log(context.Background(), level, message, "object", kind+"/"+m.GetNamespace()+"/"+m.GetName(), "reason", reason)
	if err := r.DB.RecordEvent(context.Background(), kind, m.GetNamespace(), m.GetName(), controldb.Event{Type: eventType, Reason: reason, Message: message}); err != nil {
		r.Log.Error("cannot store event", "err", err)
	}
}
