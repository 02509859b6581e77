package config

import (
	"cmp"
	"fmt"
	"slices"

	"github.com/voltedge/voltedge/internal/conf"
	"github.com/voltedge/voltedge/internal/keys"
)

// LoadChannels loads and validates the channel files cfg.Channels selects
// (relative to the directory of cfg.File), expanding ranges and resolving
// each channel's template from cfg.TemplateByID. It needs a Config that
// Load has checked (for the registration pattern) and returns the channels
// sorted by id (numeric ids first, in numeric order). Load calls it; a reload
// may call it again.
func LoadChannels(cfg *Config) ([]*Channel, error) {
	var errs conf.Errors
	files := resolveGlobs(cfg.pos, "channels", cfg.Dir(), cfg.Channels, &errs)
	cl := channelLoader{
		cfg:   cfg,
		errs:  &errs,
		byID:  make(map[string]int32),
		byReg: make(map[string]int32),
	}
	for _, f := range files {
		cl.file(f)
	}
	if errs.Len() > 0 {
		return nil, errs.Err()
	}
	slices.SortFunc(cl.list, func(a, b *Channel) int { return CompareIDs(a.ID, b.ID) })
	return cl.list, nil
}

// CompareIDs orders channel ids: all-digit ids first, by numeric value
// (then text), then the others by text.
func CompareIDs(a, b string) int {
	da, db := isDigits(a), isDigits(b)
	switch {
	case da && db:
		return cmp.Or(cmp.Compare(len(a), len(b)), cmp.Compare(a, b))
	case da:
		return -1
	case db:
		return 1
	}
	return cmp.Compare(a, b)
}

func isDigits(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

type channelLoader struct {
	cfg   *Config
	errs  *conf.Errors
	list  []*Channel
	byID  map[string]int32 // channel id → index into where
	byReg map[string]int32
	where []string // "file:line:col" of each channel or range
}

func (cl *channelLoader) file(f string) {
	var cf ChannelFile
	pos, err := conf.Decode(f, &cf)
	if err != nil {
		cl.errs.Add(err)
		return
	}
	for i := range cf.Channels {
		c := cf.Channels[i]
		k := fmt.Sprintf("channel[%d].", i)
		if !pos.Defined(k + "name") {
			c.Name = c.ID
		}
		ok := true
		switch {
		case !pos.Defined(k + "id"):
			cl.errs.Addf(pos, k+"id", "must be set")
			ok = false
		case !keys.ValidID(c.ID):
			cl.errs.Addf(pos, k+"id", "%q is not a valid channel id (no ':', spaces, '*', '?', '[' or ']'; 1..128 bytes)", c.ID)
			ok = false
		}
		if !cl.checkRegistration(pos, k+"registration", c.Registration) {
			ok = false
		}
		t := cl.template(pos, k+"template", c.Template)
		if !ok || t == nil {
			continue
		}
		c.T = t
		src := cl.source(pos.Where(k + "id"))
		if cl.add(pos, k, &c, src) {
			cl.list = append(cl.list, &c)
		}
	}
	for i := range cf.Ranges {
		cl.rangeEntries(pos, fmt.Sprintf("range[%d].", i), &cf.Ranges[i])
	}
}

func (cl *channelLoader) source(w string) int32 {
	cl.where = append(cl.where, w)
	return int32(len(cl.where) - 1)
}

// add records a channel's id and registration, refusing duplicates.
func (cl *channelLoader) add(pos *conf.Positions, k string, c *Channel, src int32) bool {
	if prev, dup := cl.byID[c.ID]; dup {
		cl.errs.Addf(pos, k+"id", "channel id %q is already defined at %s", c.ID, cl.where[prev])
		return false
	}
	if prev, dup := cl.byReg[c.Registration]; dup {
		cl.errs.Addf(pos, k+"registration", "registration %q is already used at %s", c.Registration, cl.where[prev])
		return false
	}
	if len(cl.list) >= MaxChannels {
		cl.errs.Addf(pos, k+"id", "more than %d channels", MaxChannels)
		return false
	}
	cl.byID[c.ID] = src
	cl.byReg[c.Registration] = src
	return true
}

func (cl *channelLoader) checkRegistration(pos *conf.Positions, key, reg string) bool {
	switch re := cl.cfg.DTU.Registration.Regexp; {
	case reg == "":
		cl.errs.Addf(pos, key, "must be set")
	case re != nil && !re.MatchString(reg):
		cl.errs.Addf(pos, key, "registration %q does not match dtu.registration.pattern %q", reg, cl.cfg.DTU.Registration.Pattern)
	default:
		return true
	}
	return false
}

func (cl *channelLoader) template(pos *conf.Positions, key, name string) *Template {
	if name == "" {
		cl.errs.Addf(pos, key, "must be set")
		return nil
	}
	t := cl.cfg.TemplateByID[name]
	if t == nil {
		cl.errs.Addf(pos, key, "template %q does not exist", name)
	}
	return t
}

// rangeEntries validates and expands one [[range]].
func (cl *channelLoader) rangeEntries(pos *conf.Positions, k string, r *ChannelRange) {
	before := cl.errs.Len()
	for _, f := range []string{"first", "last", "id", "registration"} {
		if !pos.Defined(k + f) {
			cl.errs.Addf(pos, k+f, "must be set")
		}
	}
	if cl.errs.Len() > before {
		return
	}
	if err := conf.CheckRange(r.First, r.Last); err != nil {
		cl.errs.Addf(pos, k+"last", "%v", err)
	}
	many := r.Last > r.First
	pattern := func(key, s string, required bool) conf.NumberPattern {
		p, err := conf.ParseNumberPattern(s)
		if err != nil {
			cl.errs.Addf(pos, k+key, "%v", err)
		} else if required && many && !p.HasN() {
			cl.errs.Addf(pos, k+key, "must contain {n} or {n:0W} to differ between the entries of the range")
		}
		return p
	}
	idP := pattern("id", r.ID, true)
	regP := pattern("registration", r.Registration, true)
	nameP := pattern("name", r.Name, false)
	t := cl.template(pos, k+"template", r.Template)
	if cl.errs.Len() > before {
		return
	}
	src := cl.source(pos.Where(k + "id"))
	hasName := pos.Defined(k + "name")
	for n := r.First; n <= r.Last; n++ {
		c := &Channel{ID: idP.Expand(n), Registration: regP.Expand(n), Template: r.Template, T: t}
		if hasName {
			c.Name = nameP.Expand(n)
		} else {
			c.Name = c.ID
		}
		if !keys.ValidID(c.ID) {
			cl.errs.Addf(pos, k+"id", "expands to %q for n=%d, which is not a valid channel id", c.ID, n)
			return
		}
		if !cl.checkRegistration(pos, k+"registration", c.Registration) {
			return
		}
		if !cl.add(pos, k, c, src) {
			return
		}
		cl.list = append(cl.list, c)
	}
}
