// Package config loads alarmsrv.toml: the common service settings, the
// site, the rules ([[rule]]), the webhook targets ([[target]], passed
// through as tables), the files it includes, the run log length, the
// per-rule state cap and the longest shelving.
//
// Loading is strict like every VoltEdge configuration: unknown keys, wrong
// types and invalid values are refused with file:line:column and key.
package config

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/conf"
)

// Defaults of alarmsrv.toml.
const (
	DefaultListen           = ":8003"
	DefaultMaxRuns          = 50
	DefaultMaxStatesPerRule = 10000
	DefaultShelveMax        = 7 * 24 * time.Hour
	DefaultReloadEvery      = 10 * time.Second
	DefaultTickEvery        = time.Second
	// MaxIncluded bounds the files that include patterns may select.
	MaxIncluded = 256
)

// Config is alarmsrv.toml.
type Config struct {
	conf.ServiceConfig

	// Site names this box in events (default: the host name).
	Site string `toml:"site"`
	// Consumer names alarmsrv in the consumer groups (default the site).
	Consumer string `toml:"consumer"`
	// Include are glob patterns of more rule files, relative to this
	// file's folder ("rules.d/*.toml"); they hold [[rule]] and [[target]]
	// only.
	Include []string `toml:"include"`
	// MaxRuns is the length of each rule's run log (default 50, 1..1000).
	MaxRuns int `toml:"max_runs"`
	// MaxStatesPerRule caps the states one rule keeps in memory (one per
	// model point, alarm or channel it follows; default 10000).
	MaxStatesPerRule int `toml:"max_states_per_rule"`
	// ShelveMax is the longest shelving honoured: a shelved alarm's until
	// is cut to its ts + ShelveMax (default 168h).
	ShelveMax conf.Duration `toml:"shelve_max"`
	// ReloadEvery is how often the rules are read again from Redis besides
	// the change announcements (default 10s).
	ReloadEvery conf.Duration `toml:"reload_every"`
	// TickEvery is how often on-delays, off-delays and re-notifications are
	// checked without a new event (default 1s).
	TickEvery conf.Duration `toml:"tick_every"`
	// Rules are the file's rules and the included files' (origin "file").
	Rules []alerting.Rule `toml:"rule"`
	// Targets are the webhook targets, passed through as written to the
	// webhook engine (its Target type validates them).
	Targets []map[string]any `toml:"target"`

	// File is the path the configuration was read from.
	File string `toml:"-"`
	// Included are the files the include patterns selected, sorted.
	Included []string `toml:"-"`
}

// ruleFile is an included file.
type ruleFile struct {
	Rules   []alerting.Rule  `toml:"rule"`
	Targets []map[string]any `toml:"target"`
}

// Load reads and validates alarmsrv.toml at path and the files it includes.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	return Parse(path, data)
}

// Parse is Load for a document in memory; file names it in errors and is
// the base of the include patterns.
func Parse(file string, data []byte) (*Config, error) {
	cfg := &Config{File: file}
	pos, err := conf.DecodeData(file, data, cfg)
	if err != nil {
		return nil, err
	}
	if err := cfg.check(pos); err != nil {
		return nil, err
	}
	return cfg, nil
}

func (c *Config) check(pos *conf.Positions) error {
	var errs conf.Errors
	errs.Add(c.ServiceConfig.Check(pos))
	if !pos.Defined("listen") {
		c.Listen = DefaultListen
	}
	if !pos.Defined("site") {
		c.Site = conf.HostSite()
	}
	if !conf.ValidSite(c.Site) {
		errs.Addf(pos, "site", "%q is not a site id (1..64 of A-Z a-z 0-9 _ . -)", c.Site)
	}
	if !pos.Defined("consumer") {
		c.Consumer = c.Site
	}
	if !conf.ValidSite(c.Consumer) {
		errs.Addf(pos, "consumer", "%q is not a consumer name (1..64 of A-Z a-z 0-9 _ . -)", c.Consumer)
	}
	conf.IntIn(pos, &errs, "max_runs", &c.MaxRuns, DefaultMaxRuns, 1, 1000)
	conf.IntIn(pos, &errs, "max_states_per_rule", &c.MaxStatesPerRule, DefaultMaxStatesPerRule, 10, 1000000)
	conf.DurationIn(pos, &errs, "shelve_max", &c.ShelveMax, DefaultShelveMax, time.Minute, 365*24*time.Hour)
	conf.DurationIn(pos, &errs, "reload_every", &c.ReloadEvery, DefaultReloadEvery, 100*time.Millisecond, time.Hour)
	conf.DurationIn(pos, &errs, "tick_every", &c.TickEvery, DefaultTickEvery, 10*time.Millisecond, time.Minute)

	seen := map[string]string{}
	c.checkRules(pos, c.File, &errs, seen)

	base := filepath.Dir(c.File)
	for i, pat := range c.Include {
		key := fmt.Sprintf("include[%d]", i)
		if !filepath.IsAbs(pat) {
			pat = filepath.Join(base, pat)
		}
		files, err := filepath.Glob(pat)
		if err != nil {
			errs.Addf(pos, key, "%v", err)
			continue
		}
		for _, f := range files {
			if !slices.Contains(c.Included, f) && f != c.File {
				c.Included = append(c.Included, f)
			}
		}
	}
	slices.Sort(c.Included)
	if len(c.Included) > MaxIncluded {
		errs.Addf(pos, "include", "selects %d files, more than %d", len(c.Included), MaxIncluded)
		c.Included = c.Included[:MaxIncluded]
	}
	for _, f := range c.Included {
		var rf ruleFile
		fpos, err := conf.Decode(f, &rf)
		if err != nil {
			errs.Add(err)
			continue
		}
		n := len(c.Rules)
		c.Rules = append(c.Rules, rf.Rules...)
		c.Targets = append(c.Targets, rf.Targets...)
		c.checkIncluded(fpos, f, n, &errs, seen)
	}
	return errs.Err()
}

// checkRules sets the defaults of the main file's rules and validates them.
func (c *Config) checkRules(pos *conf.Positions, file string, errs *conf.Errors, seen map[string]string) {
	for i := range c.Rules {
		c.checkRule(pos, i, i, file, errs, seen)
	}
}

// checkIncluded does checkRules for the rules of an included file, which
// start at c.Rules[first].
func (c *Config) checkIncluded(pos *conf.Positions, file string, first int, errs *conf.Errors, seen map[string]string) {
	for i := first; i < len(c.Rules); i++ {
		c.checkRule(pos, i, i-first, file, errs, seen)
	}
}

// checkRule checks c.Rules[i], written as rule[j] of file.
func (c *Config) checkRule(pos *conf.Positions, i, j int, file string, errs *conf.Errors, seen map[string]string) {
	r := &c.Rules[i]
	key := fmt.Sprintf("rule[%d]", j)
	if !pos.Defined(key + ".enabled") {
		r.Enabled = true
	}
	r.Origin = alerting.OriginFile
	if err := r.Validate(); err != nil {
		errs.Addf(pos, key, "%s", strings.ReplaceAll(err.Error(), "\n", "; "))
		return
	}
	if prev, dup := seen[r.ID]; dup {
		errs.Addf(pos, key+".id", "rule %q is also defined in %s", r.ID, prev)
		return
	}
	seen[r.ID] = file
}
