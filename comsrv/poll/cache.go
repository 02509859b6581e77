package poll

import (
	"fmt"

	"github.com/voltedge/voltedge/comsrv/config"
)

// Cache compiles each channel's plan once per template and
// one-request-per-point setting, so that thousands of channels of one
// template share one read-only plan. It is not safe for concurrent use.
type Cache struct {
	plans map[cacheKey]*Plan
}

type cacheKey struct {
	t           *config.Template
	onePerPoint bool
}

// NewCache returns an empty cache.
func NewCache() *Cache { return &Cache{plans: map[cacheKey]*Plan{}} }

// For returns the plan of ch (nil for a channel without a template): the
// template's, with the channel's one_request_per_point override applied.
func (c *Cache) For(ch *config.Channel) (*Plan, error) {
	if ch.T == nil {
		return nil, nil
	}
	k := cacheKey{ch.T, ch.T.Plan.OnePerPoint}
	if ch.OnePerPoint != nil {
		k.onePerPoint = *ch.OnePerPoint
	}
	if p := c.plans[k]; p != nil {
		return p, nil
	}
	p, err := CompileFor(ch.T, k.onePerPoint)
	if err != nil {
		return nil, fmt.Errorf("channel %s: compile template %s: %w", ch.ID, ch.T.Name, err)
	}
	c.plans[k] = p
	return p, nil
}
