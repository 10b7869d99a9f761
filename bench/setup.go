package main

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"
	"github.com/redis/go-redis/v9"

	"github.com/tollgate/tollgate/internal/apikey"
)

const (
	benchDB     = "tollgate_bench"
	redisPrefix = "bench:"
	demoEmail   = "demo@tollgate.local"
	// topupNano is the demo user's extra balance, a million dollars: no bench run can
	// spend it, so admission never refuses for balance.
	topupNano = 1_000_000_000_000_000
)

// stack is everything the bench started or connected to.
type stack struct {
	root     string
	bin      string
	dbURL    string
	redisURL string
	secret   string
	demoKey  string
	// keys are the API keys the bench sends through the proxy: the demo user's, then one
	// per extra user (BENCH_USERS); each closed-loop connection uses keys[i % len].
	keys []string
	// sporadicKeys belong to sporadicUsers more users, for the run in which users take
	// turns (latency_200rps_sporadic).
	sporadicKeys []string

	fakellmAddr string
	proxyAddr   string
	workerAddr  string

	fakellm *child
	proxy   *child
	worker  *child
	// noProxy leaves the proxy to the caller (the in-process profile in
	// profile_test.go).
	noProxy bool

	pool *pgxpool.Pool
	rdb  *redis.Client
}

// setUp starts PostgreSQL and Redis (as make test does), recreates the bench database,
// clears the bench's Redis keys, migrates and seeds, tops up the demo user and starts
// fakellm, proxy and worker. On error, what was started is left for close to stop.
func setUp(ctx context.Context, s *stack) error {
	s.bin = filepath.Join(s.root, ".dev", "bin")
	if err := os.MkdirAll(filepath.Join(s.root, ".dev", "logs"), 0o755); err != nil {
		return err
	}
	svc := exec.CommandContext(ctx, filepath.Join(s.root, ".ci", "services.sh"), "start")
	svc.Dir = s.root
	svc.Stdout, svc.Stderr = os.Stderr, os.Stderr
	if err := svc.Run(); err != nil {
		return fmt.Errorf("start PostgreSQL and Redis (.ci/services.sh start): %w", err)
	}
	envFile, err := readEnvFile(filepath.Join(s.root, ".dev", "services.env"))
	if err != nil {
		return err
	}
	adminURL, redisURL := envFile["PG_ADMIN_URL"], envFile["REDIS_URL"]
	if adminURL == "" || redisURL == "" {
		return errors.New(".dev/services.env lacks PG_ADMIN_URL or REDIS_URL")
	}
	s.redisURL = redisURL
	if s.dbURL, err = recreateDB(ctx, adminURL, benchDB); err != nil {
		return err
	}
	ropts, err := redis.ParseURL(redisURL)
	if err != nil {
		return fmt.Errorf("parse REDIS_URL: %w", err)
	}
	s.rdb = redis.NewClient(ropts)
	// Keys of an earlier run (balance snapshots, the usage stream) name rows of a
	// database that no longer exists.
	if err := deleteKeys(ctx, s.rdb, redisPrefix+"*"); err != nil {
		return fmt.Errorf("clear Redis keys %s*: %w", redisPrefix, err)
	}

	var sec [32]byte
	_, _ = rand.Read(sec[:])
	s.secret = hex.EncodeToString(sec[:])
	for _, a := range []*string{&s.fakellmAddr, &s.proxyAddr, &s.workerAddr} {
		if *a, err = freeAddr(); err != nil {
			return err
		}
	}

	if err := s.web(ctx, "migrate"); err != nil {
		return err
	}
	demoEnv := filepath.Join(s.root, ".dev", "bench-demo.env")
	_ = os.Remove(demoEnv)
	if err := s.web(ctx, "seed", "-demo-env", demoEnv, "-fakellm-url", "http://"+s.fakellmAddr); err != nil {
		return err
	}
	demo, err := readEnvFile(demoEnv)
	if err != nil {
		return err
	}
	if s.demoKey = demo["DEMO_API_KEY"]; s.demoKey == "" {
		return fmt.Errorf("web seed wrote no DEMO_API_KEY to %s", demoEnv)
	}

	if s.pool, err = pgxpool.New(ctx, s.dbURL); err != nil {
		return fmt.Errorf("connect to %s: %w", benchDB, err)
	}
	extra, err := addUsers(ctx, s.pool, "", benchUsers()-1)
	if err != nil {
		return err
	}
	s.keys = append([]string{s.demoKey}, extra...)
	if s.sporadicKeys, err = addUsers(ctx, s.pool, "sporadic-", sporadicUsers); err != nil {
		return err
	}
	if err := fundDemo(ctx, s.pool, len(s.keys)+len(s.sporadicKeys)); err != nil {
		return err
	}
	return s.startProcesses(ctx)
}

// postmasterPID reads the pid of the local PostgreSQL from its data directory
// (.ci/services.sh keeps it under .dev/pg/data).
func (s *stack) postmasterPID() (int, error) {
	b, err := os.ReadFile(filepath.Join(s.root, ".dev", "pg", "data", "postmaster.pid"))
	if err != nil {
		return 0, err
	}
	line, _, _ := strings.Cut(string(b), "\n")
	return strconv.Atoi(strings.TrimSpace(line))
}

