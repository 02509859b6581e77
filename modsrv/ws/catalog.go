package ws

import (
	"context"
	"strings"
	"sync"
	"time"

	"github.com/voltedge/voltedge/internal/keys"
)

// Bounds of the catalog.
const (
	// DefaultCatalogInterval is how often the known models and channels are
	// read again.
	DefaultCatalogInterval = 30 * time.Second
	// maxKnown bounds the models, and separately the channels, the catalog
	// holds.
	maxKnown = 100000
	// catalogScanCount is the COUNT of one SCAN of the model hashes.
	catalogScanCount = 1000
)

// catalog holds the ids of the models and channels that exist: the model
// value hashes (modsrv:{model}, plus every model an update:{model} message
// named since) and the channels comsrv serves (comsrv:channels). Only these
// can be subscribed to, so an id that names nothing costs nothing. The
// stored strings are the ones subscriptions use as keys, so that a client's
// copy of an id is not kept.
type catalog struct {
	mu       sync.RWMutex
	models   map[string]string
	channels map[string]string
	loaded   bool
}

// model returns the catalog's copy of the model id and whether it is known.
func (k *catalog) model(id string) (string, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	s, ok := k.models[id]
	return s, ok
}

// channel returns the catalog's copy of the channel id and whether it is known.
func (k *catalog) channel(id string) (string, bool) {
	k.mu.RLock()
	defer k.mu.RUnlock()
	s, ok := k.channels[id]
	return s, ok
}

// isLoaded reports whether the catalog was read from Redis once.
func (k *catalog) isLoaded() bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.loaded
}

// learnModel adds a model named by an update message.
func (k *catalog) learnModel(id string) {
	if _, ok := k.model(id); ok || !keys.ValidID(id) {
		return
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.models == nil {
		k.models = make(map[string]string)
	}
	if len(k.models) < maxKnown {
		id = strings.Clone(id)
		k.models[id] = id
	}
}

// replace installs the ids read from Redis.
func (k *catalog) replace(models, channels map[string]string) {
	k.mu.Lock()
	defer k.mu.Unlock()
	k.models, k.channels, k.loaded = models, channels, true
}

// runCatalog reads the catalog now and every Options.CatalogInterval until
// ctx ends.
func (h *Hub) runCatalog(ctx context.Context) {
	t := time.NewTicker(h.opt.CatalogInterval)
	defer t.Stop()
	for {
		h.refreshCatalog(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// refreshCatalog reads the model hashes and the channel set once; on a
// Redis error the catalog is kept as it was.
func (h *Hub) refreshCatalog(ctx context.Context) {
	cctx, cancel := context.WithTimeout(ctx, 4*callTimeout)
	defer cancel()
	channels := make(map[string]string)
	ids, err := h.client.Do(cctx, h.client.B().Smembers().Key(keys.Channels).Build()).AsStrSlice()
	if err != nil {
		h.catalogError(ctx, err)
		return
	}
	for _, id := range ids {
		if len(channels) < maxKnown && keys.ValidID(id) {
			channels[id] = id
		}
	}
	models := make(map[string]string)
	prefix := keys.ModelValues("")
	var cursor uint64
	for {
		e, err := h.client.Do(cctx, h.client.B().Scan().Cursor(cursor).Match(keys.ModelValues("*")).
			Count(catalogScanCount).Type("hash").Build()).AsScanEntry()
		if err != nil {
			h.catalogError(ctx, err)
			return
		}
		for _, k := range e.Elements {
			// Model ids contain no separator: this skips the :t and :q hashes.
			if id, ok := strings.CutPrefix(k, prefix); ok && keys.ValidID(id) && len(models) < maxKnown {
				models[id] = id
			}
		}
		cursor = e.Cursor
		if cursor == 0 || len(models) >= maxKnown {
			break
		}
	}
	h.known.replace(models, channels)
}

func (h *Hub) catalogError(ctx context.Context, err error) {
	if ctx.Err() == nil {
		h.log.Warn("ws: reading the known models and channels", "err", err)
	}
}
