// Package directory is comsrv's channel directory: where a DTU's
// registration id is looked up, and the one writer of the channel set
// (keys.Channels) that the other services list and of each served
// channel's point metadata (keys.ChannelMeta, from its template).
//
// A channel comes from one of three places, looked up in this order:
//
//   - the configuration files (every channel kind; replaced as a whole by a reload),
//   - the run-time device registry (keys.DeviceRegistry: registration id →
//     template; DTUs added without a restart, served as channels whose id is
//     the registration id),
//   - provisioning: a listener with unknown_ids = "provision" serves an
//     unknown, valid id as a new channel.
package directory

import (
	"context"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"sync/atomic"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/comsrv/poll"
	"github.com/voltedge/voltedge/comsrv/sink"
	"github.com/voltedge/voltedge/internal/keys"
)

// MaxRegistry bounds the devices taken from the run-time registry.
const MaxRegistry = 100000

// Reasons a link is closed for, as its disconnect reason.
const (
	// ReasonReloaded: a reload changed or removed the channel (or the template of a registry device).
	ReasonReloaded = "channel changed by reload"
	// ReasonRemoved: the device was removed from the run-time registry.
	ReasonRemoved = "removed from the registry"
	// ReasonRegistryChanged: the device's registry entry names another template.
	ReasonRegistryChanged = "template changed in the registry"
)

// Closing is a channel whose link must close, and why (a Reason constant).
type Closing struct {
	Channel *config.Channel
	Reason  string
}

// Directory finds channels. It is safe for concurrent use.
type Directory struct {
	cfg       *config.Config                              // the settings comsrv started with
	templates atomic.Pointer[map[string]*config.Template] // the templates in use: a reload replaces them
	sink      *sink.Sink
	log       *slog.Logger

	cat atomic.Pointer[catalog]
	reg atomic.Pointer[catalog] // devices of the run-time registry; nil until first read

	mu          sync.Mutex
	provisioned map[string]*config.Channel
	provPlans   map[*config.Channel]*poll.Plan
}

// catalog is a set of DTU channels with their plans, swapped as a whole.
type catalog struct {
	byReg map[string]*config.Channel
	byID  map[string]*config.Channel
	plans map[*config.Channel]*poll.Plan
	ids   []string // every channel id of the set, DTU or not
	// tmpl is the template of every channel of the set, DTU or not, by id
	// (files only; nil for a channel without one).
	tmpl map[string]*config.Template
	// others are the ids of the channels that are not DTUs (Modbus TCP and serial).
	others map[string]bool
	// ignored are the registry entries skipped for an invalid id or an
	// unknown template, as "id=template", sorted.
	ignored []string
	// taken are the registry entries skipped because a configured channel has their id, sorted.
	taken []string
}

// New indexes the channels of cfg and adds their ids to the channel set.
// Plans are compiled once per channel setting.
func New(cfg *config.Config, sk *sink.Sink, log *slog.Logger) (*Directory, error) {
	d := &Directory{
		cfg:         cfg,
		sink:        sk,
		log:         log,
		provisioned: make(map[string]*config.Channel),
		provPlans:   make(map[*config.Channel]*poll.Plan),
	}
	d.templates.Store(&cfg.TemplateByID)
	d.publishTemplates()
	cat, err := newCatalog(cfg.ChannelList, nil)
	if err != nil {
		return nil, err
	}
	d.cat.Store(cat)
	sk.AddChannels(cat.ids...)
	meta := metaCache{}
	for _, ch := range cfg.ChannelList {
		sk.SetMeta(ch.ID, meta.of(ch.T))
	}
	return d, nil
}

// newCatalog indexes the DTU channels of list (those without a URL) and
// compiles their plans; an unchanged channel of old keeps its object, so
// that its link stays.
func newCatalog(list []*config.Channel, old *catalog) (*catalog, error) {
	c := &catalog{
		byReg: make(map[string]*config.Channel, len(list)),
		byID:  make(map[string]*config.Channel, len(list)),
		plans: make(map[*config.Channel]*poll.Plan, len(list)),
		ids:   make([]string, 0, len(list)),
		tmpl:  make(map[string]*config.Template, len(list)),
	}
	cache := poll.NewCache()
	for _, ch := range list {
		c.ids = append(c.ids, ch.ID)
		c.tmpl[ch.ID] = ch.T
		if ch.URL != "" {
			if c.others == nil {
				c.others = map[string]bool{}
			}
			c.others[ch.ID] = true
			continue
		}
		if old != nil {
			if prev := old.byID[ch.ID]; prev != nil && config.SameChannel(prev, ch) {
				c.add(prev, old.plans[prev])
				continue
			}
		}
		p, err := cache.For(ch)
		if err != nil {
			return nil, err
		}
		c.add(ch, p)
	}
	return c, nil
}

