#!/usr/bin/env bash
# check-generated.sh fails when the generated files (deepcopy functions and
# CRDs) are not what `make generate` makes from the API types. It regenerates
# them in place, so after a failure the tree holds the fresh files to commit.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

generated=(controller/api/v1alpha1/zz_generated.deepcopy.go charts/outpost/crds)
fingerprint() { find "${generated[@]}" -type f -print0 2>/dev/null | sort -z | xargs -0 sha256sum; }

before=$(fingerprint)
make --no-print-directory -s generate
after=$(fingerprint)
if [ "$before" != "$after" ]; then
	echo "check-generated: generated files were stale; 'make generate' has rewritten them:" >&2
	diff <(echo "$before") <(echo "$after") >&2 || true
	echo "commit the regenerated files." >&2
	exit 1
fi
echo "check-generated: generated files are current"
