package main

import (
	"context"
	"fmt"
	"strings"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/mappings"
)

func runMappings(ctx context.Context, a *app, args []string) error {
	return a.subcommand(ctx, "mappings", []command{
		{"load", "load point mappings and alarm limits from a TOML file", runMappingsLoad},
	}, args)
}

func runMappingsLoad(ctx context.Context, a *app, args []string) error {
	fs := a.flags("mappings load", "FILE.toml [-replace]",
		"Writes the forward and control mappings and the alarm limits of FILE.toml to Redis\n"+
			"("+keys.Mapping+", "+keys.MappingReverse+", "+keys.AlarmThreshold+", "+keys.AlarmLow+", "+keys.AlarmHysteresis+").\n"+
			"Without -replace, entries already in Redis that the file does not name are kept.")
	replace := fs.Bool("replace", false, "delete the five hashes first, in one transaction: Redis then holds exactly the file")
	pos, err := a.parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		return usageErr(fs, "want one FILE.toml, got %d arguments", len(pos))
	}
	set, err := mappings.Load(pos[0])
	if err != nil {
		return err
	}
	warnManyToOne(a, set.ManyToOne())
	c, err := a.client()
	if err != nil {
		return err
	}
	defer c.Close()
	ctx, cancel := a.oneShot(ctx)
	defer cancel()
	applied, err := set.Apply(ctx, c, *replace)
	if err != nil {
		return err
	}
	how := "merged into"
	if *replace {
		how = "replaced"
	}
	fmt.Fprintf(a.stdout, "%s: %s the hashes in Redis (fields written):\n", pos[0], how)
	for _, r := range []struct {
		key string
		n   int
	}{
		{keys.Mapping, applied.Forward},
		{keys.MappingReverse, applied.Reverse},
		{keys.AlarmThreshold, applied.Thresholds},
		{keys.AlarmLow, applied.Low},
		{keys.AlarmHysteresis, applied.Hysteresis},
		{keys.MappingUnit, applied.Units},
		{keys.MappingDescription, applied.Descriptions},
	} {
		fmt.Fprintf(a.stdout, "  %-19s %7d\n", r.key, r.n)
	}
	return nil
}

// maxSharedWarnings bounds the many-to-one warnings of one load.
const maxSharedWarnings = 20

// warnManyToOne warns, on stderr, about each model point that several
// channel points map to: it holds whichever of their samples is newest.
func warnManyToOne(a *app, shared []mappings.Shared) {
	for i, s := range shared {
		if i == maxSharedWarnings {
			fmt.Fprintf(a.stderr, "edgectl mappings load: warning: %d more model points are mapped from several channel points\n",
				len(shared)-i)
			return
		}
		fmt.Fprintf(a.stderr, "edgectl mappings load: warning: model point %s is mapped from %d channel points (%s): it takes the newest sample of them\n",
			s.Model, len(s.Channels), strings.Join(s.Channels, ", "))
	}
}
