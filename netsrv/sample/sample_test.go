package sample

import (
	"strings"
	"testing"
)

// run feeds values at the given times and returns the kept ones.
func run(t *testing.T, s *Sampler, model, pt string, samples []struct {
	v  string
	ts int64
}) []string {
	t.Helper()
	var kept []string
	for _, x := range samples {
		if s.Keep(model, pt, x.v, x.ts) {
			kept = append(kept, x.v)
		}
	}
	return kept
}

type sm = struct {
	v  string
	ts int64
}

func TestModes(t *testing.T) {
	series := []sm{{"10", 0}, {"10", 100}, {"10.2", 200}, {"10.6", 300}, {"10.6", 400}, {"11.1", 500}, {"11.1", 20000}}
	cases := []struct {
		name string
		rule Rule
		want string
	}{
		{"default every", Rule{Points: "other:*"}, "10 10 10.2 10.6 10.6 11.1 11.1"},
		{"every", Rule{Points: "m:p", Mode: Every}, "10 10 10.2 10.6 10.6 11.1 11.1"},
		{"change", Rule{Points: "m:p", Mode: Change}, "10 10.2 10.6 11.1"},
		{"change with max_gap", Rule{Points: "m:p", Mode: Change, MaxGap: "10s"}, "10 10.2 10.6 11.1 11.1"},
		{"deadband absolute", Rule{Points: "m:*", Mode: Deadband, Deadband: "0.5"}, "10 10.6 11.1"},
		{"deadband percent", Rule{Points: "*:p", Mode: Deadband, Deadband: "5%"}, "10 10.6"},
		{"interval", Rule{Points: "m", Mode: Interval, Every: "250ms"}, "10 10.6 11.1"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, err := New([]Rule{c.rule}, 0)
			if err != nil {
				t.Fatal(err)
			}
			got := strings.Join(run(t, s, "m", "p", series), " ")
			if got != c.want {
				t.Fatalf("kept %q, want %q", got, c.want)
			}
			st := s.Stats()
			if int(st.Kept+st.Skipped) != len(series) {
				t.Fatalf("stats %+v do not add up to %d samples", st, len(series))
			}
		})
	}
}

func TestFirstRuleWins(t *testing.T) {
	s, err := New([]Rule{
		{Points: "pump*:flow", Mode: Change},
		{Points: "pump*:*", Mode: Interval, Every: "1h"},
	}, 0)
	if err != nil {
		t.Fatal(err)
	}
	flow := run(t, s, "pump1", "flow", []sm{{"1", 0}, {"2", 1}, {"3", 2}})
	other := run(t, s, "pump1", "speed", []sm{{"1", 0}, {"2", 1}, {"3", 2}})
	unrelated := run(t, s, "meter", "speed", []sm{{"1", 0}, {"1", 1}})
	if len(flow) != 3 || len(other) != 1 || len(unrelated) != 2 {
		t.Fatalf("flow %v, speed %v, unrelated %v", flow, other, unrelated)
	}
}

func TestStarStaysInsideOnePart(t *testing.T) {
	if match("pump*", "pump1", "x") || !match("pump*:*", "pump1", "x") || match("*:flow", "a", "flowx") {
		t.Fatal("pattern parts leak")
	}
}

func TestLateAndTextSamples(t *testing.T) {
	s, _ := New([]Rule{{Points: "m:*", Mode: Deadband, Deadband: "1"}}, 0)
	got := run(t, s, "m", "p", []sm{{"5", 100}, {"9", 50}, {"on", 200}, {"on", 300}, {"off", 400}})
	if strings.Join(got, " ") != "5 on off" {
		t.Fatalf("kept %v", got)
	}
}

func TestMaxPointsKeepsEverythingBeyond(t *testing.T) {
	s, _ := New([]Rule{{Points: "*:*", Mode: Change}}, 2)
	for _, m := range []string{"a", "b", "c"} {
		s.Keep(m, "p", "1", 0)
		s.Keep(m, "p", "1", 1)
	}
	st := s.Stats()
	if st.Untracked != 2 || st.Kept != 4 || st.Skipped != 2 {
		t.Fatalf("stats %+v", st)
	}
}

func TestRuleErrors(t *testing.T) {
	cases := map[string]Rule{
		"points: must not be empty": {Mode: Change},
		"unknown mode":              {Points: "a", Mode: "sometimes"},
		"not a positive number":     {Points: "a", Mode: Deadband, Deadband: "-1"},
		"positive duration":         {Points: "a", Mode: Interval, Every: "soon"},
		"only for mode interval":    {Points: "a", Mode: Change, Every: "1s"},
		"only for modes change":     {Points: "a", Mode: Interval, Every: "1s", MaxGap: "1m"},
		"only * and ? are special":  {Points: "a[1]"},
	}
	for want, r := range cases {
		_, err := New([]Rule{{Points: "ok"}, r}, 0)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "sample rule 2") {
			t.Errorf("%+v: error %v, want %q naming rule 2", r, err, want)
		}
	}
}

func BenchmarkKeep(b *testing.B) {
	s, _ := New([]Rule{{Points: "meter*:*", Mode: Deadband, Deadband: "0.5"}}, 0)
	models := make([]string, 1000)
	for i := range models {
		models[i] = "meter" + string(rune('a'+i%26)) + string(rune('a'+i/26%26))
	}
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		s.Keep(models[i%len(models)], "voltage", "230.5", int64(i))
	}
}
