package main

import (
	"context"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/rueidis"

	"github.com/voltedge/voltedge/internal/contract"
	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/internal/lualib"
)

// settle is how long the event and result streams are given after a
// condition held, so that late duplicates are counted too.
const settle = 2 * time.Second

// queueSpread is how long queueing the controls of the comsrv fault takes.
const queueSpread = 2 * time.Second

// redisRestart kills the redis-server and starts it again, empty, on the
// same port. Afterwards every channel must be online with values updating,
// the run-time configuration must be what it was, and model values must
// update again.
func (e *env) redisRestart(ctx context.Context) report {
	name, what := "fault 1 redis", "redis-server killed and started again empty on the same port"
	if r := e.baseline(ctx, name, what); r != nil {
		return *r
	}
	r := report{Name: name, What: what, Bound: e.o.timeout}
	want, err := e.snapshotConfig(ctx)
	if err != nil {
		r.Err = err
		return r
	}
	if err := e.redis.Kill(); err != nil {
		r.Err = err
		return r
	}
	if err := e.redis.Start(); err != nil {
		r.Err = err
		return r
	}
	if err := e.redis.WaitReady(ctx, 10*time.Second); err != nil {
		r.Err = err
		return r
	}
	up := time.Now()
	e.log.Info("redis-server restarted")
	checks := e.healthy(up)
	checks = append(checks[:2], check{"run-time config back", e.configLost(want)}, checks[2])
	r.Rows, r.Recovery, r.Recovered = e.watch(ctx, up, e.o.timeout, checks)
	r.Notes = append(r.Notes, fmt.Sprintf("config before the fault: %s", configSizes(want)))
	return r
}

// configSizes renders the sizes of the configuration keys.
func configSizes(cfg map[string]map[string]string) string {
	s := ""
	for i, k := range configKeys {
		if i > 0 {
			s += ", "
		}
		s += fmt.Sprintf("%s %d", k, len(cfg[k]))
	}
	return s
}

// linksDropped kills dtusim, which drops every link at once, and starts it
// again. While the DTUs are away every status hash must say offline with
// every point stale, and comsrv:events must hold exactly one offline event
// per link; after they are back every link must be online with values
// updating and points good again, with exactly one online event per link.
func (e *env) linksDropped(ctx context.Context) report {
	name, what := "fault 2 links", "dtusim killed (every link dropped at once), then started again"
	if r := e.baseline(ctx, name, what); r != nil {
		return *r
	}
	r := report{Name: name, What: what, Bound: e.o.timeout}
	from, err := contract.StreamEnd(ctx, e.client, keys.ConnectionEvents)
	if err != nil {
		r.Err = err
		return r
	}
	if err := e.sim.Kill(); err != nil {
		r.Err = err
		return r
	}
	down := time.Now()
	e.log.Info("dtusim killed")
	rows, took, ok := e.watch(ctx, down, e.o.timeout, []check{
		{"status offline after the drop", e.notOffline},
		{"points stale after the drop", e.notStale},
	})
	r.Rows = append(r.Rows, rows...)
	if ok {
		r.Notes = append(r.Notes, "every link offline with its points stale after "+seconds(took))
	}
	time.Sleep(settle)
	events, err := e.readStream(ctx, keys.ConnectionEvents, from, 1000*len(e.channels))
	if err != nil {
		r.Err = err
		return r
	}
	missing, dup := eventCount(events, contract.EventOffline, e.channels)
	r.Rows = append(r.Rows, eventRows("offline", missing, dup)...)

	from, err = contract.StreamEnd(ctx, e.client, keys.ConnectionEvents)
	if err != nil {
		r.Err = err
		return r
	}
	if err := e.sim.Start(); err != nil {
		r.Err = err
		return r
	}
	back := time.Now()
	e.log.Info("dtusim started again")
	checks := append(e.healthy(back)[:2], check{"points good again", e.notGood})
	rows, r.Recovery, r.Recovered = e.watch(ctx, back, e.o.timeout, checks)
	r.Recovered = r.Recovered && ok
	r.Rows = append(r.Rows, rows...)
	time.Sleep(settle)
	if events, err = e.readStream(ctx, keys.ConnectionEvents, from, 1000*len(e.channels)); err != nil {
		r.Err = err
		return r
	}
	missing, dup = eventCount(events, contract.EventOnline, e.channels)
	r.Rows = append(r.Rows, eventRows("online", missing, dup)...)
	// A link that went down again after it came back was not recovered.
	flapped := withEvent(events, contract.EventOffline, e.channels)
	r.Rows = append(r.Rows, row{Check: "offline again after coming back", Wrong: len(flapped), Detail: some(flapped), Static: true})
	r.Notes = append(r.Notes, "recovery is counted from the restart of dtusim")
	return r
}

// eventRows are the rows of missing and duplicated events of type typ.
func eventRows(typ string, missing, dup []string) []row {
	return []row{
		{Check: "one " + typ + " event per link: missing", Wrong: len(missing), Detail: some(missing), Static: true},
		{Check: "one " + typ + " event per link: duplicated", Wrong: len(dup), Detail: some(dup), Static: true},
	}
}

