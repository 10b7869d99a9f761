// Package redisinfo reads what Redis reports of its own work (INFO): its CPU time and
// its per-command statistics. The bench and the limit micro-benchmarks report Redis's
// cost beside the proxy's with it.
package redisinfo

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"
)

// CPU is Redis's own CPU time in seconds since it started (INFO CPU: used_cpu_sys +
// used_cpu_user): its scripts and commands, and also reading, parsing and answering
// calls and writing the AOF.
func CPU(ctx context.Context, rdb redis.UniversalClient) (float64, error) {
	info, err := rdb.Info(ctx, "cpu").Result()
	if err != nil {
		return 0, fmt.Errorf("redis INFO cpu: %w", err)
	}
	var total float64
	for line := range strings.SplitSeq(info, "\n") {
		k, v, ok := strings.Cut(strings.TrimSpace(line), ":")
		if ok && (k == "used_cpu_sys" || k == "used_cpu_user") {
			f, err := strconv.ParseFloat(v, 64)
			if err != nil {
				return 0, fmt.Errorf("redis INFO cpu %s=%q: %w", k, v, err)
			}
			total += f
		}
	}
	return total, nil
}

// CommandStat is one command's line of INFO commandstats: its calls and the
// microseconds spent in them (a script's time includes the commands it calls, which
// have their own lines too).
type CommandStat struct{ Calls, Usec float64 }

// Commands reads INFO commandstats, by lower-case command name ("evalsha", "zadd").
func Commands(ctx context.Context, rdb redis.UniversalClient) (map[string]CommandStat, error) {
	info, err := rdb.Info(ctx, "commandstats").Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO commandstats: %w", err)
	}
	out := map[string]CommandStat{}
	for line := range strings.SplitSeq(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":")
		if !ok || !strings.HasPrefix(name, "cmdstat_") {
			continue
		}
		var st CommandStat
		for kv := range strings.SplitSeq(rest, ",") {
			k, v, _ := strings.Cut(kv, "=")
			f, _ := strconv.ParseFloat(v, 64)
			switch k {
			case "calls":
				st.Calls = f
			case "usec":
				st.Usec = f
			}
		}
		out[strings.TrimPrefix(name, "cmdstat_")] = st
	}
	return out, nil
}

// AOFEnabled reports whether Redis keeps an append-only file (INFO persistence:
// aof_enabled). Without one, a Redis restart loses what it held, the usage events not
// yet ingested among it.
func AOFEnabled(ctx context.Context, rdb redis.UniversalClient) (bool, error) {
	v, err := field(ctx, rdb, "persistence", "aof_enabled")
	return v == "1", err
}

// EvictsUnexpiring reports whether Redis, when it reaches its memory limit, may evict
// keys that have no expiry (INFO memory: a maxmemory set and an allkeys-* policy). The
// usage stream, the users' pending sums and the journal of checkpoints have none: an
// evicted stream is usage served and never billed. noeviction (writes fail instead, and
// the proxy falls back to PostgreSQL) and the volatile-* policies (only keys with an
// expiry: snapshots and counters, which are loaded again) keep them.
func EvictsUnexpiring(ctx context.Context, rdb redis.UniversalClient) (bool, string, error) {
	v, err := fields(ctx, rdb, "memory", "maxmemory", "maxmemory_policy")
	if err != nil {
		return false, "", err
	}
	policy := v["maxmemory_policy"]
	return v["maxmemory"] != "0" && strings.HasPrefix(policy, "allkeys-"), policy, nil
}

// RunID is the identity of the Redis process answering (INFO server: run_id). It changes
// whenever Redis restarts, and with the instance a failover promotes.
func RunID(ctx context.Context, rdb redis.UniversalClient) (string, error) {
	v, err := field(ctx, rdb, "server", "run_id")
	if errors.Is(err, errNoField) {
		err = ErrNoRunID
	}
	return v, err
}

// ErrNoRunID: Redis answered INFO server without a run_id.
var ErrNoRunID = errors.New("redis INFO server has no run_id")

var errNoField = errors.New("no such field")

// field reads one field of an INFO section.
func field(ctx context.Context, rdb redis.UniversalClient, section, key string) (string, error) {
	v, err := fields(ctx, rdb, section, key)
	return v[key], err
}

// fields reads fields of an INFO section in one round trip; each must be there.
func fields(ctx context.Context, rdb redis.UniversalClient, section string, keys ...string) (map[string]string, error) {
	info, err := rdb.Info(ctx, section).Result()
	if err != nil {
		return nil, fmt.Errorf("redis INFO %s: %w", section, err)
	}
	out := make(map[string]string, len(keys))
	for line := range strings.SplitSeq(info, "\n") {
		if k, v, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && v != "" && slices.Contains(keys, k) {
			out[k] = v
		}
	}
	for _, k := range keys {
		if _, ok := out[k]; !ok {
			return nil, fmt.Errorf("redis INFO %s has no %s: %w", section, k, errNoField)
		}
	}
	return out, nil
}
