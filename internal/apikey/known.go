package apikey

import (
	"context"
	"encoding/binary"
	"slices"
	"sync"
)

// known is the set of hash prefixes (8 bytes) of the keys that exist, reloaded with the
// other snapshots. A presented key whose prefix is absent almost surely does not exist:
// it is refused without a query (unless a new key's announcement was missed — such keys
// still get a trickle of lookups, see Cache.Get).
type known struct {
	mu     sync.RWMutex
	loaded bool
	sorted []uint64            // from the last reload
	added  map[uint64]struct{} // announced since
}

func prefixOf(hash []byte) uint64 { return binary.BigEndian.Uint64(hash[:8]) }

func (k *known) contains(hash []byte) (present, loaded bool) {
	p := prefixOf(hash)
	k.mu.RLock()
	defer k.mu.RUnlock()
	if !k.loaded {
		return false, false
	}
	if _, ok := k.added[p]; ok {
		return true, true
	}
	_, found := slices.BinarySearch(k.sorted, p)
	return found, true
}

func (k *known) add(hash []byte) {
	k.mu.Lock()
	if k.added == nil {
		k.added = map[uint64]struct{}{}
	}
	k.added[prefixOf(hash)] = struct{}{}
	k.mu.Unlock()
}

// PrefixLoader lists the hash prefixes of every key that may be used.
type PrefixLoader func(ctx context.Context) ([][]byte, error)

// ReloadKnown replaces the set of existing keys.
func (c *Cache) ReloadKnown(ctx context.Context, load PrefixLoader) error {
	rows, err := load(ctx)
	if err != nil {
		return err
	}
	sorted := make([]uint64, 0, len(rows))
	for _, r := range rows {
		if len(r) >= 8 {
			sorted = append(sorted, prefixOf(r))
		}
	}
	slices.Sort(sorted)
	c.known.mu.Lock()
	c.known.sorted, c.known.added, c.known.loaded = sorted, nil, true
	c.known.mu.Unlock()
	return nil
}

// Announce adds a key (hash as announced by the web app) to the set of existing keys.
func (c *Cache) Announce(hash []byte) {
	if len(hash) >= 8 {
		c.known.add(hash)
	}
}
