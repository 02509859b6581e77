package ws

import (
	"context"

	"github.com/voltedge/voltedge/modsrv/links"
)

// maxMetaModels bounds the models whose point metadata one subscribed
// answer carries; a client subscribing to more gets the first ones'.
const maxMetaModels = 100

// PointMeta is what the subscribed answer tells of a model point: the unit
// (mapping:unit, else the channel point's) and the channel point's type.
type PointMeta struct {
	Unit string `json:"unit,omitempty"`
	Type string `json:"type,omitempty"`
}

// modelMeta returns the point metadata of models (model → point → meta),
// nil when the hub has no link index or it cannot be read. Models without
// mapped points are left out.
func (h *Hub) modelMeta(models []string) map[string]map[string]PointMeta {
	if h.opt.Links == nil || len(models) == 0 {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*callTimeout)
	defer cancel()
	snap, err := h.opt.Links.Snapshot(ctx)
	if snap == nil {
		h.log.Debug("ws: link index", "err", err)
		return nil
	}
	out := make(map[string]map[string]PointMeta)
	for _, m := range models[:min(len(models), maxMetaModels)] {
		pts := snap.Points[m]
		if len(pts) == 0 {
			continue
		}
		metas := make(map[string]map[string]links.Meta)
		pm := make(map[string]PointMeta, len(pts))
		for name, ref := range pts {
			cm, ok := metas[ref.Channel]
			if !ok {
				if cm, err = h.opt.Links.Meta(ctx, ref.Channel); err != nil {
					h.log.Debug("ws: point metadata", "channel", ref.Channel, "err", err)
				}
				metas[ref.Channel] = cm
			}
			md := cm[ref.Point]
			pm[name] = PointMeta{Unit: snap.Unit(m, name, md), Type: md.Type}
		}
		out[m] = pm
	}
	return out
}
