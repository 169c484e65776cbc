// Command jsoncmp compares two lldiff JSON documents with the tolerance of
// the sharded-run tests (internal/jsoncmp): the cluster test compares the
// merged contrast --from-stats --json of a Slurm array with an unsharded
// run. It prints the differences and exits 1 when there are any.
//
//	go run ./scripts/cluster/jsoncmp [-rel 1e-4] [-abs 1e-5] [-skip path,...] A.json B.json
package main

import (
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/lldiff/lldiff/internal/jsoncmp"
)

func main() {
	rel := flag.Float64("rel", 1e-4, "relative tolerance on numbers")
	abs := flag.Float64("abs", 1e-5, "absolute tolerance on numbers")
	skip := flag.String("skip", "throughput.seconds,throughput.prompts_per_second,throughput.tokens_per_second", "comma-separated paths not compared")
	flag.Parse()
	if flag.NArg() != 2 {
		fmt.Fprintln(os.Stderr, "usage: jsoncmp [-rel R] [-abs A] [-skip paths] A.json B.json")
		os.Exit(2)
	}
	a, err := os.ReadFile(flag.Arg(0))
	if err == nil {
		var b []byte
		if b, err = os.ReadFile(flag.Arg(1)); err == nil {
			var diffs []string
			diffs, err = jsoncmp.Compare(a, b, jsoncmp.Options{Rel: *rel, Abs: *abs, Skip: strings.Split(*skip, ",")}, 20)
			if err == nil {
				for _, d := range diffs {
					fmt.Println(d)
				}
				if len(diffs) > 0 {
					fmt.Printf("%s and %s differ\n", flag.Arg(0), flag.Arg(1))
					os.Exit(1)
				}
				fmt.Printf("%s and %s are equal (numbers within %g relative, %g absolute)\n", flag.Arg(0), flag.Arg(1), *rel, *abs)
				return
			}
		}
	}
	fmt.Fprintln(os.Stderr, "jsoncmp:", err)
	os.Exit(2)
}
