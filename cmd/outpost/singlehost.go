package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/outpostdata/outpost/controller/singlehost"
)

// singleHostFlags are the flags every single-host command shares.
type singleHostFlags struct {
	stateDir  string
	namespace string
}

func (f *singleHostFlags) register(cmd *cobra.Command) {
	cmd.PersistentFlags().StringVar(&f.stateDir, "state-dir", singlehost.DefaultStateDir, "state directory of the single-host controller")
	cmd.PersistentFlags().StringVarP(&f.namespace, "namespace", "n", "default", "namespace of the object")
}

func (f *singleHostFlags) open() (singlehost.StateDir, error) {
	return singlehost.OpenStateDir(f.stateDir)
}

func newUpCommand(f *singleHostFlags) *cobra.Command {
	var firstPort int
	var logLevel, metricsAddress string
	cmd := &cobra.Command{
		Use:   "up",
		Short: "Run the single-host data controller: controldb, the controller and the instances in the manifests directory",
		Long: `Runs Outpost on this host until interrupted. The first run creates the state
directory (--state-dir, default ./.outpost) with an example PostgresInstance in
its manifests directory. Add, edit or remove manifests there (or use
outpost apply / delete) and the controller follows within seconds.
Ctrl-C stops every instance cleanly; the next run brings them back with their
data.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sd, err := f.open()
			if err != nil {
				return err
			}
			log, err := newLogger(cmd, logLevel)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			if metricsAddress != "" {
				addr, err := singlehost.ServeMetrics(ctx, metricsAddress, log)
				if err != nil {
					return err
				}
				log.Info("serving metrics", "url", "http://"+addr.String()+"/metrics")
			}
			return singlehost.Up(ctx, singlehost.UpOptions{StateDir: sd, FirstPort: firstPort, Out: cmd.OutOrStdout(), Log: log, Version: Version()})
		},
	}
	cmd.Flags().IntVar(&firstPort, "first-port", 5432, "lowest TCP port given to an instance")
	cmd.Flags().StringVar(&logLevel, "log-level", "info", "log level: debug, info, warn or error")
	cmd.Flags().StringVar(&metricsAddress, "metrics-address", "", "serve Prometheus metrics at http://ADDRESS/metrics, for example 127.0.0.1:9187 (off when empty)")
	return cmd
}

func newApplyCommand(f *singleHostFlags) *cobra.Command {
	var file string
	cmd := &cobra.Command{
		Use:   "apply -f FILE",
		Short: "Validate manifests and write them into the manifests directory",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			sd, err := f.open()
			if err != nil {
				return err
			}
			var data []byte
			if file == "-" {
				data, err = io.ReadAll(cmd.InOrStdin())
			} else {
				data, err = os.ReadFile(file)
			}
			if err != nil {
				return err
			}
			return singlehost.Apply(cmd.Context(), sd, file, data, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&file, "filename", "f", "", "manifest file, or - for standard input")
	cmd.MarkFlagRequired("filename")
	return cmd
}

func newGetCommand(f *singleHostFlags) *cobra.Command {
	var output string
	cmd := &cobra.Command{
		Use:   "get [KIND]",
		Short: "List objects with their status (KIND defaults to instances; all lists every kind)",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := f.open()
			if err != nil {
				return err
			}
			name := "instances"
			if len(args) == 1 {
				name = args[0]
			}
			kind, err := singlehost.ResolveKind(name)
			if err != nil {
				return err
			}
			return singlehost.Get(cmd.Context(), sd, kind, output, cmd.OutOrStdout())
		},
	}
	cmd.Flags().StringVarP(&output, "output", "o", "table", "output format: table, json or yaml")
	return cmd
}

func newDescribeCommand(f *singleHostFlags) *cobra.Command {
	return refCommand(f, "describe", "Show an object's status, conditions, events and spec", singlehost.Describe)
}

func newDeleteCommand(f *singleHostFlags) *cobra.Command {
	return refCommand(f, "delete", "Remove an object's manifest; the controller stops what it runs", singlehost.Delete)
}

// refCommand is a command that takes one KIND/NAME, as kubectl's do.
func refCommand(f *singleHostFlags, verb, short string,
	run func(ctx context.Context, sd singlehost.StateDir, kind, namespace, name string, out io.Writer) error) *cobra.Command {
	return &cobra.Command{
		Use:   verb + " KIND/NAME",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := f.open()
			if err != nil {
				return err
			}
			kind, name, err := singlehost.ParseRef(args[0])
			if err != nil {
				return err
			}
			return run(cmd.Context(), sd, kind, f.namespace, name, cmd.OutOrStdout())
		},
	}
}

func newPsqlCommand(f *singleHostFlags) *cobra.Command {
	return &cobra.Command{
		Use:   "psql NAME",
		Short: "Open psql on an instance as its application role",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			sd, err := f.open()
			if err != nil {
				return err
			}
			path, argv, env, err := singlehost.PsqlCommand(sd, f.namespace, args[0])
			if err != nil {
				return err
			}
			return syscall.Exec(path, argv, append(os.Environ(), env...))
		},
	}
}
