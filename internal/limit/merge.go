package limit

import (
	"context"
	_ "embed"
	"strconv"

	"github.com/redis/go-redis/v9"
)

//go:embed complete_many.lua
var completeManyLua string

var completeManyScript = newScript(completeManyLua)

// Merged completions.
//
// Under load a pipeline (batch.go) carries many completions, and with few users many of
// them are the same user's through the same key: each one's script call repeats the
// others' keys and their shared commands (the lease sets' ZREMs, the counters' MGET,
// DECRBY and INCRBYs). A script call costs Redis about as much in fixed costs and
// argument parsing as in commands (bench/README.md, ninth round), so the completions of
// one user and key that leave in one pipeline go as one call of complete_many.lua, which
// does what their calls would have done, in the order they were queued, with the shared
// commands made once.
//
// Only completions without a checkpoint are merged (a journaled or swept one decides per
// request whether it bills). The merged call takes the place of the first of them in the
// pipeline, and the reservations they carry (reserve.go) follow it, so each still sees
// the debits before it; a call queued between two merged completions now runs after
// both, as if the second had been queued earlier, which it could have been.

// A mergeable completion's call is read from its complete.lua argument list
// (Gate.completeCall), so that mergeability costs the calls nothing but a flag: these are
// the positions of complete.lua's keys and arguments in it (after "evalsha", the SHA and
// the number of keys).
const (
	argStream   = 3  // KEYS[1]
	argBalance  = 4  // KEYS[2], the user's
	argKeySet   = 6  // KEYS[4], the key's lease set
	argAccSet   = 7  // KEYS[5]
	argDaily    = 9  // KEYS[7], the key's spend counter of the day
	argAccWait  = 14 // KEYS[12]
	argEvent    = 18 // ARGV[1]
	argBilled   = 19 // ARGV[2] (int64)
	argMember   = 20 // ARGV[3]
	argWake     = 21 // ARGV[4]
	argHoldsU   = 24 // ARGV[7]
	argHoldsK   = 25 // ARGV[8]
	completeLen = 26
)

// completionGroup: completions that may be merged share it — the same stream, the same
// user's balance, the same key, the same day's counters.
type completionGroup [4]any

func groupOf(c *scriptCall) completionGroup {
	return completionGroup{c.args[argStream], c.args[argBalance], c.args[argKeySet], c.args[argDaily]}
}

// sameGroup is groupOf(c) == groupOf(d), without building them.
func sameGroup(c, d *scriptCall) bool {
	a, b := c.args, d.args
	return a[argKeySet] == b[argKeySet] && a[argBalance] == b[argBalance] && a[argDaily] == b[argDaily] && a[argStream] == b[argStream]
}

// merged is a call of complete_many.lua standing for members.
type merged struct {
	members []*scriptCall
}

// mergeCompletions returns the calls to send for batch, in pipeline order: each call
// followed by its chain (then), except that the mergeable completions of a group with
// more than one in the batch are replaced by one call, placed where the first of them
// was, followed by their chains. After the round trip, spread hands the merged reply to
// its members.
func mergeCompletions(batch []*scriptCall) []*scriptCall {
	sent := make([]*scriptCall, 0, len(batch)+1)
	chain := func(c *scriptCall) {
		for ; c != nil; c = c.then {
			sent = append(sent, c)
		}
	}
	if !repeats(batch) {
		for _, c := range batch {
			chain(c)
		}
		return sent
	}
	counts := make(map[completionGroup]int)
	for _, c := range batch {
		if c.mergeable {
			counts[groupOf(c)]++
		}
	}
	groups := make(map[completionGroup]*scriptCall)
	for _, c := range batch {
		if !c.mergeable || counts[groupOf(c)] < 2 {
			chain(c)
			continue
		}
		g := groupOf(c)
		m := groups[g]
		if m == nil {
			m = &scriptCall{script: completeManyScript, merged: &merged{}}
			groups[g] = m
			sent = append(sent, m)
		}
		m.merged.members = append(m.merged.members, c)
	}
	// Each merged call's args, then the chains of its members right after it.
	out := make([]*scriptCall, 0, len(sent))
	for _, c := range sent {
		out = append(out, c)
		if c.merged == nil {
			continue
		}
		c.args = completeManyArgs(c.merged.members)
		for _, m := range c.merged.members {
			for t := m.then; t != nil; t = t.then {
				out = append(out, t)
			}
		}
	}
	return out
}

// repeats reports whether two mergeable completions of batch share a group. It
// allocates nothing: with many users most batches have no two of one user and key, and
// then the batch goes as it is.
func repeats(batch []*scriptCall) bool {
	for i, c := range batch {
		if !c.mergeable {
			continue
		}
		for _, d := range batch[i+1:] {
			if d.mergeable && sameGroup(c, d) {
				return true
			}
		}
	}
	return false
}

// completeManyArgs builds the EVALSHA command of complete_many.lua for members.
func completeManyArgs(members []*scriptCall) []any {
	n := len(members)
	a := evalArgs(completeManyScript, 10+2*n, 1+5*n)
	f := members[0].args
	// KEYS[1..10]: complete.lua's KEYS[1..4] and KEYS[6..11].
	a = append(a, f[argStream:argAccSet]...)
	a = append(a, f[argAccSet+1:argAccWait]...)
	var sum int64
	for _, m := range members {
		a = append(a, m.args[argAccSet], m.args[argAccWait])
		if billed := m.args[argBilled].(int64); billed > 0 && len(m.args[argEvent].([]byte)) > 0 {
			sum += billed
		}
	}
	a = append(a, strconv.FormatInt(sum, 10))
	for _, m := range members {
		a = append(a, m.args[argEvent], m.args[argMember], m.args[argWake], m.args[argHoldsU], m.args[argHoldsK])
	}
	return a
}

// spread gives each member of a merged call the reply its own complete.lua call would
// have had: 1, or the merged call's error.
func (m *merged) spread(reply *redis.Cmd, noscript bool) {
	for _, c := range m.members {
		cmd := redis.NewCmd(context.Background())
		if err := reply.Err(); err != nil {
			cmd.SetErr(err)
		} else {
			cmd.SetVal(int64(1))
		}
		c.cmd = cmd
		c.noscript = noscript
	}
}
