package conf

import (
	"fmt"
	"log/slog"
)

// DefaultRedisURL is the Redis every service uses unless told otherwise.
const DefaultRedisURL = "redis://127.0.0.1:6379"

// ServiceConfig holds the settings every VoltEdge service has. A service
// with more settings embeds it (untagged) so that its keys stay at the top
// level of the file:
//
//	type Config struct {
//		conf.ServiceConfig
//		History int `toml:"history"`
//	}
//
//	pos, err := conf.Decode(path, &cfg)
//	if err == nil {
//		err = cfg.ServiceConfig.Check(pos)
//	}
type ServiceConfig struct {
	// RedisURL is the Redis to use, default "redis://127.0.0.1:6379".
	RedisURL string `toml:"redis_url"`
	// LogFile is where logs go; empty means standard error.
	LogFile string `toml:"log_file"`
	// LogLevel is debug, info (default), warn or error.
	LogLevel string `toml:"log_level"`
	// Listen is the service's HTTP address, e.g. ":8002"; empty means the
	// service's own default.
	Listen string `toml:"listen"`
}

// LoadService reads a service file that has only the common settings.
func LoadService(path string) (*ServiceConfig, error) {
	var s ServiceConfig
	pos, err := Decode(path, &s)
	if err != nil {
		return nil, err
	}
	if err := s.Check(pos); err != nil {
		return nil, err
	}
	return &s, nil
}

// Check applies the defaults of the common settings and validates them;
// pos is the index Decode returned for the file.
func (s *ServiceConfig) Check(pos *Positions) error {
	if !pos.Defined("redis_url") {
		s.RedisURL = DefaultRedisURL
	}
	if !pos.Defined("log_level") {
		s.LogLevel = "info"
	}
	var errs Errors
	if s.RedisURL == "" {
		errs.Addf(pos, "redis_url", "must not be empty")
	}
	if _, err := ParseLogLevel(s.LogLevel); err != nil {
		errs.Addf(pos, "log_level", "%v", err)
	}
	return errs.Err()
}

// ParseLogLevel maps debug, info, warn and error to slog levels.
func ParseLogLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("unknown log level %q (want debug, info, warn or error)", s)
}
