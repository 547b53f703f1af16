package backup

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path"
	"strings"
	"time"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// StoreConfig says how to reach an S3-compatible bucket. It is what an
// ObjectStore resolves to on one host, and what backup.json carries to
// wal-push and wal-fetch.
type StoreConfig struct {
	// Endpoint is an http or https URL.
	Endpoint string `json:"endpoint"`
	Bucket   string `json:"bucket"`
	Prefix   string `json:"prefix,omitempty"`
	Region   string `json:"region,omitempty"`
	// AccessKey and SecretKey sign requests.
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
	// CAFile is a PEM bundle trusted for an https endpoint, besides the
	// system roots.
	CAFile string `json:"caFile,omitempty"`
	// CreateBucket creates a missing bucket instead of failing.
	CreateBucket bool `json:"createBucket,omitempty"`
}

// Store is an opened bucket: every key it is given is under its prefix.
type Store struct {
	client *minio.Client
	bucket string
	prefix string
	desc   string
}

// ReadCredentialsFile reads "accessKeyID=..." and "secretAccessKey=..." lines,
// the single-host form of ObjectStore credentials.
func ReadCredentialsFile(file string) (accessKey, secretKey string, err error) {
	f, err := os.Open(file)
	if err != nil {
		return "", "", fmt.Errorf("object store credentials: %w", err)
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		k, v, ok := strings.Cut(strings.TrimSpace(sc.Text()), "=")
		if !ok {
			continue
		}
		switch strings.TrimSpace(k) {
		case "accessKeyID":
			accessKey = strings.TrimSpace(v)
		case "secretAccessKey":
			secretKey = strings.TrimSpace(v)
		}
	}
	if err := sc.Err(); err != nil {
		return "", "", fmt.Errorf("object store credentials %s: %w", file, err)
	}
	if accessKey == "" || secretKey == "" {
		return "", "", fmt.Errorf("object store credentials %s: need the lines accessKeyID=... and secretAccessKey=...", file)
	}
	return accessKey, secretKey, nil
}

// CredentialsFromEnvironment reads AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY.
func CredentialsFromEnvironment() (accessKey, secretKey string, err error) {
	accessKey, secretKey = os.Getenv("AWS_ACCESS_KEY_ID"), os.Getenv("AWS_SECRET_ACCESS_KEY")
	if accessKey == "" || secretKey == "" {
		return "", "", errors.New("object store credentials: fromEnvironment is set but AWS_ACCESS_KEY_ID or AWS_SECRET_ACCESS_KEY is empty")
	}
	return accessKey, secretKey, nil
}

// Open connects to the bucket and checks that it exists, creating it when
// the config asks for that. A missing bucket or an unreachable endpoint is
// an error that says which.
func Open(ctx context.Context, cfg StoreConfig) (*Store, error) {
	u, err := url.Parse(cfg.Endpoint)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("object store endpoint %q: must be an http or https URL", cfg.Endpoint)
	}
	region := cfg.Region
	if region == "" {
		region = "us-east-1"
	}
	opts := &minio.Options{
		Creds:  credentials.NewStaticV4(cfg.AccessKey, cfg.SecretKey, ""),
		Secure: u.Scheme == "https",
		Region: region,
		// Lets wal-push have the server check a SHA-256 of what it got.
		TrailingHeaders: true,
	}
	tr, err := minio.DefaultTransport(opts.Secure)
	if err != nil {
		return nil, err
	}
	// A backup keeps many uploads in flight; without enough idle
	// connections each would pay a new TCP (and TLS) handshake.
	tr.MaxIdleConnsPerHost = 64
	if cfg.CAFile != "" {
		pem, err := os.ReadFile(cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("object store CA bundle: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil || pool == nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("object store CA bundle %s: no PEM certificate in it", cfg.CAFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	opts.Transport = tr
	client, err := minio.New(u.Host, opts)
	if err != nil {
		return nil, fmt.Errorf("object store %s: %w", cfg.Endpoint, err)
	}
	s := &Store{client: client, bucket: cfg.Bucket, prefix: strings.Trim(cfg.Prefix, "/"), desc: cfg.Endpoint + "/" + cfg.Bucket}
	checkCtx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	ok, err := client.BucketExists(checkCtx, cfg.Bucket)
	if err != nil {
		if hint := tlsHint(err, cfg.CAFile); hint != "" {
			return nil, fmt.Errorf("object store %s: %s: %w", s.desc, hint, err)
		}
		return nil, fmt.Errorf("object store %s is unreachable or refused us: %w", s.desc, err)
	}
	if !ok {
		if !cfg.CreateBucket {
			return nil, fmt.Errorf("object store %s: bucket %q %w: create it, or set createBucket: true on the ObjectStore", cfg.Endpoint, cfg.Bucket, ErrBucketMissing)
		}
		if err := client.MakeBucket(checkCtx, cfg.Bucket, minio.MakeBucketOptions{Region: region}); err != nil {
			return nil, fmt.Errorf("object store %s: create bucket %q: %w", cfg.Endpoint, cfg.Bucket, err)
		}
	}
	return s, nil
}

// ErrBucketMissing is returned by Open when the bucket does not exist and
// the configuration does not ask to create it: a fix on the store's side,
// not an outage.
var ErrBucketMissing = errors.New("does not exist")

// tlsHint explains a TLS verification failure, which otherwise reads like
// any other network error; empty for other errors.
func tlsHint(err error, caFile string) string {
	var unknown x509.UnknownAuthorityError
	var invalid x509.CertificateInvalidError
	var host x509.HostnameError
	var verify *tls.CertificateVerificationError
	switch {
	case errors.As(err, &unknown) || errors.As(err, &invalid) || errors.As(err, &host) || errors.As(err, &verify):
	default:
		return ""
	}
	if caFile == "" {
		return "its TLS certificate is not trusted: give the ObjectStore the CA bundle that signed it (spec.caSecret; on a single host the file secrets/NAMESPACE/NAME/ca.crt in the state directory)"
	}
	return "its TLS certificate is not signed by the CA bundle " + caFile
}

// String names the bucket for messages.
func (s *Store) String() string { return s.desc }

func (s *Store) key(rel string) string {
	if s.prefix == "" {
		return rel
	}
	return path.Join(s.prefix, rel)
}

// put stores data under rel and returns nothing until the object store
// acknowledged it. It is one PUT, never a multipart upload: an object is at
// most a few tens of MiB and is already in memory, so the parts' extra
// requests and the server's reassembly would buy nothing. The payload is not
// signed (the SHA-256 pass would cost a core-second per GB); the client
// sends a CRC32C trailer that the server checks instead.
func (s *Store) put(ctx context.Context, rel string, data []byte) error {
	_, err := s.client.PutObject(ctx, s.bucket, s.key(rel), bytes.NewReader(data), int64(len(data)),
		minio.PutObjectOptions{ContentType: "application/octet-stream", DisableContentSha256: true, DisableMultipart: true})
	if err != nil {
		return fmt.Errorf("upload %s to %s: %w", rel, s.desc, err)
	}
	return nil
}

// get reads a whole object. A missing object's error satisfies
// errors.Is(err, ErrNotFound).
func (s *Store) get(ctx context.Context, rel string) ([]byte, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, s.key(rel), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("download %s from %s: %w", rel, s.desc, err)
	}
	defer obj.Close()
	b, err := io.ReadAll(obj)
	if err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("download %s from %s: %w", rel, s.desc, ErrNotFound)
		}
		return nil, fmt.Errorf("download %s from %s: %w", rel, s.desc, err)
	}
	return b, nil
}

