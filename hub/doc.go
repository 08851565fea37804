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
// A connection starts on the goroutine of the request that opened it:
// presence hears of it, hello is sent, and a reader goroutine takes over
// for the connection's whole life. The reader reads frames and has each
// request answered, one at a time and in order, on a worker goroutine
// shared by the hub (so the deep stack of decoding, the store and encoding
// does not stay with an idle connection). A writer goroutine runs only
// while the connection has something to write, and the ping timer's
// goroutine only during a ping's round trip. An idle connection therefore
// costs one parked goroutine with a small stack and a few KiB of buffers
// and state. The reader ends when the socket closes; it then tells
// presence of the disconnect, exactly once per connection, and stops and
// awaits the others.
//
// Connections have no context of their own: their requests' contexts
// descend from the hub's lifetime (Shutdown cancels it when sockets do not
// close in time), and their reads, writes and pings are bounded by
// deadlines and ended by closing the socket.
//
// Closing a connection goes through its writer, after whatever must still
// be sent (a logout's reply): a slow consumer (4008), logout and forced
// offline (4001), an expired token (4002), rate limits (4029, 1008) and
// shutdown (1001) all close with a close frame. A connection that answers
// nothing for PongTimeout is closed at the TCP level at once: nobody is
// listening for a close frame.
package hub
