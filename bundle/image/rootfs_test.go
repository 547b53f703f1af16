package image_test

import (
	"archive/tar"
	"bufio"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-containerregistry/pkg/v1/mutate"

	"github.com/outpostdata/outpost/bundle/image"
)

// dockerfileRun is what the instance Dockerfile's RUN lines do to the file
// system, read from the Dockerfile itself so that a change there must be
// matched in the base layer (scripts/install-deps.sh) and the other way
// round.
type dockerfileRun struct {
	made, owned999, removed []string
	// passwd is the postgres line its useradd writes.
	passwd string
}

var (
	mkdirArgs   = regexp.MustCompile(`mkdir -p ([^&;]+)`)
	chownArgs   = regexp.MustCompile(`chown -R 999:999 ([^&;]+)`)
	rmArgs      = regexp.MustCompile(`rm -rf ([^&;]+)`)
	useraddArgs = regexp.MustCompile(`useradd --system --uid (\d+) --gid (\d+) --home-dir (\S+) --shell (\S+) postgres`)
)

func readDockerfileRun(t *testing.T) dockerfileRun {
	t.Helper()
	var d dockerfileRun
	for _, run := range finalStage(t, "instance.Dockerfile").Values("RUN") {
		for _, m := range mkdirArgs.FindAllStringSubmatch(run, -1) {
			d.made = append(d.made, strings.Fields(m[1])...)
		}
		for _, m := range chownArgs.FindAllStringSubmatch(run, -1) {
			d.owned999 = append(d.owned999, strings.Fields(m[1])...)
		}
		for _, m := range rmArgs.FindAllStringSubmatch(run, -1) {
			d.removed = append(d.removed, strings.Fields(m[1])...)
		}
		if m := useraddArgs.FindStringSubmatch(run); m != nil {
			d.passwd = "postgres:x:" + m[1] + ":" + m[2] + "::" + m[3] + ":" + m[4]
		}
	}
	if len(d.made) == 0 || len(d.owned999) == 0 || len(d.removed) == 0 || d.passwd == "" {
		t.Fatalf("instance.Dockerfile's RUN lines no longer read as mkdir -p, chown -R 999:999, rm -rf and useradd: %+v", d)
	}
	return d
}

// TestInstanceImageHoldsWhatTheDockerfileMakes unpacks the instance image's
// file system, as a runtime would, and holds it to instance.Dockerfile:
// the directories it makes and gives to 999, what it removes (Debian's
// default cluster, apt's lists), the postgres account; and to what the
// pods run: outpost, PostgreSQL 15 and pgvector.
func TestInstanceImageHoldsWhatTheDockerfileMakes(t *testing.T) {
	built, _ := buildReal(t)
	files := rootfs(t, built.Instance)
	want := readDockerfileRun(t)

	st, err := os.Stat(outpostBin)
	if err != nil {
		t.Fatal(err)
	}
	if h, ok := files["usr/local/bin/outpost"]; !ok || h.Size != st.Size() || h.Mode&0o111 == 0 {
		t.Errorf("/usr/local/bin/outpost in the image: %+v, want the %d-byte executable", h, st.Size())
	}
	for _, f := range []string{
		"usr/lib/postgresql/15/bin/postgres",
		"usr/lib/postgresql/15/bin/initdb",
		"usr/lib/postgresql/15/bin/pg_ctl",
		"usr/lib/postgresql/15/lib/vector.so",
		"usr/share/postgresql/15/extension/vector.control",
		"etc/ssl/certs/ca-certificates.crt",
	} {
		if _, ok := files[f]; !ok {
			t.Errorf("/%s is not in the instance image", f)
		}
	}
	if !slices.Contains(want.made, image.DataDir) {
		t.Errorf("instance.Dockerfile does not make the data directory %s", image.DataDir)
	}
	for _, d := range want.made {
		if h := files[dirKey(files, d)]; h == nil {
			t.Errorf("instance.Dockerfile makes %s; the image has no such directory", d)
		}
	}
	for _, d := range want.owned999 {
		prefix := dirKey(files, d)
		n := 0
		for name, h := range files {
			if strings.HasPrefix(name, prefix) {
				n++
				if h.Uid != 999 || h.Gid != 999 {
					t.Errorf("instance.Dockerfile gives %s to 999:999; /%s in the image is %d:%d", d, name, h.Uid, h.Gid)
				}
			}
		}
		if n == 0 {
			t.Errorf("instance.Dockerfile gives %s to 999:999; the image has no such directory", d)
		}
	}
	for _, gone := range want.removed {
		if strings.HasPrefix(gone, "/tmp/outpost") || strings.HasPrefix(gone, "/etc/apt/sources.list.d/outpost") {
			continue // the Dockerfile's own build files; the base layer never has them
		}
		// "dir/*" empties dir; anything else goes with all below it.
		dir, contents := strings.CutSuffix(gone, "/*")
		p := strings.Trim(dir, "/")
		for name := range files {
			inside := strings.HasPrefix(name, p+"/") && name != p+"/"
			if inside || !contents && (name == p || name == p+"/") {
				t.Errorf("instance.Dockerfile removes %s; the image has /%s", gone, name)
				break
			}
		}
	}
	if line := passwdEntry(t, built.Instance, "etc/passwd", "postgres"); line != want.passwd {
		t.Errorf("postgres in the image's /etc/passwd is %q; instance.Dockerfile's useradd makes %q", line, want.passwd)
	}
	if line := passwdEntry(t, built.Instance, "etc/group", "postgres"); !strings.HasPrefix(line, "postgres:x:999:") {
		t.Errorf("postgres in /etc/group is %q, want gid 999", line)
	}
}

