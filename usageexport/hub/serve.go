package hub

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"time"
)

// ServeOptions configure the hub's HTTP server.
type ServeOptions struct {
	// CertFile and KeyFile are the hub's TLS certificate (with its chain)
	// and key, PEM. Both or neither: without them the hub serves plain
	// HTTP, for a loopback address or behind a TLS-terminating proxy.
	CertFile, KeyFile string
	// ClientCAFile, when set, turns on mutual TLS: every client must
	// present a certificate signed by a CA in this PEM bundle.
	ClientCAFile string
	// ReadHeaderTimeout and ReadTimeout bound how long a client may take
	// to send its headers and its whole request; zero means 10 seconds and
	// 10 minutes (the largest upload over a slow link).
	ReadHeaderTimeout, ReadTimeout time.Duration
}

// TLS says whether the options serve HTTPS.
func (o ServeOptions) TLS() bool { return o.CertFile != "" }

// NewServer returns the server for h's Handler with read timeouts and,
// when configured, TLS. Serve it with ListenAndServeTLS("", "") or
// ServeTLS(l, "", "") when o.TLS(), else Serve.
func (h *Hub) NewServer(o ServeOptions) (*http.Server, error) {
	srv := &http.Server{
		Handler:           h.Handler(),
		ReadHeaderTimeout: orDefault(o.ReadHeaderTimeout, 10*time.Second),
		ReadTimeout:       orDefault(o.ReadTimeout, 10*time.Minute),
		IdleTimeout:       2 * time.Minute,
	}
	if (o.CertFile == "") != (o.KeyFile == "") {
		return nil, errors.New("--tls-cert and --tls-key: give both, or neither")
	}
	if o.ClientCAFile != "" && !o.TLS() {
		return nil, errors.New("--tls-client-ca: mutual TLS needs --tls-cert and --tls-key")
	}
	if !o.TLS() {
		return srv, nil
	}
	cert, err := tls.LoadX509KeyPair(o.CertFile, o.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert %s, --tls-key %s: %w", o.CertFile, o.KeyFile, err)
	}
	srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	if o.ClientCAFile != "" {
		pem, err := os.ReadFile(o.ClientCAFile)
		if err != nil {
			return nil, fmt.Errorf("--tls-client-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--tls-client-ca %s: holds no PEM certificate", o.ClientCAFile)
		}
		srv.TLSConfig.ClientCAs, srv.TLSConfig.ClientAuth = pool, tls.RequireAndVerifyClientCert
	}
	return srv, nil
}

// shutdownGrace is how long requests in flight may finish once the hub
// is told to stop.
const shutdownGrace = 10 * time.Second

// ListenAndServe serves the hub on address listen until ctx ends, then
// shuts down, letting requests in flight finish within shutdownGrace.
// listening receives the hub's URL once it accepts connections. Plain HTTP
// on an address other than loopback is served, for a TLS-terminating
// proxy, but warned about: tokens and usage would cross the network in
// clear.
func (h *Hub) ListenAndServe(ctx context.Context, listen string, o ServeOptions, listening func(url string)) error {
	srv, err := h.NewServer(o)
	if err != nil {
		return err
	}
	l, err := net.Listen("tcp", listen)
	if err != nil {
		return fmt.Errorf("--listen %s: %w", listen, err)
	}
	scheme := "https"
	if !o.TLS() {
		scheme = "http"
		if ip, _, _ := net.SplitHostPort(l.Addr().String()); !net.ParseIP(ip).IsLoopback() {
			h.Log.Warn("serving plain HTTP on a network address: tokens and usage cross the network in clear; give --tls-cert and --tls-key", "listen", l.Addr().String())
		}
	}
	listening(scheme + "://" + l.Addr().String())
	go func() {
		<-ctx.Done()
		shutdown, cancel := context.WithTimeout(context.Background(), shutdownGrace)
		defer cancel()
		srv.Shutdown(shutdown)
	}()
	if o.TLS() {
		err = srv.ServeTLS(l, "", "")
	} else {
		err = srv.Serve(l)
	}
	if !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func orDefault(d, def time.Duration) time.Duration {
	if d > 0 {
		return d
	}
	return def
}
