package singlehost

import (
	"context"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured"
	"k8s.io/apimachinery/pkg/util/duration"
	"sigs.k8s.io/yaml"

	outpostv1 "github.com/outpostdata/outpost/controller/api/v1alpha1"
	"github.com/outpostdata/outpost/controller/controldb"
	"github.com/outpostdata/outpost/controller/localruntime"
)

// ParseRef splits "KIND/NAME" as kubectl does, resolving the kind.
func ParseRef(ref string) (kind, name string, err error) {
	k, n, ok := strings.Cut(ref, "/")
	if !ok || n == "" {
		return "", "", fmt.Errorf("%q: want KIND/NAME, for example pgi/example", ref)
	}
	kind, err = ResolveKind(k)
	if err != nil {
		return "", "", err
	}
	if kind == "" {
		return "", "", fmt.Errorf("%q: name one kind, not all", ref)
	}
	return kind, n, nil
}

// Describe prints one object: where it came from, its status and
// conditions, its recent events and its spec.
func Describe(ctx context.Context, sd StateDir, kind, namespace, name string, out io.Writer) error {
	v, err := loadView(ctx, sd)
	if err != nil {
		return err
	}
	e, ok := v.find(kind, namespace, name)
	if !ok {
		return fmt.Errorf("%s %s/%s not found in %s", kind, namespace, name, sd.Manifests())
	}
	u := e.Object.Object
	tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
	fmt.Fprintf(tw, "Kind:\t%s\n", kind)
	fmt.Fprintf(tw, "Name:\t%s\n", name)
	fmt.Fprintf(tw, "Namespace:\t%s\n", namespace)
	fmt.Fprintf(tw, "Manifest:\t%s\n", dash(e.File))
	fmt.Fprintf(tw, "Phase:\t%s\n", e.Phase())
	if e.Reconciled {
		fmt.Fprintf(tw, "UID:\t%s\n", e.Object.GetUID())
		fmt.Fprintf(tw, "Generation:\t%d (observed %s)\n", e.Object.GetGeneration(), str(u, "status", "observedGeneration"))
	}
	if ep := str(u, "status", "endpoint"); ep != "" {
		fmt.Fprintf(tw, "Endpoint:\t%s\n", ep)
	}
	if kind == outpostv1.KindPostgresInstance {
		if dir, err := sd.Instance(namespace, name); err != nil {
			fmt.Fprintf(tw, "Data:\t%v\n", err)
		} else {
			fmt.Fprintf(tw, "Credentials:\t%s\n", localruntime.CredentialsFile(dir))
			fmt.Fprintf(tw, "CA file:\t%s (connect with sslmode=verify-full sslrootcert=FILE)\n", localruntime.CAFile(sd.Root))
			fmt.Fprintf(tw, "Data:\t%s\n", dir)
		}
		if r := str(u, "status", "restarts"); r != "" {
			fmt.Fprintf(tw, "Restarts:\t%s\n", r)
		}
		if pv := str(u, "status", "pgvectorVersion"); pv != "" {
			fmt.Fprintf(tw, "pgvector:\t%s\n", pv)
		}
		if lv, ok, _ := unstructured.NestedMap(u, "status", "lastVerification"); ok {
			fmt.Fprintf(tw, "Last verification:\t%v of backup %v at %v (took %v, recovered to %v): %v\n",
				lv["result"], orDash(lv["backup"]), lv["time"], orDash(lv["duration"]), orDash(lv["recoveredTo"]), lv["message"])
		}
	}
	tw.Flush()

	conds, _, _ := unstructured.NestedSlice(u, "status", "conditions")
	if len(conds) > 0 {
		fmt.Fprintln(out, "\nConditions:")
		tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "  TYPE\tSTATUS\tREASON\tSINCE\tMESSAGE")
		for _, c := range conds {
			m, _ := c.(map[string]any)
			since := "-"
			if t, err := time.Parse(time.RFC3339, fmt.Sprint(m["lastTransitionTime"])); err == nil {
				since = duration.HumanDuration(time.Since(t))
			}
			fmt.Fprintf(tw, "  %v\t%v\t%v\t%s\t%v\n", m["type"], m["status"], m["reason"], since, m["message"])
		}
		tw.Flush()
	}

	if db, err := controldb.ConnectLocal(ctx, sd.ControlDB()); err == nil {
		defer db.Close()
		events, err := db.Events(ctx, kind, namespace, name)
		if err != nil {
			return err
		}
		if len(events) > 0 {
			fmt.Fprintln(out, "\nEvents:")
			tw = tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "  TYPE\tREASON\tAGE\tMESSAGE")
			for _, ev := range events {
				fmt.Fprintf(tw, "  %s\t%s\t%s\t%s\n", ev.Type, ev.Reason, duration.HumanDuration(time.Since(ev.At)), ev.Message)
			}
			tw.Flush()
		}
	} else {
		fmt.Fprintf(out, "\nNote: %s.\n", v.controllerDown)
	}

	spec, err := yaml.Marshal(u["spec"])
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "\nSpec:\n%s", indent(string(spec), "  "))
	return nil
}

func orDash(v any) any {
	if v == nil || v == "" {
		return "-"
	}
	return v
}

func str(u map[string]any, fields ...string) string {
	v, ok, _ := unstructured.NestedFieldNoCopy(u, fields...)
	if !ok {
		return ""
	}
	return fmt.Sprint(v)
}

func indent(s, prefix string) string {
	lines := strings.SplitAfter(s, "\n")
	for i, l := range lines {
		if l != "" {
			lines[i] = prefix + l
		}
	}
	return strings.Join(lines, "")
}
