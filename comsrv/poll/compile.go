package poll

import (
	"cmp"
	"fmt"
	"math"
	"slices"
	"strconv"

	"github.com/voltedge/voltedge/comsrv/config"
	"github.com/voltedge/voltedge/internal/point"
	"github.com/voltedge/voltedge/internal/rtu"
)

// Compile builds the plan for a validated template, with one request per
// point when the template's plan.one_request_per_point says so.
func Compile(t *config.Template) (*Plan, error) {
	return CompileFor(t, t.Plan.OnePerPoint)
}

// CompileFor is Compile with the one-request-per-point switch given
// explicitly (a channel's override of the template's
// plan.one_request_per_point).
//
// Explicit tasks keep their requests and decode every point they cover.
// Points that no explicit task covers are planned: grouped by slave and read
// function, sorted by address and coalesced into timer requests of
// plan.interval while the gap of unread registers (or bits) between
// neighbours is at most plan.max_gap and the request stays within
// plan.max_registers (or plan.max_bits). A point's registers are never split
// across requests. Planned requests are named
// "auto:s<slave>:fc<function>:<start>+<count>".
//
// With onePerPoint every point gets a request of its own: an explicit task
// becomes one request per point it covers, named "<task>:<point>" and keeping
// the task's trigger and interval, and planned points are not coalesced (their
// names end in ":<point>"). An explicit task that covers no point is kept as
// written.
func CompileFor(t *config.Template, onePerPoint bool) (*Plan, error) {
	targets, err := compileTargets(t)
	if err != nil {
		return nil, err
	}
	p := &Plan{
		Template:      t.Name,
		Tasks:         make([]Task, 0, len(t.Tasks)),
		targets:       targets,
		index:         make(map[string]int32, len(targets)),
		writeMultiple: t.Plan.WriteMultiple,
	}
	for i := range targets {
		if _, dup := p.index[targets[i].id]; dup {
			return nil, fmt.Errorf("template %s: point id %s is used twice", t.Name, targets[i].id)
		}
		p.index[targets[i].id] = int32(i)
	}
	covered := make([]bool, len(targets))
	for i := range t.Tasks {
		if err := p.addExplicit(&t.Tasks[i], covered, onePerPoint); err != nil {
			return nil, fmt.Errorf("template %s task %s: %w", t.Name, t.Tasks[i].Name, err)
		}
	}
	if err := p.addPlanned(&t.Plan, covered, onePerPoint); err != nil {
		return nil, fmt.Errorf("template %s: %w", t.Name, err)
	}
	p.summarize()
	return p, nil
}

// compileTargets builds the codec and location of every template point.
func compileTargets(t *config.Template) ([]target, error) {
	targets := make([]target, len(t.Points))
	for i := range t.Points {
		pt := &t.Points[i]
		codec, err := point.NewCodec(pt.Type, pt.Order, pt.Bit, pt.Scale, pt.Offset, pt.Decimals)
		if err != nil {
			return nil, fmt.Errorf("template %s point %s: %w", t.Name, pt.ID, err)
		}
		slave := pt.Slave
		if slave == 0 {
			slave = 1
		}
		targets[i] = target{id: pt.ID, slave: slave, fn: areaFunction(pt.Area), addr: pt.Address, codec: codec,
			min: math.Inf(-1), max: math.Inf(1)}
		if pt.Min != nil {
			targets[i].min = *pt.Min
		}
		if pt.Max != nil {
			targets[i].max = *pt.Max
		}
	}
	return targets, nil
}

// addExplicit adds the request(s) of one [[task]] and marks the points it covers.
func (p *Plan) addExplicit(ct *config.Task, covered []bool, onePerPoint bool) error {
	task := Task{Name: ct.Name, Interval: ct.Interval.Duration}
	switch ct.Trigger {
	case "", "timer":
		task.Trigger = Timer
	case "heartbeat":
		task.Trigger = Heartbeat
	case "connect":
		task.Trigger = Connect
	default:
		return fmt.Errorf("unknown trigger %q", ct.Trigger)
	}
	task.Req = rtu.Request{Slave: ct.Slave, Function: ct.Function, Address: ct.Start, Quantity: ct.Count}
	split := 0
	for j := range p.targets {
		tg := &p.targets[j]
		if !covers(task.Req, tg) {
			continue
		}
		covered[j] = true
		if !onePerPoint {
			task.Decoders = append(task.Decoders, decoder(tg, ct.Start))
			continue
		}
		one := task
		one.Name = ct.Name + ":" + tg.id
		one.Req = rtu.Request{Slave: tg.slave, Function: tg.fn, Address: tg.addr, Quantity: uint16(tg.width())}
		one.Decoders = []Decoder{decoder(tg, tg.addr)}
		if err := p.add(one); err != nil {
			return err
		}
		split++
	}
	if split > 0 {
		return nil
	}
	return p.add(task)
}

