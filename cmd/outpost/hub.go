package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/outpostdata/outpost/usageexport"
	"github.com/outpostdata/outpost/usageexport/hub"
)

func newHubCommand() *cobra.Command {
	var dbURL, listen string
	var warn, overdue time.Duration
	cmd := &cobra.Command{
		Use:   "hub --db URL [--listen 127.0.0.1:8470]",
		Short: "Run the hub that receives usage files and direct-mode batches from sites",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			pool, err := hub.Open(ctx, dbURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			log := slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil))
			h := &hub.Hub{Pool: pool, Warning: warn, Overdue: overdue, Log: log}
			l, err := net.Listen("tcp", listen)
			if err != nil {
				return fmt.Errorf("--listen %s: %w", listen, err)
			}
			srv := &http.Server{Handler: h.Handler(), ReadHeaderTimeout: 30 * time.Second}
			fmt.Fprintf(cmd.OutOrStdout(), "Outpost hub listening on http://%s\n", l.Addr())
			go func() {
				<-ctx.Done()
				shutdown, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				srv.Shutdown(shutdown)
			}()
			if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
				return err
			}
			return nil
		},
	}
	cmd.PersistentFlags().StringVar(&dbURL, "db", os.Getenv("OUTPOST_HUB_DB"), "PostgreSQL URL of the hub's database (default $OUTPOST_HUB_DB)")
	cmd.Flags().StringVar(&listen, "listen", "127.0.0.1:8470", "address to serve on")
	cmd.Flags().DurationVar(&warn, "warning-after", usageexport.DefaultWarnAfter, "a site silent this long is shown as warning")
	cmd.Flags().DurationVar(&overdue, "overdue-after", usageexport.DefaultOverdueAfter, "a site silent this long is shown as overdue")
	cmd.AddCommand(newHubSiteCommand(&dbURL))
	return cmd
}

func newHubSiteCommand(dbURL *string) *cobra.Command {
	cmd := &cobra.Command{Use: "site", Short: "Register and list the sites that report to this hub"}
	var publicKey string
	add := &cobra.Command{
		Use:   "add NAME --public-key KEY",
		Short: "Register a site with its public key (from `outpost usage key`) and print its token",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pool, err := hub.Open(cmd.Context(), *dbURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			token, err := (&hub.Hub{Pool: pool}).AddSite(cmd.Context(), args[0], publicKey)
			if err != nil {
				return err
			}
			fmt.Fprintln(cmd.OutOrStdout(), token)
			fmt.Fprintf(cmd.ErrOrStderr(), "Registered site %s. Its token is shown once, above: give it to the site (OUTPOST_HUB_TOKEN, or the hub-token file for direct mode).\n", args[0])
			return nil
		},
	}
	add.Flags().StringVar(&publicKey, "public-key", "", "the site's public key, ed25519:...")
	add.MarkFlagRequired("public-key")
	list := &cobra.Command{
		Use:   "list",
		Short: "List sites with when they were last seen and whether they are overdue",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			pool, err := hub.Open(cmd.Context(), *dbURL)
			if err != nil {
				return err
			}
			defer pool.Close()
			sites, err := (&hub.Hub{Pool: pool}).Sites(cmd.Context())
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(cmd.OutOrStdout(), 0, 4, 3, ' ', 0)
			fmt.Fprintln(tw, "SITE\tSITE ID\tLAST SEEN\tSTATUS\tVCORE-HOURS THIS MONTH")
			for _, s := range sites {
				last := "-"
				if s.LastSeen != nil {
					last = s.LastSeen.UTC().Format(time.RFC3339)
				}
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", s.Name, s.SiteID, last, s.Status, s.MonthVCoreHours)
			}
			return tw.Flush()
		},
	}
	cmd.AddCommand(add, list)
	return cmd
}
