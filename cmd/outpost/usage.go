package main

import (
	"crypto/ed25519"
	"fmt"
	"os"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpostdata/outpost/controller/kubesource"
	"github.com/outpostdata/outpost/controller/singlehost"
	"github.com/outpostdata/outpost/usageexport"
)

// usageSource says whose usage `outpost usage key|show|export` reads: the
// single host's (--state-dir) or a Kubernetes controller's (--source
// kubernetes: the signing key Secret in --controller-namespace, the
// DataController through --kubeconfig, the ledger in --controldb-url).
type usageSource struct {
	sh                                                        *singleHostFlags
	source, kubeconfig, namespace, controldb, controldbSecret string
}

func (u *usageSource) register(cmd *cobra.Command) {
	f := cmd.PersistentFlags()
	f.StringVar(&u.source, "source", "dir", "whose usage: dir (the single host of --state-dir) or kubernetes (the controller of --kubeconfig)")
	f.StringVar(&u.kubeconfig, "kubeconfig", "", "with --source kubernetes: kubeconfig file; empty means $KUBECONFIG or the in-cluster service account")
	f.StringVar(&u.namespace, "controller-namespace", kubesource.ControllerNamespace(), "with --source kubernetes: the controller's namespace, which holds the signing key Secret")
	f.StringVar(&u.controldb, "controldb-url", os.Getenv("OUTPOST_CONTROLDB_URL"), "with --source kubernetes: PostgreSQL URL of the controller's controldb (default $OUTPOST_CONTROLDB_URL)")
	f.StringVar(&u.controldbSecret, "controldb-secret", os.Getenv("OUTPOST_CONTROLDB_SECRET"), "with --source kubernetes and no --controldb-url: the Secret holding the chart's controldb URL, in --controller-namespace (default $OUTPOST_CONTROLDB_SECRET)")
}

// kube returns the Kubernetes access, or nil for the single host.
func (u *usageSource) kube() (*kubesource.UsageAccess, error) {
	switch u.source {
	case "dir", "":
		return nil, nil
	case "kubernetes":
		cfg, err := restConfig(u.kubeconfig)
		if err != nil {
			return nil, err
		}
		return &kubesource.UsageAccess{Config: cfg, Namespace: u.namespace, ControlDBURL: u.controldb, ControlDBSecret: u.controldbSecret}, nil
	default:
		return nil, fmt.Errorf("--source %q: use dir or kubernetes", u.source)
	}
}

func newUsageCommand(f *singleHostFlags) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "usage",
		Short: "Show usage; export, verify and upload signed usage files; print the site's signing key",
	}
	u := &usageSource{sh: f}
	u.register(cmd)
	cmd.AddCommand(newUsageKeyCommand(u), newUsageShowCommand(u), newUsageExportCommand(u), newUsageVerifyCommand(), newUsageUploadCommand(), newUsageRetryCommand(u))
	return cmd
}

func newUsageKeyCommand(u *usageSource) *cobra.Command {
	return &cobra.Command{
		Use:   "key",
		Short: "Print the site's public signing key, to register the site at a hub",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			var key usageexport.SigningKey
			k, err := u.kube()
			if err != nil {
				return err
			}
			if k != nil {
				key, err = k.Key(cmd.Context())
			} else {
				var sd singlehost.StateDir
				if sd, err = u.sh.open(); err == nil {
					key, err = usageexport.LoadKey(sd.UsageKey())
				}
			}
			if err != nil {
				return err
			}
			pub := key.Public()
			fmt.Fprintln(cmd.OutOrStdout(), usageexport.FormatPublicKey(pub))
			fmt.Fprintf(cmd.ErrOrStderr(), "fingerprint %s, site id %s\n", usageexport.Fingerprint(pub), usageexport.SiteID(pub))
			return nil
		},
	}
}

