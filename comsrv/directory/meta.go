package directory

import (
	"encoding/json"

	"github.com/voltedge/voltedge/comsrv/config"
)

// PointMeta is what comsrv publishes of one template point in a channel's
// metadata hash (keys.ChannelMeta), as JSON under the point id.
type PointMeta struct {
	Name        string   `json:"name"`
	Type        string   `json:"type"`
	Unit        string   `json:"unit,omitempty"`
	Description string   `json:"description,omitempty"`
	Area        string   `json:"area"`     // holding, input, coil or discrete
	Writable    bool     `json:"writable"` // holding and coil points take controls
	Min         *float64 `json:"min,omitempty"`
	Max         *float64 `json:"max,omitempty"`
}

// metaFields is the metadata hash of template t as fields (point id, JSON,
// …); nil for no template.
func metaFields(t *config.Template) []string {
	if t == nil {
		return nil
	}
	f := make([]string, 0, 2*len(t.Points))
	for i := range t.Points {
		p := &t.Points[i]
		b, err := json.Marshal(PointMeta{
			Name: p.Name, Type: p.Type, Unit: p.Unit, Description: p.Description, Area: p.Area,
			Writable: p.Area == "holding" || p.Area == "coil", Min: p.Min, Max: p.Max,
		})
		if err != nil { // cannot happen: strings, bools and finite numbers
			continue
		}
		f = append(f, p.ID, string(b))
	}
	return f
}

// metaCache computes the metadata of each template once.
type metaCache map[*config.Template][]string

func (m metaCache) of(t *config.Template) []string {
	if t == nil {
		return nil
	}
	f, ok := m[t]
	if !ok {
		f = metaFields(t)
		m[t] = f
	}
	return f
}
