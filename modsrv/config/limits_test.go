package config

import (
	"strings"
	"testing"
	"time"
)

func TestLimitDefaults(t *testing.T) {
	c, err := Parse("t.toml", []byte("ws_max_clients = 200\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.HTTPReadTimeout.Duration != 10*time.Second || c.HTTPIdleTimeout.Duration != 60*time.Second ||
		c.HTTPMaxConns != DefaultHTTPMaxConns || c.HTTPMaxConnsPerIP != DefaultHTTPMaxConnsPerIP ||
		c.WSMaxClients != 200 || c.WSReservedClients != 20 || c.WSMaxClientsPerIP != 50 ||
		c.WSMaxSubscriptions != DefaultWSMaxSubscriptions {
		t.Fatalf("defaults: %+v", c)
	}
	_, err = Parse("t.toml", []byte("ws_max_clients = 10\nws_reserved_clients = 11\nhttp_read_timeout = \"1ms\"\n"))
	if err == nil || !strings.Contains(err.Error(), "ws_reserved_clients") || !strings.Contains(err.Error(), "http_read_timeout") {
		t.Fatalf("out of range: %v", err)
	}
}
