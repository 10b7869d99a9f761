package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// stopTimeout is how long a child gets to exit after SIGTERM before it is killed.
const stopTimeout = 10 * time.Second

// child is one process the bench started: fakellm, proxy or worker.
type child struct {
	name string
	cmd  *exec.Cmd
	log  *os.File
	done chan struct{} // closed when the process has exited
	err  error         // its exit status, valid after done
}

// startChild runs bin with env (added to the bench's own environment) and its output in
// .dev/logs/bench-NAME.log. The child gets its own process group, so a Ctrl-C at the
// terminal reaches only the bench, which then stops its children in order; Pdeathsig
// kills it if the bench itself dies without cleaning up.
func startChild(root, name, bin string, env []string, args ...string) (*child, error) {
	logPath := filepath.Join(root, ".dev", "logs", "bench-"+name+".log")
	f, err := os.Create(logPath)
	if err != nil {
		return nil, fmt.Errorf("create log of %s: %w", name, err)
	}
	cmd := exec.Command(bin, args...)
	cmd.Dir = root
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout = f
	cmd.Stderr = f
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		f.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, log: f, done: make(chan struct{})}
	go func() {
		c.err = cmd.Wait()
		close(c.done)
	}()
	return c, nil
}

func (c *child) pid() int { return c.cmd.Process.Pid }

// exited reports whether the process has ended.
func (c *child) exited() bool {
	select {
	case <-c.done:
		return true
	default:
		return false
	}
}

// stop sends SIGTERM, waits stopTimeout, then SIGKILL. Only this process is signalled,
// by its PID.
func (c *child) stop() {
	defer c.log.Close()
	if c.exited() {
		return
	}
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.done:
		return
	case <-time.After(stopTimeout):
	}
	fmt.Fprintf(os.Stderr, "bench: %s (pid %d) ignored SIGTERM for %s; killing it\n", c.name, c.pid(), stopTimeout)
	_ = c.cmd.Process.Kill()
	<-c.done
}

// waitHTTP polls url until it answers 200, the child (if not nil) exits, or timeout
// passes.
func waitHTTP(ctx context.Context, c *child, url string, timeout time.Duration) error {
	deadline := time.Now().Add(timeout)
	client := &http.Client{Timeout: time.Second}
	for {
		if c != nil && c.exited() {
			return fmt.Errorf("%s exited before it was ready (%v); see %s", c.name, c.err, c.log.Name())
		}
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
		resp, err := client.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		if time.Now().After(deadline) {
			if c == nil {
				return fmt.Errorf("%s not ready after %s", url, timeout)
			}
			return fmt.Errorf("%s not ready at %s after %s; see %s", c.name, url, timeout, c.log.Name())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// freeAddr returns a loopback address with a port that was free a moment ago.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("find a free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// clockTicks is USER_HZ, the unit of utime and stime in /proc/PID/stat; 100 on every
// Linux architecture Go supports.
const clockTicks = 100

// procCPU returns the CPU time (user + system) process pid has used.
func procCPU(pid int) (time.Duration, error) {
	st, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	return st.cpu, nil
}

// procStat is what the bench reads from /proc/PID/stat.
type procStat struct {
	ppid     int
	cpu      time.Duration // utime + stime
	children time.Duration // cutime + cstime: children that exited and were waited for
}

func readProcStat(pid int) (procStat, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procStat{}, err
	}
	// The command name is in parentheses and may hold spaces; fields follow the last ')'.
	i := bytes.LastIndexByte(b, ')')
	if i < 0 {
		return procStat{}, errors.New("malformed /proc stat")
	}
	f := strings.Fields(string(b[i+1:]))
	// After ')': state(3) ppid(4) … utime(14) stime(15) cutime(16) cstime(17), so ppid is
	// f[1] and utime f[11].
	if len(f) < 15 {
		return procStat{}, errors.New("short /proc stat")
	}
	var n [5]int64
	for j, k := range [5]int{1, 11, 12, 13, 14} {
		if n[j], err = strconv.ParseInt(f[k], 10, 64); err != nil {
			return procStat{}, fmt.Errorf("/proc stat: %w", err)
		}
	}
	tick := func(t int64) time.Duration { return time.Duration(t) * time.Second / clockTicks }
	return procStat{ppid: int(n[0]), cpu: tick(n[1] + n[2]), children: tick(n[3] + n[4])}, nil
}

// treeCPU returns the CPU time of process pid and all its direct children, living or
// exited (PostgreSQL: the postmaster and its backends, which come and go with
// connections). A child that exits between two readings moves from the living sum to
// the parent's cutime, so differences stay exact.
func treeCPU(pid int) (time.Duration, error) {
	root, err := readProcStat(pid)
	if err != nil {
		return 0, err
	}
	total := root.cpu + root.children
	dirs, err := os.ReadDir("/proc")
	if err != nil {
		return 0, err
	}
	for _, d := range dirs {
		child, err := strconv.Atoi(d.Name())
		if err != nil {
			continue
		}
		st, err := readProcStat(child)
		if err != nil || st.ppid != pid {
			continue // gone meanwhile, or not a child
		}
		total += st.cpu
	}
	return total, nil
}

// procRSS returns the resident set size of process pid in bytes.
func procRSS(pid int) (int64, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/statm")
	if err != nil {
		return 0, err
	}
	f := strings.Fields(string(b))
	if len(f) < 2 {
		return 0, errors.New("malformed /proc statm")
	}
	pages, err := strconv.ParseInt(f[1], 10, 64)
	if err != nil {
		return 0, err
	}
	return pages * int64(os.Getpagesize()), nil
}

// procMaxOpenFiles returns the soft RLIMIT_NOFILE of process pid.
func procMaxOpenFiles(pid int) (int, error) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/limits")
	if err != nil {
		return 0, err
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if strings.HasPrefix(line, "Max open files") {
			f := strings.Fields(strings.TrimPrefix(line, "Max open files"))
			if len(f) > 0 {
				return strconv.Atoi(f[0])
			}
		}
	}
	return 0, errors.New("no 'Max open files' line in /proc limits")
}

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard one; children inherit it (Go
// restores the original soft limit for children only when the program never sets it).
func raiseFileLimit() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("read RLIMIT_NOFILE: %w", err)
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("raise RLIMIT_NOFILE to %d: %w", rl.Max, err)
	}
	return rl.Cur, nil
}
