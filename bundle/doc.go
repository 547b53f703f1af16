// Package bundle makes, checks and imports an air-gap bundle: one tar file
// that carries everything a site without network access needs to run
// Outpost on Kubernetes, and a signature over all of it.
//
// A bundle holds, as regular files:
//
//	bundle.json          what is inside: the image tag and references
//	chart/outpost/...    the Helm chart, CRDs included, as this binary embeds it
//	outpost              the outpost binary
//	images.tar           both images in one docker archive (package image)
//	SHA256SUMS           sha256 of every file above, as sha256sum writes it
//	SHA256SUMS.sig       an ed25519 signature of SHA256SUMS
//
// SHA256SUMS stays a plain sha256sum file, so `sha256sum -c` works on an
// extracted bundle; its signature is a detached one made with the usage
// export's key and signature code (usageexport.SignDetached).
//
// Files: create.go writes a bundle, verify.go reads and checks one (and
// extracts it while checking), load.go imports the images into containerd
// or Docker and says how to install the chart. Building the images is
// package image's; the CLI is cmd/outpost/bundle.go.
package bundle

// The files of a bundle.
const (
	InfoFile      = "bundle.json"
	ChartDir      = "chart/outpost"
	BinaryFile    = "outpost"
	ImagesFile    = "images.tar"
	SumsFile      = "SHA256SUMS"
	SignatureFile = "SHA256SUMS.sig"
)

// signaturePurpose keeps a bundle's signature from being valid for any
// other signed file.
const signaturePurpose = "bundle-sha256sums-v1"

// Info is bundle.json.
type Info struct {
	// Tag is the tag of both images.
	Tag string `json:"tag"`
	// ControllerImage and InstanceImage are the images' repositories.
	ControllerImage string `json:"controllerImage"`
	InstanceImage   string `json:"instanceImage"`
	// Version is the version of the outpost binary in the bundle.
	Version string `json:"version"`
}
