package metrics

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"time"
)

// Timeouts of Serve's HTTP server.
const (
	serveTimeout    = 10 * time.Second
	serveIdle       = time.Minute
	shutdownTimeout = 5 * time.Second
	maxHeaderBytes  = 8 << 10
)

// Serve serves r at /metrics on addr until ctx ends, for the services
// whose only HTTP endpoint it is. ready (if not nil) is called with the
// listening address. It returns nil after a clean shutdown.
func Serve(ctx context.Context, addr string, r *Registry, ready func(net.Addr)) error {
	mux := http.NewServeMux()
	mux.Handle("/metrics", r.Handler())
	return ServeHandler(ctx, addr, mux, ready)
}

// ServeHandler is Serve for a service with more endpoints than /metrics
// (netsrv's /health): it serves h on addr until ctx ends, with the same
// timeouts and header limit.
func ServeHandler(ctx context.Context, addr string, h http.Handler, ready func(net.Addr)) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics: listen %s: %w", addr, err)
	}
	if ready != nil {
		ready(ln.Addr())
	}
	srv := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: serveTimeout,
		ReadTimeout:       serveTimeout,
		WriteTimeout:      serveTimeout,
		IdleTimeout:       serveIdle,
		MaxHeaderBytes:    maxHeaderBytes,
	}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case err := <-errc:
		return fmt.Errorf("metrics: serve %s: %w", addr, err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), shutdownTimeout)
	defer cancel()
	if err := srv.Shutdown(sctx); err != nil {
		return fmt.Errorf("metrics: shutdown: %w", err)
	}
	if err := <-errc; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("metrics: serve %s: %w", addr, err)
	}
	return nil
}

// healthTimeout bounds the checks of one /health request.
const healthTimeout = 2 * time.Second

// HealthHandler serves a service's /health: check's answer as JSON, with
// status 200 when ok and 503 otherwise. check gets a context bounded to
// two seconds.
func HealthHandler(check func(ctx context.Context) (v any, ok bool)) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), healthTimeout)
		defer cancel()
		v, ok := check(ctx)
		w.Header().Set("Content-Type", "application/json")
		if !ok {
			w.WriteHeader(http.StatusServiceUnavailable)
		}
		_ = json.NewEncoder(w).Encode(v)
	})
}
