package config

import "testing"

func TestSameChannel(t *testing.T) {
	one := true
	tpl := &Template{Name: "m", File: "/a/m.toml", Tasks: []Task{{Name: "t", Count: 1}}}
	tpl2 := &Template{Name: "m", File: "/b/m.toml", Tasks: []Task{{Name: "t", Count: 1}}}
	a := &Channel{ID: "1", URL: "tcp://h:502", Template: "m", T: tpl}
	b := &Channel{ID: "1", URL: "tcp://h:502", Template: "m", T: tpl2}
	if !SameChannel(a, b) {
		t.Fatal("same content in other files differs")
	}
	b.OnePerPoint = &one
	if SameChannel(a, b) {
		t.Fatal("one_request_per_point change not seen")
	}
	b.OnePerPoint = nil
	tpl2.Tasks[0].Count = 2
	if SameChannel(a, b) {
		t.Fatal("template change not seen")
	}
}
