package singlehost

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
)

// Get prints the objects of a kind ("" for all) as a table, or as a JSON or
// YAML list with their status, followed by any manifest errors.
func Get(ctx context.Context, sd StateDir, kind, format string, out io.Writer) error {
	v, err := loadView(ctx, sd)
	if err != nil {
		return err
	}
	var items []entry
	for _, e := range v.entries {
		if kind == "" || e.Kind == kind {
			items = append(items, e)
		}
	}
	switch format {
	case "", "table":
		printTable(out, items, kind == "")
	case "json", "yaml":
		return printList(out, items, format)
	default:
		return fmt.Errorf("unknown output format %q: use table, json or yaml", format)
	}
	if v.controllerDown != "" {
		fmt.Fprintf(out, "\nNote: %s.\n", v.controllerDown)
	}
	if len(v.manifestErrors) > 0 {
		fmt.Fprintln(out, "\nRejected manifests:")
		for _, e := range v.manifestErrors {
			fmt.Fprintf(out, "  %s\n", e)
		}
	}
	return nil
}

func printTable(out io.Writer, items []entry, withKind bool) {
	if len(items) == 0 {
		fmt.Fprintln(out, "No resources found.")
		return
	}
	tw := tabwriter.NewWriter(out, 0, 4, 3, ' ', 0)
	if withKind {
		fmt.Fprint(tw, "KIND\t")
	}
	fmt.Fprintln(tw, "NAMESPACE\tNAME\tPHASE\tENDPOINT\tCPU\tMEMORY\tARCHIVING\tVERIFIED\tAGE")
	for _, e := range items {
		if withKind {
			fmt.Fprintf(tw, "%s\t", e.Kind)
		}
		endpoint, _, _ := unstructured.NestedString(e.Object.Object, "status", "endpoint")
		cpu := str(e.Object.Object, "spec", "resources", "cpu")
		mem := str(e.Object.Object, "spec", "resources", "memory")
		// As kubectl get pgi's printer columns: the reasons of the
		// WALArchiving and BackupVerified conditions.
		archiving := conditionReason(e.Object.Object, outpostv1.ConditionWALArchiving)
		verified := conditionReason(e.Object.Object, outpostv1.ConditionBackupVerified)
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", e.Namespace, e.Name, e.Phase(), dash(endpoint), dash(cpu), dash(mem), dash(archiving), dash(verified), age(e.Object))
	}
	tw.Flush()
}

func printList(out io.Writer, items []entry, format string) error {
	list := map[string]any{"apiVersion": "v1", "kind": "List", "items": []any{}}
	objs := make([]any, len(items))
	for i, e := range items {
		objs[i] = e.Object.Object
	}
	list["items"] = objs
	var b []byte
	var err error
	if format == "json" {
		b, err = json.MarshalIndent(list, "", "  ")
		b = append(b, '\n')
	} else {
		b, err = yaml.Marshal(list)
	}
	if err != nil {
		return err
	}
	_, err = out.Write(b)
	return err
}

func age(u *unstructured.Unstructured) string {
	t := u.GetCreationTimestamp()
	if t.IsZero() {
		return "-"
	}
	return duration.HumanDuration(time.Since(t.Time))
}

// conditionReason is the reason of the condition typ in u's status, or "".
func conditionReason(u map[string]any, typ string) string {
	conds, _, _ := unstructured.NestedSlice(u, "status", "conditions")
	for _, c := range conds {
		if m, ok := c.(map[string]any); ok && m["type"] == typ {
			r, _ := m["reason"].(string)
			return r
		}
	}
	return ""
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
