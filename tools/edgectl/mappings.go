package main

import (
	"context"
	"fmt"

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
	} {
		fmt.Fprintf(a.stdout, "  %-18s %7d\n", r.key, r.n)
	}
	return nil
}
