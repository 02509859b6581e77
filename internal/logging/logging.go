// Package logging sets up the slog logger every VoltEdge service uses.
package logging

import (
	"fmt"
	"io"
	"log/slog"
	"os"

	"github.com/voltedge/voltedge/internal/conf"
)

// New returns a text logger writing to file (standard error when empty) at
// level (debug, info, warn, error; empty means info). The returned closer closes the file.
func New(service, file, level string) (*slog.Logger, io.Closer, error) {
	if level == "" {
		level = "info"
	}
	lv, err := conf.ParseLogLevel(level)
	if err != nil {
		return nil, nil, err
	}
	var w io.Writer = os.Stderr
	var closer io.Closer = io.NopCloser(nil)
	if file != "" {
		f, err := os.OpenFile(file, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			return nil, nil, fmt.Errorf("open log file: %w", err)
		}
		w, closer = f, f
	}
	h := slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv})
	return slog.New(h).With("service", service), closer, nil
}
