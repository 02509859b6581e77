package dtu

import (
	"context"
	"slices"
	"time"
)

// registryInterval is how often the run-time device registry is read.
const registryInterval = 2 * time.Second

// runRegistry reads the device registry every registryInterval until ctx
// ends, and closes the links of devices removed from it or changed.
func (s *Server) runRegistry(ctx context.Context) {
	t := time.NewTicker(registryInterval)
	defer t.Stop()
	for {
		closing, err := s.dir.ReadRegistry(ctx, s.client)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("device registry", "err", err)
		case len(closing) > 0:
			s.closeLinks(func(l *link) bool { return slices.Contains(closing, l.ch) })
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