// configured reports whether id is the id or the registration of a channel of the catalog, DTU or not.
func (c *catalog) configured(id string) bool {
	return c.byID[id] != nil || c.byReg[id] != nil || c.others[id]
}

func (c *catalog) add(ch *config.Channel, p *poll.Plan) {
	c.byReg[ch.Registration] = ch
	c.byID[ch.ID] = ch
	if p != nil {
		c.plans[ch] = p
	}
}

// Find returns the channel a registration id belongs to and its plan (nil
// for a channel without a template), from the files or the registry; nil
// when neither lists it.
func (d *Directory) Find(reg string) (*config.Channel, *poll.Plan) {
	if ch, ok := d.cat.Load().byReg[reg]; ok {
		return ch, d.cat.Load().plans[ch]
	}
	if r := d.reg.Load(); r != nil {
		if ch, ok := r.byReg[reg]; ok {
			return ch, r.plans[ch]
		}
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ch, ok := d.provisioned[reg]; ok {
		return ch, d.provPlans[ch]
	}
	return nil, nil
}

// Provision serves an unknown registration id as a new channel of that id,
// polled with template (none when ""), and adds it to the channel set. It
// returns the channel found instead when id is known, and nil when id is not
// a valid channel id or the template is unknown.
func (d *Directory) Provision(id, template string) (*config.Channel, *poll.Plan) {
	if ch, p := d.Find(id); ch != nil {
		return ch, p
	}
	if !keys.ValidID(id) || d.cat.Load().configured(id) {
		return nil, nil // a configured channel is never served by another DTU
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if ch, ok := d.provisioned[id]; ok {
		return ch, d.provPlans[ch]
	}
	var t *config.Template
	if template != "" {
		if t = d.template(template); t == nil {
			return nil, nil
		}
	}
	ch := d.cfg.NewDTUChannel(id, t)
	if t != nil {
		p, err := poll.Compile(t)
		if err != nil {
			d.log.Error("provision: compile template", "template", t.Name, "err", err)
			return nil, nil
		}
		d.provPlans[ch] = p
	}
	d.provisioned[id] = ch
	d.sink.AddChannels(id)
	d.sink.SetMeta(id, metaFields(t))
	return ch, d.provPlans[ch]
}

// publishTemplates queues the ids of the templates in use as the template
// set (keys.Templates), which modsrv checks registry entries against.
func (d *Directory) publishTemplates() {
	m := *d.templates.Load()
	names := make([]string, 0, len(m))
	for id := range m {
		names = append(names, id)
	}
	slices.Sort(names)
	d.sink.SetTemplates(names)
}

// template is the template of that id in use, or nil.
func (d *Directory) template(id string) *config.Template { return (*d.templates.Load())[id] }

// Reload replaces the channels and templates of the files and updates the
// channel set. It returns how many DTU channels were added, changed and
// removed, and the ids of the DTU channels whose links must close (changed
// or removed: their DTUs reconnect and get the new definition). Nothing
// changes when a plan does not compile.
// Registry devices and provisioned channels use the new templates from
// their next connection (a registry device whose template changed is closed
// at the next registry read).
func (d *Directory) Reload(list []*config.Channel, templates map[string]*config.Template) (added, changed, removed int, closing []string, err error) {
	old := d.cat.Load()
	cat, err := newCatalog(list, old)
	if err != nil {
		return 0, 0, 0, nil, err
	}
	for id, ch := range old.byID {
		switch nc, ok := cat.byID[id]; {
		case !ok:
			removed++
			closing = append(closing, id)
		case nc != ch:
			changed++
			closing = append(closing, id)
		}
	}
	for id := range cat.byID {
		if _, ok := old.byID[id]; !ok {
			added++
		}
	}
	d.cat.Store(cat)
	d.templates.Store(&templates)
	d.publishTemplates()
	keep := make(map[string]bool, len(cat.ids))
	for _, id := range cat.ids {
		keep[id] = true
	}
	var gone []string
	for _, id := range old.ids {
		if !keep[id] {
			gone = append(gone, id)
		}
	}
	d.sink.AddChannels(cat.ids...)
	d.sink.RemoveChannels(gone...)
	meta := metaCache{}
	for _, ch := range list {
		if prev, ok := old.tmpl[ch.ID]; !ok || !config.SameTemplate(prev, ch.T) {
			d.sink.SetMeta(ch.ID, meta.of(ch.T))
		}
	}
	for _, id := range gone {
		d.sink.SetMeta(id, nil)
	}
	return added, changed, removed, closing, nil
}

// ReadRegistry applies the run-time registry's current content: new devices
// are found from now on and added to the channel set, removed ones leave it.
// It returns the channels of devices removed or changed, whose links must
// close, with the reason. Entries with an invalid id or an unknown template
// are skipped and logged by id (again when they change), and so are the ids of configured channels (DTU or Modbus, by id or
// registration): an entry never replaces a channel of the files.
func (d *Directory) ReadRegistry(ctx context.Context, client rueidis.Client) ([]Closing, error) {
	m, err := client.Do(ctx, client.B().Hgetall().Key(keys.DeviceRegistry).Build()).AsStrMap()
	if err != nil {
		return nil, fmt.Errorf("read device registry %s: %w", keys.DeviceRegistry, err)
	}
	old := d.reg.Load()
	files := d.cat.Load()
	next := &catalog{byReg: map[string]*config.Channel{}, byID: map[string]*config.Channel{}, plans: map[*config.Channel]*poll.Plan{}}
	cache := poll.NewCache()
	var added, taken, invalid, unknown []string
	for id, tpl := range m {
		if len(next.byReg) >= MaxRegistry {
			break
		}
		if files.configured(id) {
			taken = append(taken, id) // configured in the files: they win
			continue
		}
		t := d.template(tpl)
		switch {
		case !keys.ValidID(id):
			invalid = append(invalid, id+"="+tpl)
			continue
		case t == nil:
			unknown = append(unknown, id+"="+tpl)
			continue
		}
		ch := d.cfg.NewDTUChannel(id, t)
		if old != nil {
			if prev := old.byReg[id]; prev != nil && prev.T == ch.T {
				ch = prev
			}
		}
		if old == nil || old.byReg[id] != ch {
			added = append(added, id)
		}
		p, err := cache.For(ch)
		if err != nil {
			d.log.Warn("device registry: compile template", "device", id, "template", tpl, "err", err)
			continue
		}
		next.add(ch, p)
		next.ids = append(next.ids, id)
	}
	d.reg.Store(next)
	slices.Sort(taken)
	if len(taken) > 0 && (old == nil || !slices.Equal(taken, old.taken)) {
		d.log.Warn("device registry: entries ignored (ids of configured channels)", "count", len(taken), "ids", taken[:min(len(taken), 10)])
	}
	next.taken = taken
	slices.Sort(invalid)
	slices.Sort(unknown)
	next.ignored = append(slices.Clip(invalid), unknown...)
	if len(next.ignored) > 0 && (old == nil || !slices.Equal(next.ignored, old.ignored)) {
		if len(invalid) > 0 {
			d.log.Warn("device registry: entries ignored (invalid id)", "count", len(invalid), "entries", invalid[:min(len(invalid), 10)])
		}
		if len(unknown) > 0 {
			d.log.Warn("device registry: entries ignored (unknown template)", "count", len(unknown), "entries", unknown[:min(len(unknown), 10)])
		}
	}
	if len(added) > 0 {
		d.sink.AddChannels(added...)
		meta := metaCache{}
		for _, id := range added {
			if ch := next.byReg[id]; ch != nil { // nil: its plan did not compile
				d.sink.SetMeta(id, meta.of(ch.T))
			}
		}
		d.log.Info("device registry: devices added", "count", len(added))
	}
	if old == nil {
		return nil, nil
	}
	var gone []string
	var closing []Closing
	for id, ch := range old.byReg {
		nc := next.byReg[id]
		switch {
		case nc == ch:
			continue
		case nc == nil:
			closing = append(closing, Closing{ch, ReasonRemoved})
			if files.byID[id] == nil {
				gone = append(gone, id)
			}
		case nc.T != nil && ch.T != nil && nc.T.Name != ch.T.Name:
			closing = append(closing, Closing{ch, ReasonRegistryChanged})
		default:
			closing = append(closing, Closing{ch, ReasonReloaded})
		}
	}
	d.sink.RemoveChannels(gone...)
	for _, id := range gone {
		if _, configured := files.tmpl[id]; !configured { // a channel of the files keeps its metadata
			d.sink.SetMeta(id, nil)
		}
	}
	return closing, nil
}

// Republish adds every channel id served (files, registry, provisioned)
// to the channel set again, and publishes the template set, for a Redis
// that restarted without them. The channels' point metadata is written
// again by the sink's Resync.
func (d *Directory) Republish() {
	ids := slices.Clone(d.cat.Load().ids)
	if r := d.reg.Load(); r != nil {
		ids = append(ids, r.ids...)
	}
	d.mu.Lock()
	for id := range d.provisioned {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	d.sink.AddChannels(ids...)
	d.publishTemplates()
}