// dirKey is the key of directory p in rootfs's map, after following a
// symbolic link at its start (Debian makes /var/run a link to /run).
func dirKey(files map[string]*tar.Header, p string) string {
	return strings.Trim(resolve(files, p), "/") + "/"
}

// rootfs reads the image's flattened file system: every entry's header, by
// path without a leading slash, directories with a trailing one.
func rootfs(t *testing.T, a image.Archive) map[string]*tar.Header {
	t.Helper()
	rc := mutate.Extract(readImage(t, a))
	defer rc.Close()
	files := map[string]*tar.Header{}
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatalf("unpacking %s: %v", a.Ref, err)
		}
		n := strings.TrimPrefix(h.Name, "./")
		if h.Typeflag == tar.TypeDir && !strings.HasSuffix(n, "/") {
			n += "/"
		}
		files[n] = h
	}
}

// resolve follows a symbolic link at path's start (Debian makes
// /var/run a link to /run).
func resolve(files map[string]*tar.Header, p string) string {
	parts := strings.Split(strings.Trim(p, "/"), "/")
	for i := range parts {
		prefix := strings.Join(parts[:i+1], "/")
		if h, ok := files[prefix]; ok && h.Typeflag == tar.TypeSymlink {
			target := strings.Trim(h.Linkname, "/")
			if !strings.HasPrefix(h.Linkname, "/") {
				target = filepath.Join(filepath.Dir(prefix), h.Linkname)
			}
			return resolve(files, filepath.Join(append([]string{target}, parts[i+1:]...)...))
		}
	}
	return p
}

// passwdEntry returns the line for name in a passwd-style file in the image.
func passwdEntry(t *testing.T, a image.Archive, file, name string) string {
	t.Helper()
	rc := mutate.Extract(readImage(t, a))
	defer rc.Close()
	tr := tar.NewReader(rc)
	for {
		h, err := tr.Next()
		if err != nil {
			t.Fatalf("/%s not found in %s: %v", file, a.Ref, err)
		}
		if strings.TrimPrefix(h.Name, "./") != file {
			continue
		}
		sc := bufio.NewScanner(tr)
		for sc.Scan() {
			if strings.HasPrefix(sc.Text(), name+":") {
				return sc.Text()
			}
		}
		return ""
	}
}