func newUsageRetryCommand(u *usageSource) *cobra.Command {
	return &cobra.Command{
		Use:   "retry",
		Short: "Send again the usage batches the hub refused, once the cause is fixed",
		Long: `A batch the hub refuses (for example a signature it does not accept after
the signing key was re-created) is set aside, and the DataController's
UsageStreaming condition names the hub's reason, while later batches keep
flowing. Once the cause is fixed, retry puts the set-aside records back in
the queue; the controller sends them on its next metering pass. If the hub
refuses them again they are set aside again, with the new reason.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := u.kube()
			if err != nil {
				return err
			}
			var n int64
			if k != nil {
				n, err = k.RetryRefused(cmd.Context())
			} else {
				var sd singlehost.StateDir
				if sd, err = u.sh.open(); err == nil {
					n, err = singlehost.RetryRefusedUsage(cmd.Context(), sd)
				}
			}
			if err != nil {
				return err
			}
			if n == 0 {
				fmt.Fprintln(cmd.OutOrStdout(), "No usage records are set aside; nothing to retry.")
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%d usage records the hub refused are queued again; the controller sends them on its next metering pass.\n", n)
			return nil
		},
	}
}

func newUsageShowCommand(u *usageSource) *cobra.Command {
	var month, output string
	cmd := &cobra.Command{
		Use:   "show [--month YYYY-MM] [-o table|json]",
		Short: "Print one month's usage per instance from the ledger (default: the current month)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output != "table" && output != "json" {
				return fmt.Errorf("-o %q: must be table or json", output)
			}
			if month == "" {
				month = time.Now().UTC().Format("2006-01")
			}
			k, err := u.kube()
			if err != nil {
				return err
			}
			var s *usageexport.MonthSummary
			var siteName string
			if k != nil {
				s, siteName, err = k.Show(cmd.Context(), month)
			} else {
				var sd singlehost.StateDir
				var site singlehost.UsageSite
				if sd, err = u.sh.open(); err == nil {
					s, site, err = singlehost.ShowUsage(cmd.Context(), sd, month)
					siteName = site.Name
				}
			}
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if output == "json" {
				return printJSON(out, s)
			}
			until := "no records yet"
			if s.RecordedUntil != nil {
				until = "recorded up to " + s.RecordedUntil.Format("2006-01-02 15:04 MST")
			}
			fmt.Fprintf(out, "Usage of site %s in %s (%s)\n\n", siteName, s.Month, until)
			tw := tabwriter.NewWriter(out, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "NAMESPACE\tNAME\tKIND\tDELETED\tVCORES\tRECORDS\tVCORE-HOURS")
			for _, i := range s.Instances {
				deleted := "-"
				if i.DeletedAt != nil {
					deleted = i.DeletedAt.Format("2006-01-02 15:04")
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", i.Namespace, i.Name, i.Kind, deleted,
					strconv.FormatFloat(float64(i.MilliVCores)/1000, 'f', -1, 64), i.Records, i.VCoreHours)
			}
			fmt.Fprintf(tw, "TOTAL\t\t\t\t\t%d\t%s\n", s.Total.Records, s.Total.VCoreHours)
			return tw.Flush()
		},
	}
	cmd.Flags().StringVar(&month, "month", "", "month to show, YYYY-MM (default: the current month, UTC)")
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table or json")
	return cmd
}

func newUsageExportCommand(u *usageSource) *cobra.Command {
	var month, output string
	var gzip bool
	cmd := &cobra.Command{
		Use:   "export --month YYYY-MM [-o FILE] [--gzip]",
		Short: "Write the signed usage file of one month (the current month is marked partial)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			k, err := u.kube()
			if err != nil {
				return err
			}
			var res *usageexport.ExportResult
			var siteName string
			if k != nil {
				res, siteName, err = k.Export(cmd.Context(), month, Version(), gzip)
			} else {
				var sd singlehost.StateDir
				var site singlehost.UsageSite
				if sd, err = u.sh.open(); err == nil {
					res, site, err = singlehost.ExportUsage(cmd.Context(), sd, month, Version(), gzip)
					siteName = site.Name
				}
			}
			if err != nil {
				return err
			}
			if output == "" {
				output = fmt.Sprintf("usage-%s-%s.outpost-usage", siteName, month)
				if gzip {
					output += ".gz"
				}
			}
			if output == "-" {
				_, err = cmd.OutOrStdout().Write(res.File)
			} else {
				err = os.WriteFile(output, res.File, 0o644)
			}
			if err != nil {
				return fmt.Errorf("-o %s: %w", output, err)
			}
			partial := ""
			if res.Period.Partial {
				partial = fmt.Sprintf(" (partial: up to %s)", res.Period.CoveredUntil.Format("2006-01-02 15:04 MST"))
			}
			fmt.Fprintf(cmd.ErrOrStderr(), "Exported %s%s to %s: %d instances, %d records, %s vCore-hours; payload sha256 %s\n",
				month, partial, output, res.Instances, res.Total.Records, res.Total.VCoreHours, res.PayloadSHA256)
			return nil
		},
	}
	cmd.Flags().StringVar(&month, "month", "", "month to export, YYYY-MM")
	cmd.Flags().StringVarP(&output, "output", "o", "", "file to write, - for standard output (default usage-SITE-MONTH.outpost-usage)")
	cmd.Flags().BoolVar(&gzip, "gzip", false, "compress the file with gzip")
	cmd.MarkFlagRequired("month")
	return cmd
}

func newUsageVerifyCommand() *cobra.Command {
	var publicKey string
	cmd := &cobra.Command{
		Use:   "verify FILE [--public-key KEY]",
		Short: "Check a usage file's signature, period, totals, duplicates and gaps",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			pub, err := parseKeyFlag(publicKey)
			if err != nil {
				return err
			}
			v, err := usageexport.Verify(data, usageexport.VerifyOptions{PublicKey: pub})
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			p := v.Payload
			period := ""
			if p.Period != nil {
				period = " for " + p.Period.Month
				if p.Period.Partial {
					period += " (partial, up to " + p.Period.CoveredUntil.Format("2006-01-02 15:04 MST") + ")"
				}
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK, site %s (%s)%s, signed by %s\n  %d instances, %d records, %s vCore-hours\n",
				args[0], p.Site.Name, p.Site.ID, period, v.Block.KeyFingerprint, len(p.Instances), p.Total.Records, p.Total.VCoreHours)
			if pub == nil {
				fmt.Fprintln(cmd.ErrOrStderr(), "note: checked against the key inside the file; pass --public-key to check who signed it")
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&publicKey, "public-key", "", "the site's public key (ed25519:...), as printed by `outpost usage key`")
	return cmd
}

func newUsageUploadCommand() *cobra.Command {
	var hubURL, token, publicKey, hubCA string
	var attempts int
	cmd := &cobra.Command{
		Use:   "upload FILE --hub URL [--hub-ca FILE]",
		Short: "Verify a usage file and send it to the hub, with retries; uploading again counts nothing twice",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			data, err := os.ReadFile(args[0])
			if err != nil {
				return err
			}
			if token == "" {
				token = os.Getenv("OUTPOST_HUB_TOKEN")
			}
			if token == "" {
				return fmt.Errorf("--token: not set (or set OUTPOST_HUB_TOKEN): the token `outpost hub site add` printed")
			}
			pub, err := parseKeyFlag(publicKey)
			if err != nil {
				return err
			}
			opts := usageexport.UploadOptions{HubURL: hubURL, Token: token, PublicKey: pub, Attempts: attempts}
			if hubCA != "" {
				pem, err := os.ReadFile(hubCA)
				if err != nil {
					return fmt.Errorf("--hub-ca: %w", err)
				}
				if opts.Client, err = usageexport.HubClient(pem, "--hub-ca "+hubCA); err != nil {
					return err
				}
			}
			if isTerminal(cmd.ErrOrStderr()) {
				opts.Progress = cmd.ErrOrStderr()
			}
			rc, err := usageexport.Upload(cmd.Context(), data, opts)
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			if rc.Duplicate {
				fmt.Fprintf(cmd.OutOrStdout(), "%s: the hub already had this file; nothing changed\n", args[0])
				return nil
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: uploaded to site %s, %d records (%d new)\n", args[0], rc.Site, rc.Records, rc.NewRecords)
			return nil
		},
	}
	cmd.Flags().StringVar(&hubURL, "hub", "", "hub URL, for example https://hub.example.com")
	cmd.Flags().StringVar(&token, "token", "", "the site's hub token (default $OUTPOST_HUB_TOKEN)")
	cmd.Flags().StringVar(&publicKey, "public-key", "", "require the file to be signed by this key")
	cmd.Flags().IntVar(&attempts, "attempts", 8, "how often to try before giving up")
	cmd.Flags().StringVar(&hubCA, "hub-ca", "", "trust only the CA certificates in this PEM file for the hub's certificate (a private CA)")
	cmd.MarkFlagRequired("hub")
	return cmd
}

func parseKeyFlag(s string) (ed25519.PublicKey, error) {
	if strings.TrimSpace(s) == "" {
		return nil, nil
	}
	pub, err := usageexport.ParsePublicKey(s)
	if err != nil {
		return nil, fmt.Errorf("--public-key: %w", err)
	}
	return pub, nil
}