// commonEnv is the environment every Tollgate process of the bench shares.
func (s *stack) commonEnv() []string {
	return []string{
		"ENV=development", "LOG_LEVEL=warn", "LOG_FORMAT=text",
		"DATABASE_URL=" + s.dbURL, "REDIS_URL=" + s.redisURL, "REDIS_PREFIX=" + redisPrefix,
		"SECRET_KEY=" + s.secret, "UPSTREAM_ALLOW_PRIVATE=true",
	}
}

// web runs `web ARGS…` against the bench database.
func (s *stack) web(ctx context.Context, args ...string) error {
	cmd := exec.CommandContext(ctx, filepath.Join(s.bin, "web"), args...)
	cmd.Dir = s.root
	cmd.Env = append(os.Environ(), s.commonEnv()...)
	cmd.Env = append(cmd.Env, "LOG_LEVEL=warn", "ADMIN_EMAIL=admin@bench.local", "ADMIN_PASSWORD=bench-admin-"+s.secret[:12])
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("web %s: %w\n%s", strings.Join(args, " "), err, out)
	}
	return nil
}

func (s *stack) startProcesses(ctx context.Context) error {
	var err error
	if s.fakellm, err = startChild(s.root, "fakellm", filepath.Join(s.bin, "fakellm"), []string{"FAKELLM_ADDR=" + s.fakellmAddr}); err != nil {
		return err
	}
	if !s.noProxy {
		if s.proxy, err = startChild(s.root, "proxy", s.binary("proxy"), append(append(s.commonEnv(), "PROXY_ADDR="+s.proxyAddr), strings.Fields(os.Getenv("BENCH_PROXY_ENV"))...)); err != nil {
			return err
		}
	}
	if s.worker, err = startChild(s.root, "worker", s.binary("worker"), append(append(s.commonEnv(), "WORKER_HEALTH_ADDR="+s.workerAddr), strings.Fields(os.Getenv("BENCH_WORKER_ENV"))...)); err != nil {
		return err
	}
	if err := waitHTTP(ctx, s.fakellm, "http://"+s.fakellmAddr+"/healthz", 20*time.Second); err != nil {
		return err
	}
	if !s.noProxy {
		if err := waitHTTP(ctx, s.proxy, "http://"+s.proxyAddr+"/readyz", 30*time.Second); err != nil {
			return err
		}
	}
	return waitHTTP(ctx, s.worker, "http://"+s.workerAddr+"/readyz", 30*time.Second)
}

// close stops the children (proxy first, so nothing is in flight towards fakellm, and
// the worker before fakellm so it can finish its batch) and the connections.
func (s *stack) close() {
	for _, c := range []*child{s.proxy, s.worker, s.fakellm} {
		if c != nil {
			c.stop()
		}
	}
	if s.pool != nil {
		s.pool.Close()
	}
	if s.rdb != nil {
		s.rdb.Close()
	}
}

// checkAlive fails when a child has exited during the run.
func (s *stack) checkAlive() error {
	for _, c := range []*child{s.fakellm, s.proxy, s.worker} {
		if c != nil && c.exited() {
			return fmt.Errorf("%s exited during the bench (%v); see %s", c.name, c.err, c.log.Name())
		}
	}
	return nil
}

// recreateDB drops and creates database name and returns its URL.
func recreateDB(ctx context.Context, adminURL, name string) (string, error) {
	conn, err := pgx.Connect(ctx, adminURL)
	if err != nil {
		return "", fmt.Errorf("connect to PostgreSQL at PG_ADMIN_URL: %w", err)
	}
	defer conn.Close(ctx)
	ident := pgx.Identifier{name}.Sanitize()
	if _, err := conn.Exec(ctx, "DROP DATABASE IF EXISTS "+ident+" WITH (FORCE)"); err != nil {
		return "", fmt.Errorf("drop database %s: %w", name, err)
	}
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+ident); err != nil {
		return "", fmt.Errorf("create database %s: %w", name, err)
	}
	cfg, err := pgx.ParseConfig(adminURL)
	if err != nil {
		return "", err
	}
	return fmt.Sprintf("postgres://%s@%s:%d/%s?sslmode=disable", cfg.User, cfg.Host, cfg.Port, name), nil
}

// benchLimit is the concurrency limit of the demo user, its keys and the accounts in the
// bench: above the 9,744 streams of the largest run, so no request ever waits, but set, so
// every admission counts every scope (BENCH_LIMITS=off lifts them, to measure what
// governance costs).
const benchLimit = 20_000

// benchUsers is BENCH_USERS: how many users (each with a key) share the load, 1 (the
// demo user) unless set. With more, every ingested batch debits many users, as on a busy
// installation, and the limits are counted per user and key.
func benchUsers() int {
	n, err := strconv.Atoi(os.Getenv("BENCH_USERS"))
	if err != nil || n < 1 {
		return 1
	}
	return n
}

// benchUserEmail matches the addresses of the users addUsers makes (fundDemo funds them
// with the demo user).
const benchUserEmail = "bench-%@tollgate.local"

