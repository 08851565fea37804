// Package hub is presencehub's WebSocket transport: it authenticates and
// accepts agents' sockets, speaks the protocol of docs/protocol.md on them,
// answers their requests with the store (Backend), reports connections and
// activity to presence (Presence), and fans the store's committed events
// out to the sockets that should see them (it is the queues.Publisher).
// The HTTP API (api*.go) lives here too and shares the token verification
// (auth.go).
//
// # What it owns
//
//   - The registry: every open connection, by workspace and by agent.
//   - Each connection's views (subscriptions), send queue and liveness.
//   - The protocol's message types (protocol.go) and operations (ops.go).
//
// Events are encoded once, by the store (queues.Event.Wire); the hub writes
// the same bytes to every recipient, and packs what has queued up for one
// connection into one frame, separated by '\n'.
//
// # Concurrency
//
// Hub's methods are safe for concurrent use. Publish never blocks: it
// copies the workspace's connections out of the registry under a read lock
// and queues each event on each connection under that connection's own
// mutex; no lock is held while writing to a socket, calling the store or
// waiting. CloseAgent and Shutdown only start closes; Shutdown then waits,
// bounded by its context.
//
// Each connection has one reader goroutine for its whole life (it sends
// hello, then reads and answers requests one at a time, calling the store
// itself), a writer goroutine only while it has something to write (so an
// idle connection costs one parked goroutine and a few KiB), and, during a
// ping's round trip, the ping timer's goroutine. The reader ends when the
// socket closes; before it returns, it stops and awaits the others and
// tells presence of the disconnect, exactly once per connection.
//
// Closing a connection goes through its writer, after whatever must still
// be sent (a logout's reply): a slow consumer (4008), logout and forced
// offline (4001), an expired token (4002), rate limits (4029, 1008) and
// shutdown (1001) all close with a close frame. A connection that answers
// nothing for PongTimeout is closed at the TCP level at once: nobody is
// listening for a close frame.
package hub
