package main

import (
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

func newHubCommand() *cobra.Command {
	var dbURL, listen string
	var h hub.Hub
	var serve hub.ServeOptions
	cmd := &cobra.Command{
		Use:   "hub --db URL [--listen 127.0.0.1:8470] [--tls-cert FILE --tls-key FILE]",
		Short: "Run the hub that receives usage files and direct-mode batches from sites",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			log, err := newLogger(cmd, "info")
			if err != nil {
				return err
			}
			pool, err := hub.Open(ctx, dbURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			h.Pool, h.Log = pool, log
			return h.ListenAndServe(ctx, listen, serve, func(url string) {
				fmt.Fprintf(cmd.OutOrStdout(), "Outpost hub listening on %s\n", url)
			})
		},
	}
	cmd.PersistentFlags().StringVar(&dbURL, "db", os.Getenv("OUTPOST_HUB_DB"), "PostgreSQL URL of the hub's database (default $OUTPOST_HUB_DB)")
	f := cmd.Flags()
	f.StringVar(&listen, "listen", "127.0.0.1:8470", "address to serve on")
	f.StringVar(&serve.CertFile, "tls-cert", "", "serve HTTPS with this certificate (PEM, with its chain)")
	f.StringVar(&serve.KeyFile, "tls-key", "", "the key of --tls-cert (PEM)")
	f.StringVar(&serve.ClientCAFile, "tls-client-ca", "", "require client certificates signed by a CA in this PEM bundle (mutual TLS)")
	f.DurationVar(&serve.ReadHeaderTimeout, "read-header-timeout", 10*time.Second, "how long a client may take to send its request headers")
	f.DurationVar(&serve.ReadTimeout, "read-timeout", 10*time.Minute, "how long a client may take to send a whole request, body included")
	f.Int64Var(&h.MaxBody, "max-body", hub.DefaultMaxBody, "largest upload in bytes, compressed and once decompressed")
	f.IntVar(&h.PerSite, "per-site-uploads", hub.DefaultPerSite, "uploads one site may have in progress at once; more are answered 429")
	f.DurationVar(&h.Skew, "max-clock-skew", hub.DefaultSkew, "refuse records that end later than the hub's clock plus this")
	f.DurationVar(&h.Warning, "warning-after", usageexport.DefaultWarnAfter, "a site whose newest delivered usage is this old is shown as warning")
	f.DurationVar(&h.Overdue, "overdue-after", usageexport.DefaultOverdueAfter, "a site whose newest delivered usage is this old is shown as overdue")
	cmd.AddCommand(newHubSiteCommand(&dbURL), newHubTokenCommand(&dbURL))
	return cmd
}

// withHub opens the hub's database for one command and runs fn.
func withHub(cmd *cobra.Command, dbURL string, fn func(h *hub.Hub) error) error {
	pool, err := hub.Open(cmd.Context(), dbURL)
	if err != nil {
		return err
	}
	defer pool.Close()
	return fn(&hub.Hub{Pool: pool})
}

func newHubSiteCommand(dbURL *string) *cobra.Command {
	cmd := &cobra.Command{Use: "site", Short: "Register, list and manage the sites that report to this hub"}
	var publicKey string
	add := &cobra.Command{
		Use:   "add NAME --public-key KEY",
		Short: "Register a site with its public key (from `outpost usage key`) and print its token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, *dbURL, func(h *hub.Hub) error {
				token, err := h.AddSite(cmd.Context(), args[0], publicKey)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), token)
				fmt.Fprintf(cmd.ErrOrStderr(), "Registered site %s. Its token is shown once, above: give it to the site (OUTPOST_HUB_TOKEN, or the hub-token file for direct mode).\n", args[0])
				return nil
			})
		},
	}
	add.Flags().StringVar(&publicKey, "public-key", "", "the site's public key, ed25519:...")
	add.MarkFlagRequired("public-key")
	rotate := &cobra.Command{
		Use:   "rotate-token NAME",
		Short: "Give a site a new token and print it; the old token stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, *dbURL, func(h *hub.Hub) error {
				token, err := h.RotateToken(cmd.Context(), args[0])
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), token)
				fmt.Fprintf(cmd.ErrOrStderr(), "Site %s has a new token, shown once above; its old token no longer works.\n", args[0])
				return nil
			})
		},
	}
	var newKey string
	setKey := &cobra.Command{
		Use:   "set-key NAME --public-key KEY",
		Short: "Replace the public key a site's usage must be signed with (after its signing key was re-created)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, *dbURL, func(h *hub.Hub) error {
				if err := h.SetKey(cmd.Context(), args[0], newKey); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Site %s: usage must now be signed with %s\n", args[0], strings.TrimSpace(newKey))
				return nil
			})
		},
	}
	setKey.Flags().StringVar(&newKey, "public-key", "", "the site's new public key, ed25519:...")
	setKey.MarkFlagRequired("public-key")
	disable := &cobra.Command{
		Use:   "disable NAME",
		Short: "Refuse every upload from a site (403) until it is enabled; what it sent stays",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, *dbURL, func(h *hub.Hub) error {
				if err := h.Disable(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Site %s is disabled: its uploads are refused\n", args[0])
				return nil
			})
		},
	}
	enable := &cobra.Command{
		Use:   "enable NAME",
		Short: "Accept a disabled site's uploads again",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, *dbURL, func(h *hub.Hub) error {
				if err := h.Enable(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Site %s is enabled\n", args[0])
				return nil
			})
		},
	}
	list := &cobra.Command{
		Use:   "list",
		Short: "List sites with how fresh their usage is, whether they are overdue, and missing months",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withHub(cmd, *dbURL, func(h *hub.Hub) error {
				sites, err := h.Sites(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "SITE\tSITE ID\tLAST SEEN\tSTATUS\tGAPS\tVCORE-HOURS THIS MONTH")
				for _, s := range sites {
					last := "-"
					if s.LastSeen != nil {
						last = s.LastSeen.UTC().Format(time.RFC3339)
					}
					gaps := make([]string, len(s.Gaps))
					for i, g := range s.Gaps {
						gaps[i] = g.Month
					}
					if len(gaps) == 0 {
						gaps = []string{"-"}
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, s.SiteID, last, s.Status, strings.Join(gaps, ","), s.MonthVCoreHours)
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(add, list, rotate, setKey, disable, enable)
	return cmd
}

func newHubTokenCommand(dbURL *string) *cobra.Command {
	cmd := &cobra.Command{Use: "token", Short: "Create, list and revoke tokens that read the hub's usage, sites and web page"}
	var role, name string
	create := &cobra.Command{
		Use:   "create --role read|admin [--name WHO]",
		Short: "Create a read or admin token and print it (shown once)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withHub(cmd, *dbURL, func(h *hub.Hub) error {
				token, err := h.CreateToken(cmd.Context(), role, name)
				if err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), token)
				fmt.Fprintf(cmd.ErrOrStderr(), "Created a %s token, shown once above. Send it as \"Authorization: Bearer TOKEN\", or as the password when a browser asks.\n", role)
				return nil
			})
		},
	}
	create.Flags().StringVar(&role, "role", hub.RoleRead, "read (usage, sites, the web page) or admin")
	create.Flags().StringVar(&name, "name", "", "who or what the token is for, for your records")
	list := &cobra.Command{
		Use:   "list",
		Short: "List read and admin tokens (by id, never the token itself)",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return withHub(cmd, *dbURL, func(h *hub.Hub) error {
				tokens, err := h.Tokens(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
				fmt.Fprintln(tw, "ID\tROLE\tNAME\tCREATED")
				for _, t := range tokens {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", t.ID, t.Role, t.Name, t.CreatedAt.UTC().Format(time.RFC3339))
				}
				return tw.Flush()
			})
		},
	}
	revoke := &cobra.Command{
		Use:   "revoke ID",
		Short: "Revoke a read or admin token by the id `token list` shows; it stops working at once",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return withHub(cmd, *dbURL, func(h *hub.Hub) error {
				if err := h.RevokeToken(cmd.Context(), args[0]); err != nil {
					return err
				}
				fmt.Fprintf(cmd.OutOrStdout(), "Token %s revoked\n", args[0])
				return nil
			})
		},
	}
	cmd.AddCommand(create, list, revoke)
	return cmd
}
