// Package web serves the agent console: index.html, its stylesheet and its
// plain ES modules (no build step), embedded in the binary.
//
// The console speaks only the documented WebSocket protocol
// (docs/protocol.md) through static/client.js, which is also usable on its
// own by other browser clients. Handler is safe for concurrent use; the
// files are read once, at start-up, and never change.
package web
