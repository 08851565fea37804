//go:build race

package hub

// raceEnabled: the race detector multiplies memory and time, so the memory
// measurement does not run under it.
const raceEnabled = true
