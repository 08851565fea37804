package main

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
)

func TestParseTargetLoopbackOnly(t *testing.T) {
	ok := []string{
		"http://127.0.0.1:8080",
		"http://127.1.2.3:18080/",
		"http://localhost:8080",
		"http://[::1]:8080",
		"http://127.0.0.1",
	}
	for _, u := range ok {
		if _, _, err := parseTarget(u); err != nil {
			t.Errorf("%s: got %v, want accepted", u, err)
		}
	}
	refused := []string{
		"http://10.0.0.1:8080",
		"http://192.168.1.10:8080",
		"http://172.16.0.1:8080",
		"http://8.8.8.8:80",
		"http://0.0.0.0:8080",
		"http://example.com:8080",
		"http://[::ffff:10.0.0.1]:8080",
		"http://[2001:db8::1]:8080",
		"http://128.0.0.1:8080",
	}
	for _, u := range refused {
		if _, _, err := parseTarget(u); !errors.Is(err, errNotLoopback) {
			t.Errorf("%s: got %v, want errNotLoopback", u, err)
		}
	}
	for _, u := range []string{"https://127.0.0.1:8443", "ws://127.0.0.1:8080", "http://127.0.0.1:8080/api", "http://u:p@127.0.0.1:1", "::"} {
		if _, _, err := parseTarget(u); err == nil {
			t.Errorf("%s: got accepted, want an error", u)
		}
	}
	_, ws, err := parseTarget("http://127.0.0.1:18080")
	if err != nil || ws.String() != "ws://127.0.0.1:18080/ws" {
		t.Errorf("ws URL: got %v %v, want ws://127.0.0.1:18080/ws", ws, err)
	}
}

func TestDialerRefusesOtherAddresses(t *testing.T) {
	d := &loopbackDialer{}
	for _, addr := range []string{"10.1.2.3:80", "192.168.0.1:443", "example.com:80"} {
		if _, err := d.DialContext(context.Background(), "tcp", addr); !errors.Is(err, errNotLoopback) {
			t.Errorf("dial %s: got %v, want errNotLoopback", addr, err)
		}
	}
}

func TestSrcPoolRotates(t *testing.T) {
	p := newSrcPool(2, 3)
	var got []string
	for range 7 {
		got = append(got, p.next().String())
	}
	want := []string{"127.0.0.2", "127.0.0.2", "127.0.0.3", "127.0.0.3", "127.0.0.4", "127.0.0.4", "127.0.0.2"}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("got %v, want %v", got, want)
		}
	}
	p.startAt(4) // 4 mod 3
	if a := p.next(); a != netip.MustParseAddr("127.0.0.3") {
		t.Errorf("after startAt(4) of 3: got %v, want 127.0.0.3", a)
	}
	big := newSrcPool(20000, 1000) // capped at 250 addresses
	if a := big.addr(20000*250 - 1); a != netip.MustParseAddr("127.0.0.251") {
		t.Errorf("last address: got %v, want 127.0.0.251", a)
	}
	if a := big.addr(20000 * 250); a != netip.MustParseAddr("127.0.0.2") {
		t.Errorf("after the last: got %v, want 127.0.0.2", a)
	}
	for n := uint64(0); n < 20000*250; n += 997 {
		if a := big.addr(n); !isLoopback(a) {
			t.Fatalf("dial %d: %v is not loopback", n, a)
		}
	}
}

func TestDialerUsesSourceAddresses(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan string, 4)
	go func() { // ends when ln is closed
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted <- c.RemoteAddr().(*net.TCPAddr).IP.String()
			c.Close()
		}
	}()
	d := &loopbackDialer{src: newSrcPool(1, 2)}
	for _, want := range []string{"127.0.0.2", "127.0.0.3", "127.0.0.2"} {
		c, err := d.DialContext(context.Background(), "tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		c.Close()
		if got := <-accepted; got != want {
			t.Errorf("source: got %s, want %s", got, want)
		}
	}
}
