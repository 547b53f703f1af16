package main

import (
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/outpostdata/outpost/bundle"
	"github.com/outpostdata/outpost/bundle/image"
	"github.com/outpostdata/outpost/usageexport"
)

func newBundleCommand() *cobra.Command {
	cmd := &cobra.Command{
		Use:   "bundle",
		Short: "Create, verify and import an air-gap bundle: both images, the Helm chart and this binary, signed",
	}
	cmd.AddCommand(newBundleCreateCommand(), newBundleVerifyCommand(), newBundleImportCommand())
	return cmd
}

// defaultBundleKey is where `bundle create` keeps its signing key unless
// told otherwise.
func defaultBundleKey() string {
	dir, err := os.UserConfigDir()
	if err != nil {
		dir = filepath.Join(os.TempDir(), "outpost")
	}
	return filepath.Join(dir, "outpost", "bundle-signing-key.pem")
}

func newBundleCreateCommand() *cobra.Command {
	var output, baseLayer, keyPath, tag string
	cmd := &cobra.Command{
		Use:   "create -o FILE",
		Short: "Write a bundle: the controller and instance images, the chart with its CRDs, this outpost binary, signed checksums",
		Long: `Write an air-gap bundle. The images are built from the cached base layer
(scripts/install-deps.sh, step image-base) and this very outpost binary; the
chart is the one built into it. SHA256SUMS is signed with the ed25519 key in
--signing-key, which is created on first use; give its public key (printed)
to the site, for ` + "`outpost bundle verify --public-key`" + `.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if output == "" {
				return fmt.Errorf("-o/--output: say where to write the bundle, e.g. -o outpost-bundle.tar")
			}
			self, err := os.Executable()
			if err != nil {
				return fmt.Errorf("finding this outpost binary: %w", err)
			}
			if tag == "" {
				if tag, err = bundle.DefaultTag(Version(), self); err != nil {
					return err
				}
			}
			key, err := usageexport.LoadOrCreateKey(keyPath)
			if err != nil {
				return fmt.Errorf("--signing-key: %w", err)
			}
			err = bundle.Create(cmd.Context(), bundle.CreateOptions{
				Output: output, Outpost: self, Version: Version(), Tag: tag, BaseLayer: baseLayer, Key: key,
			})
			if err != nil {
				return err
			}
			st, err := os.Stat(output)
			if err != nil {
				return err
			}
			pub := usageexport.FormatPublicKey(key.Public())
			fmt.Fprintf(cmd.OutOrStdout(), "wrote %s (%d MB): images %s and %s tagged %s\nsigned by %s (key %s)\ncheck it at the site with: outpost bundle verify %s --public-key %s\n",
				output, st.Size()>>20, image.ControllerRepository, image.InstanceRepository, tag, pub, keyPath, filepath.Base(output), pub)
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVarP(&output, "output", "o", "", "the bundle file to write")
	f.StringVar(&baseLayer, "base-layer", image.DefaultBaseLayer(), "the images' base layer tar (scripts/install-deps.sh builds it)")
	f.StringVar(&keyPath, "signing-key", defaultBundleKey(), "ed25519 private key (PKCS#8 PEM) that signs the bundle; created if missing")
	f.StringVar(&tag, "tag", "", "the images' tag (default: this binary's version, or dev- and its sha256 for a development build)")
	return cmd
}

// publicKeyUsage is the --public-key flag's help.
const publicKeyUsage = "the signer's public key (ed25519:...), as `outpost bundle create` printed it"

// unpinnedKeyNote tells a user who gave no --public-key what was proven.
const unpinnedKeyNote = "note: checked against the key inside the bundle; pass --public-key to check who signed it"

func newBundleVerifyCommand() *cobra.Command {
	var publicKey string
	cmd := &cobra.Command{
		Use:   "verify FILE [--public-key KEY]",
		Short: "Check a bundle's signature and every file's checksum",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := parseKeyFlag(publicKey)
			if err != nil {
				return err
			}
			v, err := bundle.Verify(args[0], bundle.VerifyOptions{PublicKey: pub})
			if err != nil {
				return err
			}
			fmt.Fprintf(cmd.OutOrStdout(), "%s: OK, %d files, images tagged %s, signed by %s\n",
				args[0], len(v.Files), v.Info.Tag, usageexport.FormatPublicKey(v.SignedBy))
			if pub == nil {
				fmt.Fprintln(cmd.ErrOrStderr(), unpinnedKeyNote)
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&publicKey, "public-key", "", publicKeyUsage)
	return cmd
}

func newBundleImportCommand() *cobra.Command {
	var publicKey, dir, containerd string
	cmd := &cobra.Command{
		Use:   "import FILE",
		Short: "Verify a bundle, extract it, load its images into containerd or Docker, and print the helm install line",
		Long: `Verify a bundle while extracting it (next to it, or into --dir), then load both
images into containerd (ctr, namespace k8s.io) when ctr and its socket are
there, or else into Docker. Nothing is fetched from any network. Run it on
every node that may run Outpost's pods, then the printed helm command once.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			pub, err := parseKeyFlag(publicKey)
			if err != nil {
				return err
			}
			imp, err := bundle.Import(cmd.Context(), args[0], bundle.ImportOptions{
				VerifyOptions:     bundle.VerifyOptions{PublicKey: pub},
				Dir:               dir,
				ContainerdAddress: containerd,
				Log:               cmd.ErrOrStderr(),
			})
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			fmt.Fprintf(out, "verified %s (signed by %s) and extracted it to %s\n", args[0], usageexport.FormatPublicKey(imp.SignedBy), imp.Dir)
			fmt.Fprintf(out, "loaded %s:%s and %s:%s into %s\n", imp.Info.ControllerImage, imp.Info.Tag, imp.Info.InstanceImage, imp.Info.Tag, imp.Runtime)
			fmt.Fprintf(out, "install the chart with:\n  %s\n", imp.HelmInstall())
			if pub == nil {
				fmt.Fprintln(cmd.ErrOrStderr(), unpinnedKeyNote)
			}
			return nil
		},
	}
	f := cmd.Flags()
	f.StringVar(&publicKey, "public-key", "", publicKeyUsage)
	f.StringVar(&dir, "dir", "", "where to extract the bundle (default: its name without .tar, beside it)")
	f.StringVar(&containerd, "containerd-address", bundle.DefaultContainerdAddress, "containerd's socket")
	return cmd
}