// addPlanned plans the points no explicit task covers.
func (p *Plan) addPlanned(pl *config.Plan, covered []bool, onePerPoint bool) error {
	var todo []int
	for i := range p.targets {
		if !covered[i] {
			todo = append(todo, i)
		}
	}
	if len(todo) == 0 {
		return nil
	}
	slices.SortStableFunc(todo, func(a, b int) int {
		x, y := &p.targets[a], &p.targets[b]
		return cmp.Or(
			cmp.Compare(x.slave, y.slave),
			cmp.Compare(x.fn, y.fn),
			cmp.Compare(x.addr, y.addr),
			cmp.Compare(y.width(), x.width()), // the longer first
		)
	})
	interval := pl.Interval.Duration
	if interval <= 0 {
		interval = config.DefaultTaskInterval
	}
	maxGap := max(pl.MaxGap, 0)
	for len(todo) > 0 {
		first := &p.targets[todo[0]]
		limit := maxSize(pl, first.fn)
		start, end := int(first.addr), int(first.addr)+first.width()
		n := 1
		for !onePerPoint && n < len(todo) {
			tg := &p.targets[todo[n]]
			if tg.slave != first.slave || tg.fn != first.fn {
				break
			}
			a, e := int(tg.addr), int(tg.addr)+tg.width()
			if a-end > maxGap || max(end, e)-start > limit {
				break
			}
			end = max(end, e)
			n++
		}
		task := Task{
			Name:     autoName(first.slave, first.fn, start, end-start),
			Trigger:  Timer,
			Interval: interval,
			Req:      rtu.Request{Slave: first.slave, Function: first.fn, Address: uint16(start), Quantity: uint16(end - start)},
			Decoders: make([]Decoder, 0, n),
		}
		if onePerPoint {
			task.Name += ":" + first.id
		}
		for _, j := range todo[:n] {
			task.Decoders = append(task.Decoders, decoder(&p.targets[j], uint16(start)))
		}
		if err := p.add(task); err != nil {
			return fmt.Errorf("planned request %s: %w", task.Name, err)
		}
		todo = todo[n:]
	}
	return nil
}

// maxSize is the largest planned request for function fn.
func maxSize(pl *config.Plan, fn uint8) int {
	if isBitFunction(fn) {
		if pl.MaxBits < 1 || pl.MaxBits > config.DefaultPlanMaxBits {
			return config.DefaultPlanMaxBits
		}
		return pl.MaxBits
	}
	if pl.MaxRegisters < 1 || pl.MaxRegisters > config.DefaultPlanMaxRegisters {
		return config.DefaultPlanMaxRegisters
	}
	return pl.MaxRegisters
}

// autoName names a planned request: "auto:s1:fc3:2000+12".
func autoName(slave, fn uint8, start, count int) string {
	b := make([]byte, 0, 32)
	b = append(b, config.AutoTaskPrefix...)
	b = append(b, 's')
	b = strconv.AppendUint(b, uint64(slave), 10)
	b = append(b, ":fc"...)
	b = strconv.AppendUint(b, uint64(fn), 10)
	b = append(b, ':')
	b = strconv.AppendInt(b, int64(start), 10)
	b = append(b, '+')
	b = strconv.AppendInt(b, int64(count), 10)
	return string(b)
}

// add builds the task's frame and appends it.
func (p *Plan) add(task Task) error {
	adu, err := rtu.AppendRequest(nil, task.Req)
	if err != nil {
		return err
	}
	task.ADU = adu
	p.MaxPoints = max(p.MaxPoints, len(task.Decoders))
	p.Tasks = append(p.Tasks, task)
	return nil
}

// summarize fills Slaves and SlavePoints from the tasks.
func (p *Plan) summarize() {
	p.SlavePoints = make(map[uint8][]string)
	seen := make(map[string]bool, len(p.targets))
	for i := range p.Tasks {
		task := &p.Tasks[i]
		s := task.Req.Slave
		if !slices.Contains(p.Slaves, s) {
			p.Slaves = append(p.Slaves, s)
		}
		for j := range task.Decoders {
			id := task.Decoders[j].Point
			if !seen[id] {
				seen[id] = true
				p.SlavePoints[s] = append(p.SlavePoints[s], id)
			}
		}
	}
	slices.Sort(p.Slaves)
	for _, ids := range p.SlavePoints {
		slices.SortFunc(ids, config.CompareIDs)
	}
}

// covers reports whether a response to read request r carries the whole point.
func covers(r rtu.Request, tg *target) bool {
	if tg.slave != r.Slave || tg.fn != r.Function {
		return false
	}
	a := int(tg.addr)
	return a >= int(r.Address) && a+tg.width() <= int(r.Address)+int(r.Quantity)
}

// decoder decodes tg from the response of a read that starts at start.
func decoder(tg *target, start uint16) Decoder {
	off := int(tg.addr) - int(start)
	if isBitFunction(tg.fn) {
		return Decoder{Point: tg.id, Offset: off, Bits: true, Codec: tg.codec}
	}
	return Decoder{Point: tg.id, Offset: 2 * off, Codec: tg.codec}
}

func areaFunction(area string) uint8 {
	switch area {
	case "input":
		return rtu.ReadInputRegisters
	case "coil":
		return rtu.ReadCoils
	case "discrete":
		return rtu.ReadDiscreteInputs
	default:
		return rtu.ReadHoldingRegisters
	}
}

func isBitFunction(fn uint8) bool { return fn == rtu.ReadCoils || fn == rtu.ReadDiscreteInputs }
