// Package redisconn builds the rueidis client every VoltEdge service uses,
// with settings sized for a 1 GB edge box.
package redisconn

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/rueidis"
)

// Options tunes the client. Zero values give the lean defaults.
type Options struct {
	// Connections is the number of pipelined connections: 1 (default), 2, 4 or 8.
	Connections int
	// BufferBytes is the read and write buffer per connection (default 64 KiB).
	BufferBytes int
	// BlockingPool is the number of connections kept for blocking commands (default 2).
	BlockingPool int
	// ClientName is sent with CLIENT SETNAME so that CLIENT LIST shows who is who.
	ClientName string
}

// New connects to the Redis at url ("redis://host:port/db" or "host:port").
// Client-side caching is disabled: values change every second and the cache
// would cost memory for nothing.
func New(url string, o Options) (rueidis.Client, error) {
	opt, err := parseURL(url)
	if err != nil {
		return nil, err
	}
	opt.DisableCache = true
	// rueidis opens 2^PipelineMultiplex connections; a negative value means one.
	switch {
	case o.Connections >= 8:
		opt.PipelineMultiplex = 3
	case o.Connections >= 4:
		opt.PipelineMultiplex = 2
	case o.Connections >= 2:
		opt.PipelineMultiplex = 1
	default:
		opt.PipelineMultiplex = -1
	}
	buf := o.BufferBytes
	if buf <= 0 {
		buf = 64 << 10
	}
	opt.ReadBufferEachConn = buf
	opt.WriteBufferEachConn = buf
	opt.BlockingPoolSize = o.BlockingPool
	if opt.BlockingPoolSize <= 0 {
		opt.BlockingPoolSize = 2
	}
	opt.RingScaleEachConn = 10
	opt.ClientName = o.ClientName
	opt.ConnWriteTimeout = 10 * time.Second
	opt.Dialer.Timeout = 5 * time.Second
	c, err := rueidis.NewClient(opt)
	if err != nil {
		return nil, fmt.Errorf("connect to redis %s: %w", redact(url), err)
	}
	return c, nil
}

func parseURL(url string) (rueidis.ClientOption, error) {
	if url == "" {
		url = "redis://127.0.0.1:6379"
	}
	if !hasScheme(url) {
		return rueidis.ClientOption{InitAddress: []string{url}}, nil
	}
	opt, err := rueidis.ParseURL(url)
	if err != nil {
		return opt, fmt.Errorf("redis url %q: %w", redact(url), err)
	}
	return opt, nil
}

func hasScheme(u string) bool {
	for i := 0; i+2 < len(u); i++ {
		if u[i] == ':' && u[i+1] == '/' && u[i+2] == '/' {
			return true
		}
	}
	return false
}

// redact hides a password in a URL for logs.
func redact(u string) string {
	at := -1
	for i := 0; i < len(u); i++ {
		if u[i] == '@' {
			at = i
		}
	}
	if at < 0 {
		return u
	}
	s := 0
	for i := 0; i+2 < len(u); i++ {
		if u[i:i+3] == "://" {
			s = i + 3
			break
		}
	}
	return u[:s] + "***" + u[at:]
}

// RunID returns the run_id of the Redis server (INFO server): a random id
// that changes whenever redis-server restarts.
func RunID(ctx context.Context, c rueidis.Client) (string, error) {
	info, err := c.Do(ctx, c.B().Info().Section("server").Build()).ToString()
	if err != nil {
		return "", fmt.Errorf("redis INFO server: %w", err)
	}
	id, ok := ParseRunID(info)
	if !ok {
		return "", fmt.Errorf("redis INFO server: no run_id")
	}
	return id, nil
}

// ParseRunID finds the run_id in the text of INFO server.
func ParseRunID(info string) (string, bool) {
	for line := range strings.Lines(info) {
		if v, ok := strings.CutPrefix(line, "run_id:"); ok {
			return strings.TrimSpace(v), true
		}
	}
	return "", false
}
