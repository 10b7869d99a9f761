package testenv

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

// Server is a PostgreSQL or Redis server of the test's own, for tests that stop and
// restart a dependency (fault tests). It is stopped when the test ends.
type Server struct {
	URL   string
	t     testing.TB
	start func() error
	stop  func() error
	pid   func() int // the running server's (main) process, 0 when stopped
	// frozen: Freeze ran and Thaw has not; the test's cleanup thaws it first.
	frozen bool
}

// Freeze stops the server's processes without closing anything (SIGSTOP): connections
// stay open and new ones are accepted by the kernel, but nothing answers — a server that
// hangs, or a network that drops packets. Thaw resumes it, and so does the test's end
// if the test did not (a frozen PostgreSQL would not stop). For PostgreSQL, the
// postmaster and every backend it has forked are stopped.
func (s *Server) Freeze() {
	s.t.Helper()
	s.signal(syscall.SIGSTOP)
	if !s.frozen {
		s.frozen = true
		s.t.Cleanup(func() {
			if s.frozen {
				s.Thaw()
			}
		})
	}
}

// Thaw resumes a frozen server (SIGCONT).
func (s *Server) Thaw() {
	s.t.Helper()
	s.signal(syscall.SIGCONT)
	s.frozen = false
}

func (s *Server) signal(sig syscall.Signal) {
	s.t.Helper()
	root := 0
	if s.pid != nil {
		root = s.pid()
	}
	if root == 0 {
		s.t.Fatal("no server process to signal")
	}
	pids := append([]int{root}, children(root)...)
	if sig == syscall.SIGCONT {
		slices.Reverse(pids) // the backends first, so none sees a postmaster gone quiet
	}
	for _, pid := range pids {
		if err := syscall.Kill(pid, sig); err != nil && pid == root {
			s.t.Fatalf("signal server: %v", err)
		}
	}
}

// Client is a client of the server (a Redis server) for a test that stops or freezes it:
// no retries, one dial, a short dial timeout, so that calls fail at once while it is
// away. It is closed when the test ends.
func (s *Server) Client() *redis.Client {
	s.t.Helper()
	opts, err := redis.ParseURL(s.URL)
	if err != nil {
		s.t.Fatal(err)
	}
	opts.MaxRetries, opts.DialTimeout, opts.DialerRetries = -1, 200*time.Millisecond, 1
	rdb := redis.NewClient(opts)
	s.t.Cleanup(func() { rdb.Close() })
	return rdb
}

// children lists the processes whose parent is pid (from /proc).
func children(pid int) []int {
	entries, _ := os.ReadDir("/proc")
	var out []int
	parent := strconv.Itoa(pid)
	for _, e := range entries {
		child, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// pid (comm) state ppid …; comm may hold spaces, so read after its last ')'.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(string(b[i+1:]))
		if len(f) > 1 && f[1] == parent {
			out = append(out, child)
		}
	}
	return out
}

// Start (re)starts the server on the same port with the same data.
func (s *Server) Start() {
	s.t.Helper()
	if err := s.start(); err != nil {
		s.t.Fatalf("start server: %v", err)
	}
}

// Stop stops it (fast shutdown for PostgreSQL, SHUTDOWN NOSAVE semantics for Redis).
func (s *Server) Stop() {
	s.t.Helper()
	if err := s.stop(); err != nil {
		s.t.Fatalf("stop server: %v", err)
	}
}

func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

const pgBin = "/usr/lib/postgresql/15/bin"

// asPostgres runs a PostgreSQL tool; as root it must run as the postgres user.
func asPostgres(name string, args ...string) *exec.Cmd {
	bin := filepath.Join(pgBin, name)
	if os.Geteuid() == 0 {
		cmd := exec.Command("runuser", append([]string{"-u", "postgres", "--", bin}, args...)...)
		cmd.Dir = "/"
		return cmd
	}
	return exec.Command(bin, args...)
}

// Postgres starts a PostgreSQL server in a temporary directory. URL is a superuser URL
// to its "postgres" database.
func Postgres(t testing.TB) *Server {
	t.Helper()
	dir, err := os.MkdirTemp("", "tollgate-pg-")
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		u, err := user.Lookup("postgres")
		if err != nil {
			t.Fatalf("no postgres user to run PostgreSQL as: %v", err)
		}
		uid, _ := strconv.Atoi(u.Uid)
		gid, _ := strconv.Atoi(u.Gid)
		os.Chmod(dir, 0o700)
		if err := os.Chown(dir, uid, gid); err != nil {
			t.Fatal(err)
		}
	}
	data := filepath.Join(dir, "data")
	if out, err := asPostgres("initdb", "-D", data, "--auth=trust", "-U", "postgres", "--no-locale", "-E", "UTF8").CombinedOutput(); err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	port := freePort(t)
	logFile := filepath.Join(dir, "postgres.log")
	s := &Server{t: t, URL: fmt.Sprintf("postgres://postgres@127.0.0.1:%d/postgres?sslmode=disable", port)}
	s.pid = func() int { // the postmaster's, from the first line of postmaster.pid
		b, err := os.ReadFile(filepath.Join(data, "postmaster.pid"))
		if err != nil {
			return 0
		}
		pid, _ := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(b), "\n", 2)[0]))
		return pid
	}
	s.start = func() error {
		out, err := asPostgres("pg_ctl", "-D", data, "-l", logFile, "-w", "-t", "60", "-o",
			fmt.Sprintf("-p %d -k %s -c listen_addresses=127.0.0.1 -c fsync=off", port, dir), "start").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	s.stop = func() error {
		out, err := asPostgres("pg_ctl", "-D", data, "-m", "fast", "-w", "-t", "60", "stop").CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, out)
		}
		return nil
	}
	s.Start()
	t.Cleanup(func() {
		asPostgres("pg_ctl", "-D", data, "-m", "immediate", "-w", "stop").Run() //nolint:errcheck
		os.RemoveAll(dir)
	})
	return s
}

// DurableRedisServer is a RedisServer that keeps its data across Stop and Start, as a
// production Redis with AOF does (appendfsync always).
func DurableRedisServer(t testing.TB) *Server {
	t.Helper()
	return RedisServer(t, "--appendonly", "yes", "--appendfsync", "always", "--dir", t.TempDir())
}

// RedisServer starts a Redis server on a free port: without persistence, unless args
// (more redis-server options, which override the defaults) ask for it.
func RedisServer(t testing.TB, args ...string) *Server {
	t.Helper()
	port := freePort(t)
	var cmd *exec.Cmd
	s := &Server{t: t, URL: fmt.Sprintf("redis://127.0.0.1:%d/0", port)}
	s.start = func() error {
		cmd = exec.Command("redis-server", append([]string{"--port", strconv.Itoa(port), "--bind", "127.0.0.1",
			"--save", "", "--appendonly", "no"}, args...)...)
		if err := cmd.Start(); err != nil {
			return err
		}
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			if c, err := net.Dial("tcp", fmt.Sprintf("127.0.0.1:%d", port)); err == nil {
				c.Close()
				return nil
			}
		}
		return fmt.Errorf("redis-server did not listen on port %d", port)
	}
	s.pid = func() int {
		if cmd == nil || cmd.Process == nil {
			return 0
		}
		return cmd.Process.Pid
	}
	s.stop = func() error {
		if cmd == nil || cmd.Process == nil {
			return nil
		}
		cmd.Process.Kill()
		cmd.Wait()
		cmd = nil
		return nil
	}
	s.Start()
	t.Cleanup(func() { s.stop() })
	return s
}
