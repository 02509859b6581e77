package ws

import (
	"net/http"
	"testing"

	"github.com/gofiber/fiber/v2"

	"github.com/voltedge/voltedge/internal/keys"
	"github.com/voltedge/voltedge/modsrv/auth"
	"github.com/voltedge/voltedge/modsrv/links"
)

// TestSubscribedMeta: the subscribed answer carries the unit and type of
// each mapped point of the subscribed models.
func TestSubscribedMeta(t *testing.T) {
	srv := newEnv(t, Options{}) // only for its Redis
	c := srv.c
	do(t, c, "HSET", keys.Mapping, keys.PointRef("1001", "10001"), keys.PointRef("pm", "voltage"),
		keys.PointRef("1001", "10002"), keys.PointRef("pm", "current"), keys.PointRef("1001", "10003"), keys.PointRef("pm", "raw"))
	do(t, c, "HSET", keys.ChannelMeta("1001"),
		"10001", `{"name":"Voltage","type":"float32","unit":"V","area":"input","writable":false}`,
		"10002", `{"name":"Current","type":"int16","unit":"A","area":"input","writable":false}`)
	do(t, c, "HSET", keys.MappingUnit, keys.PointRef("pm", "current"), "mA")
	e := startHub(t, c, Options{Links: links.New(c, 0, nil)})
	e.makeKnown(t, []string{"pm", "bare"}, nil)
	conn := e.dial(t, "/ws", nil)
	m := subscribe(t, conn, map[string]any{"models": []string{"pm", "bare"}})
	meta, _ := m["meta"].(map[string]any)
	pm, _ := meta["pm"].(map[string]any)
	v, _ := pm["voltage"].(map[string]any)
	cur, _ := pm["current"].(map[string]any)
	raw, _ := pm["raw"].(map[string]any)
	if v["unit"] != "V" || v["type"] != "float32" || cur["unit"] != "mA" || cur["type"] != "int16" || raw == nil || len(raw) != 0 {
		t.Fatalf("meta: %v", m)
	}
	if _, ok := meta["bare"]; ok || len(meta) != 1 {
		t.Fatalf("a model without mapped points has no meta: %v", meta)
	}
	// Without a link index there is no meta.
	e2 := startHub(t, c, Options{})
	e2.makeKnown(t, []string{"pm"}, nil)
	if m := subscribe(t, e2.dial(t, "/ws", nil), map[string]any{"models": []string{"pm"}}); m["meta"] != nil {
		t.Fatalf("meta without an index: %v", m)
	}
}

// TestBlockedAddressUpgrade: while an address is over the limit of failed
// token attempts, a WebSocket upgrade with a bad token answers 401 (REST
// answers 429 with Retry-After), with the right token too.
func TestBlockedAddressUpgrade(t *testing.T) {
	const good = "ws-test-token-0123456789-abcdefghij"
	a, err := auth.New(auth.Options{LoginRate: 2, Tokens: []auth.Token{{Name: "t", Secret: good}}})
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Options{RequireAuth: true, Authorize: a.Check})
	bad := http.Header{"Authorization": {"Bearer wrong"}}
	for i := range 4 {
		_, resp, err := e.dialErr("/ws", bad)
		if err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("bad token, attempt %d: %v %v, want 401", i, err, resp)
		}
		if resp.Header.Get(fiber.HeaderWWWAuthenticate) == "" {
			t.Fatalf("attempt %d: no WWW-Authenticate", i)
		}
	}
	if _, resp, err := e.dialErr("/ws?token="+good, nil); err == nil || resp == nil || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("right token while blocked: %v %v, want 401", err, resp)
	}
}
