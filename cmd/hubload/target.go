package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync/atomic"
	"time"
)

// The load tool only ever talks to this machine: a load test aimed at any
// other address would be an attack on someone else's server. Every target
// is checked when the URL is parsed and again on every dial, so a redirect
// or a DNS answer cannot lead it elsewhere.

// errNotLoopback is returned for any target outside 127.0.0.0/8 and ::1.
var errNotLoopback = errors.New("target is not a loopback address (only 127.0.0.0/8 and ::1 are allowed)")

// isLoopback reports whether ip is in 127.0.0.0/8 or is ::1.
func isLoopback(ip netip.Addr) bool {
	return ip.Unmap().IsLoopback()
}

// checkHostPort refuses an address ("host:port") whose host is not a
// loopback IP literal or "localhost".
func checkHostPort(hostport string) error {
	host, _, err := net.SplitHostPort(hostport)
	if err != nil {
		return fmt.Errorf("address %q: %w", hostport, err)
	}
	return checkHost(host)
}

func checkHost(host string) error {
	if host == "localhost" {
		return nil
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("host %q: %w: give an IP literal such as 127.0.0.1", host, errNotLoopback)
	}
	if !isLoopback(ip) {
		return fmt.Errorf("host %s: %w", host, errNotLoopback)
	}
	return nil
}

// parseTarget checks the -url flag: http with a loopback host and no path
// beyond "/". It returns the base URL and the matching ws:// URL of /ws.
func parseTarget(raw string) (base *url.URL, ws *url.URL, err error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, fmt.Errorf("-url %q: %w", raw, err)
	}
	if u.Scheme != "http" {
		return nil, nil, fmt.Errorf("-url %q: want http://127.0.0.1:PORT (plain http on loopback)", raw)
	}
	if u.Port() == "" {
		u.Host = net.JoinHostPort(u.Hostname(), "80")
	}
	if err := checkHostPort(u.Host); err != nil {
		return nil, nil, fmt.Errorf("-url %q: %w", raw, err)
	}
	if u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.User != nil {
		return nil, nil, fmt.Errorf("-url %q: want only scheme, host and port", raw)
	}
	base = &url.URL{Scheme: "http", Host: u.Host}
	ws = &url.URL{Scheme: "ws", Host: u.Host, Path: "/ws"}
	return base, ws, nil
}

// srcPool hands out local source addresses for client connections. One
// source IP has about 28,000 ephemeral ports (net.ipv4.ip_local_port_range),
// and closed connections linger in TIME_WAIT, so after perIP dials the pool
// moves to the next address: 127.0.0.2, 127.0.0.3, ... It wraps after count
// addresses, by which time the first one's ports are long free.
type srcPool struct {
	first netip.Addr // first source address, e.g. 127.0.0.2
	count uint64     // how many addresses to rotate over
	perIP uint64     // dials per address before moving on
	dials atomic.Uint64
}

// newSrcPool returns a pool starting at 127.0.0.2 (127.0.0.1 is left to the
// server and the driver's HTTP requests).
func newSrcPool(perIP, count int) *srcPool {
	if perIP < 1 {
		perIP = 1
	}
	if count < 1 {
		count = 1
	}
	if count > 250 {
		count = 250 // stay inside 127.0.0.0/24: 127.0.0.2 to 127.0.0.251
	}
	return &srcPool{first: netip.MustParseAddr("127.0.0.2"), count: uint64(count), perIP: uint64(perIP)}
}

// addr returns the source address of dial number n (counting from 0).
func (p *srcPool) addr(n uint64) netip.Addr {
	step := (n / p.perIP) % p.count
	b := p.first.As4()
	b[3] += byte(step)
	return netip.AddrFrom4(b)
}

// startAt makes the next dial use the pool's address number i (from 0).
func (p *srcPool) startAt(i uint64) { p.dials.Store(i % p.count * p.perIP) }

// next returns the source address for the next dial.
func (p *srcPool) next() netip.Addr {
	return p.addr(p.dials.Add(1) - 1)
}

// loopbackDialer dials TCP to loopback only, from src's addresses when src
// is not nil.
type loopbackDialer struct {
	src *srcPool
	d   net.Dialer
}

func (l *loopbackDialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	if err := checkHostPort(addr); err != nil {
		return nil, err
	}
	d := l.d
	if l.src != nil {
		d.LocalAddr = &net.TCPAddr{IP: l.src.next().AsSlice()}
	}
	c, err := d.DialContext(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	// "localhost" was resolved by the dialer: check what it became.
	if ra, ok := c.RemoteAddr().(*net.TCPAddr); ok {
		if ip, ok := netip.AddrFromSlice(ra.IP); !ok || !isLoopback(ip) {
			c.Close()
			return nil, fmt.Errorf("dial %s: %w", addr, errNotLoopback)
		}
	}
	return c, nil
}

// newWSClient is the HTTP client of WebSocket handshakes: each dial takes
// the next source address, and the upgrade takes the connection (see
// upgrader). TCP keepalive is off: the sockets live on loopback, and the
// hub's pings keep them in check.
func newWSClient(src *srcPool) *http.Client {
	d := &loopbackDialer{src: src, d: net.Dialer{Timeout: 10 * time.Second, KeepAlive: -1, Control: bindNoPort}}
	return &http.Client{
		Transport:     upgrader{d: d},
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("hubload follows no redirects") },
	}
}

// newAPIClient is the HTTP client of the driver's API calls, from
// 127.0.0.1. maxConns bounds its open sockets (each is a file descriptor).
func newAPIClient(maxConns int) *http.Client {
	d := &loopbackDialer{d: net.Dialer{Timeout: 10 * time.Second}}
	return &http.Client{
		Transport: &http.Transport{
			DialContext:         d.DialContext,
			MaxConnsPerHost:     maxConns,
			MaxIdleConnsPerHost: maxConns,
			IdleConnTimeout:     30 * time.Second,
		},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return errors.New("hubload follows no redirects") },
	}
}
