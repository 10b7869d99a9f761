//go:build ignore

// Command testsum turns `go test -json` on stdin into a short report for make test: the
// package result lines go test prints anyway, the full output of each failed test (and of
// tests still running when their package died), and a closing count line:
//
//	tests: 120 passed, 0 failed, 3 skipped
//
// A package that failed without a failing test (build error, panic in TestMain, timeout)
// counts as one failure, so a broken build never reads "0 failed". Lines that are not JSON
// are passed through. The exit status is 1 when anything failed.
//
// Usage: go test -json ./... 2>&1 | go run .ci/testsum.go
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"sort"
	"strings"
	"time"
)

// event is one line of `go test -json` (see `go doc test2json`).
type event struct {
	Action  string
	Package string
	Test    string
	Output  string
}

type report struct {
	out     io.Writer
	passed  int
	skipped int
	// failedTests holds "pkg TestName" of every failed test, subtests included.
	failedTests []string
	// failedPkgs holds packages that failed with no failed test of their own.
	failedPkgs []string
	// logs buffers the output of running tests, keyed by package then test name.
	logs map[string]map[string][]string
	// pkgHasFailure marks packages with at least one failed test.
	pkgHasFailure map[string]bool
}

func main() {
	start := time.Now()
	r := &report{
		out:           os.Stdout,
		logs:          map[string]map[string][]string{},
		pkgHasFailure: map[string]bool{},
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 64<<20)
	for sc.Scan() {
		r.line(sc.Bytes())
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintf(r.out, "testsum: reading go test output: %v\n", err)
		r.failedPkgs = append(r.failedPkgs, "(testsum input)")
	}
	os.Exit(r.summary(time.Since(start)))
}

func (r *report) line(b []byte) {
	var e event
	if len(b) == 0 || b[0] != '{' || json.Unmarshal(b, &e) != nil {
		fmt.Fprintln(r.out, string(b))
		return
	}
	switch {
	case e.Action == "build-output":
		fmt.Fprint(r.out, e.Output)
	case e.Test == "":
		r.packageEvent(e)
	default:
		r.testEvent(e)
	}
}

func (r *report) packageEvent(e event) {
	switch e.Action {
	case "output":
		// Keep go test's own "ok"/"FAIL"/"?" lines and anything the package printed outside
		// a test; drop the bare PASS/FAIL markers that precede them.
		if e.Output != "PASS\n" && e.Output != "FAIL\n" {
			fmt.Fprint(r.out, e.Output)
		}
	case "fail":
		// Tests that never finished (a panic or timeout killed the binary) explain the failure.
		for test, lines := range r.logs[e.Package] {
			fmt.Fprintf(r.out, "--- UNFINISHED: %s (%s)\n%s", test, e.Package, strings.Join(lines, ""))
		}
		if !r.pkgHasFailure[e.Package] {
			r.failedPkgs = append(r.failedPkgs, e.Package)
		}
		delete(r.logs, e.Package)
	case "pass", "skip":
		delete(r.logs, e.Package)
	}
}

func (r *report) testEvent(e event) {
	logs := r.logs[e.Package]
	if logs == nil {
		logs = map[string][]string{}
		r.logs[e.Package] = logs
	}
	switch e.Action {
	case "output":
		if !strings.HasPrefix(e.Output, "=== ") {
			logs[e.Test] = append(logs[e.Test], e.Output)
		}
	case "pass":
		r.passed++
		delete(logs, e.Test)
	case "skip":
		r.skipped++
		delete(logs, e.Test)
	case "fail":
		r.failedTests = append(r.failedTests, e.Package+" "+e.Test)
		r.pkgHasFailure[e.Package] = true
		fmt.Fprintf(r.out, "=== FAILED %s (%s)\n%s", e.Test, e.Package, strings.Join(logs[e.Test], ""))
		delete(logs, e.Test)
	}
}

func (r *report) summary(elapsed time.Duration) int {
	if len(r.failedTests) > 0 {
		sort.Strings(r.failedTests)
		fmt.Fprintln(r.out, "\nFailed tests:")
		for _, t := range r.failedTests {
			fmt.Fprintln(r.out, "  "+t)
		}
	}
	if len(r.failedPkgs) > 0 {
		sort.Strings(r.failedPkgs)
		fmt.Fprintln(r.out, "\nPackages that failed outside a test (build error, panic, timeout):")
		for _, p := range r.failedPkgs {
			fmt.Fprintln(r.out, "  "+p)
		}
	}
	failed := len(r.failedTests) + len(r.failedPkgs)
	verdict := "PASS"
	if failed > 0 {
		verdict = "FAIL"
	}
	fmt.Fprintf(r.out, "\n%s in %s\n", verdict, elapsed.Round(time.Second))
	fmt.Fprintf(r.out, "tests: %d passed, %d failed, %d skipped\n", r.passed, failed, r.skipped)
	if failed > 0 {
		return 1
	}
	return 0
}