// getSized is get for an object whose size is known, read into one buffer
// of that size instead of a growing one: dst's, if it is large enough.
func (s *Store) getSized(ctx context.Context, rel string, size int64, dst []byte) ([]byte, error) {
	obj, err := s.client.GetObject(ctx, s.bucket, s.key(rel), minio.GetObjectOptions{})
	if err != nil {
		return nil, fmt.Errorf("download %s from %s: %w", rel, s.desc, err)
	}
	defer obj.Close()
	// bytes.Buffer keeps 512 bytes free for each read; with them it never
	// grows for an object of the expected size.
	if int64(cap(dst)) < size+bytes.MinRead {
		dst = make([]byte, 0, size+bytes.MinRead)
	}
	buf := bytes.NewBuffer(dst[:0])
	if _, err := buf.ReadFrom(obj); err != nil {
		if isNotFound(err) {
			return nil, fmt.Errorf("download %s from %s: %w", rel, s.desc, ErrNotFound)
		}
		return nil, fmt.Errorf("download %s from %s: %w", rel, s.desc, err)
	}
	return buf.Bytes(), nil
}

// ErrNotFound is a missing object.
var ErrNotFound = errors.New("no such object")

func isNotFound(err error) bool {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.Code == "NoSuchKey" || resp.StatusCode == http.StatusNotFound
	}
	return false
}

// isPreconditionFailed is the answer to a conditional write whose
// condition did not hold.
func isPreconditionFailed(err error) bool {
	var resp minio.ErrorResponse
	if errors.As(err, &resp) {
		return resp.Code == "PreconditionFailed" || resp.StatusCode == http.StatusPreconditionFailed
	}
	return false
}

// list returns the keys (relative to the prefix) under dir, with sizes.
func (s *Store) list(ctx context.Context, dir string, recursive bool) ([]objectInfo, error) {
	var out []objectInfo
	p := s.key(dir)
	if !strings.HasSuffix(p, "/") {
		p += "/"
	}
	for o := range s.client.ListObjects(ctx, s.bucket, minio.ListObjectsOptions{Prefix: p, Recursive: recursive}) {
		if o.Err != nil {
			return nil, fmt.Errorf("list %s in %s: %w", dir, s.desc, o.Err)
		}
		rel := o.Key
		if s.prefix != "" {
			rel = strings.TrimPrefix(rel, s.prefix+"/")
		}
		out = append(out, objectInfo{Key: rel, Size: o.Size, Modified: o.LastModified})
	}
	return out, nil
}

type objectInfo struct {
	Key      string
	Size     int64
	Modified time.Time
}

// remove deletes keys; deleting what is already gone is fine.
func (s *Store) remove(ctx context.Context, keys []string) error {
	ch := make(chan minio.ObjectInfo, len(keys))
	for _, k := range keys {
		ch <- minio.ObjectInfo{Key: s.key(k)}
	}
	close(ch)
	for e := range s.client.RemoveObjects(ctx, s.bucket, ch, minio.RemoveObjectsOptions{}) {
		if e.Err != nil {
			return fmt.Errorf("delete %s from %s: %w", strings.TrimPrefix(e.ObjectName, s.prefix+"/"), s.desc, e.Err)
		}
	}
	return nil
}