// comsrvKilled queues controls spread over the channels and kills comsrv
// (SIGKILL) once half of them are queued, then starts it again. Every
// command must get exactly one outcome, in cmd:results and in
// cmd:result:{id} alike, with a status a crash allows.
func (e *env) comsrvKilled(ctx context.Context) report {
	name := "fault 3 comsrv"
	what := fmt.Sprintf("comsrv killed (SIGKILL) while %d controls are queued and executed, then started again", e.o.commands)
	if r := e.baseline(ctx, name, what); r != nil {
		return *r
	}
	r := report{Name: name, What: what, Bound: e.o.timeout}
	from, err := contract.StreamEnd(ctx, e.client, keys.CommandResults)
	if err != nil {
		r.Err = err
		return r
	}
	sender := contract.NewSender(e.client, lualib.NewCaller(e.client, e.log), nil)
	ids := make([]string, e.o.commands)
	var queued atomic.Int64
	var refused []string
	var wg sync.WaitGroup
	results0, err := e.client.Do(ctx, e.client.B().Xlen().Key(keys.CommandResults).Build()).AsInt64()
	if err != nil {
		r.Err = fmt.Errorf("XLEN %s: %w", keys.CommandResults, err)
		return r
	}
	pace := queueSpread / time.Duration(e.o.commands)
	wg.Go(func() {
		next := time.Now()
		for k := range e.o.commands {
			if d := time.Until(next); d > 0 {
				time.Sleep(d)
			}
			next = next.Add(pace)
			ch := e.channels[k%e.o.n] // channels 1..n have the control mapping
			req := contract.Request{Model: e.model[ch], Control: controlName,
				Value: strconv.Itoa(100 + k%900), TTL: e.o.ttl}
			qctx, cancel := context.WithTimeout(ctx, 5*time.Second)
			id, err := sender.Queue(qctx, req)
			cancel()
			if err != nil {
				refused = append(refused, fmt.Sprintf("%s: %v", req.Model, err))
			}
			ids[k] = id
			queued.Add(1)
		}
	})
	// The kill comes once half the commands are queued and comsrv has
	// answered some: it is executing them, the last ones taken are in
	// flight (for at least the slaves' response delay), and the other half
	// is queued while comsrv is down or starting.
	for deadline := time.Now().Add(e.o.timeout); time.Now().Before(deadline) && ctx.Err() == nil; time.Sleep(5 * time.Millisecond) {
		if queued.Load() < int64(e.o.commands+1)/2 {
			continue
		}
		n, err := e.client.Do(ctx, e.client.B().Xlen().Key(keys.CommandResults).Build()).AsInt64()
		if err == nil && n > results0 {
			break
		}
	}
	if err := e.comsrv.Kill(); err != nil {
		r.Err = err
		wg.Wait()
		return r
	}
	atKill := queued.Load()
	if err := e.comsrv.Start(); err != nil {
		r.Err = err
		wg.Wait()
		return r
	}
	restart := time.Now()
	e.log.Info("comsrv killed and started again", "queued_at_kill", atKill)
	wg.Wait()
	var sent []string
	for _, id := range ids {
		if id != "" {
			sent = append(sent, id)
		}
	}
	before, _ := e.readResults(ctx, from, sent)
	r.Notes = append(r.Notes, fmt.Sprintf("at the kill %d of %d commands were queued; %d answered just after it",
		atKill, e.o.commands, before.answered(len(sent))))

	var tally commandTally
	answered := check{"commands answered", func(ctx context.Context) ([]string, string, error) {
		t, err := e.readResults(ctx, from, sent)
		if err != nil {
			return nil, "", err
		}
		tally = t
		return t.Unanswered, "", nil
	}}
	rows, took, ok := e.watch(ctx, restart, e.o.timeout, []check{answered, {"links back online", e.notReconnected(restart)}})
	time.Sleep(settle)
	if t, err := e.readResults(ctx, from, sent); err == nil {
		tally = t
	} else {
		r.Err = err
	}
	rows[0].Wrong, rows[0].Detail = len(tally.Unanswered), some(tally.Unanswered)
	r.Rows = append(rows,
		row{Check: "answered more than once", Wrong: len(tally.Duplicated), Detail: some(tally.Duplicated), Static: true},
		row{Check: "cmd:results and cmd:result:{id} disagree", Wrong: len(tally.Inconsistent), Detail: some(tally.Inconsistent), Static: true},
		row{Check: "status other than ok, expired, offline, unknown, failed", Wrong: len(tally.Unexpected), Detail: some(tally.Unexpected), Static: true},
		row{Check: "refused by send_control", Wrong: len(refused), Detail: some(refused), Static: true},
	)
	r.Unanswered = len(tally.Unanswered)
	r.Recovery, r.Recovered = took, ok && r.wrong() == 0 && r.Unanswered == 0
	r.Notes = append(r.Notes, "outcomes: "+tally.statusCounts(), "recovery is counted from the restart of comsrv")
	return r
}

// readResults reads the outcomes of ids: the cmd:results entries after
// from and the cmd:result:{id} hashes.
func (e *env) readResults(ctx context.Context, from string, ids []string) (commandTally, error) {
	want := make(map[string]bool, len(ids))
	for _, id := range ids {
		want[id] = true
	}
	entries, err := e.readStream(ctx, keys.CommandResults, from, 100*len(ids)+1000)
	if err != nil {
		return commandTally{}, err
	}
	byID := map[string][]string{}
	for _, x := range entries {
		if id := x[contract.ResultID]; want[id] {
			byID[id] = append(byID[id], x[contract.ResultStatus])
		}
	}
	c := e.client
	cmds := make(rueidis.Commands, len(ids))
	for i, id := range ids {
		cmds[i] = c.B().Hget().Key(keys.CommandResult(id)).Field(contract.ResultStatus).Build()
	}
	hashes := map[string]string{}
	for i, res := range c.DoMulti(ctx, cmds...) {
		v, err := res.ToString()
		if rueidis.IsRedisNil(err) {
			continue
		}
		if err != nil {
			return commandTally{}, fmt.Errorf("HGET %s: %w", keys.CommandResult(ids[i]), err)
		}
		hashes[ids[i]] = v
	}
	return tallyCommands(ids, byID, hashes), nil
}
