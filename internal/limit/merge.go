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

// completion is what a mergeable completion's call holds for complete_many.lua.
type completion struct {
	group  completionGroup
	shared [10]any // KEYS[1..10] of complete_many.lua
	acc    [2]any  // the account's lease set and waiting flag
	event  any     // the usage event JSON ('' none)
	billed int64   // counted in the sum only with an event
	member any
	wake   any
	holdsU string
	holdsK string
}

// completionGroup: completions that may be merged share it — the same user's balance,
// the same key, the same day's counters (day: the key's daily counter's name), the same
// stream.
type completionGroup struct {
	user, key int64
	day       any
	stream    string
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
	var counts map[completionGroup]int
	for _, c := range batch {
		if c.mergeable {
			if counts == nil {
				counts = make(map[completionGroup]int)
			}
			counts[c.completion.group]++
		}
	}
	sent := make([]*scriptCall, 0, len(batch)+1)
	chain := func(c *scriptCall) {
		for ; c != nil; c = c.then {
			sent = append(sent, c)
		}
	}
	if !hasRepeat(counts) {
		for _, c := range batch {
			chain(c)
		}
		return sent
	}
	groups := make(map[completionGroup]*scriptCall)
	for _, c := range batch {
		if !c.mergeable || counts[c.completion.group] < 2 {
			chain(c)
			continue
		}
		m := groups[c.completion.group]
		if m == nil {
			m = &scriptCall{script: completeManyScript, merged: &merged{}}
			groups[c.completion.group] = m
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

func hasRepeat(counts map[completionGroup]int) bool {
	for _, n := range counts {
		if n > 1 {
			return true
		}
	}
	return false
}

// completeManyArgs builds the EVALSHA command of complete_many.lua for members.
func completeManyArgs(members []*scriptCall) []any {
	n := len(members)
	a := evalArgs(completeManyScript, 10+2*n, 1+5*n)
	a = append(a, members[0].completion.shared[:]...)
	var sum int64
	for _, m := range members {
		c := &m.completion
		a = append(a, c.acc[0], c.acc[1])
		if c.billed > 0 && !emptyEvent(c.event) {
			sum += c.billed
		}
	}
	a = append(a, strconv.FormatInt(sum, 10))
	for _, m := range members {
		c := &m.completion
		a = append(a, c.event, c.member, c.wake, c.holdsU, c.holdsK)
	}
	return a
}

func emptyEvent(ev any) bool {
	switch e := ev.(type) {
	case []byte:
		return len(e) == 0
	case string:
		return e == ""
	}
	return ev == nil
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
