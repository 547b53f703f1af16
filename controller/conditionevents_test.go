package controller

import (
	"testing"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/runtime"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// recorded keeps events as "type reason: message".
type recorded []string

func (r *recorded) Event(_ runtime.Object, eventType, reason, message string) {
	*r = append(*r, eventType+" "+reason+": "+message)
}

func TestSetConditionRecordsTheEventOfAChangeOnly(t *testing.T) {
	var ev recorded
	b := &outpostv1.Backup{ObjectMeta: metav1.ObjectMeta{Generation: 3}}
	failed := metav1.Condition{Type: outpostv1.ConditionReady, Status: metav1.ConditionFalse, Reason: "Failed", Message: "disk full"}
	if !SetCondition(&ev, b, &b.Status.Conditions, failed) || SetCondition(&ev, b, &b.Status.Conditions, failed) {
		t.Error("SetCondition reported no change for a new condition, or a change for the same one again")
	}
	done := metav1.Condition{Type: outpostv1.ConditionReady, Status: metav1.ConditionTrue, Reason: "Completed", Message: "stored"}
	SetCondition(&ev, b, &b.Status.Conditions, done)
	want := recorded{"Warning Failed: disk full", "Normal Completed: stored"}
	if len(ev) != len(want) || ev[0] != want[0] || ev[1] != want[1] {
		t.Errorf("events %q, want %q", ev, want)
	}
	if c := b.Status.Conditions[0]; c.ObservedGeneration != 3 || c.Reason != "Completed" {
		t.Errorf("condition %+v, want Completed observed at generation 3", c)
	}
}

func TestRecordReadyTransitionAnnouncesWhereThePassEnded(t *testing.T) {
	ready := func(status metav1.ConditionStatus, reason string) []metav1.Condition {
		return []metav1.Condition{{Type: outpostv1.ConditionReady, Status: status, Reason: reason, Message: reason + "!"}}
	}
	var ev recorded
	obj := &outpostv1.PostgresInstance{}
	RecordReadyTransition(&ev, obj, ready(metav1.ConditionFalse, "Starting"), ready(metav1.ConditionFalse, "Starting"), false, false)
	RecordReadyTransition(&ev, obj, nil, ready(metav1.ConditionFalse, "Starting"), true, false)
	RecordReadyTransition(&ev, obj, ready(metav1.ConditionFalse, "Starting"), ready(metav1.ConditionFalse, "RuntimeError"), true, true)
	RecordReadyTransition(&ev, obj, ready(metav1.ConditionFalse, "RuntimeError"), ready(metav1.ConditionTrue, "Running"), true, false)
	want := recorded{"Normal Starting: Starting!", "Warning RuntimeError: RuntimeError!", "Normal Running: Running!"}
	if len(ev) != len(want) || ev[0] != want[0] || ev[1] != want[1] || ev[2] != want[2] {
		t.Errorf("events %q, want %q", ev, want)
	}
}
