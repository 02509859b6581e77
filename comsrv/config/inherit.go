package config

import (
	"reflect"
	"slices"
	"strings"

	"github.com/voltedge/voltedge/internal/conf"
)

// keyer names the keys of one DTU listener in comsrv.toml: those of its own
// table ("dtu." or "listener[i]."), or [dtu]'s for the keys it inherits, so
// that errors point at the line that set the value.
type keyer struct {
	own       string
	inherited map[string]bool // relative keys taken from [dtu]
}

// of returns the full key of rel, e.g. "heartbeat.timeout".
func (k keyer) of(rel string) string {
	if k.inherited[rel] {
		return "dtu." + rel
	}
	return k.own + rel
}

// in returns a function naming the keys of the nested table rel.
func (k keyer) in(rel string) func(string) string {
	return func(s string) string { return k.of(rel + "." + s) }
}

// notInherited are the [dtu] keys each listener has for itself.
var notInherited = []string{"name", "listen"}

// Keys that are inherited together or not at all: a listener that sets one
// of them takes none of the others from [dtu] (they constrain each other).
var (
	registrationFraming = []string{"registration.mode", "registration.length", "registration.terminator",
		"registration.terminator_hex", "registration.max_length", "registration.encoding"}
	heartbeatBytes  = []string{"heartbeat.text", "heartbeat.hex"}
	heartbeatPeriod = []string{"heartbeat.timeout", "heartbeat.max_missed"}
)

// inherit copies into l (the raw, decoded [[listener]] at key prefix p)
// every key of raw (the [dtu] table as decoded, before its defaults) that
// l does not set, and returns the keyer that names l's keys.
//
// Every key is inherited except name and listen, with these limits: the
// registration framing and the heartbeat bytes belong to the transparent
// profile and are only inherited by transparent listeners; the heartbeat
// timeout and max_missed, whose defaults differ by profile, and [line] are
// only inherited by listeners of [dtu]'s profile.
func inherit(pos *conf.Positions, raw *DTU, l *DTU, p string) keyer {
	k := keyer{own: p, inherited: map[string]bool{}}
	parentProfile := ProfileTransparent
	if pos.Defined("dtu.profile") {
		parentProfile = raw.Profile
	}
	if !pos.Defined(p+"profile") && pos.Defined("dtu.profile") {
		l.Profile = raw.Profile
		k.inherited["profile"] = true
	}
	profile := ProfileTransparent
	if pos.Defined(p+"profile") || k.inherited["profile"] {
		profile = l.Profile
	}
	setsAny := func(group []string) bool {
		return slices.ContainsFunc(group, func(rel string) bool { return pos.Defined(p + rel) })
	}
	blocked := map[string]bool{}
	block := func(group []string, cond bool) {
		if cond {
			for _, rel := range group {
				blocked[rel] = true
			}
		}
	}
	block(notInherited, true)
	block(registrationFraming, profile != ProfileTransparent || setsAny(registrationFraming))
	block(heartbeatBytes, profile != ProfileTransparent || setsAny(heartbeatBytes))
	block(heartbeatPeriod, profile != parentProfile)
	dst, src := reflect.ValueOf(l).Elem(), reflect.ValueOf(raw).Elem()
	for _, rel := range tomlLeaves(dst.Type(), "") {
		if rel == "profile" || blocked[rel] || (strings.HasPrefix(rel, "line.") && profile != parentProfile) {
			continue
		}
		if pos.Defined(p+rel) || !pos.Defined("dtu."+rel) {
			continue
		}
		fieldAt(dst, rel).Set(fieldAt(src, rel))
		k.inherited[rel] = true
	}
	return k
}

// tomlLeaves lists the keys of the non-table fields of struct type t, nested
// tables included ("heartbeat.timeout"), with prefix before each.
func tomlLeaves(t reflect.Type, prefix string) []string {
	var out []string
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := tomlName(f)
		if name == "" {
			continue
		}
		if f.Type.Kind() == reflect.Struct && f.Type != reflect.TypeOf(conf.Duration{}) {
			out = append(out, tomlLeaves(f.Type, prefix+name+".")...)
			continue
		}
		out = append(out, prefix+name)
	}
	return out
}

// fieldAt returns the field of struct value v at the dotted toml key rel.
func fieldAt(v reflect.Value, rel string) reflect.Value {
	for _, part := range strings.Split(rel, ".") {
		t := v.Type()
		for i := 0; i < t.NumField(); i++ {
			if tomlName(t.Field(i)) == part {
				v = v.Field(i)
				break
			}
		}
	}
	return v
}

func tomlName(f reflect.StructField) string {
	name, _, _ := strings.Cut(f.Tag.Get("toml"), ",")
	if name == "-" || !f.IsExported() {
		return ""
	}
	return name
}
