package rules

import (
	"context"
	"encoding/json"
	"fmt"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/alerting"
	"github.com/voltedge/voltedge/internal/keys"
)

// RunEntry is a run for a rule's run log.
type RunEntry struct {
	Rule string
	Run  alerting.Run
}

// AppendRuns pushes each run to its rule's run log (keys.AlarmRuleRuns),
// newest first, and trims every log to max entries (LPUSH + LTRIM, one
// round trip).
func AppendRuns(ctx context.Context, c rueidis.Client, runs []RunEntry, max int) error {
	if len(runs) == 0 {
		return nil
	}
	cmds := make(rueidis.Commands, 0, 2*len(runs))
	for _, r := range runs {
		b, err := json.Marshal(r.Run)
		if err != nil {
			return fmt.Errorf("run log of %s: %w", r.Rule, err)
		}
		key := keys.AlarmRuleRuns(r.Rule)
		cmds = append(cmds, c.B().Lpush().Key(key).Element(string(b)).Build(),
			c.B().Ltrim().Key(key).Start(0).Stop(int64(max-1)).Build())
	}
	for _, res := range c.DoMulti(ctx, cmds...) {
		if err := res.Error(); err != nil {
			return fmt.Errorf("run log: %w", err)
		}
	}
	return nil
}