// sporadicUsers take turns in latency_200rps_sporadic: at 200 requests a second each
// one's requests come 3 s apart, longer than ADMISSION_RESERVE_IDLE (2 s), so no
// admission is reserved ahead.
const sporadicUsers = 600

// addUsers creates n users in the demo user's group (bench-<tag><i>@tollgate.local), each
// with an API key, before the proxy starts (so its snapshot of existing keys has them),
// and returns the keys.
func addUsers(ctx context.Context, pool *pgxpool.Pool, tag string, n int) ([]string, error) {
	keys := make([]string, n)
	err := pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		for i := range n {
			k := apikey.Generate()
			keys[i] = k.Plaintext
			if _, err := tx.Exec(ctx, `WITH u AS (
					INSERT INTO users (email, password_hash, role, group_id, email_verified_at)
					SELECT $1, password_hash, 'user', group_id, now() FROM users WHERE email = $2 RETURNING id)
				INSERT INTO api_keys (user_id, name, display_prefix, hash) SELECT id, 'bench', $3, $4 FROM u`,
				strings.Replace(benchUserEmail, "%", tag+strconv.Itoa(i+1), 1), demoEmail, k.DisplayPrefix, k.Hash); err != nil {
				return fmt.Errorf("add bench user %s%d: %w", tag, i+1, err)
			}
		}
		return nil
	})
	return keys, err
}

// fundDemo gives the demo user and the bench users (addUsers; users in all) a balance no
// run can exhaust, through the ledger as the app itself would (a topup row and the cached
// balance in one transaction), and sets every limit Tollgate has — concurrency of the
// user, its keys and the accounts, the keys' RPM, the daily and monthly spending caps —
// far above what a run reaches: the bench measures the gateway with its whole governance
// at work, not its queue.
// BENCH_LIMITS=off lifts them instead.
func fundDemo(ctx context.Context, pool *pgxpool.Pool, users int) error {
	limits := os.Getenv("BENCH_LIMITS") != "off"
	var conc, rpm, capNano any // NULL: none
	accConc := 0
	if limits {
		conc, rpm, capNano, accConc = benchLimit, 100_000_000, int64(topupNano), benchLimit
	}
	return pgx.BeginFunc(ctx, pool, func(tx pgx.Tx) error {
		tag, err := tx.Exec(ctx, `INSERT INTO wallet_tx (user_id, amount_nano, kind, ref, note)
			SELECT id, $3, 'topup', 'bench:topup:' || id, 'bench' FROM users WHERE email = $1 OR email LIKE $2`,
			demoEmail, benchUserEmail, int64(topupNano))
		if err != nil {
			return fmt.Errorf("top up the demo user: %w", err)
		}
		if tag.RowsAffected() != int64(users) {
			return fmt.Errorf("top up the bench users: %d of %d (demo user %s)", tag.RowsAffected(), users, demoEmail)
		}
		if _, err := tx.Exec(ctx, `UPDATE users SET balance_nano = balance_nano + $3, concurrency = $4, daily_cap_nano = $5 WHERE email = $1 OR email LIKE $2`,
			demoEmail, benchUserEmail, int64(topupNano), conc, capNano); err != nil {
			return fmt.Errorf("top up the demo user: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE api_keys SET concurrency = $1, rpm = $2, daily_cap_nano = $3, monthly_cap_nano = $3`,
			conc, rpm, capNano); err != nil {
			return fmt.Errorf("set key limits: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE groups SET default_concurrency = 0`); err != nil {
			return fmt.Errorf("set group limits: %w", err)
		}
		if _, err := tx.Exec(ctx, `UPDATE accounts SET max_concurrency = $1`, accConc); err != nil {
			return fmt.Errorf("set account limits: %w", err)
		}
		return nil
	})
}

// deleteKeys deletes every Redis key matching pattern.
func deleteKeys(ctx context.Context, rdb *redis.Client, pattern string) error {
	iter := rdb.Scan(ctx, 0, pattern, 1000).Iterator()
	var batch []string
	for iter.Next(ctx) {
		batch = append(batch, iter.Val())
		if len(batch) == 1000 {
			if err := rdb.Unlink(ctx, batch...).Err(); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	if err := iter.Err(); err != nil {
		return err
	}
	if len(batch) > 0 {
		return rdb.Unlink(ctx, batch...).Err()
	}
	return nil
}

// readEnvFile reads KEY=VALUE lines, ignoring comments and surrounding quotes.
func readEnvFile(path string) (map[string]string, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	out := map[string]string{}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		k, v, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		out[strings.TrimSpace(k)] = strings.Trim(strings.TrimSpace(v), `"'`)
	}
	return out, sc.Err()
}

// binary is the build of cmd/name the bench starts: the one `make build` made, or, for
// A/B runs of two builds alternated (bench/README.md, "Comparing two builds"), the one
// BENCH_PROXY_BIN or BENCH_WORKER_BIN names.
func (s *stack) binary(name string) string {
	if p := os.Getenv("BENCH_" + strings.ToUpper(name) + "_BIN"); p != "" {
		return p
	}
	return filepath.Join(s.bin, name)
}
