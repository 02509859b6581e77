package dtu

import (
	"context"
	"time"
)

// registryInterval is how often the run-time device registry is read.
const registryInterval = 2 * time.Second

// runRegistry reads the device registry every registryInterval until ctx
// ends, and closes the links of devices removed from it or changed, each
// with its reason (directory.Closing).
func (s *Server) runRegistry(ctx context.Context) {
	t := time.NewTicker(registryInterval)
	defer t.Stop()
	for {
		closing, err := s.dir.ReadRegistry(ctx, s.client)
		switch {
		case err != nil && ctx.Err() == nil:
			s.log.Warn("device registry", "err", err)
		case len(closing) > 0:
			s.closeLinks(func(l *link) string {
				for _, c := range closing {
					if c.Channel == l.ch {
						return c.Reason
					}
				}
				return ""
			})
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}
