// Command e2ereal summarizes `go test -json` output of the real-node
// scenarios for `make e2e-real`: it echoes the tests' output, then prints
// one line per scenario (subtest) with its result and figures, and a final
// "N passed, N failed". It exits non-zero when a scenario failed or none
// ran.
//
//	go test -json -run TestE2EReal ./test/e2e/realnodes | go run ./test/cmd/e2ereal
package main

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"strings"
)

type event struct {
	Action string
	Test   string
	Output string
}

type scenario struct {
	name    string
	result  string
	figures []string
}

func main() {
	var order []*scenario
	byName := map[string]*scenario{}
	get := func(test string) *scenario {
		s := byName[test]
		if s == nil {
			s = &scenario{name: test}
			byName[test] = s
			order = append(order, s)
		}
		return s
	}
	sc := bufio.NewScanner(os.Stdin)
	sc.Buffer(make([]byte, 1<<20), 1<<24)
	for sc.Scan() {
		var e event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			fmt.Println(sc.Text()) // not JSON: a build error, say
			continue
		}
		switch e.Action {
		case "output":
			fmt.Print(e.Output)
			if e.Test != "" {
				if i := strings.Index(e.Output, "figure: "); i >= 0 {
					s := get(e.Test)
					s.figures = append(s.figures, strings.TrimSpace(e.Output[i+len("figure: "):]))
				}
			}
		case "pass", "fail", "skip":
			if e.Test != "" {
				get(e.Test).result = strings.ToUpper(e.Action)
			}
		}
	}
	passed, failed := 0, 0
	fmt.Println("\n== real-node scenarios ==")
	for _, s := range order {
		// One line per scenario: the subtests, or a top-level test without
		// subtests (TestInstallBGPRollingRestart).
		hasSub := false
		for _, o := range order {
			if strings.HasPrefix(o.name, s.name+"/") {
				hasSub = true
			}
		}
		if hasSub || s.result == "" {
			if s.result == "FAIL" && !hasSub {
				failed++
			}
			continue
		}
		switch s.result {
		case "PASS":
			passed++
		case "FAIL":
			failed++
		}
		fmt.Printf("%-4s %s", s.result, s.name)
		if len(s.figures) > 0 {
			fmt.Printf(" — %s", strings.Join(s.figures, "; "))
		}
		fmt.Println()
	}
	fmt.Printf("%d passed, %d failed\n", passed, failed)
	if failed > 0 || passed == 0 {
		os.Exit(1)
	}
}
