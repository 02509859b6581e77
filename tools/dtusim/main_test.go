package main

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"strings"
	"testing"
	"time"
)

func TestParseTerminator(t *testing.T) {
	cases := []struct {
		in    string
		term  []byte
		fixed bool
		err   bool
	}{
		{`\n`, []byte("\n"), false, false},
		{`\r\n`, []byte("\r\n"), false, false},
		{"\n", []byte("\n"), false, false},
		{`\x00`, []byte{0}, false, false},
		{"hex:0d0a", []byte("\r\n"), false, false},
		{"hex:zz", nil, false, true},
		{"none", nil, true, false},
		{"", nil, true, false},
		{`;`, []byte(";"), false, false},
		{`"`, []byte(`"`), false, false},
	}
	for _, tc := range cases {
		term, fixed, err := parseTerminator(tc.in)
		if (err != nil) != tc.err || fixed != tc.fixed || !bytes.Equal(term, tc.term) {
			t.Errorf("parseTerminator(%q) = %q, %v, %v", tc.in, term, fixed, err)
		}
	}
}

func TestParseSlaves(t *testing.T) {
	if s, err := parseSlaves("1, 2,247"); err != nil || len(s) != 3 || s[2] != 247 {
		t.Fatalf("%v %v", s, err)
	}
	for _, bad := range []string{"0", "248", "x", "1,,2"} {
		if _, err := parseSlaves(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestRunFlags(t *testing.T) {
	for _, args := range [][]string{
		{"-terminator", "hex:0"},
		{"-heartbeat-hex", "xyz"},
		{"-slaves", "300"},
		{"-map", "/nonexistent/map.toml"},
		{"-log-level", "loud"},
		{"extra"},
		{"-profile", "modbus"},
		{"-profile", "tlv", "-prefix", "X"},
		{"-profile", "tlv", "-data-hex", "zz"},
		{"-profile", "line", "-heartbeat", "x"},
		{"-profile", "line", "-max-line", "0"},
		{"-data", "x"},
	} {
		if err := run(args); err == nil {
			t.Errorf("%v: no error", args)
		}
	}
}

// runAgainst runs dtusim with args against a new listener for a short while
// and hands the first accepted connection to server.
func runAgainst(t *testing.T, server func(net.Conn) error, args ...string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	result := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			result <- err
			return
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		result <- server(c)
	}()
	args = append(args, "-addr", ln.Addr().String(), "-n", "1", "-duration", "1s", "-stats", "0", "-log-level", "error")
	if err := run(args); err != nil {
		t.Fatal(err)
	}
	if err := <-result; err != nil {
		t.Fatal(err)
	}
}

func TestRunTLV(t *testing.T) {
	runAgainst(t, func(c net.Conn) error {
		var id [4]byte
		if _, err := io.ReadFull(c, id[:]); err != nil {
			return err
		}
		if got := binary.BigEndian.Uint32(id[:]); got != 70001 {
			t.Errorf("tlv id %d, want 70001", got)
		}
		if _, err := c.Write([]byte{0x01}); err != nil {
			return err
		}
		var frame [4]byte // the data frame 03 02 01 02
		if _, err := io.ReadFull(c, frame[:]); err != nil {
			return err
		}
		if frame != [4]byte{3, 2, 1, 2} {
			t.Errorf("data frame % X", frame)
		}
		return nil
	}, "-profile", "tlv", "-start", "70001", "-data-hex", "0102", "-data-interval", "50ms")
}

func TestRunLine(t *testing.T) {
	runAgainst(t, func(c net.Conn) error {
		br := bufio.NewReader(c)
		var lines []string
		for len(lines) < 3 {
			l, err := br.ReadString('\n')
			if err != nil {
				return err
			}
			lines = append(lines, strings.TrimSuffix(l, "\n"))
		}
		// The id line, then its heartbeats every 50ms and a data line every 30ms.
		if lines[0] != "DEV007" || !strings.Contains(strings.Join(lines[1:], ","), "t=1") {
			t.Errorf("lines %q", lines)
		}
		return nil
	}, "-profile", "line", "-prefix", "DEV", "-width", "3", "-start", "7", "-data", "t=1",
		"-data-interval", "30ms", "-heartbeat-interval", "50ms")
}
